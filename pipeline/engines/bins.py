"""Feature vectors binned on a fine grid: exact weight, sum and sum of squares per bin.

Each bin of a :class:`BinTable` keeps how many pixels fell in it, the sum of their features and
the sum of their squared distances to the bin's corner. For any assignment that keeps bins whole
the K-Means objective is then exact::

    sum_{x in bin} ||x - c||^2 = W ||m - c||^2 + SSW,   SSW = sum_{x in bin} ||x - m||^2,

with ``m`` the bin's mean; so a weighted fit on the bin means optimises the objective of bin-whole
assignments, off by the constant total within-bin sum of squares. Sums and sums of squares are
kept in fixed point (integers, :data:`FRAC_BITS` bits per bin width, relative to the bin's
corner), so tables merge by integer addition and the result does not depend on the chunking or
the merge order.

Tables are built per block with a compiled hash table and merged in a tree of small tasks, like
:mod:`pipeline.engines.table`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dask
import dask.array as da
import numba
import numpy as np
from dask.delayed import Delayed

from pipeline.blocks import block_origins, spatial_block_keys, tree_merge
from pipeline.features import FeatureSpec

#: Fixed-point bits of the in-bin offsets (1/2^24 of a bin width; sums hold 2^39 pixels).
FRAC_BITS = 24
#: Grid cells at most (bits per feature times features); bounds a block's table.
MAX_GRID_BITS = 21
#: Bits per feature of one-feature grids (the 1-D optimum is computed on them).
BITS_1D = 18
#: Tables merged by one task of the reduction tree.
SPLIT_EVERY = 8


@dataclass(frozen=True)
class BinGrid:
    """A regular grid over feature space: ``2**bits`` bins per feature.

    Attributes
    ----------
    bits : int
        Bits of the bin index per feature (keys pack feature 0 in the most significant bits).
    low : tuple of float
        Lower edge of the grid per feature (feature units).
    width : tuple of float
        Bin width per feature; features outside the grid go to its edge bins.
    """

    bits: int
    low: tuple[float, ...]
    width: tuple[float, ...]

    @property
    def n_features(self) -> int:
        return len(self.low)

    def corners(self, keys: np.ndarray) -> np.ndarray:
        """Lower corners ``(n, n_features)`` (float64) of the bins with ``keys``."""
        keys = np.asarray(keys, dtype=np.uint64)
        d = self.n_features
        mask = np.uint64((1 << self.bits) - 1)
        index = np.stack(
            [(keys >> np.uint64(self.bits * (d - 1 - f))) & mask for f in range(d)], axis=1
        ).astype(np.float64)
        return np.asarray(self.low) + index * np.asarray(self.width)


def finer_grid(grid: BinGrid, counts: np.ndarray, max_rows: int) -> BinGrid | None:
    """The finest refinement of ``grid`` whose table is proven to have at most ``max_rows`` bins.

    Each added bit per feature splits a bin into ``2**d`` bins, so a bin of ``grid`` holding
    ``n`` pixels becomes at most ``min(n, 2**(d * extra))`` bins ``extra`` bits finer.

    Parameters
    ----------
    grid : BinGrid
        The grid the table was made on.
    counts : ndarray of int, shape (n_bins,)
        Pixels in each non-empty bin of that table.
    max_rows : int
        Most bins the finer table may have.

    Returns
    -------
    BinGrid or None
        Same box, ``2**extra`` times narrower bins (keys still fit 63 bits); ``None`` when not
        even one more bit per feature is proven small enough.
    """
    d = grid.n_features
    counts = np.asarray(counts, dtype=np.int64)
    extra = 0
    while (grid.bits + extra + 1) * d <= 63:
        split = 1 << min(d * (extra + 1), 62)
        if int(np.minimum(counts, split).sum()) > max_rows:
            break
        extra += 1
    if extra == 0:
        return None
    return BinGrid(grid.bits + extra, grid.low, tuple(w / (1 << extra) for w in grid.width))


def feature_box(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the value features of ``spec`` (values outside are clipped
    to the edge bins, which keeps the summary exact, only coarser there)."""
    d = spec.n_value_features
    low, high = np.zeros(d), np.ones(d)
    if spec.colour_space == "lab":  # L*/100 in [0, 1]; a*/100 and b*/100 within [-1.1, 1.1]
        low[1:], high[1:] = -1.1, 1.1
    return low, high


