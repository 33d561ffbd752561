"""The binned engine: K-Means on feature vectors binned on a fine grid, refined on the pixels.

For images the exact engine does not take (floating point, 16-bit colour, many channels, wide
integers), one pass bins every pixel's features on a fine grid keeping each bin's exact weight,
feature sum and sum of squares (:mod:`pipeline.engines.bins`). For any assignment that keeps bins
whole, the objective over the pixels is then exact: ``sum_b W_b ||m_b - c_b||^2 + SSW``, with
``m_b`` the bin means and ``SSW`` the total within-bin sum of squares. The fit runs on the bins:

* one feature: the proven optimum of the weighted bin means by dynamic programming
  (:func:`~pipeline.engines.dp1d.optimal_kmeans_1d`);
* several: weighted k-means++ restarts and Lloyd on coarse-to-fine binnings, as the exact engine
  does on its table (:mod:`pipeline.engines.tablefit`).

Exact passes over the pixels (:mod:`pipeline.engines.pixelpass`) then assign every pixel to its
true nearest centre, giving the exact objective and per-label statistics of the centres and the
gain the next Lloyd step is guaranteed to bring (the cluster sizes times the squared moves of
the centres to their cluster means); another pass runs only while that gain matters. The
statistics of the last pass are returned, so labelling needs no further pass for them. Labels
are the nearest centre of each pixel.

How much binning can matter is bounded: for any centres, the root of the pixel objective and
the root of the objective of the bin means differ by at most ``sqrt(SSW)`` (distances to a set
are 1-Lipschitz; Minkowski's inequality over the pixels). For one feature this turns the optimum
on the bin means ``D*`` into a lower bound on the pixel optimum, ``(sqrt(D*) - sqrt(SSW))^2``,
recorded with the result's proven distance from optimal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from pipeline.engines.base import FitParams, FitResult, TooFewValues
from pipeline.engines.bins import BinGrid, BinTable, finer_grid, grid_for, summarise_bins
from pipeline.engines.dp1d import MAX_CELLS, optimal_kmeans_1d
from pipeline.engines.lloyd import assign, weighted_lloyd
from pipeline.engines.pixelpass import FastNearestLabeller, count_distinct, lloyd_pass
from pipeline.engines.tablefit import (
    KEEP,
    KEEP_MAX,
    RESTART_ROWS,
    RESTARTS_PER_INIT,
    ROW_BUDGET,
    RTOL,
    Level,
    _best_distinct,
    restarts,
)
from pipeline.errors import ConfigError
from pipeline.features import FeatureSpec

#: Most bins the weighted Lloyd refinement runs on (finer binnings are left to the pixel pass).
FIT_ROWS = 1 << 18
#: A binning is an intermediate level only if it has at least this many times the rows of the
#: coarser one before it.
LEVEL_GROWTH = 4

#: Passes over the pixels stop when the next Lloyd step is guaranteed to gain less than this
#: fraction of the objective (or after ``MAX_PASSES``).
REFINE_RTOL = 1e-5
MAX_PASSES = 10

#: A first pixel pass guaranteeing a gain above this fraction of the objective predicts three or
#: more passes until :data:`REFINE_RTOL` (each gains about half the one before), where a finer
#: binning costs one summary pass and usually one pixel pass: it is made then, when proven small
#: enough.
REGRID_GAIN = 5e-5
#: Most bins of that finer binning (a bound proven from the coarse table before it is made).
REGRID_ROWS = FIT_ROWS

#: Most value features the engine bins (beyond, grids are too coarse to help).
MAX_FEATURES = 16


def binned_obstacle(spec: FeatureSpec) -> str | None:
    """Why the binned engine cannot summarise images of ``spec``, or ``None`` when it can."""
    if not spec.is_value_only:
        return "its features include spatial coordinates"
    if spec.n_value_features > MAX_FEATURES:
        return f"it has {spec.n_value_features} feature channels (at most {MAX_FEATURES})"
    return None


def _require(spec: FeatureSpec) -> None:
    obstacle = binned_obstacle(spec)
    if obstacle:
        raise ConfigError(f"engine 'binned' does not apply to this image: {obstacle}")


def _within_ss(levels_ss_total: float, level: Level) -> float:
    """Within-bin sum of squares of ``level`` from the total sum of squares about the origin."""
    between = float(((level.sums**2).sum(axis=1) / level.weights).sum())
    return max(levels_ss_total - between, 0.0)


def _levels(X: np.ndarray, w: np.ndarray, keys: np.ndarray, bits: int, k: int) -> list[Level]:
    """Binnings to fit on, coarse to fine: the coarsest with at most ``RESTART_ROWS`` bins,
    then finer ones growing by ``LEVEL_GROWTH``, the last with at most ``FIT_ROWS`` bins."""
    d = X.shape[1]
    level = Level(bits, np.asarray(keys, dtype=np.uint64), w, X * w[:, None])
    chain = [level]
    while level.bits > 1 and len(level.keys) > max(RESTART_ROWS, 8 * k):
        coarser = level.coarser(d)
        if len(coarser.keys) < k:
            break
        chain.append(coarser)
        level = coarser
    chain = chain[::-1]
    out = [chain[0]]
    for lv in chain[1:]:
        if len(lv.keys) > FIT_ROWS:
            break
        if len(lv.keys) >= LEVEL_GROWTH * len(out[-1].keys) or lv is chain[-1]:
            out.append(lv)
    return out


def fit_levels(levels: list[Level], k: int, params: FitParams) -> tuple[np.ndarray, list[dict]]:
    """Restarts on the first level, the best few refined on each finer level; best centres."""
    n_restarts = max(1, RESTARTS_PER_INIT * params.n_init)
    first = levels[0]
    results = restarts(first.means, first.weights, k, n_restarts, params.random_state,
                       params.max_iter)
    record = [{"bits": first.bits, "rows": len(first.keys),
               "iterations": sum(r.n_iter for r in results)}]
    for lv in levels[1:]:
        keep = min(KEEP_MAX, max(KEEP, ROW_BUDGET // len(lv.keys)))
        results = [
            weighted_lloyd(lv.means, lv.weights, r.centres, max_iter=params.max_iter, rtol=RTOL)
            for r in _best_distinct(results, keep)
        ]
        record.append({"bits": lv.bits, "rows": len(lv.keys),
                       "iterations": sum(r.n_iter for r in results)})
    best = min(results, key=lambda r: r.cost)
    return best.centres, record


@dataclass
class Refined:
    """Outcome of :func:`refine`.

    Attributes
    ----------
    centres : ndarray, shape (k, d)
        The last centres measured (float64, feature units).
    stats : ndarray, shape (2, k + 1)
        Their pixel counts and sums of squared distances per label (column 0: pixels without
        data, count only).
    passes : list of dict
        Each pass's objective (mse) and the gain per pixel its next Lloyd step guarantees.
    means : ndarray, shape (k, d)
        The cluster means of the last pass: the next Lloyd step's centres.
    converged : bool
        Whether the last pass's guaranteed gain was below :data:`REFINE_RTOL` of the objective.
    """

    centres: np.ndarray
    stats: np.ndarray
    passes: list[dict]
    means: np.ndarray
    converged: bool

    @property
    def objective(self) -> float:
        """Mean squared distance of the pixels to :attr:`centres`."""
        return self.passes[-1]["objective"]


def refine(
    image: da.Array, spec: FeatureSpec, centres: np.ndarray, n_pixels: int,
    max_passes: int = MAX_PASSES,
) -> Refined:
    """Exact passes over the pixels from ``centres``: each measures the objective of its centres
    and the gain the next Lloyd step is guaranteed to bring (``sum_j n_j ||mean_j - c_j||^2``);
    passes stop when that gain is below :data:`REFINE_RTOL` of the objective, or after
    ``max_passes``.
    """
    spatial = int(np.prod(image.shape[: len(spec.spatial_shape)]))
    record = []
    for i in range(max_passes):
        result = lloyd_pass(image, spec, centres)
        cost = float(result.sse.sum())
        gain = float(result.counts @ ((result.means - centres) ** 2).sum(axis=1))
        record.append({"objective": cost / n_pixels, "next_step_gain": gain / n_pixels})
        converged = gain <= REFINE_RTOL * cost
        if converged or i == max_passes - 1:
            break
        centres = result.means
    stats = np.zeros((2, len(centres) + 1))
    stats[0, 0] = spatial - int(result.counts.sum())
    stats[0, 1:] = result.counts
    stats[1, 1:] = result.sse
    return Refined(np.asarray(centres, dtype=np.float64), stats, record,
                   np.asarray(result.means, dtype=np.float64), converged)


def fit_finer(
    image: da.Array, spec: FeatureSpec, grid: BinGrid, start: np.ndarray, origin: np.ndarray,
    params: FitParams,
) -> tuple[np.ndarray, dict]:
    """Bin every pixel on ``grid`` (one summary pass) and run weighted Lloyd on its bins from
    ``start``.

    Returns
    -------
    centres : ndarray, shape (k, d)
        Float64, feature units.
    info : dict
        The grid, its bins, within-bin sum of squares per pixel and the binned objective.
    """
    t0 = time.perf_counter()
    (table,) = dask.compute(summarise_bins(image, spec, grid))
    n_pixels = table.n_pixels
    X = table.means(grid) - origin
    w = table.counts.astype(np.float64)
    result = weighted_lloyd(X, w, np.asarray(start) - origin, max_iter=params.max_iter,
                            rtol=RTOL)
    ssw = float(table.within_ss(grid).sum())
    return result.centres + origin, {
        "grid_bits_per_feature": grid.bits,
        "n_bins": len(table),
        "within_bin_mse": ssw / n_pixels,
        "binned_objective": (float(result.cost) + ssw) / n_pixels,
        "iterations": result.n_iter,
        "summary_task_s": round(table.seconds, 3),
        "s": round(time.perf_counter() - t0, 3),
    }


def refine_or_regrid(
    image: da.Array, spec: FeatureSpec, summary: BinTable, grid: BinGrid, centres: np.ndarray,
    origin: np.ndarray, params: FitParams,
) -> tuple[Refined, dict | None]:
    """:func:`refine` ``centres``; when the first pass predicts many more, fit on a finer grid
    first (:func:`fit_finer`, see the module docstring). Returns the refinement whose centres
    have the lower objective, and the finer fit's record (``None`` when none ran)."""
    n_pixels = summary.n_pixels
    first = refine(image, spec, centres, n_pixels, max_passes=1)
    if first.converged:
        return first, None
    finer = None
    if first.passes[0]["next_step_gain"] > REGRID_GAIN * first.objective:
        finer = finer_grid(grid, summary.counts, REGRID_ROWS)
    if finer is None:
        rest = refine(image, spec, first.means, n_pixels, MAX_PASSES - 1)
        rest.passes[:0] = first.passes
        return rest, None
    start, record = fit_finer(image, spec, finer, first.means, origin, params)
    rest = refine(image, spec, start, n_pixels, MAX_PASSES - 1)
    rest.passes[:0] = first.passes
    if rest.objective > first.objective:
        # The finer fit did not help: return the first centres, with every pass in the record.
        first.passes = rest.passes
        record["kept_first_centres"] = True
        return first, record
    return rest, record


