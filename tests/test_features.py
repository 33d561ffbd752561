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


# --- The no-data rule and wide integers ---------------------------------------------------


def test_non_finite_values_are_no_data():
    block = np.array([[1.0, np.inf], [-np.inf, np.nan], [2.0, 3.0]], dtype=np.float32)
    spec = make_feature_spec(np.float32, 1, (3, 2), data_range=(1.0, 3.0))
    feats, valid = spec.block_features(block)
    assert valid.tolist() == [True, False, False, False, True, True]
    np.testing.assert_allclose(feats[:, 0], [0, 0, 0, 0, 0.5, 1.0])


def test_alpha_zero_is_no_data_in_mask_mode_and_a_feature_in_channel_mode():
    block = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [1, 2, 3, 7]]], dtype=np.uint8)
    mask = make_feature_spec(np.uint8, 4, (1, 3), has_alpha=True)
    assert mask.channels == (0, 1, 2) and mask.alpha == 3
    assert mask.valid_mask(block).tolist() == [False, True, True]
    channel = make_feature_spec(np.uint8, 4, (1, 3), has_alpha=True, alpha="channel")
    assert channel.channels == (0, 1, 2, 3) and channel.valid_mask(block) is None
    feats, valid = channel.block_features(block)
    assert valid.all() and feats.shape == (3, 4)
    np.testing.assert_allclose(feats[0], [10 / 255, 20 / 255, 30 / 255, 0], rtol=1e-6)


def test_no_data_intervals_and_valid_range():
    block = np.array([[-3024, -2000, -1000, 0, 3000, 4000]], dtype=np.int16)
    spec = make_feature_spec(np.int16, 1, (1, 6), no_data=[(-3024, -2000)],
                             valid_range=(-1024, 3071))
    assert spec.valid_mask(block).tolist() == [False, False, True, True, True, False]
    assert len(spec.no_data_rules) == 2
    assert spec.value_range(block) == (-1000, 3000)


def test_images_without_rules_compute_no_mask():
    spec = make_feature_spec(np.uint8, 3, (2, 2))
    assert spec.no_data_rules == () and spec.valid_mask(np.zeros((2, 2, 3), np.uint8)) is None


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64, np.uint64])
def test_wide_integers_are_float64_features_of_the_data_range(dtype):
    info = np.iinfo(dtype)
    low = int(info.min) + 1
    values = np.array([low, low + 50, low + 51, int(info.max)], dtype=dtype)
    spec = make_feature_spec(dtype, 1, (1, 4), data_range=(low, int(info.max)))
    feats, _ = spec.block_features(values.reshape(1, 4))
    assert feats.dtype == np.float64
    span = int(info.max) - low
    np.testing.assert_array_equal(feats[:, 0], [0.0, 50 / span, 51 / span, 1.0])
    assert feats[1, 0] != feats[2, 0]


def test_feature_dtype():
    assert make_feature_spec(np.uint16, 1, (2, 2)).feature_dtype == np.float32
    assert make_feature_spec(np.float64, 1, (2, 2), data_range=(0, 1)).feature_dtype == np.float64
    assert make_feature_spec(np.int32, 1, (2, 2)).feature_dtype == np.float64


@pytest.mark.parametrize("command", ["segment", "fit"])
def test_float64_span_beyond_float64_is_one_line(tmp_path, capsys, command):
    # -1e308..1.7e308: high - low overflowed to inf, every feature became 0 (two RuntimeWarnings,
    # then "k=2 is larger than the 1 non-empty bins", which blamed k for the data).
    from pipeline.cli import main

    path = tmp_path / "extreme.npy"
    np.save(path, np.array([[1e308, -1e308], [1.7e308, 0.0]]))
    out = tmp_path / ("o.zarr" if command == "segment" else "m.json")
    code = main([command, str(path), "-k", "2", "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(path) in err and "beyond the float64 range" in err
    assert "Warning" not in err and not out.exists()


def test_span_problem_bounds():
    from pipeline.features import span_problem

    assert span_problem(-1e308, 1e308) is not None
    assert span_problem(-8e307, 8e307) is None  # 1.6e308 is a float64
    assert span_problem(-(2**63), 2**64 - 1) is None  # wide integers: Python ints
