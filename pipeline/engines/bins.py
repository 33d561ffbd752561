"""Feature vectors binned on a fine grid: exact weight, sum and sum of squares per bin.

Each bin of a :class:`BinTable` keeps how many pixels fell in it, the sum of their features and
the sum of their squared distances to the bin's corner. For any assignment that keeps bins whole
the K-Means objective is then exact::

    sum_{x in bin} ||x - c||^2 = W ||m - c||^2 + SSW,   SSW = sum_{x in bin} ||x - m||^2,

with ``m`` the bin's mean; so a weighted fit on the bin means optimises the objective of bin-whole
assignments, off by the constant total within-bin sum of squares. Sums are kept in fixed point
(integers, :data:`FRAC_BITS` bits per bin width, relative to the bin's corner), so tables merge
by integer addition and the result does not depend on the chunking or the merge order.

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

from pipeline.blocks import block_origins, spatial_block_keys
from pipeline.features import FeatureSpec

#: Fixed-point bits of the in-bin offsets (1/2^24 of a bin width; sums hold 2^39 pixels).
FRAC_BITS = 24
#: Grid cells at most (bits per feature times features); bounds a block's table.
MAX_GRID_BITS = 24
#: Bits per feature of one-feature grids (the 1-D optimum is computed on them).
BITS_1D = 20
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


def feature_box(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the value features of ``spec`` (values outside are clipped
    to the edge bins, which keeps the summary exact, only coarser there)."""
    d = spec.n_value_features
    low, high = np.zeros(d), np.ones(d)
    if spec.colour_space == "lab":  # L*/100 in [0, 1]; a*/100 and b*/100 within [-1.1, 1.1]
        low[1:], high[1:] = -1.1, 1.1
    return low, high


def grid_for(spec: FeatureSpec) -> BinGrid:
    """The grid used for ``spec``: 2^20 bins for one feature, 2^24 cells otherwise."""
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
    sumsq : ndarray of float64, shape (n,)
        Sum over the bin's pixels of the squared distance to the bin's corner (feature units).
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
        offset = self.sums * (np.asarray(grid.width) / float(1 << FRAC_BITS))
        return np.maximum(self.sumsq - (offset**2).sum(axis=1) / self.counts, 0.0)