class BinnedEngine:
    """Weighted fit on a fine binning of the features, then an exact Lloyd pass on the pixels."""

    name = "binned"

    def summarise(self, image: da.Array, spec: FeatureSpec, params: FitParams):
        _require(spec)
        return summarise_bins(image, spec, grid_for(spec))

    def fit(
        self, summary: BinTable, image: da.Array, spec: FeatureSpec, params: FitParams
    ) -> FitResult:
        start = time.perf_counter()
        _require(spec)
        grid = grid_for(spec)
        k = params.k
        n_pixels = summary.n_pixels
        if len(summary) < k:
            n_distinct = count_distinct(image, spec, k)
            if n_distinct < k:
                raise TooFewValues(k, n_distinct)
            raise ConfigError(
                f"k={k} is larger than the {len(summary)} non-empty bins of the binned "
                "engine's grid for this image; choose engine dask-ml or a smaller k"
            )
        X = summary.means(grid)
        w = summary.counts.astype(np.float64)
        origin = np.average(X, axis=0, weights=w)
        Xc = X - origin
        ssw_grid = float(summary.within_ss(grid).sum())
        ss_total = ssw_grid + float(w @ (Xc * Xc).sum(axis=1))
        info: dict = {
            "grid_bits_per_feature": grid.bits,
            "grid_low": list(grid.low),
            "grid_bin_width": list(grid.width),
            "n_bins": len(summary),
            "n_pixels": n_pixels,
            "within_bin_mse": ssw_grid / n_pixels,
            "summary_task_s": round(summary.seconds, 3),
        }
        d = X.shape[1]
        if d == 1:
            level = Level(grid.bits, summary.keys, w, Xc * w[:, None])
            while len(level.keys) * k > MAX_CELLS:
                level = level.coarser(1)
            dp = optimal_kmeans_1d(level.means[:, 0], level.weights, k)
            centres = dp.centres[:, None] + origin
            ssw = _within_ss(ss_total, level)
            lower = max(np.sqrt(dp.cost) - np.sqrt(ssw), 0.0) ** 2
            info.update(method="dp-1d-binned", fit_bins=len(level.keys), fit_bits=level.bits,
                        fit_within_bin_mse=ssw / n_pixels, bin_means_optimum=dp.cost / n_pixels,
                        lower_bound_mse=lower / n_pixels)
            n_iter = None
        else:
            levels = _levels(Xc, w, summary.keys, grid.bits, k)
            centres, record = fit_levels(levels, k, params)
            last = levels[-1]
            ssw = _within_ss(ss_total, last)
            binned_cost = assign(last.means, last.weights, centres)[-1] + ssw
            centres = centres + origin
            info.update(method="binned-kmeans", levels=record, fit_bins=len(last.keys),
                        fit_bits=last.bits, fit_within_bin_mse=ssw / n_pixels,
                        binned_objective=binned_cost / n_pixels,
                        n_restarts=max(1, RESTARTS_PER_INIT * params.n_init))
            n_iter = record[-1]["iterations"]
        fit_s = time.perf_counter() - start
        if d == 1:
            refined, finer = refine(image, spec, centres, n_pixels), None
        else:
            refined, finer = refine_or_regrid(image, spec, summary, grid, centres, origin, params)
        if finer is not None:
            info["coarse_fit"] = {
                key: info[key]
                for key in ("fit_bins", "fit_bits", "fit_within_bin_mse", "binned_objective")
            }
            info.update(regrid=finer, fit_bins=finer["n_bins"],
                        fit_bits=finer["grid_bits_per_feature"],
                        fit_within_bin_mse=finer["within_bin_mse"],
                        binned_objective=finer["binned_objective"])
        centres, stats, passes = refined.centres, refined.stats, refined.passes
        before = passes[0]["objective"]
        info.update(
            objective_before_refine=before,
            pixel_passes=passes,
            # For any centres |sqrt(J_pixels) - sqrt(J_bin_means)| <= sqrt(SSW).
            binning_bound_rms=float(np.sqrt(info["fit_within_bin_mse"])),
            bin_fit_s=round(fit_s, 3),
        )
        if d == 1 and info["lower_bound_mse"] > 0:
            # The returned objective is at most the first pass's (Lloyd never raises it).
            info["proven_within"] = before / info["lower_bound_mse"] - 1.0
        info["fit_s"] = round(time.perf_counter() - start, 3)
        return FitResult(
            centres=np.asarray(centres, dtype=np.float64),
            engine=self.name,
            n_iter=n_iter,
            optimal=False,
            labeller=FastNearestLabeller(spec, centres),
            stats=stats,
            info=info,
        )
