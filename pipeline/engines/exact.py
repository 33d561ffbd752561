"""The exact engine: K-Means on the weighted table of distinct pixel values.

For integer images whose features depend only on the value, the K-Means objective over all
pixels equals the objective over the distinct values weighted by their pixel counts. One pass
builds that table; the fit then costs the same whatever the image size, and labelling is a
lookup from value to label. One-channel tables are solved to the proven optimum by dynamic
programming.
"""

from __future__ import annotations

import time

import dask
import dask.array as da
import numba
import numpy as np

from pipeline.engines.base import FitParams, FitResult, TooFewValues
from pipeline.engines.dp1d import MAX_CELLS, optimal_kmeans_1d
from pipeline.engines.keys import ValueCodec, exact_obstacle
from pipeline.engines.lloyd import assign
from pipeline.engines.lookup import LookupLabeller
from pipeline.engines.table import DENSE_KEY_BITS, ValueTable, summarise_values
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


@numba.njit(nogil=True, cache=True)  # no fastmath: the sums are those of np.bincount
def _cluster_offsets(bits, labels, weights, sign, start, sums, total):  # pragma: no cover
    # Per cluster and channel: the smallest value ``start`` (raw 64-bit patterns compared
    # after ``^ sign``: signed order with the sign bit; on entry the largest value), and the
    # weighted sum of offsets from it and the total weight (zero on entry), each added in row
    # order as np.bincount adds them. Outputs come allocated: less first-run compile time.
    n, c = bits.shape
    for i in range(n):
        j = labels[i]
        for f in range(c):
            if (bits[i, f] ^ sign) < (start[j, f] ^ sign):
                start[j, f] = bits[i, f]
    for i in range(n):
        j = labels[i]
        total[j] += weights[i]
        for f in range(c):
            offset = float(bits[i, f] - start[j, f])  # modulo 2^64, then rounded as astype
            sums[j, f] += weights[i] * offset


def exact_means(
    table: ValueTable, codec: ValueCodec, labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's mean value in input units: as float64 and rounded to the input's dtype.

    Means are taken as ``v0 + sum(w (v - v0)) / sum(w)`` with ``v0`` the cluster's smallest
    value and the offsets ``v - v0`` formed in 64-bit integers, so a cluster of one distinct
    value gives that value exactly for every integer dtype (the rounded mean also for
    int64/uint64 beyond 2^53); a cluster of several values is exact up to float64 rounding of
    its offsets. Centres converted back from features would add the features' rounding
    (float32 up to 16 bits: a class of 0s had the centre -7.63e-06).

    Parameters
    ----------
    table : ValueTable
    codec : ValueCodec
    labels : ndarray of int, shape (n_distinct,)
        Cluster (0-based) of each table row.
    k : int

    Returns
    -------
    means : ndarray of float64, shape (k, n_value_features)
        NaN for a cluster without values.
    values : ndarray, shape (k, n_value_features), the input dtype
        The means rounded to the nearest integer (0 for a cluster without values).
    """
    dtype = codec.dtype
    values = codec.unpack(table.keys)
    signed = dtype.kind == "i"
    wide = values.astype(np.int64 if signed else np.uint64)
    sign = np.uint64(1 << 63) if signed else np.uint64(0)
    start = np.full((k, wide.shape[1]), ~sign, dtype=np.uint64)
    sums = np.zeros((k, wide.shape[1]))
    total = np.zeros(k)
    _cluster_offsets(wide.view(np.uint64), np.ascontiguousarray(labels, dtype=np.intp),
                     table.counts.astype(np.float64), sign, start, sums, total)
    out = np.zeros((k, wide.shape[1]), dtype=wide.dtype)
    means = np.full((k, wide.shape[1]), np.nan)
    held = total > 0
    for c in range(wide.shape[1]):
        offset = sums[held, c] / total[held]
        out[held, c] = (start[held, c] + np.rint(offset).astype(np.uint64)).view(wide.dtype)
        means[held, c] = start[held, c].view(wide.dtype).astype(np.float64) + offset
    return means, out.astype(dtype)


class ExactEngine:
    """Weighted K-Means on the distinct values; optimal by dynamic programming in 1-D.

    Parameters
    ----------
    max_distinct : int or None
        With a cap (``engine: auto`` on wide integer keys), a summary finding more distinct
        values falls back to the dask-ml engine; without one the table grows as needed.
    """

    name = "exact"

    def __init__(self, max_distinct: int | None = None) -> None:
        self.max_distinct = max_distinct

    def summarise(self, image: da.Array, spec: FeatureSpec, params: FitParams):
        codec = require_codec(spec)
        cap = self.max_distinct if codec.key_bits > DENSE_KEY_BITS else None
        return summarise_values(image, codec, max_distinct=cap)

    def fit(
        self, summary: ValueTable, image: da.Array, spec: FeatureSpec, params: FitParams
    ) -> FitResult:
        if summary.overflowed:
            return self._fall_back(image, spec, params)
        start = time.perf_counter()
        codec = require_codec(spec)
        k = params.k
        n_distinct = len(summary)
        if n_distinct < k:
            raise TooFewValues(k, n_distinct)
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
            # The optimum's own intervals, not a nearest-centre search: values whose features
            # coincide in float64 (64-bit integers spanning more than 2^53) stay in the
            # clusters the optimum put them in, so k distinct values give k clusters.
            ends = np.append(result.starts[1:], n_distinct)
            dp_labels = np.empty(n_distinct, dtype=np.int32)
            dp_labels[order] = np.repeat(np.arange(k, dtype=np.int32), ends - result.starts)
        else:
            fit = fit_table(F, w, summary.keys, codec, k, n_init=params.n_init,
                            random_state=params.random_state, max_iter=params.max_iter)
            centres, optimal, n_iter = fit.centres, False, fit.n_iter
            info.update(method="weighted-kmeans", binned=len(fit.levels) > 1,
                        n_restarts=fit.n_restarts, levels=fit.levels,
                        refine_iterations=fit.n_iter)
        labels, dist, _, wsum, cost = assign(F, w, centres)
        if optimal:
            labels = dp_labels
            dist = (F[:, 0] - centres[labels, 0]) ** 2
            wsum = np.bincount(labels, weights=w, minlength=k)
            cost = float(w @ dist)
        stats = np.zeros((2, k + 1))
        stats[0, 0] = summary.no_data
        stats[0, 1:] = wsum
        stats[1, 1:] = np.bincount(labels, weights=w * dist, minlength=k)
        info.update(objective=cost / max(summary.n_pixels, 1),
                    fit_s=round(time.perf_counter() - start, 3))
        means, values = (exact_means(summary, codec, labels, k) if spec.colour_space == "rgb"
                         else (None, None))
        return FitResult(
            centres=np.asarray(centres, dtype=np.float64),
            engine=self.name,
            n_iter=n_iter,
            optimal=optimal,
            labeller=LookupLabeller.build(spec, codec, centres, summary.keys, labels,
                                          summary.n_pixels + summary.no_data),
            stats=stats,
            values=values,
            means=means,
            info=info,
        )

    def _fall_back(self, image: da.Array, spec: FeatureSpec, params: FitParams) -> FitResult:
        """Fit with dask-ml when the table outgrew :attr:`max_distinct`."""
        from pipeline.engines.daskml import DaskMLEngine

        engine = DaskMLEngine()
        (sample,) = dask.compute(engine.summarise(image, spec, params))
        result = engine.fit(sample, image, spec, params)
        result.info["fallback"] = (
            f"exact: more than {self.max_distinct} distinct values, fitted with dask-ml"
        )
        return result
