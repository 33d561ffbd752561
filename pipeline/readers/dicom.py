"""DICOM images: a single file, a multi-frame file, or a folder holding a series of slices.

Headers are read with ``stop_before_pixels``; each task decodes only the slices (files, or
frames of a multi-frame file) of its z-range. Slices are sorted by their position along the
slice normal, falling back to InstanceNumber. The modality rescale (RescaleSlope/Intercept,
e.g. CT Hounsfield units) is applied: ``int16`` when slope and intercept are integers and the
values fit, else ``float32``; without a rescale the stored dtype is kept.

A folder with several series (SeriesInstanceUID) is opened at the ``series``-th of them, ordered
by SeriesNumber, with a :class:`~pipeline.errors.KmsegWarning` saying so.
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels, pixel_array

from pipeline.errors import InputError, KmsegWarning
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import RegionReader, color_names, local_path

_PIXEL_TAGS = {0x7FE00010: None, 0x7FE00008: np.float32, 0x7FE00009: np.float64}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV",
             b"UV"}
_DEFLATED = "1.2.840.10008.1.2.1.99"
_SUFFIXES = (".dcm", ".dicom", ".dic")


@dataclass(frozen=True)
class DicomBlockReader(RegionReader):
    """Reads a region of a DICOM image or series.

    ``path`` is a series folder, whose files ``planes`` name, or a single file (plane names
    empty). ``planes[z]`` is the (file name, frame index) of slice ``z``; ``slopes`` and
    ``intercepts`` are per slice and empty when no rescale applies.
    """

    path: str
    planes: tuple[tuple[str, int], ...]
    multiframe: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    volume: bool
    slopes: tuple[float, ...] = ()
    intercepts: tuple[float, ...] = ()

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        zs = range(box[0].start, box[0].stop) if self.volume else range(1)
        inplane = box[1:] if self.volume else box
        wanted: dict[str, list[int]] = {}
        for z in zs:
            name, frame = self.planes[z]
            wanted.setdefault(name, []).append(frame)
        decoded: dict[tuple[str, int], np.ndarray] = {}
        for name, frames in wanted.items():
            full = os.path.join(self.path, name) if name else self.path
            if self.multiframe:
                frames = sorted(set(frames))
                for frame, pixels in zip(frames, iter_pixels(full, indices=frames), strict=True):
                    decoded[name, frame] = pixels[inplane]
            else:
                decoded[name, 0] = pixel_array(full)[inplane]
        planes = [self._rescale(decoded[self.planes[z]], z) for z in zs]
        return np.stack(planes) if self.volume else planes[0]

    def _rescale(self, plane: np.ndarray, z: int) -> np.ndarray:
        if not self.slopes:
            return plane
        out = plane.astype(np.float64) * self.slopes[z] + self.intercepts[z]
        return out.astype(self.dtype)


@dataclass
class _Plane:
    """One slice: its file, frame and header facts."""

    name: str
    frame: int
    ds: Dataset


def open_dicom(
    path: str, *, series: int = 0, options: ReadOptions | None = None
) -> ImageSource:
    """Open a DICOM file or a folder holding a DICOM series; pixels are not read here.

    Parameters
    ----------
    path : str
        A DICOM file (single- or multi-frame) or a folder of slice files.
    series : int
        For a folder with several series: which one, ordered by SeriesNumber.
    """
    if os.path.isdir(path):
        names, headers, info = _scan_folder(path, series)
    else:
        if series != 0:
            raise InputError(path, f"series {series} out of range (a single DICOM file)")
        header = _read_header(path)
        if header is None:
            raise InputError(path, "the DICOM file holds no image")
        names, headers, info = [""], [header], {}
    return _build(path, names, headers, info)


def is_dicom_file(path: str) -> bool:
    """Whether ``path`` starts with a DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_header(path: str) -> tuple[Dataset, Any] | None:
    """Header up to the pixel data, and the pixel dtype for float pixel data (else None).

    Returns None for a DICOM object without an image; raises for unreadable or truncated files.
    """
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            # pydicom warns about damaged or non-conformant headers; errors are raised below
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            if "Rows" not in ds or "Columns" not in ds:
                return None
            float_dtype = _check_pixel_element(path, fh, ds)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    return ds, float_dtype


