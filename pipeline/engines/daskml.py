"""The dask-ml engine: Lloyd iterations across the workers on a Dask feature matrix."""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np

from pipeline.blocks import block_origins, spatial_block_keys
from pipeline.engines.base import FitParams, FitResult, TooFewValues
from pipeline.engines.sample import canonical_rows, fit_sample, sample_size
from pipeline.features import FeatureSpec
from pipeline.sampling import sample_features

#: Feature matrices up to this size are persisted in worker memory for the iterations;
#: larger ones are re-read from storage on each pass, keeping memory flat.
PERSIST_LIMIT_BYTES = 2 * 1024**3


def _valid_features(block: np.ndarray, spec: FeatureSpec, origin) -> np.ndarray:
    feats, valid = spec.block_features(block, origin)
    return feats if valid.all() else feats[valid]


def feature_matrix(image: da.Array, spec: FeatureSpec) -> da.Array:
    """Lazy ``(n_valid_pixels, n_features)`` matrix (``spec.feature_dtype``), one row-chunk per
    image block.

    Row counts are unknown (NaN) when the image may hold pixels without data.
    """
    spatial_ndim = len(spec.spatial_shape)
    may_have_nan = bool(spec.no_data_rules)
    fn = dask.delayed(_valid_features, pure=True)
    parts = []
    for block, (_, origin, shape) in zip(
        spatial_block_keys(image, spatial_ndim), block_origins(image, spatial_ndim), strict=True
    ):
        rows = np.nan if may_have_nan else int(np.prod(shape))
        parts.append(
            da.from_delayed(
                fn(block, spec, origin), shape=(rows, spec.n_features), dtype=spec.feature_dtype
            )
        )
    return da.concatenate(parts, axis=0)


class DaskMLEngine:
    """dask-ml's Lloyd iterations on the cluster, started from a fit on a pixel sample.

    The start is scikit-learn's KMeans (``n_init`` k-means++ restarts) on a reproducible sample,
    not dask-ml's k-means||, so results do not depend on the chunking. dask-ml stops when the
    squared centre shift is below its ``tol``; it is given scikit-learn's relative tolerance
    (``tol`` times the mean feature variance).
    """

    name = "dask-ml"

    def summarise(self, image: da.Array, spec: FeatureSpec, params: FitParams):
        return sample_features(image, spec, sample_size(params), params.random_state)

    def fit(self, summary, image: da.Array, spec: FeatureSpec, params: FitParams) -> FitResult:
        from dask_ml.cluster import KMeans

        start = time.perf_counter()
        rows = canonical_rows(summary, params.k, image, spec)
        init = fit_sample(rows, params).cluster_centers_
        tol = params.tol * float(np.mean(np.var(rows, axis=0)))
        if params.sample:
            X = da.from_array(rows, chunks=(max(1, -(-len(rows) // 8)), rows.shape[1]))
            persisted = False
        else:
            X = feature_matrix(image, spec)
            persisted = X.nbytes < PERSIST_LIMIT_BYTES if not np.isnan(X.shape[0]) else (
                image.nbytes * 4 < PERSIST_LIMIT_BYTES
            )
            if persisted:
                X = X.persist()
            if np.isnan(X.shape[0]):
                X = X.compute_chunk_sizes()
        n_rows = X.shape[0]
        if n_rows < params.k:
            raise TooFewValues(params.k, int(n_rows))
        model = KMeans(
            n_clusters=params.k,
            init=init.astype(X.dtype),
            random_state=params.random_state,
            max_iter=params.max_iter,
            tol=tol,
        )
        model.fit(X)
        return FitResult(
            centres=np.asarray(model.cluster_centers_, dtype=np.float64),
            engine=self.name,
            n_iter=int(model.n_iter_),
            info={
                "fit_rows": int(n_rows),
                "persisted": bool(persisted),
                "init": f"scikit-learn KMeans on a {len(rows)}-pixel sample",
                "n_restarts": params.n_init,
                "fit_s": round(time.perf_counter() - start, 3),
            },
        )
