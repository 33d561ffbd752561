"""NIfTI-1/2 volumes (``.nii``, ``.nii.gz``), read by region through nibabel's array proxy.

Values are those the header says: nibabel's array proxy applies ``scl_slope``/``scl_inter``
(``int16`` when both are integers and map the stored range into ``int16``, else a float type).

NIfTI stores x fastest (voxel axes i, j, k, t, ...); sources present them as ``zyx`` (or ``yx``
for a single slice) with a trailing channel axis for a short 4th or 5th dimension.

Orientation: the anatomical direction of the voxel axes i, j, k, from the header's best affine
(sform, else qform, else nibabel's default from pixdim), is recorded as nibabel's axis codes
(``"LPS"``: i runs to the patient's left, j to posterior, k to superior) with the affine. By
default the voxel grid is kept as stored. With ``reorient=True`` (the ``reorient`` config key)
the volume is presented in the closest canonical orientation, RAS+ (as
:func:`nibabel.as_closest_canonical`): each block is read from the stored array over the
mirrored index range and then flipped and transposed, so nothing is loaded whole; the spacing,
the affine and the recorded orientation follow the reoriented axes. An oblique volume is
reoriented to the closest RAS+ axes, not resampled.

Header problems that nibabel repairs (a wrong ``sizeof_hdr``, negative pixdim, ...) give one
:class:`~pipeline.errors.KmsegWarning` naming the file; a header nibabel cannot read, or one
declaring non-positive dimensions, one :class:`~pipeline.errors.InputError`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import InputError, KmsegWarning
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import (
    RegionReader,
    check_size,
    file_stamp,
    local_path,
    pixel_dtype,
    rescaled_int_dtype,
)
from pipeline.readers.layout import MAX_CHANNELS

_UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter"}
_LOG_LOCK = threading.Lock()


@contextlib.contextmanager
def _nibabel_problems() -> Iterator[list[str]]:
    """Collect, instead of printing, what nibabel logs about a header it checks and repairs."""
    problems: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            problems.append(" ".join(record.getMessage().split()))

    from nibabel import imageglobals

    handler = Collect(logging.WARNING)
    logger = imageglobals.logger
    with _LOG_LOCK:
        saved, propagate = list(logger.handlers), logger.propagate
        for h in saved:
            logger.removeHandler(h)
        logger.addHandler(handler)
        logger.propagate = False
        try:
            yield problems
        finally:
            logger.removeHandler(handler)
            for h in saved:
                logger.addHandler(h)
            logger.propagate = propagate


@functools.lru_cache(maxsize=16)
def _load(path: str, stamp: tuple[int, int]) -> Any:
    # Only the header is parsed; the proxy opens the file for each region it reads.
    # ``stamp`` only keys the cache. Header problems were reported when the file was opened.
    import nibabel as nib

    with _nibabel_problems():
        return nib.load(path)


@dataclass(frozen=True)
class NiftiBlockReader(RegionReader):
    """Reads a region of a NIfTI image.

    ``order[i]`` is the stored axis shown as presented axis ``i`` (axes at or beyond
    ``len(native_shape)`` are implicit singleton spatial axes of a 2-D file); ``flips[i]``
    says that presented axis ``i`` runs against the stored one.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    order: tuple[int, ...]
    flips: tuple[bool, ...]
    native_shape: tuple[int, ...]

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        proxy = _load(self.path, file_stamp(self.path)).dataobj
        native_ndim = len(self.native_shape)
        key: list[Any] = [0] * native_ndim
        for sl, axis, flip in zip(box, self.order, self.flips, strict=True):
            if axis < native_ndim:
                n = self.native_shape[axis]
                key[axis] = slice(n - sl.stop, n - sl.start) if flip else sl
        block = np.asarray(proxy[tuple(key)])
        stored_axes = sorted(a for a in self.order if a < native_ndim)
        implicit = sorted(a for a in self.order if a >= native_ndim)
        block = block.reshape(block.shape + (1,) * len(implicit))
        now = stored_axes + implicit
        block = np.transpose(block, [now.index(a) for a in self.order])
        flipped = tuple(i for i, flip in enumerate(self.flips) if flip)
        return np.flip(block, flipped) if flipped else block


