"""Readers: open an input path as an :class:`~pipeline.readers.base.ImageSource`.

``open_image`` picks the reader from the path (suffix, or the contents of a folder);
``expand_inputs`` turns paths, globs and folders into the list of images to process.
"""

from __future__ import annotations

from pipeline.readers.base import BlockReader, ImageSource
from pipeline.readers.dispatch import expand_inputs, open_image
from pipeline.readers.memory import from_array

__all__ = ["BlockReader", "ImageSource", "expand_inputs", "from_array", "open_image"]
