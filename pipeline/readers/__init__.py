"""Readers: open an input path as an :class:`~pipeline.readers.base.ImageSource`.

``open_image`` picks the reader from the registry :data:`~pipeline.readers.dispatch.READERS`
(by suffix, first bytes or the contents of a folder); ``expand_inputs`` turns paths, globs and
folders into the list of images to process; ``READABLE_SUFFIXES`` is the one list of image
suffixes (longest first). Every reader shows pixels as a viewer does (colour model,
orientation) and refuses, from the header, empty images, unreadable dtypes and sizes beyond
``max_pixels``.
"""

from __future__ import annotations

from pipeline.readers.base import BlockReader, ImageSource
from pipeline.readers.dispatch import READABLE_SUFFIXES, expand_inputs, open_image
from pipeline.readers.memory import from_array

__all__ = [
    "READABLE_SUFFIXES",
    "BlockReader",
    "ImageSource",
    "expand_inputs",
    "from_array",
    "open_image",
]
