"""Choose a reader for a path, and expand globs and folders into input lists."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource
from pipeline.readers.npy import open_npy


def open_image(
    path: str,
    *,
    level: int = 0,
    series: int = 0,
    array_path: str | None = None,
) -> ImageSource:
    """Open an image's metadata and return a lazy :class:`ImageSource`.

    Parameters
    ----------
    path : str
        File or folder (Zarr store, DICOM series folder).
    level : int
        Pyramid level for pyramidal TIFF/SVS and OME-Zarr (0 = full resolution).
    series : int
        TIFF series index.
    array_path : str, optional
        Array inside a Zarr group (overrides ``level`` for OME-Zarr).
    """
    if not os.path.exists(path):
        raise InputError(path, "no such file or directory")
    lower = path.lower().rstrip("/")
    if lower.endswith(".npy"):
        return open_npy(path)
    raise InputError(path, "unsupported file format")


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Expand globs and plain folders of images into a sorted list of input paths."""
    out: list[str] = []
    for item in inputs:
        if glob.has_magic(item):
            matches = sorted(glob.glob(item))
            if not matches:
                raise InputError(item, "the pattern matches no file")
            out.extend(matches)
        else:
            out.append(item)
    return out
