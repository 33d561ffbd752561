"""Small DICOM files and series written by the tests, each with its true array."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from .conftest import ct_slice, save_dicom


def grey_slice(
    stored: np.ndarray,
    *,
    position: Sequence[float] | None = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    series_uid: str | None = None,
    instance: int | None = 1,
    slope: float | None = 1,
    intercept: float | None = -1024,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    **extra: Any,
) -> Dataset:
    """A CT-like slice holding ``stored`` (uint16 or int16) as its stored values.

    ``slope=None`` leaves the rescale out. Extra keywords become attributes.
    """
    signed = stored.dtype.kind == "i"
    ds = ct_slice(
        np.zeros(stored.shape, np.uint16),
        position=None if position is None else tuple(float(v) for v in position),
        series_uid=series_uid or generate_uid(),
        instance=instance,
        orientation=tuple(orientation),
        slope=1 if slope is None else slope,
        intercept=0 if intercept is None else intercept,
    )
    if slope is None:
        del ds.RescaleSlope, ds.RescaleIntercept
    ds.PixelRepresentation = 1 if signed else 0
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PhotometricInterpretation = photometric
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored, dtype=np.int16 if signed else np.uint16).tobytes()
    return ds


def write_series(
    folder: Path,
    stored: np.ndarray,
    z_positions: Sequence[float],
    *,
    per_slice: Sequence[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Write slice ``i`` of ``stored`` at ``(0, 0, z_positions[i])``, in reverse file order.

    ``per_slice[i]`` adds keywords for slice ``i``; the rest go to :func:`grey_slice`. Files are
    named so that their order differs from the order in z.
    """
    folder.mkdir(parents=True, exist_ok=True)
    uid = kwargs.pop("series_uid", None) or generate_uid()
    paths = []
    for i, z in enumerate(z_positions):
        options = {**kwargs, **(per_slice[i] if per_slice else {})}
        options.setdefault("position", (0.0, 0.0, float(z)))
        options.setdefault("instance", i + 1)
        ds = grey_slice(stored[i], series_uid=uid, **options)
        paths.append(save_dicom(ds, folder / f"IM{len(z_positions) - i:03d}.dcm"))
    return paths


def colour_image(
    pixel_bytes: bytes,
    shape: tuple[int, int],
    *,
    photometric: str,
    samples: int,
    bits: int = 8,
    frames: int = 1,
    **extra: Any,
) -> Dataset:
    """A secondary-capture image with the given raw pixel bytes (native encoding)."""
    ds = ct_slice(np.zeros(shape, np.uint16), position=None, series_uid=generate_uid(),
                  instance=1)
    del ds.RescaleSlope, ds.RescaleIntercept, ds.SliceThickness
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "OT"
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = extra.pop("PlanarConfiguration", 0)
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = pixel_bytes
    return ds


def rgb_to_ybr_full(rgb: np.ndarray) -> np.ndarray:
    """RGB to YCbCr, full range (ITU-R BT.601 as in DICOM PS3.3 C.7.6.3.1.2), as floats."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return np.stack([y, cb, cr], axis=-1)
