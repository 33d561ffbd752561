"""Fixtures for reader tests: small real files of every format, and read checks."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pipeline.readers.base import ImageSource

#: Chunk sizes that divide none of the test shapes.
CHUNKS_2D = (37, 53)
CHUNKS_3D = (3, 37, 53)


def assert_reads(source: ImageSource, expected: np.ndarray, *, exact: bool = True) -> None:
    """The source reads ``expected`` through odd-sized Dask chunks, also after pickling."""
    chunks = CHUNKS_3D if source.spatial_ndim == 3 else CHUNKS_2D
    assert source.shape == expected.shape
    assert source.dtype == expected.dtype
    array = source.to_dask(chunks)
    assert array.dtype == expected.dtype
    got = array.compute(scheduler="threads")
    assert got.dtype == expected.dtype
    if exact:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    clone = pickle.loads(pickle.dumps(source))
    assert clone.shape == source.shape
    np.testing.assert_array_equal(clone.to_dask(chunks).compute(scheduler="sync"), got)
    reader = pickle.loads(pickle.dumps(source.reader))
    np.testing.assert_array_equal(reader[tuple(slice(0, n) for n in source.shape)], got)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def ct_slice(
    pixels: np.ndarray,
    *,
    position: tuple[float, float, float] | None,
    series_uid: str,
    instance: int | None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    slope: float = 1,
    intercept: float = -1024,
    series_number: int = 1,
    **extra: Any,
) -> Dataset:
    """A minimal valid CT image dataset (16-bit unsigned, 12 bits stored)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.Modality = "CT"
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [0.5, 0.7]
    ds.SliceThickness = 2.5
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    return ds


def save_dicom(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def ct_series(tmp_path: Path, rng: np.random.Generator) -> Callable[..., tuple[Path, np.ndarray]]:
    """Write a CT series to a folder under shuffled names; return it and the HU volume.

    Slices are stacked along the normal of ``orientation``, 2.5 mm apart, written in an order
    that neither the file names nor the instance numbers give away.
    """

    def make(
        name: str = "ct",
        *,
        n: int = 7,
        shape: tuple[int, int] = (80, 90),
        orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
        slope: float = 1,
        intercept: float = -1024,
        positions: bool = True,
        series_uid: str | None = None,
        series_number: int = 1,
        suffix: str = ".dcm",
        folder: Path | None = None,
    ) -> tuple[Path, np.ndarray]:
        folder = folder or tmp_path / name
        folder.mkdir(exist_ok=True)
        uid = series_uid or generate_uid()
        raw = rng.integers(0, 4096, size=(n, *shape), dtype=np.uint16)
        normal = np.cross(orientation[:3], orientation[3:])
        names = rng.permutation(n)
        instances = rng.permutation(n) + 1
        for z in rng.permutation(n):
            ds = ct_slice(
                raw[z],
                position=tuple(float(v) for v in np.asarray([10.0, -20.0, 5.0]) + 2.5 * z * normal)
                if positions
                else None,
                series_uid=uid,
                # without positions, the instance number gives the order
                instance=int(instances[z]) if positions else z + 1,
                orientation=orientation,
                slope=slope,
                intercept=intercept,
                series_number=series_number,
            )
            save_dicom(ds, folder / f"IM{names[z]:04d}{uid[-4:]}{suffix}")
        hu = raw.astype(np.float64) * slope + intercept
        return folder, hu

    return make


@pytest.fixture
def tiff_pyramid(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    """A tiled uint16 TIFF with two SubIFD pyramid levels and a 0.25 µm pixel size."""
    import tifffile

    data = rng.integers(0, 65535, size=(300, 350), dtype=np.uint16)
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(64, 64), subifds=2, compression="zlib",
                 resolution=(40000, 40000), resolutionunit="CENTIMETER")
        tw.write(data[::2, ::2], tile=(64, 64), subfiletype=1, compression="zlib")
        tw.write(data[::4, ::4], tile=(64, 64), subfiletype=1, compression="zlib")
    return path, data
