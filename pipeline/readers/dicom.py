"""DICOM images: a single file, a multi-frame file, or a folder holding a series of slices.

Headers are read with ``stop_before_pixels``; each task decodes only the slices (files, or
frames of a multi-frame file) of its z-range. Two modules do the rest:

* :mod:`pipeline.readers.dicom_series` checks that the slices form one volume (localizers,
  orientations, sizes, duplicate positions, missing slices) and sorts them along the normal;
* :mod:`pipeline.readers.dicom_pixels` turns stored values into the values a radiologist sees
  (MONOCHROME1 inverted, palette and YCbCr to RGB, modality rescale) and reports pixel padding
  as no data.

A folder with several series (SeriesInstanceUID) is opened at the ``series``-th of them, ordered
by SeriesNumber, with a :class:`~pipeline.errors.KmsegWarning` saying so.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels, pixel_array

from pipeline.errors import InputError, KmsegWarning
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import (
    RegionReader,
    check_size,
    color_names,
    local_path,
    pixel_dtype,
)
from pipeline.readers.dicom_pixels import PixelModel, pixel_values, stored_dtype
from pipeline.readers.dicom_series import Plane, arrange, attribute

_PIXEL_TAGS = {0x7FE00010: None, 0x7FE00008: np.float32, 0x7FE00009: np.float64}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV",
             b"UV"}
_DEFLATED = "1.2.840.10008.1.2.1.99"
_SUFFIXES = (".dcm", ".dicom", ".dic")


@dataclass(frozen=True)
class DicomBlockReader(RegionReader):
    """Reads a region of a DICOM image or series.

    ``path`` is a series folder, whose files ``planes`` name, or a single file (plane names
    empty). ``planes[z]`` is the (file name, frame index) of slice ``z``; ``model`` turns stored
    values into values as read.
    """

    path: str
    planes: tuple[tuple[str, int], ...]
    multiframe: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    volume: bool
    model: PixelModel

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        zs = range(box[0].start, box[0].stop) if self.volume else range(1)
        spatial = box[1:3] if self.volume else box[:2]
        channel = box[3:] if self.volume else box[2:]  # () for grey images
        wanted: dict[str, list[int]] = {}
        for z in zs:
            name, frame = self.planes[z]
            wanted.setdefault(name, []).append(frame)
        decoded: dict[tuple[str, int], np.ndarray] = {}
        headers: dict[str, Dataset] = {}
        for name, frames in wanted.items():
            full = os.path.join(self.path, name) if name else self.path
            headers[name] = Dataset()  # gets the image pixel module, palette LUTs included
            if self.multiframe:
                frames = sorted(set(frames))
                pixels = iter_pixels(full, indices=frames, ds_out=headers[name])
                for frame, plane in zip(frames, pixels, strict=True):
                    decoded[name, frame] = plane[spatial]
            else:
                decoded[name, 0] = pixel_array(full, ds_out=headers[name])[spatial]
        planes = []
        for z in zs:
            value = self.model.apply(decoded[self.planes[z]], z, headers[self.planes[z][0]])
            planes.append(value[..., channel[0]] if channel else value)
        return np.stack(planes) if self.volume else planes[0]


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
    options : ReadOptions, optional
        ``missing_slices`` says what missing slices give (a warning or an error).

    Raises
    ------
    InputError
        Unreadable or truncated files, no image, a series that is not one clean volume
        (see :mod:`pipeline.readers.dicom_series`), an unsupported pixel format.
    """
    options = options or ReadOptions()
    if os.path.isdir(path):
        names, headers, info = _scan_folder(path, series)
    else:
        if series != 0:
            raise InputError(path, f"series {series} out of range (a single DICOM file)")
        header = _read_header(path)
        if header is None:
            raise InputError(path, "the DICOM file holds no image")
        names, headers, info = [""], [header], {}
    return _build(path, names, headers, info, options)


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


def single_file_series(folder: str) -> list[str] | None:
    """The DICOM files of ``folder`` when it holds several series of one file each (a folder of
    radiographs or mammograms: every file its own image), else ``None``.

    Headers are read only until two files share a series (a CT or MR series folder: usually the
    second file), so a series folder is not scanned twice.

    Raises
    ------
    InputError
        A file with a DICOM suffix that cannot be read as DICOM, or no DICOM file at all.
    """
    seen: dict[str, str] = {}
    for name, header in _folder_headers(folder):
        uid = str(header[0].get("SeriesInstanceUID", ""))
        if uid in seen:
            return None
        seen[uid] = name
    if not seen:
        raise InputError(folder, "the folder holds no DICOM image")
    return sorted(os.path.join(folder, name) for name in seen.values()) if len(seen) > 1 else None


