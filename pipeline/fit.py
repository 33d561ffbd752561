"""One model for many images: a fit over every input pooled (``kmseg fit``, ``--shared-model``).

* The exact engine (integer images of at most 16 bits whose features depend only on the
  value): the per-image
  tables of distinct values add up (:func:`~pipeline.engines.table.merge_tables`), and one
  weighted fit on the merged table minimises the K-Means objective over every pixel of every
  image; its cost depends on the number of distinct values, not of pixels.
* Other engines (``sample``, ``dask-ml``, and ``auto`` on floating-point or wider inputs): a
  reproducible sample of ``sample`` pixels (default 100,000) is drawn across the inputs, each
  input contributing in proportion to its number of pixels (at least ``k``), and fitted with
  scikit-learn's KMeans (``n_init`` k-means++ restarts). Floating-point and wide-integer inputs
  are scaled by the range of all inputs together (one more pass).

The inputs are streamed in the same bounded windows as a segmentation batch (see
:mod:`pipeline.batch`), so memory does not grow with their number. Every input must have the
dtype, channels and alpha of the first; another is refused with one line naming it.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import numpy as np

from pipeline import __version__
from pipeline.batch import (
    Working,
    _live,
    _naming,
    _params,
    _prepare,
    _windows,
    data_range,
    merge_ranges,
)
from pipeline.engines import select_engine
from pipeline.engines.base import centres_in_input_units
from pipeline.engines.exact import ExactEngine
from pipeline.engines.sample import canonical_rows, fit_sample, sample_size
from pipeline.engines.table import merge_tables
from pipeline.errors import ConfigError, InputError
from pipeline.execution import Executor
from pipeline.features import FeatureSpec, needs_data_range, span_problem
from pipeline.labels import nearest_centre
from pipeline.model import Model
from pipeline.order import class_order
from pipeline.plan import Plan
from pipeline.sampling import sample_features


def _check_same(w: Working, first: Working) -> None:
    a, b = w.source, first.source
    if (a.dtype, a.n_channels, a.has_alpha) != (b.dtype, b.n_channels, b.has_alpha):
        raise InputError(
            w.job.path,
            f"cannot be pooled with {first.job.path}: {a.dtype}, {a.n_channels} channel(s)"
            f"{' with alpha' if a.has_alpha else ''} against {b.dtype}, {b.n_channels} "
            f"channel(s){' with alpha' if b.has_alpha else ''}",
        )


def fit_model(plan: Plan, executor: Executor) -> Model:
    """Fit one model on all inputs of ``plan`` pooled (see the module docstring).

    Returns
    -------
    Model
        Centres numbered by the config's ``label_order``; ``provenance`` holds the inputs, the
        pixels fitted and the pooled objective (``inertia``: sum of squared feature distances
        of every pixel to its nearest centre for the exact engine, of the sample otherwise;
        ``mse``: inertia per pixel).

    Raises
    ------
    InputError
        An input that cannot be read, or that differs from the first in dtype or channels.
    ConfigError
        With ``mask`` or ``k: auto`` (not supported for pooled fits).
    """
    if plan.config.mask or plan.config.k == "auto":
        raise ConfigError(
            "mask and k: auto are not supported when one model is fitted on all inputs "
            "(kmseg fit, shared_model); fit the model with a fixed k and without a mask, then "
            "apply it with --model (a mask may be given there)"
        )
    config = dataclasses.replace(plan.config, on_error="stop")
    params = _params(config)
    first: Working | None = None
    pooled_range = None
    pixels: dict[str, int] = {}
    exact = None
    table = None
    for window in _windows(list(plan.jobs), config):
        for w in window:
            _prepare(w, config, None, executor)
            first = first or w
            _check_same(w, first)
            pixels[w.job.name] = math.prod(w.source.spatial_shape)
        if needs_data_range(first.source.dtype):
            values = executor.compute(*[data_range(w.image, w.spec) for w in window],
                                      label="finding data ranges")
            pooled_range = merge_ranges(pooled_range, *values)
            continue
        if exact is None:
            with _naming(first.job):
                engine = select_engine(config.engine, first.image, first.spec, params)
            exact = isinstance(engine, ExactEngine)
            if not exact:
                continue
            exact_engine = engine
        if exact:
            tables = executor.compute(
                *[exact_engine.summarise(w.image, w.spec, params) for w in _live(window)],
                label="summarising",
            )
            table = merge_tables(*([table] if table is not None else []), *tables,
                                 max_distinct=exact_engine.max_distinct)
    assert first is not None
    spec = first.spec
    if needs_data_range(first.source.dtype):
        if pooled_range is None:
            raise InputError(first.job.path, "no pixel of any input has data")
        if (problem := span_problem(*pooled_range)) is not None:
            names = [job.path for job in plan.jobs]
            where = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
            raise InputError(where, f"pooled: {problem}" if len(names) > 1 else problem)
        spec = spec.with_range(*pooled_range)
    if table is not None and not table.overflowed:
        with _naming(first.job):
            fit = exact_engine.fit(table, first.image, spec, params)
        stats = fit.stats
        centres, means = fit.centres, fit.means
        inertia = float(stats[1, 1:].sum())
        n_pixels = int(stats[0, 1:].sum())
        counts = stats[0, 1:]
        engine_name = "exact"
    else:
        centres, counts, inertia, n_pixels = _fit_pooled_sample(plan, config, executor, spec,
                                                                pixels, pooled_range)
        means = None
        engine_name = "sample"
    order = class_order(centres, config.label_order, colour_space=spec.colour_space,
                        n_value_features=spec.n_value_features, counts=counts)
    centres = np.asarray(centres)[order]
    return Model(
        centres=centres_in_input_units(spec, centres, None if means is None else means[order]),
        centres_features=centres,
        dtype=str(first.source.dtype),
        n_channels=first.source.n_channels,
        has_alpha=first.source.has_alpha,
        channels=tuple(spec.channels),
        low=spec.low,
        high=spec.high,
        colour_space=spec.colour_space,
        spatial_weight=spec.spatial_weight,
        engine=engine_name,
        label_order=config.label_order,
        provenance={
            "kmseg_version": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "inputs": [job.path for job in plan.jobs],
            "n_pixels": n_pixels,
            "inertia": inertia,
            "mse": inertia / n_pixels if n_pixels else None,
            "pixels_per_cluster": np.asarray(counts)[order].astype(np.int64).tolist(),
            "random_state": config.random_state,
        },
    )


def _fit_pooled_sample(plan: Plan, config, executor: Executor, spec: FeatureSpec,
                       pixels: dict[str, int], pooled_range) -> tuple:
    """scikit-learn KMeans on a sample drawn from every input in proportion to its pixels."""
    params = _params(config)
    total = sum(pixels.values())
    wanted = sample_size(params)
    parts = []
    for window in _windows(list(plan.jobs), config):
        lazy = []
        for w in window:
            _prepare(w, config, None, executor)
            w_spec = spec if pooled_range is None else w.spec.with_range(*pooled_range)
            w_spec = dataclasses.replace(spec, spatial_shape=w_spec.spatial_shape,
                                         no_data=w_spec.no_data, alpha=w_spec.alpha)
            n = max(params.k, math.ceil(wanted * pixels[w.job.name] / total))
            index = len(parts) + len(lazy)
            seed = None if params.random_state is None else params.random_state + index
            lazy.append(sample_features(w.image, w_spec, n, seed))
        parts.extend(executor.compute(*lazy, label="sampling"))
    with _naming(plan.jobs[0]):
        rows = canonical_rows(np.concatenate(parts), params.k)
    model = fit_sample(rows, params)
    index, dist = nearest_centre(rows, model.cluster_centers_)
    counts = np.bincount(index, minlength=params.k)
    return (np.asarray(model.cluster_centers_, dtype=np.float64), counts, float(dist.sum()),
            len(rows))