def _check_pixel_element(path: str, fh: Any, ds: Dataset) -> Any:
    """Check that the pixel data element is there and complete; return its float dtype."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    if syntax == _DEFLATED:
        return None  # the file position says nothing about a deflated stream
    implicit, little = ds.original_encoding
    if implicit is None:
        implicit, little = False, True
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 8:
        raise InputError(path, "the DICOM file has no pixel data (truncated?)")
    endian = "<" if little else ">"
    group, element = struct.unpack(f"{endian}HH", head[:4])
    tag = (group << 16) | element
    if tag not in _PIXEL_TAGS:
        raise InputError(path, "the DICOM file has no pixel data")
    if implicit:
        length, header_size = struct.unpack(f"{endian}I", head[4:8])[0], 8
    elif head[4:6] in _LONG_VRS:
        length, header_size = struct.unpack(f"{endian}I", head[8:12])[0], 12
    else:
        length, header_size = struct.unpack(f"{endian}H", head[6:8])[0], 8
    if length != 0xFFFFFFFF and start + header_size + length > os.path.getsize(path):
        raise InputError(path, "the DICOM file is truncated")
    return _PIXEL_TAGS[tag]


def _scan_folder(
    folder: str, series: int
) -> tuple[list[str], list[tuple[Dataset, Any]], dict[str, Any]]:
    """Headers of the chosen series among the DICOM files directly in ``folder``."""
    groups: dict[str, list[tuple[str, tuple[Dataset, Any]]]] = {}
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(full):
            continue
        try:
            header = _read_header(full)
        except InputError:
            if name.lower().endswith(_SUFFIXES):
                raise
            continue  # not DICOM: notes, thumbnails, ...
        if header is not None:
            groups.setdefault(str(header[0].get("SeriesInstanceUID", "")), []).append(
                (name, header)
            )
    if not groups:
        raise InputError(folder, "the folder holds no DICOM image")

    def series_key(uid: str) -> tuple[float, str]:
        number = groups[uid][0][1][0].get("SeriesNumber")
        return (float(number) if number not in (None, "") else float("inf"), uid)

    uids = sorted(groups, key=series_key)
    if not 0 <= series < len(uids):
        raise InputError(folder, f"series {series} out of range (the folder has {len(uids)})")
    chosen = groups[uids[series]]
    if len(uids) > 1:
        ds = chosen[0][1][0]
        warnings.warn(
            f"{folder}: the folder holds {len(uids)} DICOM series; using series {series} "
            f"(SeriesNumber {ds.get('SeriesNumber', '?')}, "
            f"{str(ds.get('SeriesDescription', '')) or 'no description'}, {len(chosen)} files); "
            "choose another with series=",
            KmsegWarning,
            stacklevel=3,
        )
    names = [name for name, _ in chosen]
    headers = [header for _, header in chosen]
    return names, headers, {"n_series": len(uids)}


def _build(
    path: str,
    names: list[str],
    headers: list[tuple[Dataset, Any]],
    info: dict[str, Any],
) -> ImageSource:
    first, float_dtype = headers[0]
    n_frames = int(first.get("NumberOfFrames", 1) or 1)
    if n_frames > 1 and len(headers) > 1:
        raise InputError(path, "the series mixes several multi-frame files; open one file")
    planes = (
        [_Plane(names[0], f, first) for f in range(n_frames)]
        if n_frames > 1
        else [_Plane(n, 0, ds) for n, (ds, _) in zip(names, headers, strict=True)]
    )
    rows, cols, samples, raw_dtype = _pixel_format(path, first, float_dtype)
    for name, (ds, ds_float) in zip(names, headers, strict=True):
        if _pixel_format(path, ds, ds_float) != (rows, cols, samples, raw_dtype):
            raise InputError(
                path, f"slice {name} differs in size or pixel format from {names[0]}"
            )

    planes, sort, z_spacing, irregular = _sort(path, planes)
    volume = len(planes) > 1
    slopes = [float(_value(p, "PixelValueTransformationSequence", "RescaleSlope", 1.0))
              for p in planes]
    intercepts = [float(_value(p, "PixelValueTransformationSequence", "RescaleIntercept", 0.0))
                  for p in planes]
    pairs = zip(slopes, intercepts, strict=True)
    rescale = samples == 1 and any(s != 1 or i != 0 for s, i in pairs)
    dtype = _rescaled_dtype(first, raw_dtype, slopes, intercepts) if rescale else raw_dtype

    pixel_spacing = _value(planes[0], "PixelMeasuresSequence", "PixelSpacing", None)
    if pixel_spacing is None:
        pixel_spacing = first.get("ImagerPixelSpacing")
    spacing: tuple[float, ...] = (1.0, 1.0)
    unit = None
    if pixel_spacing is not None and len(pixel_spacing) == 2:
        spacing, unit = (float(pixel_spacing[0]), float(pixel_spacing[1])), "millimeter"
    if volume:
        # without PixelSpacing the slice spacing alone would mix units with pixel sizes
        spacing = (z_spacing or 1.0, *spacing) if unit else (1.0, 1.0, 1.0)
    shape = ((len(planes),) if volume else ()) + (rows, cols) + ((samples,) if samples > 1 else ())
    axes = ("zyx" if volume else "yx") + ("c" if samples > 1 else "")
    metadata: dict[str, Any] = {
        "modality": str(first.get("Modality", "")),
        "series_uid": str(first.get("SeriesInstanceUID", "")),
        "series_number": _int_or_none(first.get("SeriesNumber")),
        "photometric": str(first.get("PhotometricInterpretation", "")),
        "sort": sort,
        **info,
    }
    if rescale and len(set(slopes)) == 1 and len(set(intercepts)) == 1:
        metadata.update(rescale_slope=slopes[0], rescale_intercept=intercepts[0])
    if irregular:
        metadata["irregular_slice_spacing"] = True
    reader = DicomBlockReader(
        path=local_path(path),
        planes=tuple((p.name, p.frame) for p in planes),
        multiframe=n_frames > 1,
        shape=shape,
        dtype=np.dtype(dtype),
        volume=volume,
        slopes=tuple(slopes) if rescale else (),
        intercepts=tuple(intercepts) if rescale else (),
    )
    return ImageSource(
        path=path,
        axes=axes,
        reader=reader,
        spacing=spacing,
        unit=unit,
        native_chunks=((1,) if volume else ()) + (rows, cols) + ((samples,) if samples > 1 else ()),
        channel_names=color_names(samples, rgb=samples >= 3),
        format="dicom",
        metadata=metadata,
    )


def _pixel_format(path: str, ds: Dataset, float_dtype: Any) -> tuple[int, int, int, np.dtype]:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"invalid DICOM image header ({exc})") from None
    if float_dtype is not None:
        return rows, cols, samples, np.dtype(float_dtype)
    if bits not in (1, 8, 16, 32):
        raise InputError(path, f"unsupported DICOM BitsAllocated {bits}")
    if samples not in (1, 3):
        raise InputError(path, f"unsupported DICOM SamplesPerPixel {samples}")
    size = max(bits, 8) // 8
    return rows, cols, samples, np.dtype(f"{'i' if signed and bits > 1 else 'u'}{size}")


def _value(plane: _Plane, sequence: str, attr: str, default: Any) -> Any:
    """An attribute from the per-frame, then shared functional groups, then the top level."""
    ds = plane.ds
    for groups, index in (
        (ds.get("PerFrameFunctionalGroupsSequence"), plane.frame),
        (ds.get("SharedFunctionalGroupsSequence"), 0),
    ):
        if groups is not None and index < len(groups):
            items = groups[index].get(sequence)
            if items and attr in items[0]:
                value = items[0].get(attr)
                if value not in (None, ""):
                    return value
    value = ds.get(attr)
    return default if value in (None, "") else value


def _sort(path: str, planes: list[_Plane]) -> tuple[list[_Plane], str, float | None, bool]:
    """Order slices along the normal; return them, the method, the slice spacing, irregular?"""
    if len(planes) == 1:
        return planes, "single", None, False
    positions = [_value(p, "PlanePositionSequence", "ImagePositionPatient", None) for p in planes]
    orientation = _value(planes[0], "PlaneOrientationSequence", "ImageOrientationPatient", None)
    fallback = _value(planes[0], "PixelMeasuresSequence", "SpacingBetweenSlices", None) or _value(
        planes[0], "PixelMeasuresSequence", "SliceThickness", None
    )
    fallback = float(fallback) if fallback else None
    if orientation is not None and len(orientation) == 6 and all(
        p is not None and len(p) == 3 for p in positions
    ):
        row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        normal = np.cross(row, col)
        depth = np.asarray(positions, float) @ normal
        order = np.argsort(depth, kind="stable")
        steps = np.diff(depth[order])
        if np.any(steps < 1e-4):
            raise InputError(
                path, "several slices share a position (several acquisitions in one series?)"
            )
        spacing = float(np.median(steps))
        irregular = bool(np.any(np.abs(steps - spacing) > 0.1 * spacing + 1e-3))
        return [planes[i] for i in order], "position", spacing, irregular
    one_file = len({p.name for p in planes}) == 1  # frames of a multi-frame file stay in order
    numbers = [_int_or_none(p.ds.get("InstanceNumber")) for p in planes]
    if not one_file and None not in numbers:
        order = np.argsort(numbers, kind="stable")
        return [planes[i] for i in order], "instance", fallback, False
    return planes, "file", fallback, False


def _rescaled_dtype(
    ds: Dataset, raw: np.dtype, slopes: list[float], intercepts: list[float]
) -> np.dtype:
    """int16 when integer slopes and intercepts map the stored range into int16, else float32."""
    if raw.kind == "f":
        return np.dtype(np.float32)
    bits = int(ds.get("BitsStored", raw.itemsize * 8) or raw.itemsize * 8)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if raw.kind == "i" else (0, 2**bits - 1)
    info = np.iinfo(np.int16)
    for slope, intercept in zip(slopes, intercepts, strict=True):
        if not (slope.is_integer() and intercept.is_integer()):
            return np.dtype(np.float32)
        ends = (lo * slope + intercept, hi * slope + intercept)
        if min(ends) < info.min or max(ends) > info.max:
            return np.dtype(np.float32)
    return np.dtype(np.int16)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
