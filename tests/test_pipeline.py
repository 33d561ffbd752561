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
    assert plan.jobs[0].open(plan.config).shape == (30, 40, 3)


def test_lab_and_spatial_features_end_to_end(photos, tmp_path):
    image = photos["chelsea"]
    [lab] = segment(image, str(tmp_path / "lab.zarr"), k=4, quiet=True, colour_space="lab")
    assert lab.engine == "exact" and lab.metadata["features"]["colour_space"] == "lab"
    [spatial] = segment(image, str(tmp_path / "xy.zarr"), k=4, quiet=True, spatial_weight=2.0,
                        chunks=[70, 90])
    assert spatial.engine == "dask-ml"
    _, _, meta = read_output(str(tmp_path / "xy.zarr"))
    assert len(meta["centres_features"][0]) == 5  # three colours and two coordinates
    # An image of one colour holds nothing but coordinates (each scaled to [0, 1]) to cluster:
    # four clusters of a square are its quadrants, and the mse is that of 32 evenly spaced
    # coordinates (spacing 1/63) about their mean, (32² - 1) / 12 / 63², on each of two axes.
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    [quadrants] = segment(flat, str(tmp_path / "flat.zarr"), k=4, quiet=True,
                          spatial_weight=1.0, chunks=[30, 50])
    labels, _, _ = read_output(str(tmp_path / "flat.zarr"))
    found = [np.unique(labels[y : y + 32, x : x + 32]).tolist() for y in (0, 32) for x in (0, 32)]
    assert sorted(found) == [[1], [2], [3], [4]]
    assert quadrants.mse == pytest.approx(2 * (32**2 - 1) / 12 / 63**2, rel=1e-5)


# --- No data and dtypes (issue 7) ---------------------------------------------------------

DTYPES = ["bool", "int8", "uint8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
          "float16", "float32", "float64"]


