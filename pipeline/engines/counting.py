"""Counting distinct integer keys: dense histograms, radix sorting and sorted merges.

Compiled with Numba (GIL released), these replace ``np.bincount`` (which copies its input to
``intp``), ``np.unique`` (a comparison sort) and sort-based merging in the summary pass.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

_DIGIT_BITS = 8


@numba.njit(nogil=True, cache=True)
def _histogram(keys, size):  # pragma: no cover - compiled
    out = np.zeros(size, dtype=np.int64)
    for key in keys:
        out[key] += 1
    return out




@numba.njit(nogil=True, cache=True)
def _count_into(keys, hist):  # pragma: no cover - compiled
    # Histogram into ``hist`` (all zero on entry and on return), then its non-zero bins in order.
    for key in keys:
        hist[key] += 1
    n = min(len(keys), len(hist))
    uniq = np.empty(n, dtype=keys.dtype)
    counts = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(len(hist)):
        if hist[i]:
            uniq[m] = i
            counts[m] = hist[i]
            hist[i] = 0
            m += 1
    return uniq[:m].copy(), counts[:m].copy()


_scratch = threading.local()


def _zeroed_histogram(size: int) -> np.ndarray:
    """An all-zero int32 histogram of ``size`` bins, kept per thread and reused (no page faults
    or clearing of many MiB per block; :func:`_count_into` leaves it zero)."""
    hist = getattr(_scratch, "hist", None)
    if hist is None or len(hist) != size:
        hist = np.zeros(size, dtype=np.int32)
        _scratch.hist = hist
    return hist


@numba.njit(nogil=True, cache=True)
def _digit_starts(keys, shift):  # pragma: no cover - compiled
    # One pass of an LSD radix sort: where each value of the digit at ``shift`` starts in the
    # sorted order (counts, prefix-summed; radix + 1 entries), or no entries when every key
    # has the same digit (nothing to move).
    radix = 1 << _DIGIT_BITS
    count = np.zeros(radix + 1, dtype=np.int64)
    for x in keys:
        count[((x >> shift) & (radix - 1)) + 1] += 1
    # A loop, not count.max(): that compiles several library functions, about 0.3 s on the
    # first run.
    for c in count:
        if c == len(keys):
            return np.zeros(0, dtype=np.int64)
    for d in range(radix):
        count[d + 1] += count[d]
    return count


@numba.njit(nogil=True, cache=True)
def _radix_sort(keys, key_bits):  # pragma: no cover - compiled
    a = keys.copy()
    b = np.empty_like(a)
    radix = 1 << _DIGIT_BITS
    for shift in range(0, key_bits, _DIGIT_BITS):
        count = _digit_starts(a, shift)
        if len(count) == 0:
            continue
        for x in a:
            d = (x >> shift) & (radix - 1)
            b[count[d]] = x
            count[d] += 1
        a, b = b, a
    return a


@numba.njit(nogil=True, cache=True)
def _runs(sorted_keys):  # pragma: no cover - compiled
    n = len(sorted_keys)
    keys = np.empty_like(sorted_keys)
    counts = np.empty(n, dtype=np.int64)
    m = -1
    for i in range(n):
        if m < 0 or sorted_keys[i] != keys[m]:
            m += 1
            keys[m] = sorted_keys[i]
            counts[m] = 0
        counts[m] += 1
    return keys[: m + 1].copy(), counts[: m + 1].copy()


@numba.njit(nogil=True, cache=True)
def _merge(k1, c1, k2, c2):  # pragma: no cover - compiled
    keys = np.empty(len(k1) + len(k2), dtype=k1.dtype)
    counts = np.empty(len(k1) + len(k2), dtype=np.int64)
    i = j = m = 0
    while i < len(k1) and j < len(k2):
        if k1[i] < k2[j]:
            keys[m], counts[m] = k1[i], c1[i]
            i += 1
        elif k2[j] < k1[i]:
            keys[m], counts[m] = k2[j], c2[j]
            j += 1
        else:
            keys[m], counts[m] = k1[i], c1[i] + c2[j]
            i += 1
            j += 1
        m += 1
    while i < len(k1):
        keys[m], counts[m] = k1[i], c1[i]
        i += 1
        m += 1
    while j < len(k2):
        keys[m], counts[m] = k2[j], c2[j]
        j += 1
        m += 1
    return keys[:m].copy(), counts[:m].copy()


def count_dense(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and their counts, through a histogram of ``2**key_bits`` bins."""
    keys = np.ascontiguousarray(keys)
    if len(keys) < 2**31 and key_bits >= 16:
        return _count_into(keys, _zeroed_histogram(1 << key_bits))
    hist = _histogram(keys, 1 << key_bits)
    uniq = np.flatnonzero(hist)
    return uniq.astype(keys.dtype), hist[uniq]


