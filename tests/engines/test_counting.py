"""Counting distinct keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.engines.counting import count_dense, count_sorted, merge_counts


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
