"""Globally optimal weighted 1-D K-Means by dynamic programming (Ckmeans.1d.dp).

On sorted values every optimal cluster is an interval, so the optimum over ``n`` weighted values
is found by dynamic programming over interval ends. The optimal start of the last interval is
monotone in its end, so each of the ``k`` rows is filled by divide and conquer in
``O(n log n)`` (Wang & Song 2011; Grønlund et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

#: Largest ``n * k`` solved exactly (the back-pointer table is ``n * k`` int32).
MAX_CELLS = 1 << 25


@numba.njit(nogil=True, cache=True)
def _ssq(j, i, cw, cs, css):  # pragma: no cover - compiled
    w = cw[i + 1] - cw[j]
    s = cs[i + 1] - cs[j]
    v = css[i + 1] - css[j] - s * s / w
    return v if v > 0.0 else 0.0


@numba.njit(nogil=True, cache=True)
def _fill_row(q, prev, cur, back, cw, cs, css):  # pragma: no cover - compiled
    n = len(prev)
    stack = np.empty((256, 4), dtype=np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = q, n - 1, q, n - 1
    top = 1
    while top > 0:
        top -= 1
        ilo, ihi, jlo, jhi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        if ilo > ihi:
            continue
        mid = (ilo + ihi) // 2
        best = np.inf
        bj = jlo
        for j in range(jlo, min(mid, jhi) + 1):
            c = prev[j - 1] + _ssq(j, mid, cw, cs, css)
            if c < best:
                best = c
                bj = j
        cur[mid] = best
        back[mid] = bj
        stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = mid + 1, ihi, bj, jhi
        stack[top + 1, 0], stack[top + 1, 1] = ilo, mid - 1
        stack[top + 1, 2], stack[top + 1, 3] = jlo, bj
        top += 2


@numba.njit(nogil=True, cache=True)
def _solve(cw, cs, css, k):  # pragma: no cover - compiled
    n = len(cw) - 1
    back = np.zeros((k, n), dtype=np.int32)
    prev = np.empty(n)
    for i in range(n):
        prev[i] = _ssq(np.int64(0), i, cw, cs, css)  # not a literal 0: one compile of _ssq
    cur = np.full(n, np.inf)
    for q in range(1, k):
        cur[:] = np.inf
        if q < k - 1:
            _fill_row(q, prev, cur, back[q], cw, cs, css)
        else:
            best = np.inf
            bj = q
            for j in range(q, n):
                c = prev[j - 1] + _ssq(j, n - 1, cw, cs, css)
                if c < best:
                    best = c
                    bj = j
            cur[n - 1] = best
            back[q, n - 1] = bj
        prev, cur = cur, prev
    starts = np.empty(k, dtype=np.int64)
    i = n - 1
    for q in range(k - 1, -1, -1):
        starts[q] = back[q, i]
        i = starts[q] - 1
    return starts, prev[n - 1]


@dataclass
class OptimalResult:
    """Outcome of :func:`optimal_kmeans_1d`.

    Attributes
    ----------
    centres : ndarray, shape (k,)
        Weighted cluster means, increasing.
    cost : float
        Weighted within-cluster sum of squares.
    starts : ndarray of int, shape (k,)
        Index of the first value of each cluster.
    """

    centres: np.ndarray
    cost: float
    starts: np.ndarray


def prefix_sums(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prefix sums of the weights, weighted values and weighted squares of ``x`` centred on its
    weighted mean (so the cluster costs lose no precision), each with a leading 0: the
    ``(cw, cs, css)`` the dynamic programme takes."""
    xs = x - np.average(x, weights=w)
    zero = np.zeros(1)
    return (np.concatenate([zero, np.cumsum(w)]), np.concatenate([zero, np.cumsum(w * xs)]),
            np.concatenate([zero, np.cumsum(w * xs * xs)]))


def optimal_kmeans_1d(x: np.ndarray, w: np.ndarray, k: int) -> OptimalResult:
    """Globally optimal weighted K-Means of sorted values.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Values in non-decreasing order.
    w : ndarray, shape (n,)
        Positive weights.
    k : int
        Number of clusters, ``1 <= k <= n``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of values ({n})")
    if n > 1 and np.any(np.diff(x) < 0):
        raise ValueError("values must be sorted")
    starts, _ = _solve(*prefix_sums(x, w), int(k))
    wsum = np.add.reduceat(w, starts)
    centres = np.add.reduceat(w * x, starts) / wsum
    ends = np.append(starts[1:], n)
    label = np.repeat(np.arange(k), ends - starts)
    cost = float(np.sum(w * (x - centres[label]) ** 2))
    return OptimalResult(centres, cost, starts)
