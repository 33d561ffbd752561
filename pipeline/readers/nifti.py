"""NIfTI-1/2 volumes (``.nii``, ``.nii.gz``), read by region through nibabel's array proxy.

NIfTI stores x fastest (axes x, y, z, t, ...); sources present them as ``zyx`` (or ``yx`` for
a single slice) with a trailing channel axis for a short 4th or 5th dimension. The voxel grid
is kept as stored: the affine is recorded, not applied (no reorientation to RAS).
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import (
    RegionReader,
    file_stamp,
    local_path,
    mapped_key,
    present_chunks,
    to_presented,
)
from pipeline.readers.layout import MAX_CHANNELS

_UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter"}


@functools.lru_cache(maxsize=16)
def _load(path: str, stamp: tuple[int, int]) -> Any:
    # Only the header is parsed; the proxy opens the file for each region it reads.
    # ``stamp`` only keys the cache.
    return nib.load(path)


@dataclass(frozen=True)
class NiftiBlockReader(RegionReader):
    """Reads a region of a NIfTI image; ``order`` maps presented to stored axes."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    order: tuple[int, ...]
    native_ndim: int

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        proxy = _load(self.path, file_stamp(self.path)).dataobj
        block = np.asarray(proxy[mapped_key(box, self.order, self.native_ndim)])
        return to_presented(block, self.order)


def open_nifti(path: str, *, options: ReadOptions | None = None) -> ImageSource:
    """Open a ``.nii`` or ``.nii.gz`` file; only the header is read here."""
    try:
        img = nib.load(path)
        header = img.header
        native = tuple(int(n) for n in img.shape)
        raw = np.dtype(header.get_data_dtype())
        slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
        offset = int(img.dataobj.offset)
        # Zooms are float32 in the header: keep their shortest decimal form (0.6, not 0.60000002).
        zooms = tuple(float(str(np.float32(z))) for z in header.get_zooms())
        space_unit = header.get_xyzt_units()[0]
        affine = img.affine
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if raw.names is not None:
        raise InputError(path, f"unsupported NIfTI data type {raw} (RGB/complex)")
    if raw.kind == "c":
        raise InputError(path, "complex NIfTI data are not supported")
    _check_size(path, offset + int(np.prod(native)) * raw.itemsize)

    axes, order = _map_axes(path, native)
    shape = tuple(native[a] for a in order)
    scaled = slope != 1.0 or inter != 0.0
    dtype = _scaled_dtype(raw, slope, inter) if scaled else raw.newbyteorder("=")
    spatial = [a for a, ax in zip(order, axes, strict=True) if ax != "c"]
    spacing = tuple(zooms[a] if a < len(zooms) and zooms[a] > 0 else 1.0 for a in spatial)
    # One z-slice of an uncompressed file is contiguous; a gzip stream is read from its start,
    # so a compressed file is best read whole.
    compressed = path.lower().endswith(".gz")
    chunks = native if compressed else tuple(n if a < 2 else 1 for a, n in enumerate(native))
    return ImageSource(
        path=path,
        axes=axes,
        reader=NiftiBlockReader(local_path(path), shape, dtype, order, len(native)),
        spacing=spacing,
        unit=_UNITS.get(space_unit, "millimeter"),
        native_chunks=present_chunks(chunks, order, shape, axes),
        format="nifti",
        metadata={
            "affine": [[float(v) for v in row] for row in np.asarray(affine)],
            **({"scl_slope": slope, "scl_inter": inter} if scaled else {}),
        },
    )


def _map_axes(path: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Presented axes and the stored axis of each (stored x, y, z, t, u...)."""
    if len(shape) < 2:
        raise InputError(path, f"a NIfTI image of shape {shape} is not an image")
    extra = [i for i in range(3, len(shape)) if shape[i] > 1]
    if len(extra) > 1 or (extra and shape[extra[0]] > MAX_CHANNELS):
        raise InputError(path, f"cannot present NIfTI shape {shape} as zyx plus channels")
    spatial = (2, 1, 0) if len(shape) > 2 and shape[2] > 1 else (1, 0)
    order = spatial + tuple(extra)
    return ("zyx" if len(spatial) == 3 else "yx") + ("c" if extra else ""), order


def _scaled_dtype(raw: np.dtype, slope: float, inter: float) -> np.dtype:
    """int16 for integer scaling that keeps the stored range in int16; else a float."""
    if raw.kind in "iu" and raw.itemsize <= 2 and slope.is_integer() and inter.is_integer():
        info, out = np.iinfo(raw), np.iinfo(np.int16)
        ends = (info.min * slope + inter, info.max * slope + inter)
        if min(ends) >= out.min and max(ends) <= out.max:
            return np.dtype(np.int16)
    wide = raw.itemsize > 4 or (raw.kind in "iu" and raw.itemsize == 4)
    return np.dtype(np.float64 if wide else np.float32)


def _check_size(path: str, needed: int) -> None:
    """Raise if the file is too short for its data (gzip: the stored uncompressed size)."""
    size = os.path.getsize(path)
    if path.lower().endswith(".gz"):
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise InputError(path, "not a gzip file")
            fh.seek(max(0, size - 4))
            stored = struct.unpack("<I", fh.read(4).rjust(4, b"\0"))[0]
        # ISIZE is the uncompressed size modulo 2**32 (of the last gzip member): the header and
        # data, perhaps a little padding. A cut file ends in arbitrary compressed bytes instead.
        if (stored - needed) % 2**32 >= 2**20:
            raise InputError(path, "truncated or corrupt gzip stream")
    elif size < needed:
        raise InputError(path, "the NIfTI file is truncated")

