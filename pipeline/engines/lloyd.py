"""Weighted nearest-centre assignment and Lloyd iterations on in-memory tables.

Lloyd iterations keep Hamerly's distance bounds (an upper bound to the own centre, a lower bound
to every other), so rows whose centre cannot have changed are skipped: near convergence an
iteration costs little more than one pass over the rows. Small tables (:func:`runs_compiled`:
the coarse tables restarts run on, or few rows times centres) run the whole loop compiled with
plain assignment instead, since there the Python cost of an iteration dominates; their
restarts run in one compiled call (:func:`compiled_restarts`).

The kernels are compiled with Numba, release the GIL, and are run over row ranges in a small
thread pool, so they are safe to call from any thread (no nested parallel runtimes).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

#: Rows below which the kernels run on the calling thread only.
_PARALLEL_ROWS = 1 << 16


@numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
def _row_distances(X, i, Ct, dj):  # pragma: no cover - compiled
    # dj[j] = squared distance of row i to centre j (centres as columns of Ct).
    dj[:] = 0.0
    for f in range(X.shape[1]):
        xf = X[i, f]
        for j in range(Ct.shape[1]):
            t = xf - Ct[f, j]
            dj[j] += t * t


@numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
def _distance3(xb, b, c0, c1, c2):  # pragma: no cover - compiled
    # Squared distance of column b of xb to (c0, c1, c2), the features added in order from 0
    # (the additions of nearest_rows' general loop).
    s = 0.0
    t = xb[0, b] - c0
    s += t * t
    t = xb[1, b] - c1
    s += t * t
    t = xb[2, b] - c2
    s += t * t
    return s


@numba.njit(nogil=True, fastmath=True, cache=True)
def _nearest_rows3(X, start, m, Ct, xb, best, bj):  # pragma: no cover - compiled
    # nearest_rows for three features: one pass over the block per centre.
    k = Ct.shape[1]
    for b in range(m):
        for f in range(3):
            xb[f, b] = X[start + b, f]
    c0, c1, c2 = Ct[0, 0], Ct[1, 0], Ct[2, 0]
    for b in range(m):
        best[b] = _distance3(xb, b, c0, c1, c2)
        bj[b] = 0
    for j in range(1, k):
        c0, c1, c2 = Ct[0, j], Ct[1, j], Ct[2, j]
        for b in range(m):
            s = _distance3(xb, b, c0, c1, c2)
            if s < best[b]:
                best[b] = s
                bj[b] = j


#: Rows per block of :func:`nearest_rows`.
BLOCK_ROWS = 256


@numba.njit(nogil=True, fastmath=True, cache=True)
def nearest_rows(X, start, m, Ct, xb, dj, best, bj):  # pragma: no cover - compiled
    """Nearest centre (``bj``) and squared distance (``best``) of rows ``start`` to
    ``start + m`` of ``X`` (``m <= BLOCK_ROWS``); the first of equally near centres wins, as in a
    row-at-a-time scan. ``xb`` (``(d, BLOCK_ROWS)`` float64) and ``dj`` are work space.

    The rows are copied feature-major so the distance loops run over rows, which the compiler
    vectorises: 3-4x faster than a row at a time for few features and centres. Three features
    (RGB) take one pass over the block per centre with the distance in registers
    (:func:`_nearest_rows3`; the same additions in the same order, so the same distances).
    """
    d = X.shape[1]
    k = Ct.shape[1]
    if d == 3:
        _nearest_rows3(X, start, m, Ct, xb, best, bj)
        return
    for b in range(m):
        for f in range(d):
            xb[f, b] = X[start + b, f]
    for j in range(k):
        dj[:m] = 0.0
        for f in range(d):
            c = Ct[f, j]
            for b in range(m):
                t = xb[f, b] - c
                dj[b] += t * t
        if j == 0:
            for b in range(m):  # not best[:m] = dj[:m]: see _kmeanspp
                best[b] = dj[b]
            bj[:m] = 0
            continue
        for b in range(m):
            if dj[b] < best[b]:
                best[b] = dj[b]
                bj[b] = j


@numba.njit(nogil=True, cache=True)
def block_buffers(d):  # pragma: no cover - compiled
    """Work space of :func:`nearest_rows` for ``d`` features: ``xb, dj, best, bj``."""
    return (np.empty((d, BLOCK_ROWS)), np.empty(BLOCK_ROWS), np.empty(BLOCK_ROWS),
            np.zeros(BLOCK_ROWS, dtype=np.int32))


@numba.njit(nogil=True, fastmath=True, cache=True)
def _assign_count3(X, w, Ct, labels, dist, sums, wsum):  # pragma: no cover - compiled
    # _assign_count for three features (RGB): the sums of the current cluster are held
    # in registers while rows stay in it (tables sorted by value come in long runs of one
    # cluster) instead of being added in memory; the same additions in the same order, so
    # the same sums (with _nearest_rows3, 2.5x faster).
    n, d = X.shape
    xb, _, best, bj = block_buffers(d)  # not block_buffers(3): a second compile for Literal[int]
    cost = 0.0
    changed = 0
    cur = 0
    s0 = sums[0, 0]
    s1 = sums[0, 1]
    s2 = sums[0, 2]
    sw = wsum[0]
    for start in range(0, n, BLOCK_ROWS):
        m = min(n, start + BLOCK_ROWS) - start
        _nearest_rows3(X, start, m, Ct, xb, best, bj)
        for b in range(m):
            i = start + b
            a = bj[b]
            if labels[i] != a:
                changed += 1
            labels[i] = a
            dist[i] = best[b]
            wi = w[i]
            cost += wi * best[b]
            if a != cur:
                sums[cur, 0] = s0
                sums[cur, 1] = s1
                sums[cur, 2] = s2
                wsum[cur] = sw
                cur = a
                s0 = sums[a, 0]
                s1 = sums[a, 1]
                s2 = sums[a, 2]
                sw = wsum[a]
            sw += wi
            s0 += wi * xb[0, b]
            s1 += wi * xb[1, b]
            s2 += wi * xb[2, b]
    sums[cur, 0] = s0
    sums[cur, 1] = s1
    sums[cur, 2] = s2
    wsum[cur] = sw
    return cost, changed


@numba.njit(nogil=True, fastmath=True, cache=True)
def _assign_count(X, w, Ct, labels, dist, sums, wsum):  # pragma: no cover - compiled
    # Assign rows to their nearest centre (labels, dist), add their weights and weighted rows
    # to wsum and sums; returns the cost and how many labels changed. Rows are taken in
    # order, so labels, sums and cost are those of a row-wise pass.
    n, d = X.shape
    if d == 3:
        return _assign_count3(X, w, Ct, labels, dist, sums, wsum)
    xb, dj, best, bj = block_buffers(d)
    cost = 0.0
    changed = 0
    for start in range(0, n, BLOCK_ROWS):
        m = min(n, start + BLOCK_ROWS) - start
        nearest_rows(X, start, m, Ct, xb, dj, best, bj)
        for b in range(m):
            i = start + b
            a = bj[b]
            if labels[i] != a:
                changed += 1
            labels[i] = a
            dist[i] = best[b]
            wi = w[i]
            cost += wi * best[b]
            wsum[a] += wi
            for f in range(d):
                sums[a, f] += wi * xb[f, b]
    return cost, changed


@numba.njit(nogil=True, fastmath=True, cache=True)
def _bounded_pass(
    X, w, Ct, shift, half, max_shift, labels, upper, lower, sums, wsum, full
):  # pragma: no cover - compiled
    n, d = X.shape
    k = Ct.shape[1]
    changed = 0
    dj = np.empty(k)
    for i in range(n):
        a = -1 if full else labels[i]
        scan = full
        if not full:
            u = upper[i] + shift[a]
            lo = lower[i] - max_shift
            m = max(half[a], lo)
            if u > m:
                s = 0.0
                for f in range(d):
                    t = X[i, f] - Ct[f, a]
                    s += t * t
                u = np.sqrt(s)
                scan = u > m
            upper[i] = u
            lower[i] = lo
        if scan:
            _row_distances(X, i, Ct, dj)
            b1 = 0
            d1 = dj[0]
            d2 = np.inf
            for j in range(1, k):
                if dj[j] < d1:
                    d2 = d1
                    d1 = dj[j]
                    b1 = j
                elif dj[j] < d2:
                    d2 = dj[j]
            if b1 != a:
                changed += 1
            labels[i] = b1
            upper[i] = np.sqrt(d1)
            lower[i] = np.sqrt(d2)
        a = labels[i]
        wi = w[i]
        wsum[a] += wi
        for f in range(d):
            sums[a, f] += wi * X[i, f]
    return changed


@numba.njit(nogil=True, cache=True)
def _search_right(a, v):  # pragma: no cover - compiled
    # np.searchsorted(a, v, side="right"), the same binary search, without compiling Numba's
    # generic version (several functions, ~0.25 s of first-run compile time).
    lo = 0
    hi = len(a)
    while lo < hi:
        mid = lo + ((hi - lo) >> 1)
        if a[mid] <= v or np.isnan(v):
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(nogil=True, cache=True)
def _kmeanspp(X, w, k, uniform, n_trials):  # pragma: no cover - compiled
    n, d = X.shape
    centres = np.empty((k, d))
    closest = np.empty(n)
    pot = np.empty(n)  # running sums, as np.cumsum (in a loop: less to compile)
    acc = 0.0
    for i in range(n):
        acc += w[i]
        pot[i] = acc
    first = min(_search_right(pot, uniform[0] * pot[-1]), n - 1)
    # Arrays are copied element by element: Numba compiles an array-to-slice assignment with
    # its shape-mismatch message (string formatting), about 1.5 s of first-run compile time.
    for f in range(d):
        centres[0, f] = X[first, f]
    for i in range(n):
        s = 0.0
        for f in range(d):
            t = X[i, f] - centres[0, f]
            s += t * t
        closest[i] = s
    cand_dist = np.empty(n)
    best_dist = np.empty(n)
    for c in range(1, k):
        acc = 0.0
        for i in range(n):
            acc += w[i] * closest[i]
            pot[i] = acc
        best_pot = np.inf
        best = 0
        for trial in range(n_trials):
            r = uniform[1 + (c - 1) * n_trials + trial] * pot[-1]
            cand = min(_search_right(pot, r), n - 1)
            total = 0.0
            for i in range(n):
                s = 0.0
                for f in range(d):
                    t = X[i, f] - X[cand, f]
                    s += t * t
                cand_dist[i] = min(s, closest[i])
                total += w[i] * cand_dist[i]
            if total < best_pot:
                best_pot = total
                best = cand
                for i in range(n):
                    best_dist[i] = cand_dist[i]
        for f in range(d):
            centres[c, f] = X[best, f]
        for i in range(n):
            closest[i] = best_dist[i]
    return centres


def kmeans_plusplus(X: np.ndarray, w: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Greedy weighted k-means++ seeding (as scikit-learn: ``2 + log k`` trials per centre)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    n_trials = 2 + int(np.log(k))
    uniform = np.random.default_rng(seed).random(1 + (k - 1) * n_trials)
    return _kmeanspp(X, w, int(k), uniform, n_trials)


def _n_threads(n_rows: int) -> int:
    return 1 if n_rows < _PARALLEL_ROWS else max(1, min(os.cpu_count() or 1, 16))


@functools.cache
def _pool(n_threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n_threads, thread_name_prefix="kmseg-lloyd")


def _split(n: int, body) -> list:
    """Run ``body(thread, lo, hi)`` over row ranges covering ``range(n)``."""
    n_threads = _n_threads(n)
    if n_threads == 1:
        return [body(0, 0, n)]
    bounds = np.linspace(0, n, n_threads + 1).astype(np.intp)
    futures = [
        _pool(n_threads).submit(body, t, bounds[t], bounds[t + 1]) for t in range(n_threads)
    ]
    return [f.result() for f in futures]


def assign(
    X: np.ndarray, w: np.ndarray, C: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Nearest centre of each row, with the weighted sums needed for a Lloyd update.

    Parameters
    ----------
    X : ndarray, shape (n, d), float64
    w : ndarray, shape (n,), float64
        Row weights.
    C : ndarray, shape (k, d), float64

    Returns
    -------
    labels : ndarray of int32, shape (n,)
    dist : ndarray, shape (n,)
        Squared distance of each row to its centre.
    sums : ndarray, shape (k, d)
        Weighted sum of the rows of each cluster.
    wsum : ndarray, shape (k,)
        Total weight of each cluster.
    cost : float
        Weighted sum of squared distances.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    Ct = np.ascontiguousarray(np.asarray(C, dtype=np.float64).T)
    n, d = X.shape
    k = Ct.shape[1]
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float64)
    n_threads = _n_threads(n)
    sums = np.zeros((n_threads, k, d))
    wsum = np.zeros((n_threads, k))

    def body(t: int, lo: int, hi: int) -> float:
        return _assign_count(
            X[lo:hi], w[lo:hi], Ct, labels[lo:hi], dist[lo:hi], sums[t], wsum[t]
        )[0]

    costs = _split(n, body)
    return labels, dist, sums.sum(axis=0), wsum.sum(axis=0), float(sum(costs))


@dataclass
class LloydResult:
    """Outcome of :func:`weighted_lloyd`."""

    centres: np.ndarray
    cost: float
    n_iter: int
    converged: bool


def _update(
    C: np.ndarray, sums: np.ndarray, wsum: np.ndarray, X: np.ndarray, far: np.ndarray
) -> np.ndarray:
    """New centres: cluster means; empty clusters move to the rows with the largest ``far``."""
    new = C.copy()
    full = wsum > 0
    new[full] = sums[full] / wsum[full, None]
    empty = np.flatnonzero(~full)
    if len(empty):
        rows = np.argsort(far)[::-1][: len(empty)]
        new[empty[: len(rows)]] = X[rows]
    return new


def _half_gaps(C: np.ndarray) -> np.ndarray:
    """Half the distance from each centre to its nearest other centre."""
    if len(C) == 1:
        return np.full(1, np.inf)
    gaps = np.sqrt(((C[:, None, :] - C[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(gaps, np.inf)
    return 0.5 * gaps.min(axis=1)


class _Bounded:
    """Labels, Hamerly bounds and per-thread sums of a Lloyd run."""

    def __init__(self, X: np.ndarray, w: np.ndarray, k: int) -> None:
        n, d = X.shape
        self.X, self.w = X, w
        self.labels = np.zeros(n, dtype=np.int32)
        self.upper = np.zeros(n)
        self.lower = np.zeros(n)
        self.sums = np.zeros((_n_threads(n), k, d))
        self.wsum = np.zeros((_n_threads(n), k))

    def run(self, C: np.ndarray, shift: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
        """Assign rows to ``C`` (``shift``: how far each centre moved; None: from scratch)."""
        Ct = np.ascontiguousarray(C.T)
        half = _half_gaps(C)
        full = shift is None
        shift = np.zeros(len(C)) if shift is None else shift
        max_shift = float(shift.max())
        self.sums[:] = 0.0
        self.wsum[:] = 0.0

        def body(t: int, lo: int, hi: int) -> int:
            return _bounded_pass(
                self.X[lo:hi], self.w[lo:hi], Ct, shift, half, max_shift,
                self.labels[lo:hi], self.upper[lo:hi], self.lower[lo:hi],
                self.sums[t], self.wsum[t], full,
            )

        changed = sum(_split(len(self.X), body))
        return self.sums.sum(axis=0), self.wsum.sum(axis=0), changed


#: Rows up to which :func:`weighted_lloyd` runs wholly compiled (no Python per iteration).
COMPILED_ROWS = 1 << 13
#: ... or rows times centres up to this: an unbounded compiled iteration then costs about as
#: much as the Python work of a bounded one (measured on 256² photos, k = 4: tables of 18-45k
#: rows; the fits of 100 photos took 14% less CPU, with identical centres).
COMPILED_WORK = 1 << 19


def runs_compiled(n_rows: int, k: int) -> bool:
    """Whether Lloyd on ``n_rows`` rows with ``k`` centres runs wholly compiled."""
    return n_rows <= COMPILED_ROWS or n_rows * k <= COMPILED_WORK


@numba.njit(nogil=True, fastmath=True, cache=True)
def _lloyd_compiled(X, w, C, max_iter, rtol, with_cost):  # pragma: no cover - compiled
    # The loop of weighted_lloyd with plain (unbounded) assignment: for small tables the
    # Python overhead of an iteration costs more than the bounds save. With ``with_cost``, also
    # the cost of the returned centres as one _assign_count pass gives it (NaN without).
    n, d = X.shape
    k = C.shape[0]
    Ct = np.ascontiguousarray(C.T)
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n)
    total = 0.0
    for i in range(n):
        for f in range(d):
            total += w[i] * X[i, f] * X[i, f]
    sums = np.zeros((k, d))
    wsum = np.zeros(k)
    last = _assign_count(X, w, Ct, labels, dist, sums, wsum)[0]
    prev = np.inf
    n_iter = 0
    converged = False
    same = False
    while n_iter < max_iter:
        n_iter += 1
        cost = total
        for j in range(k):
            if wsum[j] > 0:
                sq = 0.0
                for f in range(d):
                    sq += sums[j, f] * sums[j, f]
                cost -= sq / wsum[j]
        new = _update_compiled(C, sums, wsum, X, dist)
        if cost >= prev * (1.0 - rtol):
            converged = True
            break
        prev = cost
        C = new
        Ct = np.ascontiguousarray(C.T)
        sums[:] = 0.0
        wsum[:] = 0.0
        last, changed = _assign_count(X, w, Ct, labels, dist, sums, wsum)
        same = changed == 0
        if same:
            converged = True
            break
    C = _update_compiled(C, sums, wsum, X, dist)
    cost = np.nan
    if with_cost:
        held = True
        for j in range(k):
            if wsum[j] <= 0:
                held = False
        if not (same and held):
            # Otherwise no assignment changed and no cluster is empty: the new centres are the
            # last ones bit for bit (the same sums in the same order), and so is their cost.
            sums[:] = 0.0
            wsum[:] = 0.0
            last = _assign_count(X, w, np.ascontiguousarray(C.T), labels, dist, sums, wsum)[0]
        cost = last
    return C, n_iter, converged, cost


@numba.njit(nogil=True, cache=True)
def _argsort(far):  # pragma: no cover - compiled
    return np.argsort(far)


@numba.njit(cache=True)  # called only from kernels, which release the GIL (nogil=True)
def _update_compiled(C, sums, wsum, X, far):  # pragma: no cover - compiled
    new = C.copy()
    n_empty = 0
    for j in range(C.shape[0]):
        if wsum[j] > 0:
            for f in range(C.shape[1]):
                new[j, f] = sums[j, f] / wsum[j]
        else:
            n_empty += 1
    if n_empty:
        # Rare (a cluster lost all its rows): the same compiled sort, called through the
        # interpreter so that it is compiled only when first needed (about 1 s of compile
        # time that most first runs never use).
        with numba.objmode(order="intp[::1]"):
            order = _argsort(far)
        rows = order[::-1]
        r = 0
        for j in range(C.shape[0]):
            if wsum[j] <= 0 and r < len(rows):
                for f in range(C.shape[1]):  # not new[j] = X[...]: see _kmeanspp
                    new[j, f] = X[rows[r], f]
                r += 1
    return new


@numba.njit(nogil=True, fastmath=True, cache=True)
def compiled_restarts(X, w, k, uniforms, n_trials, max_iter, rtol, enough):  # pragma: no cover
    # restarts() for tables of at most COMPILED_ROWS rows, wholly compiled: each restart is
    # kmeans_plusplus then weighted_lloyd, with the same arithmetic; a small table's restarts
    # otherwise cost more in Python per call than in the kernels.
    n, d = X.shape
    n_restarts = uniforms.shape[0]
    total_w = 0.0
    origin = np.zeros(d)
    for i in range(n):
        total_w += w[i]
        for f in range(d):
            origin[f] += w[i] * X[i, f]
    for f in range(d):
        origin[f] /= total_w
    Xc = np.empty((n, d))
    for i in range(n):
        for f in range(d):
            Xc[i, f] = X[i, f] - origin[f]
    centres = np.empty((n_restarts, k, d))
    costs = np.empty(n_restarts)
    iters = np.empty(n_restarts, dtype=np.int64)
    done = np.zeros(n_restarts, dtype=np.bool_)
    best = np.inf
    hits = 0
    ran = 0
    # True, computed: a literal True would compile _lloyd_compiled once more for the type
    # Literal[bool](True), ~0.7 s of first-run compile time.
    with_cost = n >= 0
    for r in range(n_restarts):
        init = _kmeanspp(X, w, k, uniforms[r], n_trials)
        C = np.empty((k, d))
        for j in range(k):
            for f in range(d):
                C[j, f] = init[j, f] - origin[f]
        C, n_iter, converged, cost = _lloyd_compiled(Xc, w, C, max_iter, rtol, with_cost)
        for j in range(k):
            for f in range(d):
                centres[r, j, f] = C[j, f] + origin[f]
        costs[r] = cost
        iters[r] = n_iter
        done[r] = converged
        ran += 1
        if cost < best * (1 - 1e-9):
            best = cost
            hits = 1
        elif cost <= best * (1 + 1e-9):
            hits += 1
        if enough > 0 and hits >= enough:
            break
    return centres[:ran], costs[:ran], iters[:ran], done[:ran]


@numba.njit(nogil=True, cache=True)  # no fastmath: each product rounded, then added in order
def _weighted_column_sums(X, w):  # pragma: no cover - compiled
    n, d = X.shape
    out = np.empty(d)
    for f in range(d):
        out[f] = X[0, f] * w[0]
    for i in range(1, n):
        for f in range(d):
            out[f] += X[i, f] * w[i]
    return out


def weighted_mean(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``np.average(X, axis=0, weights=w)``, bit for bit, without its temporaries.

    For two or more columns NumPy adds the weighted rows one after another (a reduction over
    the outer axis), which one compiled pass repeats, 4x faster; one column (a pairwise sum),
    other dtypes or layouts, and zero total weight go to ``np.average`` itself.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    w : ndarray, shape (n,)

    Returns
    -------
    ndarray, shape (d,)
    """
    if (X.ndim == 2 and X.shape[1] >= 2 and len(X) and X.dtype == np.float64
            and w.dtype == np.float64 and X.flags.c_contiguous and w.flags.c_contiguous):
        total = w.sum()
        if total != 0:
            return _weighted_column_sums(X, w) / total
    return np.average(X, axis=0, weights=w)


