"""The sample and dask-ml engines."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engines.base import FitParams, TooFewValues
from pipeline.engines.daskml import DaskMLEngine
from pipeline.engines.sample import SampleEngine
from pipeline.features import make_feature_spec

from .helpers import pixel_objective, run_engine, sklearn_objective


@pytest.fixture(scope="module")
def float_image(astronaut_small) -> np.ndarray:
    rng = np.random.default_rng(0)
    return astronaut_small / 255.0 + rng.normal(0, 0.01, astronaut_small.shape)


def _spec(image, **kwargs):
    return make_feature_spec(
        image.dtype, 3, image.shape[:2], data_range=(float(image.min()), float(image.max())),
        **kwargs,
    )


def test_sample_engine_is_reproducible_and_independent_of_chunking(float_image):
    spec = _spec(float_image)
    params = FitParams(k=4, sample=3000, n_init=3)
    a = run_engine(SampleEngine(), float_image, spec, params, (50, 60, 3))
    b = run_engine(SampleEngine(), float_image, spec, params, (128, 128, 3))
    assert a.engine == "sample"
    assert a.info["fit_rows"] == 3000
    np.testing.assert_array_equal(a.centres, b.centres)


def test_sample_engine_default_size(astronaut_small):
    spec = make_feature_spec(np.uint8, 3, astronaut_small.shape[:2])
    result = run_engine(SampleEngine(), astronaut_small, spec, FitParams(k=3, n_init=2))
    assert result.info["fit_rows"] == astronaut_small.shape[0] * astronaut_small.shape[1]


def test_daskml_engine_starts_from_the_sample_fit(float_image):
    spec = _spec(float_image, spatial_weight=0.3)
    params = FitParams(k=5)
    a = run_engine(DaskMLEngine(), float_image, spec, params, (50, 60, 3))
    b = run_engine(DaskMLEngine(), float_image, spec, params, (128, 128, 3))
    assert a.engine == "dask-ml"
    assert a.centres.shape == (5, 5)
    np.testing.assert_allclose(a.centres, b.centres, atol=1e-5)
    mse = pixel_objective(float_image, spec, a.centres)
    assert mse <= sklearn_objective(float_image, spec, 5) * 1.001


def test_daskml_engine_on_a_sample(float_image):
    spec = _spec(float_image)
    result = run_engine(DaskMLEngine(), float_image, spec, FitParams(k=3, sample=2000))
    assert result.info["fit_rows"] == 2000


def test_too_few_pixels(float_image):
    spec = _spec(float_image[:2, :2])
    with pytest.raises(TooFewValues, match="k=5 is larger than the 4 distinct"):
        run_engine(SampleEngine(), float_image[:2, :2], spec, FitParams(k=5))
