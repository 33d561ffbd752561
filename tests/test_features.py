"""FeatureSpec arithmetic against direct NumPy computations."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.features import make_feature_spec


def test_uint8_rgb_scaled_by_dtype_range(rng):
    block = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    spec = make_feature_spec(np.uint8, 3, (5, 7))
    feats, valid = spec.block_features(block)
    np.testing.assert_allclose(feats, block.reshape(-1, 3) / 255.0, rtol=1e-6)
    assert valid.all()
    assert spec.n_features == 3


def test_int16_scaled_by_dtype_range():
    block = np.array([[-32768, 0, 32767]], dtype=np.int16)
    spec = make_feature_spec(np.int16, 1, (1, 3))
    feats, _ = spec.block_features(block)
    np.testing.assert_allclose(feats[:, 0], [0.0, 32768 / 65535, 1.0], rtol=1e-6)


def test_float_uses_data_range_and_nan_is_invalid():
    block = np.array([[1.0, np.nan], [3.0, 5.0]], dtype=np.float32)
    spec = make_feature_spec(np.float32, 1, (2, 2), data_range=(1.0, 5.0))
    feats, valid = spec.block_features(block)
    assert valid.tolist() == [True, False, True, True]
    np.testing.assert_allclose(feats[valid, 0], [0.0, 0.5, 1.0])


def test_alpha_is_not_a_feature(rng):
    block = rng.integers(0, 256, size=(4, 4, 4), dtype=np.uint8)
    spec = make_feature_spec(np.uint8, 4, (4, 4), has_alpha=True)
    feats, _ = spec.block_features(block)
    assert feats.shape == (16, 3)
    np.testing.assert_allclose(feats, block[..., :3].reshape(-1, 3) / 255.0, rtol=1e-6)


def test_spatial_features_use_global_coordinates():
    spec = make_feature_spec(np.uint8, 1, (5, 9), spatial_weight=2.0)
    block = np.zeros((2, 3), dtype=np.uint8)
    feats, _ = spec.block_features(block, origin=(3, 6))
    yy, xx = np.meshgrid(np.arange(3, 5) / 4, np.arange(6, 9) / 8, indexing="ij")
    np.testing.assert_allclose(feats[:, 1], 2 * yy.ravel(), rtol=1e-6)
    np.testing.assert_allclose(feats[:, 2], 2 * xx.ravel(), rtol=1e-6)


def test_lab_round_trip_and_pickle(rng):
    spec = make_feature_spec(np.uint8, 3, (4, 4), colour_space="lab")
    values = rng.integers(0, 256, size=(10, 3))
    feats = spec.value_features(values)
    np.testing.assert_allclose(spec.to_input_units(feats), values, atol=0.05)
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_lab_needs_rgb():
    with pytest.raises(ConfigError):
        make_feature_spec(np.uint8, 1, (4, 4), colour_space="lab")
