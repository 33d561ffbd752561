"""Fitting engines and the choice between them.

``auto`` picks the exact engine (weighted distinct values; proven optimum for one feature) for
integer images whose features depend only on the value and either have one feature channel
(any integer dtype up to 64 bits: the table holds the distinct values present, capped at
:data:`~pipeline.engines.table.AUTO_MAX_DISTINCT` with a fallback to dask-ml beyond) or
several that pack into keys of at most :data:`~pipeline.engines.keys.AUTO_MAX_KEY_BITS` bits;
the binned engine (fine binning of the features, exact passes over the pixels) for other images
whose features depend only on the value (floats, 16-bit colour, many channels); dask-ml
otherwise.
"""

from __future__ import annotations

import dask.array as da

from pipeline import compile_notice
from pipeline.config import ENGINE_NAMES
from pipeline.engines.base import Engine, FitParams, FitResult, TooFewValues
from pipeline.engines.binned import BinnedEngine, binned_obstacle
from pipeline.engines.daskml import DaskMLEngine
from pipeline.engines.exact import ExactEngine
from pipeline.engines.keys import AUTO_MAX_KEY_BITS, exact_obstacle
from pipeline.engines.sample import SampleEngine
from pipeline.engines.table import AUTO_MAX_DISTINCT
from pipeline.errors import ConfigError
from pipeline.features import FeatureSpec

compile_notice.install()

#: Engine classes by their ``name``; the names are :data:`pipeline.config.ENGINE_NAMES`.
ENGINES: dict[str, type] = {
    engine.name: engine for engine in (ExactEngine, BinnedEngine, DaskMLEngine, SampleEngine)
}


def select_engine(name: str, image: da.Array, spec: FeatureSpec, params: FitParams) -> Engine:
    """Return the engine called ``name``; ``"auto"`` picks the best that applies.

    Raises :class:`ConfigError` for an unknown name or for ``"exact"`` on an image it does not
    apply to.
    """
    if name == "auto":
        if exact_obstacle(spec, AUTO_MAX_KEY_BITS) is None:
            return ExactEngine(max_distinct=AUTO_MAX_DISTINCT)
        if binned_obstacle(spec) is None:
            return BinnedEngine()
        return DaskMLEngine()
    if name == "exact":
        obstacle = exact_obstacle(spec)
        if obstacle:
            raise ConfigError(f"engine 'exact' does not apply to this image: {obstacle}")
    if name == "binned":
        obstacle = binned_obstacle(spec)
        if obstacle:
            raise ConfigError(f"engine 'binned' does not apply to this image: {obstacle}")
    try:
        return ENGINES[name]()
    except KeyError:
        raise ConfigError(
            f"unknown engine {name!r}; choose from {', '.join(ENGINE_NAMES)}"
        ) from None


__all__ = ["ENGINES", "Engine", "FitParams", "FitResult", "TooFewValues", "select_engine"]
