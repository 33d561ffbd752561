"""Distinct-value tables built per block and merged across the workers."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from pipeline.engines.keys import ValueCodec
from pipeline.engines.table import block_table, merge_tables, summarise_values
from pipeline.features import make_feature_spec


def _whole(image: np.ndarray, codec: ValueCodec):
    return np.unique(codec.pack(image), return_counts=True)


@pytest.mark.parametrize("chunks", [(7, 11, 3), (50, 13, 3), (64, 64, 3)])
def test_rgb_summary_equals_unique_over_whole_image(astronaut_small, chunks):
    spec = make_feature_spec(np.uint8, 3, astronaut_small.shape[:2])
    codec = ValueCodec(spec)
    image = da.from_array(astronaut_small, chunks=chunks)
    (table,) = dask.compute(summarise_values(image, codec, split_every=3))
    keys, counts = _whole(astronaut_small, codec)
    np.testing.assert_array_equal(table.keys, keys)
    np.testing.assert_array_equal(table.counts, counts)
    assert table.n_pixels == astronaut_small.shape[0] * astronaut_small.shape[1]


@pytest.mark.parametrize("chunks", [(5, 9, 7), (17, 17, 17)])
def test_volume_summary_equals_unique(chunks):
    rng = np.random.default_rng(1)
    volume = (rng.normal(0, 300, (17, 23, 19))).astype(np.int16)
    spec = make_feature_spec(np.int16, 1, volume.shape)
    codec = ValueCodec(spec)
    (table,) = dask.compute(summarise_values(da.from_array(volume, chunks=chunks), codec))
    keys, counts = _whole(volume, codec)
    np.testing.assert_array_equal(table.keys, keys)
    np.testing.assert_array_equal(table.counts, counts)
    np.testing.assert_array_equal(codec.unpack(table.keys)[:, 0], np.unique(volume))


def test_merge_is_order_free():
    spec = make_feature_spec(np.uint8, 3, (10, 10))
    codec = ValueCodec(spec)
    rng = np.random.default_rng(2)
    parts = [block_table(rng.integers(0, 4, (10, 10, 3), dtype=np.uint8), codec) for _ in range(5)]
    a = merge_tables(merge_tables(*parts[:2]), merge_tables(*parts[2:]))
    b = merge_tables(*parts[::-1])
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.n_pixels == 500