def grid_for(spec: FeatureSpec) -> BinGrid:
    """The grid used for ``spec``: 2^18 bins for one feature, at most 2^21 cells otherwise."""
    d = spec.n_value_features
    bits = BITS_1D if d == 1 else max(1, MAX_GRID_BITS // d)
    low, high = feature_box(spec)
    width = (high - low) / (1 << bits)
    return BinGrid(bits, tuple(low.tolist()), tuple(width.tolist()))


@dataclass
class BinTable:
    """Non-empty bins of some pixels, sorted by key.

    Attributes
    ----------
    keys : ndarray of uint64, shape (n,)
        Packed bin indices, sorted, unique.
    counts : ndarray of int64, shape (n,)
        Pixels per bin.
    sums : ndarray of int64, shape (n, d)
        Sum over the bin's pixels of their offset from the bin's corner, in units of
        ``width / 2**FRAC_BITS``.
    sumsq : ndarray of int64, shape (n, d)
        Sum over the bin's pixels of their squared offset from the bin's corner, in units of
        ``width**2 / 2**FRAC_BITS``.
    seconds : float
        Time spent building and merging, summed over tasks.
    """

    keys: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    sumsq: np.ndarray
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def n_pixels(self) -> int:
        return int(self.counts.sum())

    def means(self, grid: BinGrid) -> np.ndarray:
        """Mean feature vector ``(n, d)`` (float64) of each bin."""
        offset = self.sums / (self.counts[:, None] * float(1 << FRAC_BITS))
        return grid.corners(self.keys) + offset * np.asarray(grid.width)

    def within_ss(self, grid: BinGrid) -> np.ndarray:
        """Sum of squared distances of each bin's pixels to the bin's mean (float64)."""
        one = float(1 << FRAC_BITS)
        within = self.sumsq / one - (self.sums / one) ** 2 / self.counts[:, None]
        return np.maximum(within, 0.0) @ (np.asarray(grid.width) ** 2)


# A table row: key + 1 (0: empty slot), count, d fixed-point offset sums, d fixed-point sums
# of squared offsets. One int64 row per bin keeps a pixel's update in one cache line.


@numba.njit(nogil=True, cache=True)
def _slot(key, mask):  # pragma: no cover - compiled
    return np.int64((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


@numba.njit(nogil=True, cache=True)
def _copy_row(dst, m, src, i):  # pragma: no cover - compiled
    # dst[m] = src[i] element by element: Numba compiles an array-to-slice assignment with
    # its shape-mismatch message (string formatting), about 1.5 s of compile time per kernel.
    for f in range(src.shape[1]):
        dst[m, f] = src[i, f]


@numba.njit(nogil=True, cache=True)
def _add_rows(dst, m, a, i, b, j):  # pragma: no cover - compiled
    # dst[m] = a[i] + b[j] without a temporary array (see _copy_row).
    for f in range(a.shape[1]):
        dst[m, f] = a[i, f] + b[j, f]


@numba.njit(nogil=True, cache=True)
def _rehash(table, capacity):  # pragma: no cover - compiled
    out = np.zeros((capacity, table.shape[1]), dtype=np.int64)
    mask = capacity - 1
    for s in range(table.shape[0]):
        if table[s, 0] != 0:
            t = _slot(np.uint64(table[s, 0] - 1), mask)
            while out[t, 0] != 0:
                t = (t + 1) & mask
            _copy_row(out, t, table, s)
    return out


@numba.njit(nogil=True, cache=True)
def _bin_key(feats, i, low, inv_width, bits, top, r):  # pragma: no cover - compiled
    key = np.uint64(0)
    for f in range(feats.shape[1]):
        t = (np.float64(feats[i, f]) - low[f]) * inv_width[f]
        b = np.floor(t)
        if b < 0.0:
            b = 0.0
        elif b > top:
            b = np.float64(top)
        r[f] = t - b
        key = (key << np.uint64(bits)) | np.uint64(b)
    return key


@numba.njit(nogil=True, cache=True)
def _hash_pixels(feats, valid, low, inv_width, bits, table, used, start):  # pragma: no cover
    # Add pixels from ``start`` until the table is half full; return where it stopped.
    n, d = feats.shape
    top = (1 << bits) - 1
    one = float(1 << 24)  # FRAC_BITS
    mask = table.shape[0] - 1
    limit = table.shape[0] // 2
    r = np.empty(d)
    last = np.int64(0)
    s = np.int64(0)
    for i in range(start, n):
        if not valid[i]:
            continue
        key = _bin_key(feats, i, low, inv_width, bits, top, r)
        stored = np.int64(key) + 1
        if stored != last:  # neighbouring pixels often share a bin: no probing then
            s = _slot(key, mask)
            while table[s, 0] != stored and table[s, 0] != 0:
                s = (s + 1) & mask
            if table[s, 0] == 0:
                table[s, 0] = stored
                used += 1
            last = stored
        table[s, 1] += 1
        for f in range(d):
            table[s, 2 + f] += np.int64(r[f] * one + 0.5)
            table[s, 2 + d + f] += np.int64(r[f] * r[f] * one + 0.5)
        if used >= limit:
            return i + 1, used
    return n, used


@numba.njit(nogil=True, cache=True)
def _dense_pixels(feats, valid, low, inv_width, bits, table):  # pragma: no cover - compiled
    # One row per grid cell, indexed by key (small grids).
    n, d = feats.shape
    top = (1 << bits) - 1
    one = float(1 << 24)  # FRAC_BITS
    r = np.empty(d)
    for i in range(n):
        if not valid[i]:
            continue
        s = np.int64(_bin_key(feats, i, low, inv_width, bits, top, r))
        table[s, 1] += 1
        for f in range(d):
            table[s, 2 + f] += np.int64(r[f] * one + 0.5)
            table[s, 2 + d + f] += np.int64(r[f] * r[f] * one + 0.5)


@numba.njit(nogil=True, cache=True)
def _merge_bins(k1, c1, s1, q1, k2, c2, s2, q2):  # pragma: no cover - compiled
    n = len(k1) + len(k2)
    d = s1.shape[1]
    keys = np.empty(n, dtype=np.uint64)
    counts = np.empty(n, dtype=np.int64)
    sums = np.empty((n, d), dtype=np.int64)
    sumsq = np.empty((n, d), dtype=np.int64)
    i = j = m = 0
    while i < len(k1) or j < len(k2):
        if j >= len(k2) or (i < len(k1) and k1[i] < k2[j]):
            keys[m], counts[m] = k1[i], c1[i]
            _copy_row(sums, m, s1, i)
            _copy_row(sumsq, m, q1, i)
            i += 1
        elif i >= len(k1) or k2[j] < k1[i]:
            keys[m], counts[m] = k2[j], c2[j]
            _copy_row(sums, m, s2, j)
            _copy_row(sumsq, m, q2, j)
            j += 1
        else:
            keys[m], counts[m] = k1[i], c1[i] + c2[j]
            _add_rows(sums, m, s1, i, s2, j)
            _add_rows(sumsq, m, q1, i, q2, j)
            i += 1
            j += 1
        m += 1
    return keys[:m].copy(), counts[:m].copy(), sums[:m].copy(), sumsq[:m].copy()


#: Grids of at most this many cells are binned into a dense table when the block has at least
#: a quarter as many pixels (no hashing, neighbouring values hit neighbouring rows).
DENSE_CELLS = 1 << 20


def bin_features(feats: np.ndarray, valid: np.ndarray, grid: BinGrid) -> BinTable:
    """Table of the rows of ``feats`` (``(n, d)`` float32) where ``valid`` is True."""
    start = time.perf_counter()
    d = grid.n_features
    feats = np.ascontiguousarray(feats[:, :d])
    valid = np.ascontiguousarray(valid)
    low = np.asarray(grid.low, dtype=np.float64)
    inv_width = 1.0 / np.asarray(grid.width, dtype=np.float64)
    cells = 1 << (grid.bits * d)
    if cells <= DENSE_CELLS and 4 * len(feats) >= cells:
        table = np.zeros((cells, 2 + 2 * d), dtype=np.int64)
        _dense_pixels(feats, valid, low, inv_width, grid.bits, table)
        rows = np.flatnonzero(table[:, 1])
        table = table[rows]
        keys = rows.astype(np.uint64)
    else:
        table = np.zeros((1 << 12, 2 + 2 * d), dtype=np.int64)
        used, done = 0, 0
        while done < len(feats):
            done, used = _hash_pixels(feats, valid, low, inv_width, grid.bits, table, used, done)
            if 2 * used >= len(table):
                table = _rehash(table, 2 * len(table))
        table = table[table[:, 0] != 0]
        keys = (table[:, 0] - 1).astype(np.uint64)
        order = np.argsort(keys, kind="stable")
        keys, table = keys[order], table[order]
    return BinTable(keys, np.ascontiguousarray(table[:, 1]),
                    np.ascontiguousarray(table[:, 2 : 2 + d]),
                    np.ascontiguousarray(table[:, 2 + d :]), time.perf_counter() - start)


def block_bins(block: np.ndarray, spec: FeatureSpec, grid: BinGrid, origin) -> BinTable:
    """Table of the pixels with data of one block."""
    start = time.perf_counter()
    feats, valid = spec.block_features(block, origin)
    table = bin_features(feats, valid, grid)
    table.seconds = time.perf_counter() - start
    return table


def merge_bins(*tables: BinTable) -> BinTable:
    """Table of the union of the pixels of ``tables`` (exact: integer sums)."""
    if len(tables) == 1:
        return tables[0]
    start = time.perf_counter()
    parts = list(tables)
    while len(parts) > 1:
        merged = [
            BinTable(*_merge_bins(a.keys, a.counts, a.sums, a.sumsq,
                                  b.keys, b.counts, b.sums, b.sumsq))
            for a, b in zip(parts[::2], parts[1::2], strict=False)
        ]
        parts = merged + ([parts[-1]] if len(parts) % 2 else [])
    out = parts[0]
    out.seconds = sum(t.seconds for t in tables) + time.perf_counter() - start
    return out


def summarise_bins(
    image: da.Array, spec: FeatureSpec, grid: BinGrid, split_every: int = SPLIT_EVERY
) -> Delayed:
    """Lazy :class:`BinTable` of every pixel with data of ``image``, merged in a tree."""
    spatial_ndim = len(spec.spatial_shape)
    build = dask.delayed(block_bins, pure=True)
    parts = [
        build(block, spec, grid, origin)
        for block, (_, origin, _) in zip(
            spatial_block_keys(image, spatial_ndim), block_origins(image, spatial_ndim),
            strict=True,
        )
    ]
    return tree_merge(parts, merge_bins, split_every)