def open_nifti(path: str, *, options: ReadOptions | None = None) -> ImageSource:
    """Open a ``.nii`` or ``.nii.gz`` file; only the header is read here.

    Parameters
    ----------
    path : str
        The file.
    options : ReadOptions, optional
        ``reorient=True`` presents the volume in the closest canonical (RAS+) orientation.

    Returns
    -------
    ImageSource
        Axes ``zyx[c]`` or ``yx[c]``; metadata ``affine`` (voxel indices i, j, k as presented
        in reverse, to mm), ``orientation`` (axis codes of i, j, k, e.g. ``"LPS"``),
        ``affine_source`` and, when applied, ``scl_slope``/``scl_inter`` and
        ``reoriented_from``.

    Raises
    ------
    InputError
        An unreadable, corrupt or truncated file; an unsupported data type or shape.
    """
    # nibabel is imported where it is used: importing it (and pydicom) costs 0.1 s of every start
    import nibabel as nib

    options = options or ReadOptions()
    with _nibabel_problems() as problems:
        try:
            img = nib.load(path)
            header = img.header
            native = tuple(int(n) for n in header.get_data_shape())
            raw = np.dtype(header.get_data_dtype())
            slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
            offset = int(img.dataobj.offset)
            zooms = tuple(float(z) for z in header.get_zooms())
            space_unit = header.get_xyzt_units()[0]
            affine = np.asarray(img.affine, dtype=np.float64)
            affine_source = _affine_source(header)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})"
            ) from None
    if any(n < 0 for n in native):
        raise InputError(
            path, f"corrupt NIfTI header: negative dimension sizes {list(native)}"
        )
    if any(n == 0 for n in native):
        raise InputError(path, f"the NIfTI image holds no voxels (dimensions {list(native)})")
    if raw.names is not None:
        raise InputError(path, f"unsupported NIfTI data type {raw} (RGB/complex)")
    if raw.kind == "c":
        raise InputError(path, "complex NIfTI data are not supported")
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise InputError(path, f"corrupt NIfTI header: scl_slope {slope}, scl_inter {inter}")
    _check_size(path, offset + int(np.prod(native)) * raw.itemsize)
    if problems:
        warnings.warn(
            f"{path}: NIfTI header repaired by nibabel: {'; '.join(dict.fromkeys(problems))}",
            KmsegWarning,
            stacklevel=3,
        )

    metadata: dict[str, Any] = {"affine_source": affine_source}
    codes = _axcodes(affine)
    perm, flips = (0, 1, 2), (False, False, False)
    if options.reorient and codes is None:
        warnings.warn(
            f"{path}: the NIfTI affine gives no orientation; not reoriented",
            KmsegWarning,
            stacklevel=3,
        )
    elif options.reorient:
        from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

        spatial = tuple(native[a] if a < len(native) else 1 for a in range(3))
        transform = ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))
        # stored axis s becomes canonical axis transform[s, 0], reversed when transform[s, 1] < 0
        source_of = {int(transform[s, 0]): s for s in range(3)}
        perm = tuple(source_of[c] for c in range(3))
        flips = tuple(bool(transform[s, 1] < 0) for s in perm)
        affine = affine @ inv_ornt_aff(transform, spatial)
        metadata["reoriented_from"] = codes
        codes = _axcodes(affine)
    metadata["orientation"] = codes

    axes, order, flip_of = _map_axes(path, native, perm, flips)
    shape = tuple(native[a] if a < len(native) else 1 for a in order)
    scaled = slope != 1.0 or inter != 0.0
    dtype = pixel_dtype(path, _scaled_dtype(raw, slope, inter) if scaled else raw.newbyteorder("="))
    check_size(path, shape, axes, options.max_pixels)
    spacing = tuple(
        _zoom(zooms, a) for a, ax in zip(order, axes, strict=True) if ax != "c"
    )
    # One stored k-slice of an uncompressed file is contiguous; a gzip stream is read from its
    # start, so a compressed file is best read whole.
    compressed = path.lower().endswith(".gz")
    stored_chunks = native if compressed else tuple(n if a < 2 else 1 for a, n in enumerate(native))
    chunks = [stored_chunks[a] if a < len(native) else 1 for a in order]
    if axes.endswith("c"):
        chunks[-1] = shape[-1]
    metadata["affine"] = [[float(v) for v in row] for row in affine]
    if scaled:
        metadata.update(scl_slope=slope, scl_inter=inter)
    return ImageSource(
        path=path,
        axes=axes,
        reader=NiftiBlockReader(local_path(path), shape, dtype, order, flip_of, native),
        spacing=spacing,
        unit=_UNITS.get(space_unit, "millimeter"),
        native_chunks=tuple(chunks),
        format="nifti",
        metadata=metadata,
    )


