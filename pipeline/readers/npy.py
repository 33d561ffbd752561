"""NumPy ``.npy`` files: the header is read when opening, pixels through a memory map in tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import RegionReader, check_size, local_path, pixel_dtype
from pipeline.readers.layout import infer_axes


@dataclass(frozen=True)
class NpyBlockReader(RegionReader):
    """Reads a region of a ``.npy`` file through a read-only memory map (C or Fortran order)."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r", allow_pickle=False)[box])


def read_npy_header(path: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of a ``.npy`` file, from its header alone.

    Raises
    ------
    InputError
        If the file is not a ``.npy`` file or its header is damaged.
    """
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise InputError(path, f"not a readable .npy file ({exc})") from None
    return tuple(int(n) for n in shape), bool(fortran), dtype, offset


def open_npy(
    path: str, *, axes: str | None = None, options: ReadOptions | None = None
) -> ImageSource:
    """Open a ``.npy`` file; only its header is read here.

    Raises
    ------
    InputError
        For a damaged or truncated file, an unsupported dtype (complex, object, structured,
        ...), an empty axis or more pixels than ``options.max_pixels``.
    """
    options = options or ReadOptions()
    shape, _, stored, offset = read_npy_header(path)
    dtype = pixel_dtype(path, stored)
    axes = infer_axes(path, shape, axes)
    check_size(path, shape, axes, options.max_pixels)
    if os.path.getsize(path) < offset + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize:
        raise InputError(path, "the .npy file is truncated (shorter than its header says)")
    return ImageSource(
        path=path,
        axes=axes,
        reader=NpyBlockReader(local_path(path), shape, dtype),
        spacing=(1.0,) * len(axes.replace("c", "")),
        format="npy",
        metadata={"stored_dtype": stored.str} if stored.str != dtype.str else {},
    )
