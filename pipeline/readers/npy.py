"""NumPy ``.npy`` files, memory-mapped inside each task."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import local_path
from pipeline.readers.layout import infer_axes


@dataclass(frozen=True)
class NpyBlockReader:
    """Reads a region of a ``.npy`` file through a read-only memory map."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r")[key])


def open_npy(
    path: str, *, axes: str | None = None, options: ReadOptions | None = None
) -> ImageSource:
    """Open a ``.npy`` file; only its header is read here."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        shape, dtype = mapped.shape, mapped.dtype
        fortran = mapped.flags.f_contiguous and not mapped.flags.c_contiguous
        del mapped
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npy file ({exc})") from None
    if fortran:
        raise InputError(path, "Fortran-ordered .npy files are not supported")
    axes = infer_axes(path, tuple(shape), axes)
    return ImageSource(
        path=path,
        axes=axes,
        reader=NpyBlockReader(local_path(path), tuple(int(s) for s in shape), np.dtype(dtype)),
        spacing=(1.0,) * len(axes.replace("c", "")),
        format="npy",
    )