class CentredTable:
    """A weighted table centred on its weighted mean, for Lloyd runs from several starts.

    Lloyd tracks its objective on rows centred on their weighted mean (less cancellation);
    centring once serves every start on the table.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    w : ndarray, shape (n,)
        Row weights.
    """

    def __init__(self, X: np.ndarray, w: np.ndarray) -> None:
        self.w = np.ascontiguousarray(w, dtype=np.float64)
        self.origin = weighted_mean(X, self.w)
        self.X = np.ascontiguousarray(X - self.origin, dtype=np.float64)

    def lloyd(self, centres: np.ndarray, *, max_iter: int = 300, rtol: float = 1e-6
              ) -> LloydResult:
        """:func:`weighted_lloyd` on this table from ``centres`` (shape ``(k, d)``)."""
        X, w, origin = self.X, self.w, self.origin
        C = np.array(centres, dtype=np.float64) - origin
        if runs_compiled(len(X), len(C)):
            # The kernel's own cost pass equals assign()'s when assign runs one thread.
            with_cost = _n_threads(len(X)) == 1
            C, n_iter, converged, cost = _lloyd_compiled(
                X, w, C, int(max_iter), float(rtol), with_cost
            )
            if not with_cost:
                cost = assign(X, w, C)[-1]
            return LloydResult(C + origin, float(cost), int(n_iter), bool(converged))
        total = float(w @ (X * X).sum(axis=1))
        state = _Bounded(X, w, len(C))
        sums, wsum, _ = state.run(C, None)
        prev = np.inf
        converged = False
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            held = wsum > 0
            cost = total - float(((sums[held] ** 2).sum(axis=1) / wsum[held]).sum())
            new = _update(C, sums, wsum, X, state.upper)
            if cost >= prev * (1.0 - rtol):
                converged = True
                break
            prev = cost
            shift = np.sqrt(((new - C) ** 2).sum(axis=1))
            C = new
            sums, wsum, changed = state.run(C, shift)
            if changed == 0:
                converged = True
                break
        C = _update(C, sums, wsum, X, state.upper)
        cost = assign(X, w, C)[-1]
        return LloydResult(C + origin, cost, n_iter, converged)


def weighted_lloyd(
    X: np.ndarray,
    w: np.ndarray,
    centres: np.ndarray,
    *,
    max_iter: int = 300,
    rtol: float = 1e-6,
) -> LloydResult:
    """Weighted Lloyd iterations from ``centres`` until the objective stops improving.

    Stops when an iteration lowers the weighted objective by less than ``rtol`` of it or
    changes no assignment. The objective is tracked from cluster sums on rows centred on their
    weighted mean; the returned cost is computed directly for the returned centres. Several
    starts on one table: :class:`CentredTable`.
    """
    return CentredTable(X, w).lloyd(centres, max_iter=max_iter, rtol=rtol)
