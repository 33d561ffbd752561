"""``max_pixels`` is checked from the header for volumes too (DICOM series, NIfTI)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.readers import open_image

from ._dicom_make import write_series


def test_nifti_declared_size_is_checked(tmp_path):
    path = tmp_path / "vol.nii"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), dtype=np.int16), np.eye(4)), str(path))
    assert open_image(str(path), max_pixels=120).shape == (4, 5, 6)
    with pytest.raises(InputError, match=r"vol\.nii: the header declares 120 pixels.*= 119"):
        open_image(str(path), max_pixels=119)


def test_dicom_series_declared_size_is_checked(tmp_path):
    folder = tmp_path / "series"
    write_series(folder, np.zeros((3, 4, 5), dtype=np.int16), [0.0, 2.0, 4.0])
    assert open_image(str(folder), max_pixels=60).shape == (3, 4, 5)
    with pytest.raises(InputError, match=r"series: the header declares 60 pixels.*max_pixels = 59"):
        open_image(str(folder), max_pixels=59)


def test_ct_with_16_stored_bits_stays_integer_and_exact(tmp_path):
    # Unsigned 16-bit stored values with intercept -1024 reach 64511 HU: beyond int16, so
    # int32 (exact integers, the exact engine applies), not float32.
    from pipeline import segment

    stored = np.array([[[0, 1000, 1064, 2224]] * 3] * 2, dtype=np.uint16)  # -1024, -24, 40, 1200
    folder = tmp_path / "ct16"
    write_series(folder, stored, [0.0, 2.0], bits_stored=16)
    source = open_image(str(folder))
    assert source.dtype == np.int32
    [result] = segment(str(folder), str(tmp_path / "o.zarr"), k=4, quiet=True)
    assert result.engine == "exact"
    assert sorted(v[0] for v in result.metadata["centre_values"]) == [-1024, -24, 40, 1200]
