"""Weighted K-Means of a table of distinct values, coarse to fine.

Restarts (weighted k-means++ then Lloyd) run on a coarse binned table that keeps per-bin counts
and feature sums, so bin means are exact. The best few solutions are refined by weighted Lloyd
on finer binned tables and finally on the exact table, whose objective equals the objective over
all pixels. The best refined solution wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.engines.counting import coarsen_sums
from pipeline.engines.keys import ValueCodec
from pipeline.engines.lloyd import (
    CentredTable,
    LloydResult,
    compiled_restarts,
    kmeans_plusplus,
    runs_compiled,
)

#: Restarts run on the finest binning with at most this many occupied bins.
RESTART_ROWS = 1024
#: Restarts per ``n_init`` at most (they are cheap on the coarse table); restarts stop early
#: once ``n_init`` of them have reached the best objective found.
RESTARTS_PER_INIT = 5
#: Solutions carried to the next level: ``ROW_BUDGET // rows`` of it, between ``KEEP`` and
#: ``KEEP_MAX`` (rankings on coarse levels are weak predictors, so small levels carry more).
KEEP = 3
KEEP_MAX = 10
ROW_BUDGET = 500_000
#: A finer binning is used as an intermediate level only if it has at most this fraction of
#: the distinct values.
LEVEL_FRACTION = 0.5
#: Lloyd stops when an iteration improves the objective by less than this fraction.
RTOL = 1e-6


@dataclass
class TableFit:
    """Outcome of :func:`fit_table`.

    Attributes
    ----------
    centres : ndarray, shape (k, n_features)
    cost : float
        Weighted objective on the exact table.
    n_iter : int
        Lloyd iterations of the winning solution on the exact table.
    n_restarts : int
        Restarts run (at most ``RESTARTS_PER_INIT * n_init``; fewer when they stopped early).
    levels : list of dict
        For each level: channel bits (``None`` for exact), rows and Lloyd iterations.
    """

    centres: np.ndarray
    cost: float
    n_iter: int
    n_restarts: int
    levels: list[dict] = field(default_factory=list)


@dataclass
class Level:
    """One binned table: bins keeping ``bits`` bits per channel, exact means and weights."""

    bits: int
    keys: np.ndarray
    weights: np.ndarray
    sums: np.ndarray

    @property
    def means(self) -> np.ndarray:
        return self.sums / self.weights[:, None]

    def coarser(self, n_channels: int) -> Level:
        """The level with one bit less per channel."""
        keys, weights, sums = coarsen_sums(
            self.keys, self.weights, self.sums, n_channels, self.bits, self.bits - 1
        )
        return Level(self.bits - 1, keys, weights, sums)


def binned_levels(
    F: np.ndarray, w: np.ndarray, keys: np.ndarray, codec: ValueCodec, k: int
) -> list[Level]:
    """Binned tables to fit on before the exact one, coarse to fine.

    The first is the finest binning with at most ``max(RESTART_ROWS, 8 k)`` bins (and at least
    ``k``), where restarts run; the others are the finer binnings with at most
    ``LEVEL_FRACTION`` of the distinct values. Each is built from the next finer one, so the
    cost is about one pass over the table. Empty when the table itself is small enough.
    """
    n = len(keys)
    limit = max(RESTART_ROWS, 8 * k)
    if n <= limit:
        return []
    level = Level(codec.channel_bits, np.asarray(keys, dtype=np.uint64), w, F * w[:, None])
    out: list[Level] = []
    while level.bits > 1:
        level = level.coarser(codec.n_channels)
        if len(level.keys) < k:
            break
        if len(level.keys) <= LEVEL_FRACTION * n:
            out.append(level)
        if len(level.keys) <= limit:
            break
    return out[::-1]


def _best_distinct(results: list[LloydResult], keep: int) -> list[LloydResult]:
    """The ``keep`` best results, skipping those with the cost of a better one (duplicates)."""
    out: list[LloydResult] = []
    for r in sorted(results, key=lambda r: r.cost):
        if all(abs(r.cost - o.cost) > 1e-9 * o.cost for o in out):
            out.append(r)
        if len(out) == keep:
            break
    return out


def _level(bits: int | None, X: np.ndarray, results: list[LloydResult]) -> dict:
    return {"bits": bits, "rows": len(X), "iterations": sum(r.n_iter for r in results)}


def restarts(
    X: np.ndarray,
    w: np.ndarray,
    k: int,
    n_restarts: int,
    random_state: int | None,
    max_iter: int = 300,
    enough: int | None = None,
) -> list[LloydResult]:
    """Weighted k-means++ followed by weighted Lloyd, up to ``n_restarts`` times.

    With ``enough``, restarts stop once ``enough`` of them have reached the best objective
    found so far (within a relative 1e-9): further restarts would mostly find it again.
    """
    rng = np.random.default_rng(random_state)
    seeds = rng.integers(0, 2**31 - 1, size=n_restarts)
    if runs_compiled(len(X), k):
        # The same restarts in one compiled call (see lloyd.compiled_restarts).
        n_trials = 2 + int(np.log(k))
        uniforms = np.stack([
            np.random.default_rng(int(seed)).random(1 + (k - 1) * n_trials) for seed in seeds
        ])
        centres, costs, iters, done = compiled_restarts(
            np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(w, dtype=np.float64),
            int(k), uniforms, n_trials, int(max_iter), float(RTOL), int(enough or 0),
        )
        return [LloydResult(c, float(cost), int(i), bool(v))
                for c, cost, i, v in zip(centres, costs, iters, done, strict=True)]
    out: list[LloydResult] = []
    best, hits = np.inf, 0
    table = CentredTable(X, w)
    for seed in seeds:
        init = kmeans_plusplus(X, w, k, int(seed))
        result = table.lloyd(init, max_iter=max_iter, rtol=RTOL)
        out.append(result)
        if result.cost < best * (1 - 1e-9):
            best, hits = result.cost, 1
        elif result.cost <= best * (1 + 1e-9):
            hits += 1
        if enough and hits >= enough:
            break
    return out


def fit_table(
    F: np.ndarray,
    w: np.ndarray,
    keys: np.ndarray,
    codec: ValueCodec,
    k: int,
    *,
    n_init: int = 10,
    random_state: int | None = 0,
    max_iter: int = 300,
) -> TableFit:
    """Weighted K-Means of the distinct values ``F`` (rows of ``keys``) weighted by ``w``."""
    F = np.ascontiguousarray(F, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n_restarts = max(1, RESTARTS_PER_INIT * n_init)
    levels = binned_levels(F, w, keys, codec, k)
    tables = [(lv.bits, lv.means, lv.weights) for lv in levels] + [(None, F, w)]
    bits, X, Xw = tables[0]
    results = restarts(X, Xw, k, n_restarts, random_state, max_iter, enough=n_init)
    n_restarts = len(results)
    record = [_level(bits, X, results)]
    for bits, X, Xw in tables[1:]:
        keep = min(KEEP_MAX, max(KEEP, ROW_BUDGET // len(X)))
        table = CentredTable(X, Xw)
        results = [
            table.lloyd(r.centres, max_iter=max_iter, rtol=RTOL)
            for r in _best_distinct(results, keep)
        ]
        record.append(_level(bits, X, results))
    best = min(results, key=lambda r: r.cost)
    return TableFit(best.centres, best.cost, best.n_iter, n_restarts, record)
