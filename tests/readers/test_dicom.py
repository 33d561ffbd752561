"""DICOM files, multi-frame files and series folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pipeline.errors import InputError, KmsegWarning
from pipeline.readers import open_image

from .conftest import assert_reads, ct_slice, save_dicom

MakeSeries = Callable[..., tuple[Path, np.ndarray]]


def test_ct_series_sorted_by_position(ct_series: MakeSeries) -> None:
    folder, hu = ct_series()
    source = open_image(str(folder))
    assert source.axes == "zyx"
    assert source.format == "dicom"
    assert source.dtype == np.int16  # HU: integer rescale that fits int16
    assert source.spacing == pytest.approx((2.5, 0.5, 0.7))
    assert source.unit == "millimeter"
    assert source.native_chunks == (1, 80, 90)
    assert source.metadata["sort"] == "position"
    assert source.metadata["rescale_intercept"] == -1024
    assert_reads(source, hu.astype(np.int16))


def test_oblique_orientation(ct_series: MakeSeries) -> None:
    # sagittal slices: the normal is along x, and positions move along it
    folder, hu = ct_series(orientation=(0, 1, 0, 0, 0, -1))
    source = open_image(str(folder))
    assert source.spacing[0] == pytest.approx(2.5)
    assert_reads(source, hu.astype(np.int16))


def test_instance_number_fallback(ct_series: MakeSeries) -> None:
    folder, hu = ct_series(positions=False)
    source = open_image(str(folder))
    assert source.metadata["sort"] == "instance"
    assert source.spacing == pytest.approx((2.5, 0.5, 0.7))  # SliceThickness
    assert_reads(source, hu.astype(np.int16))


def test_fractional_slope_is_float32(ct_series: MakeSeries) -> None:
    folder, hu = ct_series(slope=0.5, intercept=-10.25)
    source = open_image(str(folder))
    assert source.dtype == np.float32
    assert_reads(source, hu.astype(np.float32))


def test_no_rescale_keeps_stored_dtype(ct_series: MakeSeries) -> None:
    folder, raw = ct_series(intercept=0)
    source = open_image(str(folder))
    assert source.dtype == np.uint16
    assert_reads(source, raw.astype(np.uint16))


def test_files_without_suffix(ct_series: MakeSeries) -> None:
    folder, hu = ct_series(suffix="")
    (folder / "README.txt").write_text("not dicom")
    source = open_image(str(folder))
    assert_reads(source, hu.astype(np.int16))


def test_single_file(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = rng.integers(0, 4096, size=(70, 80), dtype=np.uint16)
    path = save_dicom(ct_slice(raw, position=(0, 0, 0), series_uid=generate_uid(), instance=1),
                      tmp_path / "one.dcm")
    source = open_image(str(path))
    assert source.axes == "yx"
    assert source.spacing == (0.5, 0.7)
    assert_reads(source, (raw.astype(np.int32) - 1024).astype(np.int16))


def test_multiframe(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = rng.integers(0, 4096, size=(5, 60, 70), dtype=np.uint16)
    ds = ct_slice(raw[0], position=None, series_uid=generate_uid(), instance=1, slope=2,
                  intercept=-1000, NumberOfFrames=5, SpacingBetweenSlices=3.0)
    ds.PixelData = raw.tobytes()
    path = save_dicom(ds, tmp_path / "multi.dcm")
    source = open_image(str(path))
    assert source.axes == "zyx"
    assert source.spacing == pytest.approx((3.0, 0.5, 0.7))
    assert source.dtype == np.int16  # [0, 4095] * 2 - 1000 fits
    assert_reads(source, (raw.astype(np.int32) * 2 - 1000).astype(np.int16))


def test_enhanced_multiframe_functional_groups(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = rng.integers(0, 4096, size=(4, 30, 40), dtype=np.uint16)
    ds = ct_slice(raw[0], position=None, series_uid=generate_uid(), instance=1, NumberOfFrames=4)
    del ds.PixelSpacing, ds.SliceThickness, ds.RescaleSlope, ds.RescaleIntercept
    shared = Dataset()
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.8, 0.9]
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelValueTransformationSequence = [Dataset()]
    shared.PixelValueTransformationSequence[0].RescaleSlope = 1
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -1024
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for i in range(4):
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        # frames stored from top to bottom: sorting reverses them
        item.PlanePositionSequence[0].ImagePositionPatient = [0, 0, 30.0 - 1.5 * i]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = raw.tobytes()
    path = save_dicom(ds, tmp_path / "enhanced.dcm")
    source = open_image(str(path))
    assert source.spacing == pytest.approx((1.5, 0.8, 0.9))
    assert source.metadata["sort"] == "position"
    assert_reads(source, (raw[::-1].astype(np.int32) - 1024).astype(np.int16))


def test_rgb(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    ds = ct_slice(np.zeros((40, 50)), position=None, series_uid=generate_uid(), instance=1)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.PixelData = data.tobytes()
    path = save_dicom(ds, tmp_path / "rgb.dcm")
    source = open_image(str(path))
    assert source.axes == "yxc"
    assert source.channel_names == ("R", "G", "B")
    assert_reads(source, data)


def test_several_series(tmp_path: Path, ct_series: MakeSeries) -> None:
    folder = tmp_path / "mixed"
    _, first = ct_series(folder=folder, n=4, series_number=2, shape=(30, 40))
    _, second = ct_series(folder=folder, n=6, series_number=7, shape=(30, 40))
    with pytest.warns(KmsegWarning, match="2 DICOM series"):
        source = open_image(str(folder))
    assert source.metadata["series_number"] == 2
    assert_reads(source, first.astype(np.int16))
    with pytest.warns(KmsegWarning):
        source = open_image(str(folder), series=1)
    assert_reads(source, second.astype(np.int16))
    with pytest.raises(InputError, match="series 2 out of range"):
        open_image(str(folder), series=2)


def test_duplicate_positions(tmp_path: Path, rng: np.random.Generator) -> None:
    uid = generate_uid()
    folder = tmp_path / "dup"
    folder.mkdir()
    for i in range(3):
        ds = ct_slice(rng.integers(0, 10, size=(8, 8)), position=(0, 0, 0), series_uid=uid,
                      instance=i + 1)
        save_dicom(ds, folder / f"{i}.dcm")
    with pytest.raises(InputError, match="share a position"):
        open_image(str(folder))


def test_corrupt_and_truncated(tmp_path: Path, ct_series: MakeSeries) -> None:
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(InputError) as info:
        open_image(str(garbage))
    assert str(garbage) in str(info.value)

    folder, _ = ct_series()
    victim = sorted(folder.iterdir())[2]
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputError, match="truncated") as info:
        open_image(str(victim))
    assert str(victim) in str(info.value)
    with pytest.raises(InputError, match="truncated") as info:
        open_image(str(folder))  # the bad slice is named, not the folder
    assert str(victim) in str(info.value)


def test_empty_folder_is_not_dicom(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(InputError, match="neither"):
        open_image(str(folder))
