"""The sample engine: scikit-learn's KMeans on a reproducible pixel sample."""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np

from pipeline.blocks import block_origins, spatial_block_keys
from pipeline.engines.base import FitParams, FitResult, TooFewValues
from pipeline.features import FeatureSpec
from pipeline.sampling import sample_features

#: Pixels sampled when ``params.sample`` is not set.
DEFAULT_SAMPLE = 100_000


def sample_size(params: FitParams) -> int:
    """Number of pixels to sample."""
    return int(params.sample) if params.sample else DEFAULT_SAMPLE


def canonical_rows(rows, k: int, image: da.Array | None = None,
                   spec: FeatureSpec | None = None) -> np.ndarray:
    """Sample rows as float64 in lexicographic order, so fits do not depend on the chunking.

    When the sample holds fewer than ``k`` distinct rows and ``image`` is given, the image is
    searched for ``k`` distinct rows (one more pass, only in that case): if it has them they
    join the sample (so every centre can start on its own value), otherwise
    :class:`TooFewValues` is raised, as the exact engine does.
    """
    rows = np.asarray(rows, dtype=np.float64)
    rows = rows[np.lexsort(rows.T[::-1])]
    if n_distinct_sorted(rows) >= k:
        return rows
    if image is None or spec is None:
        raise TooFewValues(k, n_distinct_sorted(rows))
    (extra,) = dask.compute(distinct_rows(image, spec, k))
    if len(extra) < k:
        raise TooFewValues(k, len(extra))
    rows = np.concatenate([rows, extra.astype(np.float64)])
    return rows[np.lexsort(rows.T[::-1])]


def n_distinct_sorted(rows: np.ndarray) -> int:
    """Number of distinct rows of lexicographically sorted ``rows``."""
    if len(rows) == 0:
        return 0
    return 1 + int(np.count_nonzero((np.diff(rows, axis=0) != 0).any(axis=1)))


def _smallest_distinct(rows: np.ndarray, k: int) -> np.ndarray:
    return np.unique(rows, axis=0)[:k] if len(rows) else rows


def _block_distinct(block: np.ndarray, spec: FeatureSpec, origin, k: int) -> np.ndarray:
    feats, valid = spec.block_features(block, origin)
    return _smallest_distinct(feats[valid], k)


def _merge_distinct(parts: list[np.ndarray], k: int) -> np.ndarray:
    return _smallest_distinct(np.concatenate(parts), k)


def distinct_rows(image: da.Array, spec: FeatureSpec, k: int):
    """Lazy: the ``k`` lexicographically smallest distinct feature rows of the pixels with data
    (fewer when the image has fewer), merged in a tree; memory ``O(k)`` per task."""
    spatial_ndim = len(spec.spatial_shape)
    block = dask.delayed(_block_distinct, pure=True)
    merge = dask.delayed(_merge_distinct, pure=True)
    parts = [
        block(b, spec, origin, k)
        for b, (_, origin, _) in zip(
            spatial_block_keys(image, spatial_ndim), block_origins(image, spatial_ndim),
            strict=True,
        )
    ]
    while len(parts) > 1:
        parts = [merge(parts[i : i + 8], k) for i in range(0, len(parts), 8)]
    return parts[0]


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
        rows = canonical_rows(summary, params.k, image, spec)
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
