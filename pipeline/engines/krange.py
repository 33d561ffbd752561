"""The objective curve over a range of k, from an engine's computed summary (``k: auto``).

:func:`mse_curve` fits every k in ``k_min - 1 .. k_max + 1`` without another pass over the
pixels where the summary allows it; :func:`choose_k_auto` then applies
:func:`pipeline.autok.choose_k` (a heuristic) and the plan runs the engine's real fit at the
chosen k.

How the curve is fitted, by summary:

- exact engine, one feature: the dynamic programming of :mod:`pipeline.engines.dp1d` fills one
  row per number of clusters, and row ``q`` ends with the optimal cost for ``q + 1`` clusters,
  so one run to ``k_max + 1`` gives the proven optimum of every k (:func:`optimal_costs_1d`,
  ``O(k n log n)`` for ``n`` distinct values);
- exact engine, several features: weighted K-Means of the table
  (:func:`pipeline.engines.tablefit.fit_table`, the exact engine's own fit) for each k;
- binned engine: its own fit on its bins for each k (dynamic programming on the bin means for
  one feature, every k in one run; weighted K-Means of the binnings otherwise), plus the
  within-bin sum of squares, so the curve is that of bin-respecting clusterings of the pixels;
- every other summary (dask-ml, sample, or an exact table that overflowed its cap): the
  reproducible pixel sample (:func:`pipeline.sampling.sample_features`, the engine's own sample
  when its summary is one, ``sample`` pixels or 100 000 by default), scikit-learn KMeans for each
  k. The real fit at the chosen k then runs on all the pixels as the engine does.

k = 1 is the variance in every case (no fit).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numba
import numpy as np

from pipeline.autok import choose_k
from pipeline.engines.base import Engine, FitParams
from pipeline.engines.dp1d import _fill_row, _ssq, prefix_sums
from pipeline.engines.table import ValueTable
from pipeline.errors import ConfigError
from pipeline.features import FeatureSpec

#: Default range of ``k: auto``.
K_MIN = 2
K_MAX = 12
#: Largest ``k_max`` accepted (the curve fits ``k_max + 1`` models).
K_MAX_LIMIT = 64


def check_range(k_min: int, k_max: int) -> None:
    """Raise :class:`ConfigError` unless ``2 <= k_min <= k_max <= K_MAX_LIMIT``."""
    if not 2 <= k_min <= k_max <= K_MAX_LIMIT:
        raise ConfigError(
            f"k_min and k_max must satisfy 2 <= k_min <= k_max <= {K_MAX_LIMIT}, "
            f"got k_min={k_min}, k_max={k_max}"
        )


@numba.njit(nogil=True, cache=True)
def _all_costs(cw, cs, css, k_max):  # pragma: no cover - compiled
    n = len(cw) - 1
    costs = np.zeros(k_max)
    prev = np.empty(n)
    for i in range(n):
        prev[i] = _ssq(np.int64(0), i, cw, cs, css)  # not a literal 0: one compile of _ssq
    costs[0] = prev[n - 1]
    cur = np.full(n, np.inf)
    back = np.zeros(n, dtype=np.int32)
    for q in range(1, min(k_max, n)):
        cur[:] = np.inf
        _fill_row(q, prev, cur, back, cw, cs, css)
        costs[q] = cur[n - 1]
        prev, cur = cur, prev
    return costs


def optimal_costs_1d(x: np.ndarray, w: np.ndarray, k_max: int) -> np.ndarray:
    """Optimal weighted 1-D K-Means cost for every k in ``1..k_max`` in one run.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Values in non-decreasing order.
    w : ndarray, shape (n,)
        Positive weights.
    k_max : int

    Returns
    -------
    ndarray of float64, shape (k_max,)
        ``costs[k - 1]``: weighted within-cluster sum of squares of the optimum with k
        clusters (0 for ``k >= n``). Equal to :func:`~pipeline.engines.dp1d.optimal_kmeans_1d`
        ``(x, w, k).cost`` for each k.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(k_max)
    costs = np.maximum(_all_costs(*prefix_sums(x, w), int(k_max)), 0.0)
    # Each value its own cluster: exactly 0, where the prefix sums leave round-off (5.7e-13
    # for 4 grey levels), which made k auto skip past k = n to a k the image cannot have.
    costs[len(x) - 1:] = 0.0
    return costs


def _variance(X: np.ndarray, w: np.ndarray) -> float:
    mean = np.average(X, axis=0, weights=w)
    return float(w @ ((X - mean) ** 2).sum(axis=1) / w.sum())


def _table_curve(summary: ValueTable, spec: FeatureSpec, params: FitParams,
                 ks: range) -> tuple[dict[int, float], str]:
    from pipeline.engines.exact import require_codec, table_features
    from pipeline.engines.tablefit import fit_table

    codec = require_codec(spec)
    F = table_features(summary, codec)
    w = summary.counts.astype(np.float64)
    total = float(w.sum())
    n = len(F)
    if spec.n_value_features == 1:
        order = np.argsort(F[:, 0], kind="stable")
        costs = optimal_costs_1d(F[order, 0], w[order], ks.stop - 1)
        return {k: float(costs[k - 1]) / total for k in ks}, "dp-1d (optimal for every k)"
    curve = {}
    for k in ks:
        if k == 1:
            curve[k] = _variance(F, w)
        elif k >= n:
            curve[k] = 0.0
        else:
            fit = fit_table(F, w, summary.keys, codec, k, n_init=params.n_init,
                            random_state=params.random_state, max_iter=params.max_iter)
            curve[k] = fit.cost / total
    return curve, "weighted k-means of the table of distinct values"


