"""NIfTI volumes (.nii, .nii.gz)."""

from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import InputError, KmsegWarning
from pipeline.readers import open_image
from tests.helpers import read_output

from .conftest import assert_reads


def _save(data: np.ndarray, path: Path, zooms: tuple[float, ...] = (0.5, 0.6, 2.0),
          units: str = "mm", slope: float | None = None, inter: float = 0.0) -> Path:
    image = nib.Nifti1Image(data, np.diag([*zooms[:3], 1.0]))
    image.header.set_zooms(zooms[: data.ndim] + (1.0,) * max(0, data.ndim - len(zooms)))
    image.header.set_xyzt_units(units)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, path)
    return path


def _zyx(data: np.ndarray) -> np.ndarray:
    """Stored x, y, z[, c] -> presented z, y, x[, c]."""
    return np.swapaxes(data, 0, 2)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "float64"])
def test_volume(tmp_path: Path, rng: np.random.Generator, suffix: str, dtype: str) -> None:
    data = (rng.random((90, 80, 7)) * 200).astype(dtype)
    path = _save(data, tmp_path / f"vol{suffix}")
    source = open_image(str(path))
    assert source.axes == "zyx"
    assert source.format == "nifti"
    assert source.dtype == np.dtype(dtype)
    assert source.spacing == (2.0, 0.6, 0.5)
    assert source.unit == "millimeter"
    expected_chunks = (7, 80, 90) if suffix == ".nii.gz" else (1, 80, 90)
    assert source.native_chunks == expected_chunks
    assert_reads(source, _zyx(data))


def test_integer_scaling_gives_int16(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(60, 70, 5), dtype=np.uint8)
    path = _save(data, tmp_path / "scaled.nii.gz", slope=2, inter=-100)
    source = open_image(str(path))
    assert source.dtype == np.int16
    assert source.metadata["scl_slope"] == 2
    assert_reads(source, _zyx(data.astype(np.int16) * 2 - 100))


