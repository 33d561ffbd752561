"""Packing pixel values into keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.engines.keys import ValueCodec, exact_obstacle, key_dtype
from pipeline.features import make_feature_spec

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.bool_]


def _codec(dtype, n_channels: int, has_alpha: bool = False) -> ValueCodec:
    spec = make_feature_spec(dtype, n_channels, (4, 5), has_alpha=has_alpha)
    codec = ValueCodec.for_spec(spec)
    assert codec is not None
    return codec


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), n_channels=st.integers(1, 4))
def test_pack_unpack_round_trip_and_order(data, dtype, n_channels):
    if np.dtype(dtype).itemsize * 8 * n_channels > 48:
        n_channels = 1
    shape = (4, 5) if n_channels == 1 else (4, 5, n_channels)
    block = data.draw(hnp.arrays(dtype, shape))
    codec = _codec(dtype, n_channels)
    keys = codec.pack(block)
    assert keys.dtype == key_dtype(codec.key_bits)
    values = codec.spec.values(block)
    np.testing.assert_array_equal(codec.unpack(keys), values)
    order = np.argsort(keys, kind="stable")
    lex = np.lexsort(values.T[::-1].astype(np.int64))
    np.testing.assert_array_equal(values[order], values[lex])


def test_alpha_is_not_packed():
    codec = _codec(np.uint8, 4, has_alpha=True)
    block = np.zeros((4, 5, 4), np.uint8)
    block[..., 3] = np.arange(20).reshape(4, 5)
    assert codec.key_bits == 24
    assert np.unique(codec.pack(block)).size == 1


@pytest.mark.parametrize("bits", [1, 3, 7])
def test_coarsen_keeps_top_bits_of_each_channel(bits):
    codec = _codec(np.uint8, 3)
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    coarse = codec.coarsen(codec.pack(block), bits)
    top = (block.reshape(-1, 3) >> (8 - bits)).astype(np.uint64)
    expected = (top[:, 0] << (2 * bits)) | (top[:, 1] << bits) | top[:, 2]
    np.testing.assert_array_equal(coarse, expected)


def test_obstacles():
    assert exact_obstacle(make_feature_spec(np.uint8, 3, (4, 5))) is None
    assert "integer" in exact_obstacle(
        make_feature_spec(np.float32, 1, (4, 5), data_range=(0, 1))
    )
    assert "spatial" in exact_obstacle(make_feature_spec(np.uint8, 3, (4, 5), spatial_weight=1))
    assert "64-bit" in exact_obstacle(make_feature_spec(np.uint16, 4, (4, 5)))
    assert exact_obstacle(make_feature_spec(np.uint16, 3, (4, 5)), max_key_bits=24)
