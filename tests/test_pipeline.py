"""End-to-end runs through the Python API against in-memory references."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import segment
from pipeline.config import build_config
from pipeline.plan import build_plan
from tests.conftest import sklearn_mse
from tests.helpers import mse_of, read_output


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_mse_close_to_scikit_learn_on_real_photos(photos, tmp_path, name):
    image = photos[name]
    [result] = segment(image, str(tmp_path / "out.zarr"), k=4, quiet=True, chunks=[97, 131])
    features = image.reshape(-1, 3) / 255.0
    reference = sklearn_mse(features, 4)
    assert result.mse <= reference * 1.01
    # The recorded mse is the objective of the recorded centres over all pixels.
    assert result.mse == pytest.approx(mse_of(features, result.centres_features), rel=1e-4)
    assert result.inertia == pytest.approx(result.mse * features.shape[0], rel=1e-9)


def test_recoloured_equals_centres_of_labels(photos, tmp_path):
    image = photos["coffee"]
    out = str(tmp_path / "out.zarr")
    segment(image, out, k=5, quiet=True, chunks=[64, 100])
    labels, recoloured, meta = read_output(out)
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= set(range(1, 6))
    table = np.clip(np.rint(np.asarray(meta["centres"])), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(recoloured, table[labels - 1])
    assert recoloured.dtype == image.dtype
    assert meta["pixels_per_cluster"] == np.bincount(labels.ravel(), minlength=6)[1:].tolist()
    assert meta["status"] == "complete" and meta["k"] == 5


def test_labels_do_not_depend_on_chunking(photos, tmp_path):
    image = photos["chelsea"]
    a = str(tmp_path / "a.zarr")
    b = str(tmp_path / "b.zarr")
    segment(image, a, k=3, quiet=True, chunks=[300, 451])
    segment(image, b, k=3, quiet=True, chunks=[41, 67])
    np.testing.assert_array_equal(read_output(a)[0], read_output(b)[0])


def test_volume_int16(tmp_path, rng):
    volume = rng.normal(0, 300, size=(9, 31, 27)).astype(np.int16)
    volume[:, :10] += 3000
    out = str(tmp_path / "vol.zarr")
    segment(volume, out, k=2, quiet=True, chunks=[4, 16, 10])
    labels, recoloured, meta = read_output(out)
    assert labels.shape == volume.shape and recoloured.shape == volume.shape
    assert recoloured.dtype == np.int16
    assert meta["input"]["axes"] == "zyx"
    # The bright slab is its own cluster.
    assert len(np.unique(labels[:, :10])) == 1 and labels[0, 0, 0] != labels[0, 20, 0]


def test_nan_pixels_are_label_zero(tmp_path, rng):
    image = rng.random((40, 50)).astype(np.float32) * 100
    image[5:9, 7:20] = np.nan
    out = str(tmp_path / "nan.zarr")
    [result] = segment(image, out, k=3, quiet=True, chunks=[13, 17])
    labels, recoloured, meta = read_output(out)
    assert (labels[5:9, 7:20] == 0).all() and (labels[np.isfinite(image)] > 0).all()
    assert np.isnan(recoloured[5:9, 7:20]).all()
    assert meta["pixels_without_data"] == 4 * 13 == result.no_data
    assert sum(meta["pixels_per_cluster"]) == image.size - 52


def test_several_inputs_in_one_output(photos, tmp_path):
    out = str(tmp_path / "many.zarr")
    results = segment([photos["coffee"], photos["chelsea"]], out, k=3, quiet=True)
    assert [r.name for r in results] == ["array0", "array1"]
    for name, image in (("array0", photos["coffee"]), ("array1", photos["chelsea"])):
        labels, _, meta = read_output(out, name)
        assert labels.shape == image.shape[:2]
        assert meta["status"] == "complete"


def test_sample_option_is_reproducible(photos, tmp_path):
    a = segment(
        photos["astronaut"],
        str(tmp_path / "a.zarr"),
        k=4,
        quiet=True,
        sample=2000,
        engine="dask-ml",
        random_state=7,
    )[0]
    b = segment(
        photos["astronaut"],
        str(tmp_path / "b.zarr"),
        k=4,
        quiet=True,
        sample=2000,
        engine="dask-ml",
        random_state=7,
        chunks=[100, 100],
    )[0]
    np.testing.assert_allclose(a.centres_features, b.centres_features)
    assert a.metadata["engine_info"]["fit_rows"] == 2000


def test_building_the_plan_reads_no_pixels(tmp_path, monkeypatch):
    from pipeline.readers.npy import NpyBlockReader

    path = tmp_path / "img.npy"
    np.save(path, np.zeros((30, 40, 3), dtype=np.uint8))

    def fail(self, key):
        raise AssertionError("pixels were read while planning")

    monkeypatch.setattr(NpyBlockReader, "__getitem__", fail)
    plan = build_plan(build_config({"inputs": [str(path)], "output": str(tmp_path / "o.zarr")}))
    assert plan.jobs[0].image.shape == (30, 40, 3)


def test_lab_and_spatial_features_end_to_end(photos, tmp_path):
    image = photos["chelsea"]
    [lab] = segment(image, str(tmp_path / "lab.zarr"), k=4, quiet=True, colour_space="lab")
    assert lab.engine == "exact" and lab.metadata["features"]["colour_space"] == "lab"
    [spatial] = segment(image, str(tmp_path / "xy.zarr"), k=4, quiet=True, spatial_weight=2.0,
                        chunks=[70, 90])
    assert spatial.engine == "dask-ml"
    labels, _, meta = read_output(str(tmp_path / "xy.zarr"))
    assert len(meta["centres_features"][0]) == 5  # three colours and two coordinates
    # Strongly weighted coordinates make segments spatially compact: left and right halves
    # of the image share few labels.
    left, right = set(np.unique(labels[:, :100])), set(np.unique(labels[:, -100:]))
    assert left != right