def _levels_image(dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Three noisy levels spread over the dtype (two levels for bool)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random((30, 40)) > 0.3
    if dtype.kind == "f":
        levels = np.array([-2.0, 1.0, 5.0])
        noise = rng.normal(0, 0.2, (30, 40))
    else:
        info = np.iinfo(dtype)
        span = min(int(info.max) - int(info.min), 2**40)
        base = int(info.min) + span // 10
        levels = np.array([base, base + span // 3, base + 2 * (span // 3)], dtype=np.float64)
        noise = rng.integers(-3, 4, (30, 40))
    which = rng.integers(0, 3, (30, 40))
    if dtype.kind == "f":
        return (levels[which] + noise).astype(dtype)
    return (levels[which].astype(np.int64).astype(object) + noise.astype(object)).astype(dtype)


def _true_features(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Features computed here from the fixture: dtype range up to 16 bits, else data range."""
    values = image[valid].astype(np.float64) if image.dtype != np.bool_ else image[valid] * 1.0
    if image.dtype.kind == "f" or image.dtype.itemsize > 2:
        exact = image[valid].astype(object) if image.dtype.kind in "iu" else values
        low, high = min(exact), max(exact)
        return (np.array([float(v - low) for v in exact]) / float(high - low))[:, None]
    low, high = (0, 1) if image.dtype == np.bool_ else (np.iinfo(image.dtype).min,
                                                        np.iinfo(image.dtype).max)
    return ((values - low) / (high - low))[:, None]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_matches_scikit_learn_on_pixels_with_data(dtype, tmp_path, rng):
    image = _levels_image(np.dtype(dtype), rng)
    k = 2 if dtype == "bool" else 3
    valid = np.ones(image.shape, dtype=bool)
    if np.dtype(dtype).kind == "f":
        image[2, 3], image[4, 5], image[6, 7] = np.nan, np.inf, -np.inf
        valid[2, 3] = valid[4, 5] = valid[6, 7] = False
    [result] = segment(image, str(tmp_path / "out.zarr"), k=k, quiet=True, chunks=[13, 17])
    labels, recoloured, meta = read_output(str(tmp_path / "out.zarr"))
    assert recoloured.dtype == image.dtype
    assert result.no_data == int((~valid).sum()) == meta["pixels_without_data"]
    assert (labels[~valid] == 0).all() and (labels[valid] > 0).all()
    features = _true_features(image, valid)
    assert result.mse <= sklearn_mse(features, k) * 1.001 + 1e-12
    assert result.mse == pytest.approx(
        mse_of(features, result.centres_features), rel=1e-3, abs=1e-12
    )
    if np.dtype(dtype).kind in "iub":
        assert result.engine == "exact"


def test_dicom_like_padding_is_no_data(tmp_path, rng):
    """Item 8 (the no-data half): padding is label 0 and out of the fit; the four tissues are
    the four clusters (before, the padding took a cluster and water merged with soft tissue)."""
    from pipeline.execution import open_executor
    from pipeline.readers.memory import from_array

    tissues = np.array([-1000, -100, 0, 60])
    volume = tissues[rng.integers(0, 4, (6, 30, 30))] + rng.integers(-2, 3, (6, 30, 30))
    volume[:, :, :6] = -3024  # outside the field of view
    volume = volume.astype(np.int16)
    source = from_array(volume, name="ct", no_data=[(-3024, -3024)])
    config = build_config({"inputs": ["ct"], "output": str(tmp_path / "ct.zarr"), "k": 4,
                           "quiet": True, "chunks": [3, 16, 16]})
    plan = build_plan(config, [source])
    with open_executor(plan.config) as executor:
        [result] = plan.execute(executor)
    labels, recoloured, meta = read_output(str(tmp_path / "ct.zarr"))
    padding = volume == -3024
    assert (labels[padding] == 0).all() and (labels[~padding] > 0).all()
    assert meta["pixels_without_data"] == int(padding.sum()) == result.no_data
    assert meta["optimal"] is True
    assert sorted(round(c[0]) for c in meta["centres"]) == [-1000, -100, 0, 60]
    for hu in tissues:
        near = np.abs(volume.astype(int) - hu) <= 2
        assert len(np.unique(labels[near])) == 1
    assert (recoloured[padding] == 0).all()


def test_valid_range_marks_saturated_pixels_as_no_data(tmp_path, rng):
    image = rng.integers(1000, 1100, (30, 40)).astype(np.uint16)
    image[:, :10] = rng.integers(20000, 20100, (30, 10))
    image[5:8, 5:30] = 65535  # saturated
    [result] = segment(image, str(tmp_path / "o.zarr"), k=2, quiet=True,
                       valid_range=[0, 65534])
    labels, _, meta = read_output(str(tmp_path / "o.zarr"))
    saturated = image == 65535
    assert (labels[saturated] == 0).all() and (labels[~saturated] > 0).all()
    assert result.no_data == int(saturated.sum())
    assert any("valid_range" in rule for rule in meta["no_data_rules"])
    features = image[~saturated].astype(np.float64)[:, None] / 65535
    assert result.mse <= sklearn_mse(features, 2) * 1.001


def test_library_warnings_are_recorded_per_input(tmp_path, monkeypatch, photos):
    """A scikit-learn ConvergenceWarning during the fit reaches the metadata and the caller."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from pipeline.engines import sample as sample_engine

    original = sample_engine.fit_sample

    def noisy(rows, params):
        warnings.warn("Number of distinct clusters found smaller\nthan n_clusters",
                      ConvergenceWarning, stacklevel=1)
        return original(rows, params)

    monkeypatch.setattr(sample_engine, "fit_sample", noisy)
    with pytest.warns(ConvergenceWarning):
        [result] = segment(photos["coffee"][:50, :60], str(tmp_path / "w.zarr"), k=3,
                           quiet=True, engine="sample")
    assert result.metadata["warnings"] == [
        "ConvergenceWarning: Number of distinct clusters found smaller than n_clusters"
    ]
