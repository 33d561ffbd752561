"""The exact engine: weighted distinct values, lookup labels, 1-D optimum."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from pipeline.engines import tablefit
from pipeline.engines.base import FitParams, TooFewValues
from pipeline.engines.dp1d import optimal_kmeans_1d
from pipeline.engines.exact import ExactEngine
from pipeline.errors import ConfigError
from pipeline.features import make_feature_spec
from pipeline.labels import NearestCentreLabeller, label_image

from .helpers import pixel_objective, run_engine, sklearn_objective


def _spec(image: np.ndarray, **kwargs):
    n_channels = image.shape[-1] if image.ndim == 3 and image.shape[-1] <= 4 else 1
    spatial = image.shape[:-1] if n_channels > 1 else image.shape
    return make_feature_spec(image.dtype, n_channels, spatial, **kwargs)


@pytest.mark.parametrize("colour_space", ["rgb", "lab"])
def test_objective_from_summary_equals_objective_over_pixels(astronaut_small, colour_space):
    spec = _spec(astronaut_small, colour_space=colour_space)
    result = run_engine(ExactEngine(), astronaut_small, spec, FitParams(k=5), (50, 40, 3))
    assert result.engine == "exact"
    assert result.info["n_distinct"] == len(np.unique(astronaut_small.reshape(-1, 3), axis=0))
    brute = pixel_objective(astronaut_small, spec, result.centres)
    assert result.info["objective"] == pytest.approx(brute, rel=1e-9)


def test_centres_do_not_depend_on_chunking(noisy_rgb):
    spec = _spec(noisy_rgb)
    params = FitParams(k=6, random_state=3)
    a = run_engine(ExactEngine(), noisy_rgb, spec, params, (100, 77, 3))
    b = run_engine(ExactEngine(), noisy_rgb, spec, params, (256, 256, 3))
    np.testing.assert_array_equal(a.centres, b.centres)


def test_lookup_labels_equal_nearest_centre_labels(astronaut_small):
    spec = _spec(astronaut_small)
    result = run_engine(ExactEngine(), astronaut_small, spec, FitParams(k=4), (64, 50, 3))
    image = da.from_array(astronaut_small, chunks=(30, 70, 3))
    lookup = label_image(image, spec, result.labeller, 4).compute()
    nearest = label_image(image, spec, NearestCentreLabeller(spec, result.centres), 4).compute()
    np.testing.assert_array_equal(lookup, nearest)
    assert lookup.min() == 1 and lookup.max() == 4


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("k", [4, 8])
def test_mse_matches_scikit_learn_on_all_pixels(name, k):
    import skimage.data

    image = getattr(skimage.data, name)()
    spec = _spec(image)
    result = run_engine(ExactEngine(), image, spec, FitParams(k=k), (200, 256, 3))
    assert result.info["objective"] <= sklearn_objective(image, spec, k) * 1.001


@pytest.mark.parametrize("k", [4, 8])
def test_binned_path_matches_scikit_learn(noisy_rgb, k):
    spec = _spec(noisy_rgb)
    result = run_engine(ExactEngine(), noisy_rgb, spec, FitParams(k=k), (128, 100, 3))
    assert result.info["n_distinct"] > tablefit.RESTART_ROWS
    assert result.info["binned"]
    assert result.info["levels"][-1]["bits"] is None
    assert result.info["objective"] <= sklearn_objective(noisy_rgb, spec, k) * 1.001


def test_one_channel_is_optimal():
    rng = np.random.default_rng(0)
    volume = np.concatenate([rng.normal(m, 40, 3000) for m in (-500, 0, 80, 900)])
    volume = np.rint(volume).astype(np.int16).reshape(10, 30, 40)
    spec = _spec(volume)
    result = run_engine(ExactEngine(), volume, spec, FitParams(k=4), (4, 13, 40))
    assert result.optimal and result.engine == "exact"
    feats = spec.block_features(volume)[0][:, 0].astype(np.float64)
    values, counts = np.unique(feats, return_counts=True)
    best = optimal_kmeans_1d(values, counts.astype(np.float64), 4)
    np.testing.assert_allclose(result.centres[:, 0], best.centres)
    assert result.info["objective"] == pytest.approx(best.cost / volume.size, rel=1e-9)
    assert result.info["objective"] <= sklearn_objective(volume, spec, 4) * (1 + 1e-9)


def test_grey_photo_is_optimal():
    from skimage.data import camera

    image = camera()
    spec = _spec(image)
    result = run_engine(ExactEngine(), image, spec, FitParams(k=8), (100, 512))
    assert result.optimal
    assert result.info["objective"] <= sklearn_objective(image, spec, 8) * (1 + 1e-9)


def test_more_clusters_than_values_is_refused():
    image = np.repeat(np.arange(3, dtype=np.uint8), 20).reshape(6, 10)
    with pytest.raises(TooFewValues, match=r"k=4 is larger than the 3 distinct"):
        run_engine(ExactEngine(), image, _spec(image), FitParams(k=4))
    result = run_engine(ExactEngine(), image, _spec(image), FitParams(k=3))
    np.testing.assert_allclose(sorted(result.centres[:, 0]), np.arange(3) / 255)


def test_float_images_are_refused():
    image = np.zeros((4, 4), np.float32)
    spec = make_feature_spec(np.float32, 1, (4, 4), data_range=(0.0, 1.0))
    with pytest.raises(ConfigError, match="engine 'exact' does not apply"):
        ExactEngine().summarise(da.from_array(image), spec, FitParams(k=2))


def test_no_data_pixels_stay_out_of_the_table_and_get_label_zero():
    from pipeline.engines.lookup import LookupLabeller

    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[:, 6:] = (200, 10, 10, 255)
    rgba[:5, 6:] = (10, 10, 200, 255)
    spec = make_feature_spec(np.uint8, 4, (10, 12), has_alpha=True)
    result = run_engine(ExactEngine(), rgba, spec, FitParams(k=2), (4, 5, 4))
    assert result.info["n_distinct"] == 2 and result.stats[0, 0] == 60
    assert sorted(result.stats[0, 1:]) == [30, 30]
    assert isinstance(result.labeller, LookupLabeller)
    labels = label_image(da.from_array(rgba, chunks=(4, 5, 4)), spec, result.labeller, 2)
    labels = labels.compute()
    assert (labels[:, :6] == 0).all() and (labels[:, 6:] > 0).all()
    assert sorted(map(tuple, result.values)) == [(10, 10, 200), (200, 10, 10)]


def test_wide_integer_values_are_exact_and_too_many_fall_back(monkeypatch):
    values = np.array([-(2**62), 0, 50, 2**62 + 1], dtype=np.int64)
    image = np.tile(values, (6, 5))
    spec = make_feature_spec(np.int64, 1, image.shape,
                             data_range=(int(values.min()), int(values.max())))
    result = run_engine(ExactEngine(max_distinct=1 << 22), image, spec, FitParams(k=4), (3, 7))
    assert sorted(result.values[:, 0].tolist()) == sorted(values.tolist())
    assert result.optimal
    noisy = np.random.default_rng(0).integers(0, 2**40, (20, 30)).astype(np.int64)
    spec = make_feature_spec(np.int64, 1, noisy.shape, data_range=(0, 2**40))
    capped = run_engine(ExactEngine(max_distinct=100), noisy, spec, FitParams(k=3, n_init=2))
    assert capped.engine == "dask-ml" and "fallback" in capped.info


def _class_means(image: np.ndarray, labels: np.ndarray, k: int) -> list[list[float]]:
    """Each label's mean value per channel, from the generated array (exact sums: Python
    integers, one division)."""
    values = image.reshape(labels.size, -1).astype(np.int64)
    flat = labels.reshape(-1)
    return [[int(values[flat == j, c].sum()) / int((flat == j).sum())
             for c in range(values.shape[1])] for j in range(1, k + 1)]


def test_centres_in_input_units_are_the_exact_class_means(tmp_path):
    """An int16 volume of four values at k=3 and an 8-bit RGB image of three pure colours:
    a class of one value has that value as its centre exactly (it was -7.63e-06 for 0 and
    255.00000000000006 for 255), a class of several values its mean to float64 rounding (a
    mean of 148.38540 was 148.38502: the features are float32)."""
    import zarr

    import pipeline

    rng = np.random.default_rng(5)
    volume = rng.choice(np.array([0, 100, 200, 300], dtype=np.int16), (30, 40, 20),
                        p=[0.4, 0.3, 0.2, 0.1])
    rgb = np.zeros((30, 30, 3), dtype=np.uint8)
    rgb[:10] = 255
    rgb[10:18] = (10, 200, 30)
    rgb[18:19, :7] = (10, 201, 31)
    for name, image, k in (("volume", volume, 3), ("rgb", rgb, 3)):
        out = tmp_path / f"{name}.zarr"
        [result] = pipeline.segment(image, str(out), k=k, quiet=True)
        assert result.engine == "exact"
        labels = np.asarray(zarr.open_group(str(out), mode="r")["labels/clusters/0"])
        expected = _class_means(image, labels, k)
        assert result.metadata["centres"] == expected
        np.testing.assert_array_equal(result.centres, expected)
    assert sorted(map(tuple, result.metadata["centres"]))[0] == (0.0, 0.0, 0.0)

    model = pipeline.fit([volume, volume[::-1]], k=3)
    assert sorted(model.centres[:, 0])[:2] == [0.0, 100.0]
