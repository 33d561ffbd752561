"""The exact engine: K-Means on the weighted table of distinct pixel values.

For integer images whose features depend only on the value, the K-Means objective over all
pixels equals the objective over the distinct values weighted by their pixel counts. One pass
builds that table; the fit then costs the same whatever the image size, and labelling is a
lookup from value to label. One-channel tables are solved to the proven optimum by dynamic
programming.
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np

from pipeline.engines.base import FitParams, FitResult
from pipeline.engines.dp1d import MAX_CELLS, optimal_kmeans_1d
from pipeline.engines.keys import ValueCodec, exact_obstacle
from pipeline.engines.lloyd import assign
from pipeline.engines.lookup import LookupLabeller
from pipeline.engines.table import ValueTable, summarise_values
from pipeline.engines.tablefit import fit_table
from pipeline.errors import ConfigError
from pipeline.features import FeatureSpec


def require_codec(spec: FeatureSpec) -> ValueCodec:
    """The codec for ``spec``; :class:`ConfigError` when the exact engine does not apply."""
    obstacle = exact_obstacle(spec)
    if obstacle:
        raise ConfigError(f"engine 'exact' does not apply to this image: {obstacle}")
    return ValueCodec(spec)


def table_features(table: ValueTable, codec: ValueCodec) -> np.ndarray:
    """Features (float64) of the distinct values of ``table``, as pixels would get them."""
    return codec.spec.value_features(codec.unpack(table.keys)).astype(np.float64)


def uses_dp(spec: FeatureSpec, n_distinct: int, k: int) -> bool:
    """Whether the 1-D optimum is computed (one feature, table small enough)."""
    return spec.n_value_features == 1 and n_distinct * k <= MAX_CELLS


class ExactEngine:
    """Weighted K-Means on the distinct values; optimal by dynamic programming in 1-D."""

    name = "exact"

    def summarise(self, image: da.Array, spec: FeatureSpec, params: FitParams):
        return summarise_values(image, require_codec(spec))

    def fit(
        self, summary: ValueTable, image: da.Array, spec: FeatureSpec, params: FitParams
    ) -> FitResult:
        start = time.perf_counter()
        codec = require_codec(spec)
        k = params.k
        n_distinct = len(summary)
        if n_distinct < k:
            raise ConfigError(
                f"k={k} is larger than the {n_distinct} distinct value(s) in the image"
            )
        F = table_features(summary, codec)
        w = summary.counts.astype(np.float64)
        info: dict = {"n_distinct": n_distinct, "n_pixels": summary.n_pixels,
                      "summary_task_s": round(summary.seconds, 3)}
        if uses_dp(spec, n_distinct, k):
            order = np.argsort(F[:, 0], kind="stable")
            result = optimal_kmeans_1d(F[order, 0], w[order], k)
            centres = result.centres[:, None]
            optimal, n_iter = True, None
            info.update(method="dp-1d", binned=False, n_restarts=0)
        else:
            fit = fit_table(F, w, summary.keys, codec, k, n_init=params.n_init,
                            random_state=params.random_state, max_iter=params.max_iter)
            centres, optimal, n_iter = fit.centres, False, fit.n_iter
            info.update(method="weighted-kmeans", binned=len(fit.levels) > 1,
                        n_restarts=fit.n_restarts, levels=fit.levels,
                        refine_iterations=fit.n_iter)
        labels, dist, _, wsum, cost = assign(F, w, centres)
        stats = np.zeros((2, k + 1))
        stats[0, 1:] = wsum
        stats[1, 1:] = np.bincount(labels, weights=w * dist, minlength=k)
        info.update(objective=cost / summary.n_pixels,
                    fit_s=round(time.perf_counter() - start, 3))
        return FitResult(
            centres=np.asarray(centres, dtype=np.float64),
            engine=self.name,
            n_iter=n_iter,
            optimal=optimal,
            labeller=LookupLabeller.build(spec, codec, centres, summary.keys, labels),
            stats=stats,
            info=info,
        )
