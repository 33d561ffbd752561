"""The sample engine: scikit-learn's KMeans on a reproducible pixel sample."""

from __future__ import annotations

import time

import dask.array as da
import numpy as np

from pipeline.engines.base import FitParams, FitResult
from pipeline.errors import ConfigError
from pipeline.features import FeatureSpec
from pipeline.sampling import sample_features

#: Pixels sampled when ``params.sample`` is not set.
DEFAULT_SAMPLE = 100_000


def sample_size(params: FitParams) -> int:
    """Number of pixels to sample."""
    return int(params.sample) if params.sample else DEFAULT_SAMPLE


def canonical_rows(rows, k: int) -> np.ndarray:
    """Sample rows as float64 in lexicographic order, so fits do not depend on the chunking.

    Raises :class:`ConfigError` when fewer than ``k`` rows have data.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) < k:
        raise ConfigError(f"k={k} is larger than the {len(rows)} sampled pixels with data")
    return rows[np.lexsort(rows.T[::-1])]


def fit_sample(rows: np.ndarray, params: FitParams):
    """scikit-learn KMeans (``n_init`` k-means++ restarts) on ``rows``."""
    from sklearn.cluster import KMeans

    return KMeans(
        n_clusters=params.k,
        n_init=params.n_init,
        max_iter=params.max_iter,
        tol=params.tol,
        random_state=params.random_state,
    ).fit(rows)


class SampleEngine:
    """scikit-learn KMeans on a sample of pixels drawn independently of the chunking."""

    name = "sample"

    def summarise(self, image: da.Array, spec: FeatureSpec, params: FitParams):
        return sample_features(image, spec, sample_size(params), params.random_state)

    def fit(self, summary, image: da.Array, spec: FeatureSpec, params: FitParams) -> FitResult:
        start = time.perf_counter()
        rows = canonical_rows(summary, params.k)
        model = fit_sample(rows, params)
        return FitResult(
            centres=np.asarray(model.cluster_centers_, dtype=np.float64),
            engine=self.name,
            n_iter=int(model.n_iter_),
            info={
                "fit_rows": len(rows),
                "n_restarts": params.n_init,
                "objective_sample": float(model.inertia_) / len(rows),
                "fit_s": round(time.perf_counter() - start, 3),
            },
        )
