"""Fitting engines and the choice between them."""

from __future__ import annotations

import dask.array as da

from pipeline.engines.base import Engine, FitParams, FitResult
from pipeline.engines.daskml import DaskMLEngine
from pipeline.errors import ConfigError
from pipeline.features import FeatureSpec

ENGINES: dict[str, type] = {"dask-ml": DaskMLEngine}


def select_engine(name: str, image: da.Array, spec: FeatureSpec, params: FitParams) -> Engine:
    """Return the engine called ``name``; ``"auto"`` picks the best that applies."""
    if name == "auto":
        return DaskMLEngine()
    try:
        return ENGINES[name]()
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; choose from auto, {', '.join(ENGINES)}") from None


__all__ = ["ENGINES", "Engine", "FitParams", "FitResult", "select_engine"]