def _bin_curve(summary: Any, spec: FeatureSpec, params: FitParams,
               ks: range) -> tuple[dict[int, float], str]:
    """The binned engine's own fit on its bins for each k, as a pixel mse: the cost of the bin
    means plus the within-bin sum of squares (exact for assignments that keep bins whole)."""
    from pipeline.engines.binned import _levels, _within_ss, fit_levels
    from pipeline.engines.bins import grid_for
    from pipeline.engines.lloyd import assign

    grid = grid_for(spec)
    X = summary.means(grid)
    w = summary.counts.astype(np.float64)
    total = float(w.sum())
    Xc = X - np.average(X, axis=0, weights=w)
    ssw = float(summary.within_ss(grid).sum())
    n = len(X)
    if X.shape[1] == 1:
        order = np.argsort(Xc[:, 0], kind="stable")
        costs = optimal_costs_1d(Xc[order, 0], w[order], ks.stop - 1)
        return ({k: (float(costs[k - 1]) + ssw) / total for k in ks},
                "dp-1d on the bin means (optimal for every k) plus the within-bin variance")
    ss_total = ssw + float(w @ (Xc * Xc).sum(axis=1))
    curve = {}
    for k in ks:
        if k == 1:
            curve[k] = ss_total / total
        elif k >= n:
            curve[k] = ssw / total
        else:
            levels = _levels(Xc, w, summary.keys, grid.bits, k)
            centres, _ = fit_levels(levels, k, params)
            last = levels[-1]
            cost = assign(last.means, last.weights, centres)[-1] + _within_ss(ss_total, last)
            curve[k] = float(cost) / total
    return curve, "weighted k-means of the bins plus the within-bin variance"


def _sample_curve(rows: np.ndarray, params: FitParams, ks: range) -> tuple[dict[int, float], str]:
    from pipeline.engines.sample import fit_sample, n_distinct_sorted

    rows = np.asarray(rows, dtype=np.float64)
    rows = rows[np.lexsort(rows.T[::-1])]  # independent of the chunking, as the engines do
    n_distinct = n_distinct_sorted(rows)
    curve = {}
    for k in ks:
        if len(rows) == 0 or k >= n_distinct:
            curve[k] = 0.0
        elif k == 1:
            curve[k] = _variance(rows, np.ones(len(rows)))
        else:
            model = fit_sample(rows, dataclasses.replace(params, k=k))
            curve[k] = float(model.inertia_) / len(rows)
    return curve, f"k-means of a {len(rows)}-pixel sample"


def mse_curve(
    engine: Engine,
    summary: Any,
    image: da.Array,
    spec: FeatureSpec,
    params: FitParams,
    k_min: int = K_MIN,
    k_max: int = K_MAX,
    compute: Callable[..., tuple] = dask.compute,
) -> tuple[dict[int, float], dict[str, Any]]:
    """Mean squared feature distance to the nearest centre for each k in
    ``k_min - 1 .. k_max + 1``.

    Parameters
    ----------
    engine : Engine
        The engine chosen for the image (only its kind and summary are used).
    summary : object
        ``engine.summarise(...)`` computed.
    image, spec, params
        As given to ``engine.fit``; ``params.k`` is ignored.
    k_min, k_max : int
    compute : callable
        ``compute(*lazy) -> values``, for the one extra pass when a sample must be drawn (an
        exact table that overflowed, or a summary that is neither a table nor a sample).

    Returns
    -------
    curve : dict of int to float
    info : dict
        ``method`` of the curve and ``curve_s`` (seconds).
    """
    from pipeline.engines.sample import sample_size
    from pipeline.sampling import sample_features

    start = time.perf_counter()
    ks = range(k_min - 1, k_max + 2)
    from pipeline.engines.bins import BinTable

    if isinstance(summary, ValueTable) and not summary.overflowed:
        curve, method = _table_curve(summary, spec, params, ks)
    elif isinstance(summary, BinTable):
        curve, method = _bin_curve(summary, spec, params, ks)
    else:
        rows = summary
        if not (isinstance(rows, np.ndarray) and rows.ndim == 2):
            (rows,) = compute(
                sample_features(image, spec, sample_size(params), params.random_state)
            )
        curve, method = _sample_curve(np.asarray(rows), params, ks)
    return curve, {"method": method, "curve_s": round(time.perf_counter() - start, 3)}


def choose_k_auto(
    engine: Engine,
    summary: Any,
    image: da.Array,
    spec: FeatureSpec,
    params: FitParams,
    k_min: int = K_MIN,
    k_max: int = K_MAX,
    compute: Callable[..., tuple] = dask.compute,
) -> tuple[int, dict[str, Any]]:
    """Pick k for an image from its engine's summary (a heuristic: see :mod:`pipeline.autok`).

    Returns
    -------
    k : int
        In ``k_min .. k_max``.
    info : dict
        For the metadata (``k_auto``): ``k``, ``k_min``, ``k_max``, ``curve`` (``{k: mse}``,
        keys as strings), ``scores``, ``rule``, ``method``, ``curve_s``.

    Raises
    ------
    ConfigError
        A range outside ``2 <= k_min <= k_max <= K_MAX_LIMIT``.
    """
    check_range(k_min, k_max)
    curve, how = mse_curve(engine, summary, image, spec, params, k_min, k_max, compute)
    k, info = choose_k(curve, k_min, k_max)
    return k, {"k": k, "k_min": k_min, "k_max": k_max, **info, **how,
               "heuristic": True, "engine": getattr(engine, "name", type(engine).__name__)}


__all__ = ["K_MAX", "K_MIN", "check_range", "choose_k_auto", "mse_curve", "optimal_costs_1d"]
