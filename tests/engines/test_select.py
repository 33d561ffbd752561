"""Choosing an engine."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from pipeline.engines import ENGINES, FitParams, select_engine
from pipeline.errors import ConfigError
from pipeline.features import make_feature_spec

PARAMS = FitParams(k=3)


def _pick(name: str, spec) -> str:
    image = da.zeros((8, 8, 3), dtype=spec.dtype, chunks=4)
    return select_engine(name, image, spec, PARAMS).name


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (make_feature_spec(np.uint8, 3, (8, 8)), "exact"),
        (make_feature_spec(np.uint8, 3, (8, 8), colour_space="lab"), "exact"),
        (make_feature_spec(np.uint8, 4, (8, 8), has_alpha=True), "exact"),
        (make_feature_spec(np.uint16, 1, (8, 8)), "exact"),
        (make_feature_spec(np.int16, 1, (8, 8, 8)), "exact"),
        (make_feature_spec(np.uint16, 3, (8, 8)), "binned"),
        (make_feature_spec(np.uint8, 3, (8, 8), spatial_weight=0.5), "dask-ml"),
        (make_feature_spec(np.float32, 1, (8, 8), data_range=(0, 1)), "binned"),
    ],
)
def test_auto(spec, expected):
    assert _pick("auto", spec) == expected


def test_forced_engines():
    spec = make_feature_spec(np.uint16, 3, (8, 8))
    assert _pick("exact", spec) == "exact"
    for name in ENGINES:
        assert _pick(name, make_feature_spec(np.uint8, 3, (8, 8))) == name


def test_exact_where_it_does_not_apply():
    spec = make_feature_spec(np.float32, 3, (8, 8), data_range=(0, 1))
    with pytest.raises(ConfigError, match="integer values"):
        _pick("exact", spec)
    with pytest.raises(ConfigError, match="spatial"):
        _pick("exact", make_feature_spec(np.uint8, 3, (8, 8), spatial_weight=1.0))


def test_unknown_engine():
    with pytest.raises(ConfigError, match="choose from auto, exact, binned, dask-ml, sample"):
        _pick("fast", make_feature_spec(np.uint8, 3, (8, 8)))
