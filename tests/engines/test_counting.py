"""Counting distinct keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.engines.counting import coarsen_sums, count_dense, count_sorted, merge_counts


@settings(max_examples=40, deadline=None)
@given(
    keys=st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]).flatmap(
        lambda dtype: hnp.arrays(dtype, st.integers(0, 300))
    )
)
def test_count_sorted_equals_unique(keys):
    bits = keys.dtype.itemsize * 8
    uniq, counts = count_sorted(keys, bits)
    expected = np.unique(keys, return_counts=True)
    np.testing.assert_array_equal(uniq, expected[0])
    np.testing.assert_array_equal(counts, expected[1])
    assert uniq.dtype == keys.dtype


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_count_dense_equals_unique(dtype):
    keys = np.random.default_rng(0).integers(0, 300, 5000).astype(dtype)
    uniq, counts = count_dense(keys, keys.dtype.itemsize * 8)
    expected = np.unique(keys, return_counts=True)
    np.testing.assert_array_equal(uniq, expected[0])
    np.testing.assert_array_equal(counts, expected[1])


@settings(max_examples=30, deadline=None)
@given(parts=st.lists(st.lists(st.integers(0, 50), max_size=40), min_size=1, max_size=7))
def test_merge_counts_adds_equal_keys(parts):
    tables = [count_sorted(np.array(p, dtype=np.uint32), 32) for p in parts]
    keys, counts = merge_counts(tables)
    everything = np.concatenate([np.array(p, dtype=np.uint32) for p in parts])
    expected = np.unique(everything, return_counts=True)
    np.testing.assert_array_equal(keys, expected[0])
    np.testing.assert_array_equal(counts, expected[1])


def test_coarsen_sums_adds_each_bin_in_row_order():
    # Two channels of 3 bits cut to 2: keys (a, b) -> (a >> 1, b >> 1).
    keys = np.array([0b011_001, 0b010_000, 0b111_111, 0b011_000, 0b000_101], dtype=np.uint64)
    weights = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    sums = np.array([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0], [5.0, -5.0]])
    uniq, w, s = coarsen_sums(keys, weights, sums, 2, 3, 2)
    # Bins: (1, 0) holds rows 0, 1, 3; (3, 3) row 2; (0, 2) row 4.
    np.testing.assert_array_equal(uniq, [0b00_10, 0b01_00, 0b11_11])
    np.testing.assert_array_equal(w, [5.0, 7.0, 3.0])
    np.testing.assert_array_equal(s, [[5.0, -5.0], [7.0, -7.0], [3.0, -3.0]])


def test_coarsen_sums_equals_bincount_bit_for_bit():
    # Float sums depend on the order of the additions: row order, as np.bincount adds them.
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 1 << 24, 5000, dtype=np.uint64))
    weights = rng.random(len(keys)) * 1e3
    sums = rng.normal(size=(len(keys), 3)) * 1e6
    uniq, w, s = coarsen_sums(keys, weights, sums, 3, 8, 5)
    r, g, b = (keys >> np.uint64(19)), (keys >> np.uint64(11)) & np.uint64(31), (
        keys >> np.uint64(3)) & np.uint64(31)
    coarse = (r << np.uint64(10)) | (g << np.uint64(5)) | b
    expected_keys, index = np.unique(coarse, return_inverse=True)
    np.testing.assert_array_equal(uniq, expected_keys)
    assert w.tobytes() == np.bincount(index, weights=weights).tobytes()
    for f in range(3):
        assert s[:, f].tobytes() == np.bincount(index, weights=sums[:, f]).tobytes()
