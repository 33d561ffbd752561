"""OME-Zarr inputs are read through ome-zarr-models: kmseg's own output, and invalid metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.errors import InputError
from pipeline.readers import open_image
from tests.readers.conftest import assert_reads


def _ome_05(path: Path, data: np.ndarray, multiscale: dict) -> None:
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("0", shape=data.shape, dtype=data.dtype,
                       dimension_names=list("zyx"))[:] = data
    group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}


def test_an_output_of_kmseg_reads_back_with_its_spacing(tmp_path, rng):
    import nibabel

    from pipeline import segment

    volume = rng.normal(0, 1, size=(40, 30, 4)).astype(np.float32)  # x, y, z
    path = tmp_path / "ct.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([0.5, 0.25, 2.0, 1])), path)
    out = tmp_path / "out.zarr"
    segment(str(path), str(out), k=2, quiet=True)
    source = open_image(str(out))
    assert source.format == "ome-zarr" and source.metadata["ome_version"] == "0.5"
    assert source.axes == "zyx"
    assert source.spacing == (2.0, 0.25, 0.5)
    assert source.unit == "millimeter"
    labels = open_image(str(out / "labels" / "clusters"))
    assert labels.axes == "zyx" and labels.spacing == (2.0, 0.25, 0.5)
    assert_reads(labels, np.asarray(zarr.open_array(str(out / "labels/clusters/0"))))


def test_metadata_against_the_spec_is_refused_in_one_line(tmp_path, rng):
    data = rng.integers(0, 255, size=(2, 20, 30), dtype=np.uint8)
    path = tmp_path / "bad.zarr"
    axes = [{"name": "z", "type": "space"}, {"name": "x", "type": "space"},
            {"name": "x", "type": "space"}]  # two axes named x
    _ome_05(path, data, {"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}]})
    with pytest.raises(InputError, match=r"invalid OME-Zarr 0\.5 multiscales metadata") as info:
        open_image(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_whole_image_scale_multiplies_the_level_scale(tmp_path, rng):
    data = rng.integers(0, 255, size=(2, 20, 30), dtype=np.uint8)
    path = tmp_path / "scaled.zarr"
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    _ome_05(path, data, {
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [3.0, 0.5, 0.25]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [2.0, 2.0, 2.0]}],
    })
    source = open_image(str(path))
    assert source.spacing == (6.0, 1.0, 0.5) and source.unit == "micrometer"
    assert_reads(source, data)
