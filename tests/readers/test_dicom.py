"""DICOM files, multi-frame files and series folders."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut
from pydicom.uid import generate_uid

from pipeline.api import segment
from pipeline.cli import main
from pipeline.errors import InputError, KmsegWarning
from pipeline.features import FeatureSpec
from pipeline.readers import open_image
from tests.helpers import read_output

from ._dicom_make import colour_image, grey_slice, rgb_to_ybr_full, write_series
from .conftest import assert_reads, ct_slice, save_dicom

MakeSeries = Callable[..., tuple[Path, np.ndarray]]

#: Whether the fit leaves out ImageSource.no_data intervals (label 0).
_NO_DATA_MASKING = "no_data" in getattr(FeatureSpec, "__dataclass_fields__", {})


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


# --- colour models -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signed", "rescale", "expected"),
    [
        # 12 bits stored, unsigned: 0..4095 -> 4095..0
        (False, False, lambda s: (4095 - s.astype(np.int32)).astype(np.uint16)),
        (False, True, lambda s: (4095 - s.astype(np.int32) - 1024).astype(np.int16)),
        # 12 bits stored, signed: -2048..2047 -> 2047..-2048
        (True, False, lambda s: (-1 - s.astype(np.int32)).astype(np.int16)),
    ],
)
def test_monochrome1_reads_like_monochrome2(
    tmp_path: Path, rng: np.random.Generator, signed: bool, rescale: bool, expected: Callable
) -> None:
    lo, hi = (-2048, 2048) if signed else (0, 4096)
    stored = rng.integers(lo, hi, size=(3, 40, 50)).astype(np.int16 if signed else np.uint16)
    write_series(tmp_path / "cr", stored, [0, 1, 2], photometric="MONOCHROME1",
                 slope=1 if rescale else None)
    source = open_image(str(tmp_path / "cr"))
    assert source.metadata["photometric"] == "MONOCHROME1"
    assert source.metadata["inverted_range"] == ([-2048, 2047] if signed else [0, 4095])
    assert "inverted" in source.metadata["photometric_transform"]
    assert_reads(source, expected(stored))


def test_monochrome1_single_file_bright_is_dense(tmp_path: Path) -> None:
    # a radiograph stored MONOCHROME1: stored 0 (white on screen) must read as the maximum
    stored = np.array([[0, 1000], [3000, 4095]], np.uint16)
    path = save_dicom(grey_slice(stored, photometric="MONOCHROME1", slope=None),
                      tmp_path / "cr.dcm")
    assert_reads(open_image(str(path)), np.array([[4095, 3095], [1095, 0]], np.uint16))


def _palette(ds: Dataset, lut: np.ndarray) -> None:
    """Attach a 16-bit palette (rows of R, G, B for each index 0..n-1)."""
    n = len(lut)
    for i, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [n, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData",
                np.ascontiguousarray(lut[:, i], "<u2").tobytes())


def test_palette_color_expanded_through_the_lut(tmp_path: Path, rng: np.random.Generator) -> None:
    lut = rng.integers(0, 65536, size=(256, 3), dtype=np.uint16)
    index = rng.integers(0, 256, size=(45, 55), dtype=np.uint8)
    ds = colour_image(index.tobytes(), index.shape, photometric="PALETTE COLOR", samples=1)
    _palette(ds, lut)
    path = save_dicom(ds, tmp_path / "palette.dcm")
    source = open_image(str(path))
    assert source.axes == "yxc"
    assert source.channel_names == ("R", "G", "B")
    assert source.metadata["photometric"] == "PALETTE COLOR"
    assert "palette" in source.metadata["photometric_transform"]
    assert_reads(source, lut[index])


def test_palette_color_series(tmp_path: Path, rng: np.random.Generator) -> None:
    # indices 0 and 2 red, 1 and 3 blue (issue 7, item 1, for DICOM)
    lut = np.array([[65535, 0, 0], [0, 0, 65535], [65535, 0, 0], [0, 0, 65535]], np.uint16)
    index = rng.integers(0, 4, size=(3, 20, 30), dtype=np.uint8)
    folder = tmp_path / "pal"
    folder.mkdir()
    uid = generate_uid()
    for z in range(3):
        ds = colour_image(index[z].tobytes(), index.shape[1:], photometric="PALETTE COLOR",
                          samples=1, SeriesInstanceUID=uid, ImagePositionPatient=[0, 0, 3 * z],
                          ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
        _palette(ds, lut)
        save_dicom(ds, folder / f"{2 - z}.dcm")
    source = open_image(str(folder))
    assert source.axes == "zyxc"
    assert_reads(source, lut[index])


def test_bundled_palette_file_matches_pydicom() -> None:
    path = get_testdata_file("examples_palette.dcm")
    ds = dcmread(path)
    reference = apply_color_lut(ds.pixel_array, ds)
    assert_reads(open_image(path), reference)


def test_ybr_full_converted_to_rgb(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    ybr = np.clip(np.round(rgb_to_ybr_full(rgb)), 0, 255).astype(np.uint8)
    ds = colour_image(ybr.tobytes(), rgb.shape[:2], photometric="YBR_FULL", samples=3)
    source = open_image(str(save_dicom(ds, tmp_path / "ybr.dcm")))
    assert source.channel_names == ("R", "G", "B")
    assert source.metadata["photometric"] == "YBR_FULL"
    assert "RGB" in source.metadata["photometric_transform"]
    got = source.to_dask((37, 53, 3)).compute()
    # rounding YCbCr to integers moves RGB by at most 2
    np.testing.assert_allclose(got.astype(int), rgb.astype(int), atol=2)


def test_ybr_full_422_converted_to_rgb(tmp_path: Path, rng: np.random.Generator) -> None:
    # one colour per horizontal pair of pixels, so that 4:2:2 sub-sampling loses nothing
    pairs = rng.integers(0, 256, size=(24, 16, 3), dtype=np.uint8)
    rgb = np.repeat(pairs, 2, axis=1)
    ybr = np.clip(np.round(rgb_to_ybr_full(pairs)), 0, 255).astype(np.uint8)
    y, cb, cr = ybr[..., 0], ybr[..., 1], ybr[..., 2]
    packed = np.stack([y, y, cb, cr], axis=-1)  # Y1 Y2 Cb Cr for each pair
    ds = colour_image(packed.tobytes(), rgb.shape[:2], photometric="YBR_FULL_422", samples=3)
    source = open_image(str(save_dicom(ds, tmp_path / "ybr422.dcm")))
    assert source.shape == (24, 32, 3)
    got = source.to_dask((37, 53, 3)).compute()
    np.testing.assert_allclose(got.astype(int), rgb.astype(int), atol=2)


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_multiframe(tmp_path: Path, rng: np.random.Generator, planar: int) -> None:
    rgb = rng.integers(0, 256, size=(4, 20, 30, 3), dtype=np.uint8)
    stored = rgb if planar == 0 else np.transpose(rgb, (0, 3, 1, 2))  # RRR..GGG..BBB per frame
    ds = colour_image(np.ascontiguousarray(stored).tobytes(), rgb.shape[1:3],
                      photometric="RGB", samples=3, frames=4, PlanarConfiguration=planar)
    source = open_image(str(save_dicom(ds, tmp_path / "rgb4.dcm")))
    assert source.axes == "zyxc"
    assert source.metadata["photometric"] == "RGB"
    assert_reads(source, rgb)


def test_bundled_rle_rgb_multiframe_matches_pydicom() -> None:
    path = get_testdata_file("SC_rgb_rle_2frame.dcm")
    assert_reads(open_image(path), dcmread(path).pixel_array)


def test_unsupported_photometric_is_refused(tmp_path: Path) -> None:
    ds = colour_image(bytes(2 * 8 * 3), (2, 8), photometric="YBR_PARTIAL_420", samples=3)
    path = save_dicom(ds, tmp_path / "mpeg.dcm")
    with pytest.raises(InputError, match="photometric interpretation 'YBR_PARTIAL_420'") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


# --- pixel padding -------------------------------------------------------------------------


def _padded(rng: np.random.Generator, shape: tuple[int, ...], value: int, signed: bool
            ) -> tuple[np.ndarray, np.ndarray]:
    """Stored values with a padded ring outside a round field of view; and the padded mask."""
    stored = rng.integers(0, 2000, size=shape).astype(np.int16 if signed else np.uint16)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    outside = (yy - shape[-2] / 2) ** 2 + (xx - shape[-1] / 2) ** 2 > (shape[-1] / 2.5) ** 2
    mask = np.broadcast_to(outside, shape)
    stored[mask] = value
    return stored, mask


def test_padding_value_becomes_no_data_in_hounsfield(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    # GE-style CT: signed pixels, padding -2000 stored, intercept -1024 -> -3024 HU
    stored, mask = _padded(rng, (4, 40, 50), -2000, signed=True)
    write_series(tmp_path / "ct", stored, [0, 2.5, 5, 7.5], PixelPaddingValue=-2000)
    source = open_image(str(tmp_path / "ct"))
    assert source.no_data == ((-3024.0, -3024.0),)
    assert source.metadata["pixel_padding"] == {"stored": [-2000, -2000], "read": [-3024, -3024]}
    expected = (stored.astype(np.int32) - 1024).astype(np.int16)
    assert_reads(source, expected)
    assert np.all(expected[mask] == -3024) and not np.any(expected[~mask] == -3024)
    assert source.describe()["no_data"] == [[-3024.0, -3024.0]]


def test_padding_range_limit(tmp_path: Path, rng: np.random.Generator) -> None:
    # unsigned 12-bit CT: stored 0..10 is padding (limit below or above the value alike)
    stored = rng.integers(0, 4096, size=(3, 30, 40), dtype=np.uint16)
    write_series(tmp_path / "ct", stored, [0, 1, 2], PixelPaddingValue=10,
                 PixelPaddingRangeLimit=0)
    source = open_image(str(tmp_path / "ct"))
    assert source.no_data == ((-1024.0, -1014.0),)
    hu = (stored.astype(np.int32) - 1024).astype(np.int16)
    assert_reads(source, hu)
    inside = (hu >= -1024) & (hu <= -1014)
    np.testing.assert_array_equal(inside, stored <= 10)


def test_padding_with_fractional_rescale_is_exact(tmp_path: Path, rng: np.random.Generator
                                                  ) -> None:
    stored, mask = _padded(rng, (2, 30, 30), 0, signed=False)
    stored[~mask] = np.maximum(stored[~mask], 1)
    write_series(tmp_path / "pet", stored, [0, 3], slope=0.3, intercept=-10.1,
                 PixelPaddingValue=0)
    source = open_image(str(tmp_path / "pet"))
    expected = (stored.astype(np.float64) * 0.3 - 10.1).astype(np.float32)
    [(lo, hi)] = source.no_data
    assert lo == hi == float(np.float32(-10.1))
    assert_reads(source, expected)
    assert np.all(expected[mask] == lo)


def test_padding_of_monochrome1_is_inverted_too(tmp_path: Path, rng: np.random.Generator
                                               ) -> None:
    stored, mask = _padded(rng, (30, 30), 4095, signed=False)
    path = save_dicom(grey_slice(stored, photometric="MONOCHROME1", slope=None,
                                 PixelPaddingValue=4095), tmp_path / "dx.dcm")
    source = open_image(str(path))
    assert source.no_data == ((0.0, 0.0),)
    expected = (4095 - stored.astype(np.int32)).astype(np.uint16)
    assert_reads(source, expected)
    assert np.all(expected[mask] == 0)


def test_padding_under_per_slice_rescale_reads_nan(tmp_path: Path, rng: np.random.Generator
                                                   ) -> None:
    # padding (stored 0) is -1024 in one slice and -1000 in the other, where -1024 is tissue
    stored, mask = _padded(rng, (2, 30, 30), 0, signed=False)
    write_series(tmp_path / "ct", stored, [0, 2], PixelPaddingValue=0,
                 per_slice=[{"intercept": -1024}, {"intercept": -1000}])
    source = open_image(str(tmp_path / "ct"))
    assert source.no_data == ()
    assert source.metadata["pixel_padding"]["read"] == "NaN"
    expected = stored.astype(np.float32) + np.array([-1024, -1000], np.float32)[:, None, None]
    expected[mask] = np.nan
    got = source.to_dask((1, 37, 53)).compute()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_bundled_ct_padding() -> None:
    # pydicom's CT_small.dcm: signed, PixelPaddingValue -2000, intercept -1024
    path = get_testdata_file("CT_small.dcm")
    ds = dcmread(path)
    source = open_image(path)
    value = -2000 * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert source.no_data == ((value, value),)


# --- series integrity ----------------------------------------------------------------------


def test_missing_slice_warns_with_the_gap(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(5, 20, 30), dtype=np.uint16)
    folder = tmp_path / "gap"
    write_series(folder, stored, [0, 2, 4, 8, 10])
    message = "slices missing between z=4 and z=8 mm: spacing 2 mm, gap 4 mm"
    with pytest.warns(KmsegWarning, match=re.escape(message)) as record:
        source = open_image(str(folder))
    [warning] = record
    assert str(folder) in str(warning.message) and "\n" not in str(warning.message)
    assert source.spacing[0] == 2
    assert source.metadata["slice_gaps_mm"] == [[4, 8]]
    # stacked without the gap: the slices at 8 and 10 mm are placed at 6 and 8 mm
    assert source.metadata["stacked_shift_mm"] == [0, 0, 0, 2, 2]
    assert "stacked without the gaps, one every 2 mm (nothing inserted): slices from z=8 mm on " \
        "are placed up to 2 mm from their true position" in str(warning.message)
    assert_reads(source, (stored.astype(np.int32) - 1024).astype(np.int16))
    with pytest.raises(InputError, match=re.escape(message)) as info:
        open_image(str(folder), missing_slices="error")
    assert str(folder) in str(info.value)


def test_several_gaps_and_irregular_steps(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(7, 8, 8), dtype=np.uint16)
    write_series(tmp_path / "s", stored, [0, 2, 4, 7, 9, 11, 17])
    with pytest.warns(
        KmsegWarning,
        match=re.escape("slices missing between z=11 and z=17 mm: spacing 2 mm, gap 6 mm; "
                        "irregular slice spacing between z=4 and z=7 mm: spacing 2 mm, step 3 mm"),
    ):
        open_image(str(tmp_path / "s"))


def test_mostly_missing_slices(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(3, 8, 8), dtype=np.uint16)
    write_series(tmp_path / "s", stored, [0, 2, 6])
    with pytest.warns(KmsegWarning,
                      match=re.escape("between z=2 and z=6 mm: spacing 2 mm, gap 4 mm;")):
        source = open_image(str(tmp_path / "s"))
    assert source.spacing[0] == 2


def test_regular_jitter_is_not_a_gap(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(4, 8, 8), dtype=np.uint16)
    write_series(tmp_path / "s", stored, [0, 1.25, 2.5001, 3.7499])
    source = open_image(str(tmp_path / "s"))  # no warning
    assert source.spacing[0] == pytest.approx(1.25, abs=1e-3)


def test_exact_copies_dropped(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(3, 8, 8), dtype=np.uint16)
    folder = tmp_path / "s"
    paths = write_series(folder, stored, [0, 1, 2])
    (folder / "copy_of_IM003.dcm").write_bytes(paths[0].read_bytes())
    with pytest.warns(KmsegWarning, match="copies of other files"):
        source = open_image(str(folder))
    assert_reads(source, (stored.astype(np.int32) - 1024).astype(np.int16))


def test_two_acquisitions_at_one_position_refused(tmp_path: Path, rng: np.random.Generator
                                                  ) -> None:
    stored = rng.integers(0, 4096, size=(4, 8, 8), dtype=np.uint16)
    folder = tmp_path / "s"
    write_series(folder, stored, [0, 1, 0, 1],
                 per_slice=[{"AcquisitionNumber": 1 + i // 2} for i in range(4)])
    with pytest.raises(InputError, match=r"share a position \(z=0 mm; AcquisitionNumber 1, 2\)"
                       ) as info:
        open_image(str(folder))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_localizer_dropped(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(3, 20, 20), dtype=np.uint16)
    folder = tmp_path / "s"
    write_series(folder, stored, [0, 1, 2])
    uid = str(dcmread(folder / "IM001.dcm").SeriesInstanceUID)
    scout = grey_slice(rng.integers(0, 4096, size=(30, 40), dtype=np.uint16), series_uid=uid,
                       orientation=(0, 1, 0, 0, 0, -1), ImageType=["ORIGINAL", "PRIMARY",
                                                                    "LOCALIZER"])
    save_dicom(scout, folder / "scout.dcm")
    with pytest.warns(KmsegWarning, match=r"dropped 1 localizer image\(s\) \(scout.dcm\)"):
        source = open_image(str(folder))
    assert source.metadata["dropped_localizers"] == ["scout.dcm"]
    assert_reads(source, (stored.astype(np.int32) - 1024).astype(np.int16))


def test_single_slice_of_another_orientation_dropped(tmp_path: Path, rng: np.random.Generator
                                                     ) -> None:
    # a scout saved without LOCALIZER in its ImageType: one sagittal slice among axial ones
    stored = rng.integers(0, 4096, size=(6, 20, 20), dtype=np.uint16)
    folder = tmp_path / "s"
    sagittal = {"orientation": (0, 1, 0, 0, 0, -1), "position": (10, 0, 0)}
    write_series(folder, stored, [0, 1, 2, 3, 4, 0], per_slice=[{}] * 5 + [sagittal])
    with pytest.warns(KmsegWarning, match="dropped IM001.dcm: orientation differs") as record:
        source = open_image(str(folder))
    assert len(record) == 1
    assert source.metadata["dropped_other_orientation"] == ["IM001.dcm"]
    assert_reads(source, (stored[:5].astype(np.int32) - 1024).astype(np.int16))


def test_mixed_orientations_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(6, 10, 10), dtype=np.uint16)
    sagittal = {"orientation": (0, 1, 0, 0, 0, -1)}
    write_series(tmp_path / "s", stored, [0, 1, 2, 3, 4, 5],
                 per_slice=[{}, {}, {}, sagittal, sagittal, sagittal])
    with pytest.raises(InputError, match="mixed slice orientations") as info:
        open_image(str(tmp_path / "s"))
    assert str(tmp_path / "s") in str(info.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"shape": (12, 10)}, r"mixed slice sizes \(Rows x Columns\): 10x10 in 3 "
                              r"\(IM001.dcm, IM002.dcm, IM003.dcm\); 12x10 in 1 \(IM004.dcm\)"),
        ({"signed": True}, "mixed slice pixel representations"),
        ({"BitsStored": 16}, "mixed slice bits stored"),
        ({"PhotometricInterpretation": "MONOCHROME1"}, "mixed slice photometric"),
        ({"PixelSpacing": [0.5, 0.5]}, r"mixed slice pixel spacings \(mm\): 0.5x0.7 in 3 "),
    ],
)
def test_mixed_pixel_formats_refused(tmp_path: Path, rng: np.random.Generator,
                                     change: dict, problem: str) -> None:
    folder = tmp_path / "s"
    stored = rng.integers(0, 4096, size=(4, 10, 10), dtype=np.uint16)
    write_series(folder, stored[:3], [0, 1, 2])
    uid = str(dcmread(folder / "IM001.dcm").SeriesInstanceUID)
    odd = stored[3]
    if "shape" in change:
        odd = rng.integers(0, 4096, size=change.pop("shape"), dtype=np.uint16)
    if change.pop("signed", False):
        odd = odd.astype(np.int16)
    ds = grey_slice(odd, series_uid=uid, position=(0, 0, 3), instance=4, **change)
    save_dicom(ds, folder / "IM004.dcm")
    with pytest.raises(InputError, match=problem) as info:
        open_image(str(folder))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_duplicate_instance_numbers_without_positions_refused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    stored = rng.integers(0, 4096, size=(3, 8, 8), dtype=np.uint16)
    folder = tmp_path / "s"
    write_series(folder, stored, [0, 1, 2], position=None,
                 per_slice=[{"instance": 1}, {"instance": 2}, {"instance": 2}])
    with pytest.raises(InputError, match="share InstanceNumber 2"):
        open_image(str(folder))


def test_no_order_at_all_warns(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, size=(3, 8, 8), dtype=np.uint16)
    folder = tmp_path / "s"
    write_series(folder, stored, [0, 1, 2], position=None, instance=None)
    with pytest.warns(KmsegWarning, match="file-name order"):
        source = open_image(str(folder))
    assert source.metadata["sort"] == "file"
    assert_reads(source, (stored[::-1].astype(np.int32) - 1024).astype(np.int16))


# --- end to end ----------------------------------------------------------------------------


def _padded_ct(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Issue 7, item 8: air, water, soft tissue and bone inside a round field of view, padding
    (-3024 HU: stored -2000, intercept -1024) outside it. Returns HU and the padded mask."""
    hu = np.full((4, 40, 50), -1000, np.int16)
    hu[:, 8:32, 8:42] = 0
    hu[:, 12:28, 12:25] = 50
    hu[:, 16:24, 28:36] = 700
    yy, xx = np.mgrid[:40, :50]
    outside = np.broadcast_to((yy - 20) ** 2 + (xx - 25) ** 2 > 22**2, hu.shape)
    hu[outside] = -3024
    write_series(folder, (hu.astype(np.int32) + 1024).astype(np.int16), [0, 3, 6, 9],
                 PixelPaddingValue=-2000, bits_stored=16)
    return hu, outside


