"""In-memory NumPy arrays given to the Python API."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource
from pipeline.readers.common import pixel_dtype
from pipeline.readers.layout import infer_axes


@dataclass(frozen=True, eq=False)
class ArrayBlockReader:
    """Wraps an in-memory array (pickled with the graph: for small arrays only)."""

    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        return self.array[key]


def from_array(
    array: np.ndarray,
    *,
    name: str = "array",
    axes: str | None = None,
    no_data: tuple[tuple[float, float], ...] = (),
) -> ImageSource:
    """Make an :class:`ImageSource` from an in-memory array.

    ``no_data`` holds closed intervals of values that mean no data (as a DICOM reader fills
    them from the pixel padding).

    Raises
    ------
    InputError
        For an unsupported dtype (complex, object, ...), an empty axis or a shape that is not
        an image or volume, naming ``name``.
    """
    array = np.asarray(array)
    dtype = pixel_dtype(name, array.dtype)
    if array.dtype != dtype or array.dtype.type is not dtype.type:
        array = array.astype(dtype)  # native byte order and canonical 64-bit integer types
    axes = infer_axes(name, array.shape, axes)
    if 0 in array.shape:
        raise InputError(name, f"the image is empty (shape {array.shape}, axes {axes})")
    rgb = axes.endswith("c") and array.shape[-1] in (3, 4)
    names = ("R", "G", "B", "A")[: array.shape[-1]] if rgb else ()
    return ImageSource(
        path=name,
        axes=axes,
        reader=ArrayBlockReader(array),
        spacing=(1.0,) * len(axes.replace("c", "")),
        channel_names=names,
        format="array",
        no_data=tuple((float(lo), float(hi)) for lo, hi in no_data),
    )