@numba.njit(nogil=True, cache=True)
def _grow(slot_key, counts, sums, sumsq):  # pragma: no cover - compiled
    # The same entries in a table twice the size.
    capacity = 2 * len(slot_key)
    mask = capacity - 1
    new_key = np.zeros(capacity, dtype=np.uint64)
    new_counts = np.zeros(capacity, dtype=np.int64)
    new_sums = np.zeros((capacity, sums.shape[1]), dtype=np.int64)
    new_sumsq = np.zeros(capacity, dtype=np.float64)
    for s in range(len(slot_key)):
        if slot_key[s] != 0:
            h = ((slot_key[s] - np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
            t = np.int64(h) & mask
            while new_key[t] != 0:
                t = (t + 1) & mask
            new_key[t] = slot_key[s]
            new_counts[t] = counts[s]
            new_sums[t] = sums[s]
            new_sumsq[t] = sumsq[s]
    return new_key, new_counts, new_sums, new_sumsq


@numba.njit(nogil=True, cache=True)
def _bin_features(feats, valid, low, inv_width, width, bits):  # pragma: no cover - compiled
    # Open-addressing hash table of the bins (grown when half full), then its entries.
    n, d = feats.shape
    top = (1 << bits) - 1
    one = float(1 << 24)  # FRAC_BITS
    capacity = 1 << 12
    slot_key = np.zeros(capacity, dtype=np.uint64)  # key + 1; 0 marks an empty slot
    counts = np.zeros(capacity, dtype=np.int64)
    sums = np.zeros((capacity, d), dtype=np.int64)
    sumsq = np.zeros(capacity, dtype=np.float64)
    used = 0
    r = np.empty(d, dtype=np.float64)
    for i in range(n):
        if not valid[i]:
            continue
        key = np.uint64(0)
        for f in range(d):
            t = (np.float64(feats[i, f]) - low[f]) * inv_width[f]
            b = np.int64(np.floor(t))
            if b < 0:
                b = 0
            elif b > top:
                b = top
            r[f] = t - b
            key = (key << np.uint64(bits)) | np.uint64(b)
        mask = capacity - 1
        h = (key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
        s = np.int64(h) & mask
        stored = key + np.uint64(1)
        while slot_key[s] != stored and slot_key[s] != 0:
            s = (s + 1) & mask
        if slot_key[s] == 0:
            slot_key[s] = stored
            used += 1
        counts[s] += 1
        ss = 0.0
        for f in range(d):
            sums[s, f] += np.int64(np.rint(r[f] * one))
            o = r[f] * width[f]
            ss += o * o
        sumsq[s] += ss
        if 2 * used > capacity:
            slot_key, counts, sums, sumsq = _grow(slot_key, counts, sums, sumsq)
            capacity = len(slot_key)
    keys = np.empty(used, dtype=np.uint64)
    out_counts = np.empty(used, dtype=np.int64)
    out_sums = np.empty((used, d), dtype=np.int64)
    out_sumsq = np.empty(used, dtype=np.float64)
    j = 0
    for s in range(capacity):
        if slot_key[s] != 0:
            keys[j] = slot_key[s] - np.uint64(1)
            out_counts[j] = counts[s]
            out_sums[j] = sums[s]
            out_sumsq[j] = sumsq[s]
            j += 1
    return keys, out_counts, out_sums, out_sumsq


@numba.njit(nogil=True, cache=True)
def _merge_bins(k1, c1, s1, q1, k2, c2, s2, q2):  # pragma: no cover - compiled
    n = len(k1) + len(k2)
    d = s1.shape[1]
    keys = np.empty(n, dtype=np.uint64)
    counts = np.empty(n, dtype=np.int64)
    sums = np.empty((n, d), dtype=np.int64)
    sumsq = np.empty(n, dtype=np.float64)
    i = j = m = 0
    while i < len(k1) or j < len(k2):
        if j >= len(k2) or (i < len(k1) and k1[i] < k2[j]):
            keys[m], counts[m], sumsq[m] = k1[i], c1[i], q1[i]
            sums[m] = s1[i]
            i += 1
        elif i >= len(k1) or k2[j] < k1[i]:
            keys[m], counts[m], sumsq[m] = k2[j], c2[j], q2[j]
            sums[m] = s2[j]
            j += 1
        else:
            keys[m], counts[m], sumsq[m] = k1[i], c1[i] + c2[j], q1[i] + q2[j]
            sums[m] = s1[i] + s2[j]
            i += 1
            j += 1
        m += 1
    return keys[:m].copy(), counts[:m].copy(), sums[:m].copy(), sumsq[:m].copy()


def bin_features(feats: np.ndarray, valid: np.ndarray, grid: BinGrid) -> BinTable:
    """Table of the rows of ``feats`` (``(n, d)`` float32) where ``valid`` is True."""
    start = time.perf_counter()
    feats = np.ascontiguousarray(feats[:, : grid.n_features])
    width = np.asarray(grid.width, dtype=np.float64)
    keys, counts, sums, sumsq = _bin_features(
        feats, np.ascontiguousarray(valid), np.asarray(grid.low, dtype=np.float64),
        1.0 / width, width, grid.bits,
    )
    order = np.argsort(keys, kind="stable")
    return BinTable(keys[order], counts[order], sums[order], sumsq[order],
                    time.perf_counter() - start)


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
    merge = dask.delayed(merge_bins, pure=True)
    parts = [
        build(block, spec, grid, origin)
        for block, (_, origin, _) in zip(
            spatial_block_keys(image, spatial_ndim), block_origins(image, spatial_ndim),
            strict=True,
        )
    ]
    while len(parts) > 1:
        parts = [merge(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


