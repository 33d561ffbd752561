"""NIfTI volumes (.nii, .nii.gz)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.readers import open_image

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
