"""Helpers shared by the engine tests."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from pipeline.engines.base import FitParams, FitResult
from pipeline.features import FeatureSpec
from pipeline.labels import nearest_centre


def run_engine(engine, image: np.ndarray, spec: FeatureSpec, params: FitParams,
               chunks=None) -> FitResult:
    """Summarise and fit ``image`` (chunked as given) with ``engine``."""
    array = da.from_array(image, chunks=chunks or image.shape)
    (summary,) = dask.compute(engine.summarise(array, spec, params))
    return engine.fit(summary, array, spec, params)


def pixel_objective(image: np.ndarray, spec: FeatureSpec, centres: np.ndarray) -> float:
    """Mean squared feature distance of every pixel to its nearest centre (brute force)."""
    feats, valid = spec.block_features(image)
    return float(nearest_centre(feats[valid], centres)[1].mean())


def sklearn_objective(image: np.ndarray, spec: FeatureSpec, k: int, n_init: int = 10) -> float:
    """The objective of scikit-learn's KMeans on all pixels, evaluated in float64."""
    from sklearn.cluster import KMeans

    feats, valid = spec.block_features(image)
    model = KMeans(k, n_init=n_init, random_state=0).fit(feats[valid])
    return pixel_objective(image, spec, model.cluster_centers_)
