"""DICOM pixel values as a radiologist sees them: colour model, modality rescale, padding.

Decoding is pydicom's (:func:`pydicom.pixels.pixel_array`, which also turns ``YBR_FULL`` and
``YBR_FULL_422`` into RGB and removes 4:2:2 sub-sampling). On top of the stored values, per
slice and in this order:

1. ``MONOCHROME1`` (minimum = white) is inverted over the range ``BitsStored`` allows
   (``lo + hi - v``; 0..4095 for 12 unsigned bits), so that it reads like ``MONOCHROME2``.
   Float pixel data are negated. Presentation and VOI LUTs (display windowing) are not applied.
2. ``PALETTE COLOR`` indices become RGB (RGBA with an alpha LUT) through the palette LUT
   (:func:`pydicom.pixels.apply_color_lut`), with the LUT's 8- or 16-bit entries.
3. The modality rescale ``v * RescaleSlope + RescaleIntercept`` (e.g. CT Hounsfield units):
   ``int16`` (or ``int32`` when the rescaled stored range needs it) when slope and intercept are
   integers, so values stay exact; else ``float32``.
4. Pixel padding: ``PixelPaddingValue``, or the closed range from it to
   ``PixelPaddingRangeLimit``, is given in stored values (PS3.3 C.7.5.1.1.2); it is mapped
   through steps 1 and 3 into the values as read and reported as
   :attr:`~pipeline.readers.base.ImageSource.no_data` intervals. When slices map padding to
   different values (different rescales per slice), padded pixels read as NaN (``float32``)
   instead, NaN being no data too.

Each step applied is recorded in the source metadata.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from pipeline.errors import InputError, KmsegWarning
from pipeline.readers.common import rescaled_int_dtype
from pipeline.readers.dicom_series import Plane, attribute

#: Photometric interpretations read, and what becomes of them.
_PHOTOMETRIC = {
    "MONOCHROME1": "inverted",
    "MONOCHROME2": "",
    "PALETTE COLOR": "palette",
    "RGB": "",
    "YBR_FULL": "YBR_FULL converted to RGB (pydicom)",
    "YBR_FULL_422": "YBR_FULL_422 upsampled and converted to RGB (pydicom)",
    "YBR_ICT": "YBR_ICT decoded to RGB by the JPEG 2000 decoder",
    "YBR_RCT": "YBR_RCT decoded to RGB by the JPEG 2000 decoder",
}


@dataclass(frozen=True)
class PixelModel:
    """How stored pixel values become the values as read (picklable, applied in tasks).

    Attributes
    ----------
    dtype : numpy dtype
        dtype of the values as read.
    palette : bool
        Expand palette indices to RGB(A) through the file's palette LUT.
    invert : tuple of (int, int) or None
        ``(lo, hi)``: stored values ``v`` become ``lo + hi - v`` (MONOCHROME1).
    negate : bool
        Float MONOCHROME1 pixel data: values become ``-v``.
    slopes, intercepts : tuple of float
        Modality rescale per slice; empty when none applies.
    padding_to_nan : tuple of (float, float)
        Per slice, the stored padding interval whose pixels read as NaN; empty when padding is
        reported as no-data intervals instead.
    """

    dtype: np.dtype
    palette: bool = False
    invert: tuple[int, int] | None = None
    negate: bool = False
    slopes: tuple[float, ...] = ()
    intercepts: tuple[float, ...] = ()
    padding_to_nan: tuple[tuple[float, float], ...] = ()

    def apply(self, stored: np.ndarray, z: int, ds: Dataset | None) -> np.ndarray:
        """Values as read of one decoded slice ``z`` (any in-plane region of it).

        ``ds`` holds the palette LUT when :attr:`palette` is set.
        """
        out = stored
        if self.padding_to_nan:
            lo, hi = self.padding_to_nan[z]
            padded = (stored >= lo) & (stored <= hi)
        if self.invert is not None:
            out = (self.invert[0] + self.invert[1]) - out.astype(np.int64)
        elif self.negate:
            out = -out
        if self.palette:
            out = apply_color_lut(out, ds)
        if self.slopes:
            out = out.astype(np.float64) * self.slopes[z] + self.intercepts[z]
        out = out.astype(self.dtype, copy=False)
        if self.padding_to_nan:
            out[padded] = np.nan
        return out


@dataclass(frozen=True)
class PixelValues:
    """The outcome of :func:`pixel_values`: the model, what it gives, and what to record."""

    model: PixelModel
    samples: int
    no_data: tuple[tuple[float, float], ...]
    metadata: dict[str, Any]


def stored_dtype(path: str, plane: Plane) -> np.dtype:
    """dtype of the stored (decoded, before any transform) pixel values of a slice.

    Raises
    ------
    InputError
        Unsupported bits allocated or samples per pixel, or a malformed header.
    """
    ds = plane.ds
    try:
        int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(path, f"invalid DICOM image header ({exc})") from None
    if plane.float_dtype is not None:
        return np.dtype(plane.float_dtype)
    if bits not in (1, 8, 16, 32):
        raise InputError(path, f"unsupported DICOM BitsAllocated {bits}")
    if samples not in (1, 3):
        raise InputError(path, f"unsupported DICOM SamplesPerPixel {samples}")
    return np.dtype(f"{'i' if signed and bits > 1 else 'u'}{max(bits, 8) // 8}")


def pixel_values(path: str, planes: list[Plane]) -> PixelValues:
    """Work out, from headers only, how the stored values of ``planes`` are to be read.

    Parameters
    ----------
    path : str
        The file or series folder, named in messages.
    planes : list of Plane
        The slices in stacking order, sharing one pixel format.

    Returns
    -------
    PixelValues
        The model to apply in tasks, the number of channels as read, the no-data intervals
        (values as read, closed) and metadata: ``photometric``, ``photometric_transform``,
        ``inverted_range``, ``rescale_slope``/``rescale_intercept``, ``pixel_padding``.

    Raises
    ------
    InputError
        An unsupported photometric interpretation or a palette image without its LUT.
    """
    first = planes[0]
    raw = stored_dtype(path, first)
    photometric = str(first.ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(first.ds.get("SamplesPerPixel", 1) or 1)
    if photometric not in _PHOTOMETRIC:
        raise InputError(path, f"unsupported DICOM photometric interpretation {photometric!r}")
    metadata: dict[str, Any] = {"photometric": photometric}
    transform = _PHOTOMETRIC[photometric]
    invert = None
    negate = False
    palette = photometric == "PALETTE COLOR"
    dtype = raw
    if photometric == "MONOCHROME1" and samples == 1:
        if raw.kind == "f":
            negate, transform = True, "MONOCHROME1 float values negated"
        else:
            invert = _stored_range(first.ds, raw)
            transform = (
                f"MONOCHROME1 inverted over the stored range [{invert[0]}, {invert[1]}]: "
                f"v -> {invert[0] + invert[1]} - v"
            )
            metadata["inverted_range"] = list(invert)
    if palette:
        dtype, samples = _palette_format(path, first.ds, raw)
        transform = f"PALETTE COLOR expanded through the palette LUT ({dtype.itemsize * 8}-bit)"
    if transform:
        metadata["photometric_transform"] = transform

    slopes: list[float] = []
    intercepts: list[float] = []
    if samples == 1 and not palette:
        slopes = [float(attribute(p, "PixelValueTransformationSequence", "RescaleSlope", 1.0))
                  for p in planes]
        intercepts = [
            float(attribute(p, "PixelValueTransformationSequence", "RescaleIntercept", 0.0))
            for p in planes
        ]
        if all(s == 1 and i == 0 for s, i in zip(slopes, intercepts, strict=True)):
            slopes, intercepts = [], []
        else:
            dtype = _rescaled_dtype(first.ds, raw, slopes, intercepts)
            if len(set(slopes)) == 1 and len(set(intercepts)) == 1:
                metadata.update(rescale_slope=slopes[0], rescale_intercept=intercepts[0])
            else:
                metadata["rescale"] = "per slice"

    model = PixelModel(
        dtype=np.dtype(dtype), palette=palette, invert=invert, negate=negate,
        slopes=tuple(slopes), intercepts=tuple(intercepts),
    )
    stored_padding = [_padding(p.ds, raw) for p in planes]
    no_data: tuple[tuple[float, float], ...] = ()
    present = [interval for interval in stored_padding if interval is not None]
    if present and (samples > 1 or palette):
        warnings.warn(
            f"{path}: PixelPaddingValue in a {photometric} image is not applied "
            "(pixel padding is defined for grey images)",
            KmsegWarning,
            stacklevel=4,
        )
    elif present:
        read = {
            None if interval is None else _read_interval(model, interval, z)
            for z, interval in enumerate(stored_padding)
        }
        padding_meta: dict[str, Any] = {"stored": list(present[0])}
        if len(read) == 1:
            no_data = (read.pop(),)  # type: ignore[assignment]
            padding_meta["read"] = list(no_data[0])
        else:
            # Padding in one slice would be tissue in another: padded pixels read as NaN.
            nothing = (float("nan"), float("nan"))
            model = PixelModel(
                dtype=np.dtype(np.float32), palette=palette, invert=invert, negate=negate,
                slopes=model.slopes, intercepts=model.intercepts,
                padding_to_nan=tuple(nothing if i is None else i for i in stored_padding),
            )
            padding_meta["read"] = "NaN"
        metadata["pixel_padding"] = padding_meta
    return PixelValues(model, samples, no_data, metadata)


def _stored_range(ds: Dataset, raw: np.dtype) -> tuple[int, int]:
    """The values ``BitsStored`` allows: ``(0, 2**b - 1)`` or ``(-2**(b-1), 2**(b-1) - 1)``."""
    bits = int(ds.get("BitsStored", raw.itemsize * 8) or raw.itemsize * 8)
    bits = min(bits, raw.itemsize * 8) if raw.kind in "iu" else bits
    if int(ds.get("BitsAllocated", 8) or 8) == 1:
        bits = 1
    if raw.kind == "i":
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _palette_format(path: str, ds: Dataset, raw: np.dtype) -> tuple[np.dtype, int]:
    """dtype and channel count of a palette image's RGB(A) values, from its LUT."""
    try:
        probe = apply_color_lut(np.zeros((1, 1), dtype=raw), ds)
    except Exception as exc:
        raise InputError(path, f"cannot read the palette colour LUT ({exc})") from None
    return probe.dtype, int(probe.shape[-1])