def _affine_source(header: Any) -> str:
    """Which header field gave nibabel's best affine."""
    if int(header["sform_code"]) > 0:
        return "sform"
    if int(header["qform_code"]) > 0:
        return "qform"
    return "pixdim (no sform or qform)"


def _axcodes(affine: np.ndarray) -> str | None:
    """nibabel's axis codes of voxel axes i, j, k (``"RAS"``, ``"LPS"``...), or None."""
    if not np.all(np.isfinite(affine)):
        return None
    import nibabel as nib

    codes = nib.aff2axcodes(affine)
    return None if None in codes else "".join(codes)


def _zoom(zooms: tuple[float, ...], axis: int) -> float:
    """Voxel size along a stored axis: its shortest decimal form (0.6, not 0.60000002)."""
    if axis >= len(zooms) or not np.isfinite(zooms[axis]) or zooms[axis] <= 0:
        return 1.0
    return float(str(np.float32(zooms[axis])))


def _map_axes(
    path: str, shape: tuple[int, ...], perm: tuple[int, ...], flips: tuple[bool, ...]
) -> tuple[str, tuple[int, ...], tuple[bool, ...]]:
    """Presented axes, the stored axis of each and whether each is read reversed.

    ``perm[c]`` is the stored axis of canonical axis c (x, y, z) and ``flips[c]`` its direction;
    presented spatial axes are z, y, x (y, x when z has one voxel).
    """
    if len(shape) < 2:
        raise InputError(path, f"a NIfTI image of shape {list(shape)} is not an image")
    extra = [i for i in range(3, len(shape)) if shape[i] > 1]
    if len(extra) > 1 or (extra and shape[extra[0]] > MAX_CHANNELS):
        raise InputError(path, f"cannot present NIfTI shape {list(shape)} as zyx plus channels")

    def size(axis: int) -> int:
        return shape[axis] if axis < len(shape) else 1

    canonical = (2, 1, 0) if size(perm[2]) > 1 else (1, 0)
    order = tuple(perm[c] for c in canonical) + tuple(extra)
    flip_of = tuple(flips[c] for c in canonical) + (False,) * len(extra)
    axes = ("zyx" if len(canonical) == 3 else "yx") + ("c" if extra else "")
    return axes, order, flip_of


def _scaled_dtype(raw: np.dtype, slope: float, inter: float) -> np.dtype:
    """int16, else int32, for integer scaling of integers that keeps the stored range in it
    (values stay exact); else a float."""
    if raw.kind in "iu" and raw.itemsize <= 2 and slope.is_integer() and inter.is_integer():
        info = np.iinfo(raw)
        found = rescaled_int_dtype((info.min * slope + inter, info.max * slope + inter))
        if found is not None:
            return found
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
