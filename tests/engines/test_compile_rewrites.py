"""Kernels written for a short first compile (rows copied and added element by element, loops
instead of library calls, the empty-cluster sort outside the Lloyd kernel), on hand-made inputs
with known results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipeline.engines.bins import _merge_bins, _rehash
from pipeline.engines.counting import count_sorted
from pipeline.engines.lloyd import _kmeanspp, _lloyd_compiled, _update_compiled


def test_merge_bins_copies_and_adds_whole_rows():
    k1 = np.array([1, 3, 5], dtype=np.uint64)
    c1 = np.array([1, 2, 3], dtype=np.int64)
    s1 = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64)
    q1 = np.array([[10, 20], [30, 40], [50, 60]], dtype=np.int64)
    k2 = np.array([2, 3, 6], dtype=np.uint64)
    c2 = np.array([4, 5, 6], dtype=np.int64)
    s2 = np.array([[7, 8], [9, 10], [11, 12]], dtype=np.int64)
    q2 = np.array([[70, 80], [90, 100], [110, 120]], dtype=np.int64)
    keys, counts, sums, sumsq = _merge_bins(k1, c1, s1, q1, k2, c2, s2, q2)
    np.testing.assert_array_equal(keys, [1, 2, 3, 5, 6])
    np.testing.assert_array_equal(counts, [1, 4, 7, 3, 6])
    np.testing.assert_array_equal(sums, [[1, 2], [7, 8], [12, 14], [5, 6], [11, 12]])
    np.testing.assert_array_equal(sumsq, [[10, 20], [70, 80], [120, 140], [50, 60], [110, 120]])
    assert keys.dtype == np.uint64 and sums.dtype == np.int64 and sumsq.dtype == np.int64


def test_merge_bins_with_one_side_empty_keeps_the_other():
    k = np.array([4, 9], dtype=np.uint64)
    c = np.array([2, 3], dtype=np.int64)
    s = np.array([[1, -1, 5], [2, -2, 6]], dtype=np.int64)
    q = np.array([[3, 3, 3], [4, 4, 4]], dtype=np.int64)
    none = (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64),
            np.zeros((0, 3), np.int64))
    for args in ((k, c, s, q, *none), (*none, k, c, s, q)):
        keys, counts, sums, sumsq = _merge_bins(*args)
        np.testing.assert_array_equal(keys, [4, 9])
        np.testing.assert_array_equal(counts, [2, 3])
        np.testing.assert_array_equal(sums, [[1, -1, 5], [2, -2, 6]])
        np.testing.assert_array_equal(sumsq, [[3, 3, 3], [4, 4, 4]])


def test_rehash_keeps_every_row_whole():
    # Rows: stored key (key + 1), count, 2 sums, 2 sums of squares; slots 1, 4 and 6 used.
    table = np.zeros((8, 6), dtype=np.int64)
    table[1] = [11, 1, 2, 3, 4, 5]
    table[4] = [7, 6, 7, 8, 9, 10]
    table[6] = [3, 11, 12, 13, 14, 15]
    out = _rehash(table, 32)
    assert out.shape == (32, 6)
    used = out[out[:, 0] != 0]
    np.testing.assert_array_equal(used[np.argsort(used[:, 0])],
                                  [[3, 11, 12, 13, 14, 15], [7, 6, 7, 8, 9, 10],
                                   [11, 1, 2, 3, 4, 5]])


@pytest.mark.parametrize(
    ("keys", "uniq", "counts"),
    [
        # The top digit (0x03) is shared by every key: that pass moves nothing.
        ([0x030201, 0x030005, 0x030100, 0x030005], [0x030005, 0x030100, 0x030201], [2, 1, 1]),
        # Every digit shared.
        ([7, 7, 7], [7], [3]),
        # No digit shared.
        ([0x010203, 0x000001, 0x020100], [0x000001, 0x010203, 0x020100], [1, 1, 1]),
    ],
)
def test_radix_sort_skips_a_digit_every_key_shares(keys, uniq, counts):
    got_keys, got_counts = count_sorted(np.array(keys, dtype=np.uint32), 24)
    np.testing.assert_array_equal(got_keys, uniq)
    np.testing.assert_array_equal(got_counts, counts)


def test_update_moves_empty_clusters_to_the_farthest_rows():
    C = np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    sums = np.array([[2.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    wsum = np.array([2.0, 0.0, 0.0])
    X = np.array([[1.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    far = np.array([0.5, 3.0, 1.0, 2.0])
    new = _update_compiled(C, sums, wsum, X, far)
    # Centre 0: its mean; the empty centres 1 and 2: the rows farthest from their centres.
    np.testing.assert_array_equal(new, [[1.0, 2.0], [2.0, 3.0], [6.0, 7.0]])


def test_lloyd_with_an_empty_cluster_in_threads():
    # The third start centre gets no row; it moves to the farthest row (5.2, 5) and keeps it.
    X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.2, 5.0]])
    w = np.ones(4)
    start = np.array([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]])
    with ThreadPoolExecutor(2) as pool:  # the kernels release the GIL; the sort takes it
        results = list(pool.map(lambda _: _lloyd_compiled(X, w, start.copy(), 300, 1e-6, True),
                                range(4)))
    for centres, _, converged, _ in results:
        np.testing.assert_allclose(centres, [[0.05, 0.0], [5.0, 5.0], [5.2, 5.0]], atol=1e-12)
        assert converged


def test_kmeanspp_samples_by_running_sums():
    # Weights 1, 2, 3, 4: running sums 1, 3, 6, 10. The first draw 0.35 * 10 = 3.5 falls in
    # row 2 (3 <= 3.5 < 6), a draw exactly on a sum goes to the next row (side="right").
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    centres = _kmeanspp(X, w, 1, np.array([0.35]), 1)
    np.testing.assert_array_equal(centres, [[2.0]])
    centres = _kmeanspp(X, w, 1, np.array([0.3]), 1)
    np.testing.assert_array_equal(centres, [[2.0]])
    centres = _kmeanspp(X, w, 1, np.array([0.0]), 1)
    np.testing.assert_array_equal(centres, [[0.0]])