def _padding(ds: Dataset, raw: np.dtype) -> tuple[float, float] | None:
    """The stored padding interval of a slice (closed), or None."""
    value = ds.get("PixelPaddingValue")
    if value is None or value == "" or raw.kind == "f":
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    ends = [_as_stored(value, raw)]
    if limit not in (None, ""):
        ends.append(_as_stored(limit, raw))
    return float(min(ends)), float(max(ends))


def _as_stored(value: Any, raw: np.dtype) -> int:
    """A padding value in the stored representation (a US value in a signed image wraps)."""
    if isinstance(value, bytes):  # an ambiguous VR left undecoded: the pixel data's type
        value = np.frombuffer(value[: raw.itemsize], dtype=raw.newbyteorder("<"))[0]
    value = int(value[0] if isinstance(value, (list, tuple)) else value)
    bits = raw.itemsize * 8
    if raw.kind == "i" and value >= 2 ** (bits - 1):
        value -= 2**bits
    elif raw.kind == "u" and value < 0:
        value += 2**bits
    return value


def _read_interval(
    model: PixelModel, interval: tuple[float, float], z: int
) -> tuple[float, float]:
    """A stored interval as values as read in slice ``z`` (closed, low end first)."""
    ends = []
    for value in interval:
        if model.invert is not None:
            value = model.invert[0] + model.invert[1] - value
        if model.slopes:
            value = value * model.slopes[z] + model.intercepts[z]
        ends.append(_as_read(value, model.dtype))
    return min(ends), max(ends)


def _as_read(value: float, dtype: np.dtype) -> float:
    """``value`` as the read dtype holds it, so that padded pixels equal the interval's ends."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(value) if not info.min <= value <= info.max else float(int(value))
    return float(np.asarray(value, dtype=np.float64).astype(dtype))


def _rescaled_dtype(
    ds: Dataset, raw: np.dtype, slopes: list[float], intercepts: list[float]
) -> np.dtype:
    """The narrowest of int16 and int32 that holds the rescaled stored range when slopes and
    intercepts are integers (so values stay exact and the exact engine applies), else float32.

    A signed 16-bit CT with intercept -1024 reaches 31743 HU at most and stays int16; an
    unsigned 16-bit one reaches 64511 and becomes int32.
    """
    if raw.kind == "f":
        return np.dtype(np.float32)
    lo, hi = _stored_range(ds, raw)
    ends = []
    for slope, intercept in zip(slopes, intercepts, strict=True):
        if not (slope.is_integer() and intercept.is_integer()):
            return np.dtype(np.float32)
        ends += [lo * slope + intercept, hi * slope + intercept]
    return rescaled_int_dtype(ends) or np.dtype(np.float64)