def test_fractional_scaling_gives_float32(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(-1000, 1000, size=(60, 70, 5), dtype=np.int16)
    path = _save(data, tmp_path / "frac.nii", slope=0.25, inter=1.5)
    source = open_image(str(path))
    assert source.dtype == np.float32
    assert_reads(source, _zyx(data.astype(np.float32) * 0.25 + 1.5))


def test_channels_and_units(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.random((50, 60, 4, 3)).astype(np.float32)
    path = _save(data, tmp_path / "rgb.nii", units="micron")
    source = open_image(str(path))
    assert source.axes == "zyxc"
    assert source.unit == "micrometer"
    assert_reads(source, np.transpose(data, (2, 1, 0, 3)))


def test_single_slice_is_2d(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 1000, size=(100, 120, 1), dtype=np.int16)
    source = open_image(str(_save(data, tmp_path / "slice.nii")))
    assert source.axes == "yx"
    assert source.spacing == (0.6, 0.5)
    assert_reads(source, data[:, :, 0].T)


def test_time_series_rejected(tmp_path: Path) -> None:
    path = _save(np.zeros((10, 10, 4, 20), np.int16), tmp_path / "fmri.nii")
    with pytest.raises(InputError, match="cannot present"):
        open_image(str(path))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    data = rng.integers(0, 1000, size=(60, 70, 9), dtype=np.int16)
    path = _save(data, tmp_path / f"cut{suffix}")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(InputError, match="truncated") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_corrupt_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.nii"
    path.write_bytes(b"\x01" * 400)
    with pytest.raises(InputError, match="not a readable NIfTI") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


# --- scaling -------------------------------------------------------------------------------


def test_ct_intercept_gives_exact_hounsfield(tmp_path: Path, rng: np.random.Generator) -> None:
    # uint16 - 1024 does not fit int16: int32, exact, so the exact engine applies
    data = rng.integers(0, 4096, size=(30, 40, 3), dtype=np.uint16)
    path = _save(data, tmp_path / "ct.nii.gz", slope=1, inter=-1024)
    source = open_image(str(path))
    assert source.dtype == np.int32
    assert source.metadata["scl_inter"] == -1024
    assert_reads(source, _zyx(data.astype(np.int32) - 1024))


def test_fractional_slope_values_as_the_header_says(tmp_path: Path,
                                                    rng: np.random.Generator) -> None:
    # the header holds float32: scl_slope 0.1 is 0.100000001490116...
    data = rng.integers(0, 256, size=(20, 30, 4), dtype=np.uint8)
    path = _save(data, tmp_path / "pet.nii", slope=0.1, inter=-3)
    source = open_image(str(path))
    assert source.dtype == np.float32
    assert source.metadata["scl_slope"] == float(np.float32(0.1))
    expected = (data.astype(np.float64) * float(np.float32(0.1)) - 3).astype(np.float32)
    assert_reads(source, _zyx(expected), exact=False)


# --- orientation ---------------------------------------------------------------------------


def _oriented(volume: np.ndarray, codes: str, zooms: tuple[float, float, float]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Store a RAS+ ``volume`` (x, y, z) with voxel axes pointing along ``codes``.

    Returns the stored array and its affine. ``zooms`` are the voxel sizes along x, y, z.
    """
    letters = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    axes = [letters[c] for c in codes]
    stored = np.transpose(volume, [a for a, _ in axes])
    for s, (_, sign) in enumerate(axes):
        if sign < 0:
            stored = np.flip(stored, s)
    affine = np.eye(4)
    for s, (a, sign) in enumerate(axes):
        affine[:3, s] = 0
        affine[a, s] = sign * zooms[a]
    return np.ascontiguousarray(stored), affine


@pytest.mark.parametrize("codes", ["RAS", "LPS", "LAS", "PSR", "ILA", "SPL"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_orientation_recorded_and_reoriented(tmp_path: Path, rng: np.random.Generator,
                                             codes: str, suffix: str) -> None:
    volume = rng.integers(-1000, 1000, size=(41, 35, 6), dtype=np.int16)  # x, y, z (RAS+)
    zooms = (0.5, 0.6, 2.0)
    stored, affine = _oriented(volume, codes, zooms)
    image = nib.Nifti1Image(stored, affine)
    image.header.set_xyzt_units("mm")
    path = tmp_path / f"{codes}{suffix}"
    nib.save(image, path)

    kept = open_image(str(path))
    assert kept.metadata["orientation"] == codes
    assert kept.metadata["affine_source"] == "sform"
    assert "reoriented_from" not in kept.metadata
    assert_reads(kept, np.transpose(stored, (2, 1, 0)))

    source = open_image(str(path), reorient=True)
    assert source.metadata["orientation"] == "RAS"
    assert source.metadata["reoriented_from"] == codes
    assert source.axes == "zyx"
    assert source.spacing == (2.0, 0.6, 0.5)
    # the canonical volume, presented z, y, x
    assert_reads(source, np.transpose(volume, (2, 1, 0)))
    # nibabel's own reorientation agrees, affine included
    canonical = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_array_equal(np.asarray(canonical.dataobj), volume)
    np.testing.assert_allclose(source.metadata["affine"], canonical.affine)


def test_reorient_single_slice_and_channels(tmp_path: Path, rng: np.random.Generator) -> None:
    volume = rng.random((30, 20, 1, 3)).astype(np.float32)  # x, y, one z, 3 channels
    stored = np.ascontiguousarray(volume[::-1, ::-1])  # stored LPS
    path = tmp_path / "lps.nii"
    nib.save(nib.Nifti1Image(stored, np.diag([-0.5, -0.6, 2.0, 1.0])), path)
    source = open_image(str(path), reorient=True)
    assert source.axes == "yxc"
    assert source.spacing == (0.6, 0.5)
    assert_reads(source, np.transpose(volume[:, :, 0], (1, 0, 2)))


def test_reorient_without_orientation_warns(tmp_path: Path) -> None:
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)), path)
    _header_field(path, 312 + 8, "<f", 0.0)  # srow_z = 0: k has no direction
    with pytest.warns(KmsegWarning, match="no orientation; not reoriented"):
        source = open_image(str(path), reorient=True)
    assert source.metadata["orientation"] is None


def test_reorient_end_to_end(tmp_path: Path) -> None:
    # a bright block at the patient's right-anterior-superior corner, stored LPS
    volume = np.zeros((20, 16, 4), np.int16)
    volume[:8, :6, :2] = 1000
    stored, affine = _oriented(volume, "LPS", (0.5, 0.6, 2.0))
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(stored, affine), path)
    out = tmp_path / "out.zarr"
    assert main(["segment", str(path), "-o", str(out), "-k", "2", "-q", "--reorient"]) == 0
    labels, _, meta = read_output(str(out))
    assert meta["input"]["spacing"] == [2.0, 0.6, 0.5]
    assert meta["input"]["metadata"]["orientation"] == "RAS"
    presented = np.transpose(volume, (2, 1, 0))
    bright = labels[presented == 1000]
    assert len(np.unique(bright)) == 1
    assert not np.any(labels[presented == 0] == bright[0])


# --- corrupt headers (issue 11) ------------------------------------------------------------


def _header_field(path: Path, offset: int, fmt: str, value: float) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(("dim", "value", "problem"), [
    (1, -3, "negative dimension sizes [-3, 70, 5]"),
    (3, -3, "negative dimension sizes [60, 70, -3]"),
    (2, 0, "holds no voxels (dimensions [60, 0, 5])"),
])
def test_corrupt_dimensions_one_line(tmp_path: Path, dim: int, value: int, problem: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _save(np.ones((60, 70, 5), np.int16), tmp_path / "bad.nii")
    _header_field(path, 40 + 2 * dim, "<h", value)  # dim[1..3] of the NIfTI-1 header
    with pytest.raises(InputError) as info:
        open_image(str(path))
    assert str(info.value) == f"{path}: " + ("corrupt NIfTI header: " if value else "the NIfTI "
                                             "image ") + problem
    assert main(["segment", str(path), "-o", str(tmp_path / "out.zarr"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"kmseg: error: {info.value}"]


def test_repaired_header_warns_once(tmp_path: Path, rng: np.random.Generator,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = rng.integers(0, 100, size=(10, 12, 3), dtype=np.int16)
    path = _save(data, tmp_path / "odd.nii")
    _header_field(path, 0, "<i", 12)  # sizeof_hdr must be 348
    with pytest.warns(KmsegWarning, match="NIfTI header repaired by nibabel: sizeof_hdr") as rec:
        source = open_image(str(path))
    assert len(rec) == 1 and str(path) in str(rec[0].message)
    assert_reads(source, _zyx(data))
    assert "sizeof_hdr" not in capsys.readouterr().err  # not printed by nibabel as well