def _folder_headers(folder: str) -> Iterator[tuple[str, tuple[Dataset, Any]]]:
    """Name and header of each DICOM file directly in ``folder``, by name (other files, such as
    notes and thumbnails, are skipped)."""
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(full):
            continue
        try:
            header = _read_header(full)
        except InputError:
            if name.lower().endswith(_SUFFIXES):
                raise
            continue
        if header is not None:
            yield name, header


def _series_groups(folder: str) -> dict[str, list[tuple[str, tuple[Dataset, Any]]]]:
    """The DICOM files directly in ``folder`` with their headers, by SeriesInstanceUID."""
    groups: dict[str, list[tuple[str, tuple[Dataset, Any]]]] = {}
    for name, header in _folder_headers(folder):
        groups.setdefault(str(header[0].get("SeriesInstanceUID", "")), []).append((name, header))
    if not groups:
        raise InputError(folder, "the folder holds no DICOM image")
    return groups


def _scan_folder(
    folder: str, series: int
) -> tuple[list[str], list[tuple[Dataset, Any]], dict[str, Any]]:
    """Headers of the chosen series among the DICOM files directly in ``folder``."""
    groups = _series_groups(folder)

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
    options: ReadOptions,
) -> ImageSource:
    first, float_dtype = headers[0]
    n_frames = _int_or_none(first.get("NumberOfFrames")) or 1
    if n_frames > 1 and len(headers) > 1:
        raise InputError(path, "the series mixes several multi-frame files; open one file")
    planes = (
        [Plane(names[0], f, first, float_dtype, multiframe=True) for f in range(n_frames)]
        if n_frames > 1
        else [Plane(n, 0, ds, fd) for n, (ds, fd) in zip(names, headers, strict=True)]
    )
    for plane in planes[:1] if n_frames > 1 else planes:
        stored_dtype(path if not plane.name else os.path.join(path, plane.name), plane)
    layout = arrange(path, planes, missing_slices=options.missing_slices)
    planes = layout.planes
    first = planes[0].ds
    values = pixel_values(path, planes)
    volume = len(planes) > 1
    rows, cols, samples = int(first.Rows), int(first.Columns), values.samples

    pixel_spacing = attribute(planes[0], "PixelMeasuresSequence", "PixelSpacing", None)
    if pixel_spacing is None:
        pixel_spacing = first.get("ImagerPixelSpacing")
    spacing: tuple[float, ...] = (1.0, 1.0)
    unit = None
    if pixel_spacing is not None and len(pixel_spacing) == 2:
        spacing, unit = (float(pixel_spacing[0]), float(pixel_spacing[1])), "millimeter"
    if volume:
        # without PixelSpacing the slice spacing alone would mix units with pixel sizes
        spacing = (layout.slice_spacing or 1.0, *spacing) if unit else (1.0, 1.0, 1.0)
    channels = (samples,) if samples > 1 else ()
    shape = ((len(planes),) if volume else ()) + (rows, cols) + channels
    axes = ("zyx" if volume else "yx") + ("c" if samples > 1 else "")
    check_size(path, shape, axes, options.max_pixels)
    metadata: dict[str, Any] = {
        "modality": str(first.get("Modality", "")),
        "series_uid": str(first.get("SeriesInstanceUID", "")),
        "series_number": _int_or_none(first.get("SeriesNumber")),
        "sort": layout.sort,
        **values.metadata,
        **layout.metadata,
        **info,
    }
    reader = DicomBlockReader(
        path=local_path(path),
        planes=tuple((p.name, p.frame) for p in planes),
        multiframe=n_frames > 1,
        shape=shape,
        dtype=pixel_dtype(path, values.model.dtype),
        volume=volume,
        model=values.model,
    )
    return ImageSource(
        path=path,
        axes=axes,
        reader=reader,
        spacing=spacing,
        unit=unit,
        native_chunks=((1,) if volume else ()) + (rows, cols) + channels,
        channel_names=color_names(samples, rgb=samples >= 3),
        format="dicom",
        metadata=metadata,
        no_data=values.no_data,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