def test_padded_ct_series_end_to_end(tmp_path: Path) -> None:
    hu, _ = _padded_ct(tmp_path / "ct")
    out = tmp_path / "ct.zarr"
    assert main(["segment", str(tmp_path / "ct"), "-o", str(out), "-k", "4", "-q"]) == 0
    labels, _, meta = read_output(str(out))
    assert labels.shape == hu.shape
    assert meta["input"]["no_data"] == [[-3024, -3024]]
    assert meta["input"]["metadata"]["pixel_padding"] == {"stored": [-2000, -2000],
                                                          "read": [-3024, -3024]}


@pytest.mark.skipif(not _NO_DATA_MASKING, reason="no-data intervals are not yet used by the fit")
def test_padded_ct_series_padding_is_label_0(tmp_path: Path) -> None:
    hu, outside = _padded_ct(tmp_path / "ct")
    out = tmp_path / "ct.zarr"
    assert main(["segment", str(tmp_path / "ct"), "-o", str(out), "-k", "4", "-q"]) == 0
    labels, _, meta = read_output(str(out))
    assert np.all(labels[outside] == 0) and np.all(labels[~outside] > 0)
    assert meta["pixels_without_data"] == int(outside.sum())
    # the four tissues are the four clusters: water and soft tissue apart
    assert sorted(c[0] for c in meta["centres"]) == pytest.approx([-1000, 0, 50, 700], abs=1e-6)
    for tissue in (-1000, 0, 50, 700):
        assert len(np.unique(labels[hu == tissue])) == 1


def _gapped_series(folder: Path, rng: np.random.Generator) -> None:
    """Issue 7, item 9: slices at 0, 2, 4, 8 and 10 mm."""
    stored = rng.integers(1000, 1100, size=(5, 20, 30), dtype=np.uint16)
    stored[:, :, 15:] += 1000
    write_series(folder, stored, [0, 2, 4, 8, 10])


def test_gapped_series_end_to_end(tmp_path: Path, rng: np.random.Generator,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "gap"
    _gapped_series(folder, rng)
    gap = "slices missing between z=4 and z=8 mm: spacing 2 mm, gap 4 mm"
    with pytest.warns(KmsegWarning, match=re.escape(f"{folder}: {gap}")):
        segment(str(folder), str(tmp_path / "gap.zarr"), k=2, quiet=True)
    _, _, meta = read_output(str(tmp_path / "gap.zarr"))
    assert meta["input"]["metadata"]["slice_gaps_mm"] == [[4, 8]]

    refused = tmp_path / "refused.zarr"
    code = main(["segment", str(folder), "-o", str(refused), "-k", "2", "-q",
                 "--missing-slices", "error"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(folder) in err[0] and gap in err[0]
    assert not refused.exists()