def count_sorted(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and their counts, through an LSD radix sort."""
    if len(keys) == 0:
        return keys.copy(), np.zeros(0, dtype=np.int64)
    return _runs(_radix_sort(np.ascontiguousarray(keys), key_bits))


def merge_counts(
    parts: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted distinct ``(keys, counts)`` pairs, adding counts of equal keys."""
    parts = list(parts)
    while len(parts) > 1:
        merged = [_merge(*parts[i], *parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        parts = merged + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


@numba.njit(nogil=True, cache=True)
def _stable_order(keys, key_bits, order, other):  # pragma: no cover - compiled
    # Row order sorted by key, equal keys in row order (an LSD radix sort of row indices);
    # order and other: work space of len(keys) intp.
    for i in range(len(keys)):  # not np.arange: ~0.3 s more first-run compile time
        order[i] = i
    radix = 1 << _DIGIT_BITS
    for shift in range(0, key_bits, _DIGIT_BITS):
        count = _digit_starts(keys, shift)
        if len(count) == 0:
            continue
        for i in order:
            d = (keys[i] >> shift) & (radix - 1)
            other[count[d]] = i
            count[d] += 1
        order, other = other, order
    return order


@numba.njit(nogil=True, cache=True)  # no fastmath: sums in row order, as np.bincount adds
def _coarsen_sums(keys, weights, sums, n_channels, from_bits, to_bits, coarse, order, other,
                  uniq, bin_weights, bin_sums):  # pragma: no cover - compiled
    # Outputs and work space come allocated (less first-run compile time); returns the
    # number of bins, the rows of uniq, bin_weights and bin_sums written.
    n, c = sums.shape
    drop = from_bits - to_bits
    mask = (np.uint64(1) << np.uint64(to_bits)) - np.uint64(1)
    for i in range(n):
        key = np.uint64(keys[i])
        out = np.uint64(0)
        for ch in range(n_channels):
            field = (key >> np.uint64(from_bits * (n_channels - 1 - ch) + drop)) & mask
            out = (out << np.uint64(to_bits)) | field
        coarse[i] = out
    order = _stable_order(coarse, n_channels * to_bits, order, other)
    m = -1
    for i in order:
        if m < 0 or coarse[i] != uniq[m]:
            m += 1
            uniq[m] = coarse[i]
            bin_weights[m] = 0.0
            for f in range(c):
                bin_sums[m, f] = 0.0
        bin_weights[m] += weights[i]
        for f in range(c):
            bin_sums[m, f] += sums[i, f]
    return m + 1


def coarsen_sums(
    keys: np.ndarray, weights: np.ndarray, sums: np.ndarray, n_channels: int, from_bits: int,
    to_bits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins of ``keys`` cut to ``to_bits`` bits per channel, with their total weight and sums.

    Parameters
    ----------
    keys : ndarray of unsigned int, shape (n,)
        Keys of ``n_channels`` fields of ``from_bits`` bits (:func:`pipeline.engines.keys.coarsen`).
    weights : ndarray of float64, shape (n,)
    sums : ndarray of float64, shape (n, c)
    n_channels, from_bits, to_bits : int
        ``to_bits < from_bits``.

    Returns
    -------
    keys : ndarray of uint64, shape (m,)
        The distinct bin keys, sorted.
    weights : ndarray of float64, shape (m,)
    sums : ndarray of float64, shape (m, c)
        Each added over the rows of its bin in row order from 0, as ``np.bincount`` adds
        (bit for bit the same).
    """
    n = len(keys)
    sums = np.ascontiguousarray(sums, np.float64)
    uniq = np.empty(n, dtype=np.uint64)
    bin_weights = np.empty(n)
    bin_sums = np.empty((n, sums.shape[1]))
    m = _coarsen_sums(
        np.ascontiguousarray(keys, dtype=np.uint64), np.ascontiguousarray(weights, np.float64),
        sums, int(n_channels), int(from_bits), int(to_bits), np.empty(n, dtype=np.uint64),
        np.empty(n, dtype=np.intp), np.empty(n, dtype=np.intp), uniq, bin_weights, bin_sums,
    )
    return uniq[:m].copy(), bin_weights[:m].copy(), bin_sums[:m].copy()
