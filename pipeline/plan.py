"""A job as a plan built first and executed separately.

:func:`build_plan` opens every input's metadata, checks the output and chooses chunks; it reads
no pixels. :meth:`Plan.execute` runs the stages, each over all inputs at once:

1. data ranges of floating-point and wider-than-16-bit integer inputs over their pixels with
   data (one compute, only when there are any);
2. engine summaries (one compute);
3. fits (iterative engines run side by side);
4. labels, recoloured pyramid, label pyramid and per-cluster statistics (one compute);
5. metadata, with the output marked complete last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from pipeline import __version__, warn
from pipeline.blocks import spatial_block_keys
from pipeline.chunking import (
    CLUSTER_CHUNK_BYTES,
    choose_chunks,
    chunk_bytes_for_memory,
    local_memory_bytes,
    parallel_chunk_bytes,
)
from pipeline.config import JobConfig
from pipeline.engines import FitParams, FitResult, TooFewValues, select_engine
from pipeline.errors import ConfigError, InputError
from pipeline.execution import Executor, shared_path, uses_cluster
from pipeline.features import FeatureSpec, make_feature_spec, needs_data_range
from pipeline.io.colours import label_rgb
from pipeline.io.ngff import (
    SpatialMeta,
    label_colours,
    omero_for,
    write_image_pyramid,
    write_label_pyramid,
)
from pipeline.io.pyramid import n_levels
from pipeline.labels import (
    NearestCentreLabeller,
    cluster_stats,
    label_image,
    palette,
    recolour,
)
from pipeline.lock import OutputLock
from pipeline.measure import channel_labels, class_measurements, class_value_stats
from pipeline.outputs import check_output, create_root, unique_names, writing
from pipeline.readers import ImageSource
from pipeline.readers.urls import expand_urls, open_input
from pipeline.samples import resolve as resolve_sample


@dataclass
class ImageJob:
    """One input of a plan and what is decided for it before any pixel is read."""

    name: str
    source: ImageSource
    image: da.Array
    spec: FeatureSpec | None = None
    fit: FitResult | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class SegmentationResult:
    """What one input's segmentation produced (also written to the output metadata)."""

    name: str
    output: str
    k: int
    engine: str
    centres: np.ndarray
    centres_features: np.ndarray
    mse: float
    inertia: float
    counts: np.ndarray
    no_data: int
    metadata: dict[str, Any]


@dataclass
class Plan:
    """Everything decided for a job; :meth:`execute` runs it."""

    config: JobConfig
    jobs: list[ImageJob]

    @property
    def multi(self) -> bool:
        return len(self.jobs) > 1

    def execute(self, executor: Executor) -> list[SegmentationResult]:
        """Run the job and return one result per input.

        The output's lock is held from start to end (:class:`pipeline.lock.OutputLock`).
        """
        with OutputLock(self.config.output):
            return self._execute(executor)

    def _execute(self, executor: Executor) -> list[SegmentationResult]:
        params = FitParams(
            k=self.config.k,
            random_state=self.config.random_state,
            sample=self.config.sample,
            max_iter=self.config.max_iter,
            tol=self.config.tol,
            n_init=self.config.n_init,
        )
        started = time.perf_counter()
        self._make_specs(executor)
        engines = {}
        for job in self.jobs:
            with _naming(job):
                engines[job.name] = select_engine(self.config.engine, job.image, job.spec, params)
        t0 = time.perf_counter()
        lazy = {
            job.name: engines[job.name].summarise(job.image, job.spec, params) for job in self.jobs
        }
        pending = [name for name, value in lazy.items() if value is not None]
        if pending:
            values = executor.compute(*[lazy[n] for n in pending], label="summarising")
            lazy.update(zip(pending, values, strict=True))
        summary_s = time.perf_counter() - t0

        def fit(job: ImageJob) -> FitResult:
            with _naming(job):
                return engines[job.name].fit(lazy[job.name], job.image, job.spec, params)

        t0 = time.perf_counter()
        described = ", ".join(f"{j.name} ({engines[j.name].name})" for j in self.jobs)
        self._say(f"fitting k={params.k}: {described}")
        with ThreadPoolExecutor(max_workers=max(1, len(self.jobs))) as pool:
            for job, result in zip(self.jobs, pool.map(fit, self.jobs), strict=True):
                job.fit = result
        fit_s = time.perf_counter() - t0
        for job in self.jobs:
            job.timings.update(summary_s=summary_s, fit_s=fit_s)
        return self._write(executor, started)

    def _say(self, message: str) -> None:
        if not self.config.quiet:
            logging.getLogger(__name__).info("%s", message)

    def _make_specs(self, executor: Executor) -> None:
        """Feature specs of every input; data ranges (floats, integers wider than 16 bits) of
        all inputs that need one in one compute, over pixels with data only."""
        for job in self.jobs:
            source = job.source
            with _naming(job):
                job.spec = make_feature_spec(
                    source.dtype,
                    source.n_channels,
                    source.spatial_shape,
                    has_alpha=source.has_alpha,
                    # placeholder until the data's range is known (no-data rules need none)
                    data_range=(0, 1) if needs_data_range(source.dtype) else None,
                    colour_space=self.config.colour_space,  # type: ignore[arg-type]
                    spatial_weight=self.config.spatial_weight,
                    alpha=self.config.alpha,  # type: ignore[arg-type]
                    no_data=source.no_data,
                    valid_range=(
                        tuple(self.config.valid_range) if self.config.valid_range else None
                    ),
                )
        ranged = [job for job in self.jobs if needs_data_range(job.source.dtype)]
        if not ranged:
            return
        t0 = time.perf_counter()
        lazy = [_data_range(job.image, job.spec) for job in ranged]
        values = executor.compute(*lazy, label="finding data ranges")
        for job, found in zip(ranged, values, strict=True):
            assert job.spec is not None
            if found is None:
                rules = "; ".join(job.spec.no_data_rules) or "no pixels"
                raise InputError(job.source.path, f"no pixel has data (no data: {rules})")
            job.spec = job.spec.with_range(*found)
            job.timings["range_s"] = time.perf_counter() - t0

    def _write(self, executor: Executor, started: float) -> list[SegmentationResult]:
        with writing(self.config.output):
            return self._write_output(executor, started)

    def _write_output(self, executor: Executor, started: float) -> list[SegmentationResult]:
        t0 = time.perf_counter()
        root = create_root(self.config.output, self.config.overwrite)
        root.attrs["kmseg"] = {"version": __version__, "status": "incomplete"} | (
            {"outputs": [job.name for job in self.jobs]} if self.multi else {}
        )
        tasks: list[Any] = []
        stats = []
        measured = []
        for job in self.jobs:
            assert job.fit is not None and job.spec is not None
            group = root.require_group(job.name) if self.multi else root
            group.attrs["kmseg"] = {"version": __version__, "status": "incomplete"}
            centres = job.fit.centres
            labeller = job.fit.labeller or NearestCentreLabeller(job.spec, centres)
            labels = label_image(job.image, job.spec, labeller, len(centres))
            table = palette(job.spec, centres, job.source.dtype, job.fit.values)
            recoloured = recolour(labels, job.image, job.spec, table)
            spatial = SpatialMeta(
                axes=job.source.axes.replace("c", ""),
                spacing=job.source.spacing,
                unit=job.source.unit,
            )
            levels = n_levels(job.source.spatial_shape, self.config.pyramid_levels)
            tasks += write_image_pyramid(
                group, recoloured, spatial, levels, name=job.name, channel_first=True,
                omero=omero_for(job.source, job.spec, centres),
            )
            tasks += write_label_pyramid(
                group, labels, spatial, levels, label_colours(_display_rgb(job.spec, centres))
            )
            measured.append(
                class_value_stats(job.image, labels, job.spec.channels, len(centres))
            )
            stats.append(
                job.fit.stats
                if job.fit.stats is not None
                else cluster_stats(job.image, labels, job.spec, centres)
            )
        lazy = [i for i, stat in enumerate(stats) if not isinstance(stat, np.ndarray)]
        computed = executor.compute(
            *[stats[i] for i in lazy], *measured, *tasks, label="labelling and writing"
        )
        for i, value in zip(lazy, computed, strict=False):
            stats[i] = value
        measured = list(computed[len(lazy) : len(lazy) + len(measured)])
        write_s = time.perf_counter() - t0
        results = []
        for job, stat, values in zip(self.jobs, stats, measured, strict=True):
            job.timings["label_write_s"] = write_s
            job.timings["total_s"] = time.perf_counter() - started
            result = _result(
                self.config, job, stat, values, [j.source.path for j in self.jobs]
            )
            group = root[job.name] if self.multi else root
            group.attrs["kmseg"] = result.metadata
            results.append(result)
        root.attrs["kmseg"] = (
            {
                "version": __version__,
                "status": "complete",
                "outputs": [job.name for job in self.jobs],
                "config": self.config.to_dict(),
            }
            if self.multi
            else results[0].metadata
        )
        return results


@contextlib.contextmanager
def _naming(job: ImageJob) -> Iterator[None]:
    """Re-raise errors of engines and feature specs, which know no path, naming the input."""
    try:
        yield
    except (TooFewValues, ConfigError) as exc:
        raise InputError(job.source.path, str(exc)) from None


def _block_range(block: np.ndarray, spec: FeatureSpec) -> tuple[float, float] | None:
    return spec.value_range(block)


def _merge_ranges(*ranges: tuple[float, float] | None) -> tuple[float, float] | None:
    found = [r for r in ranges if r is not None]
    if not found:
        return None
    return min(r[0] for r in found), max(r[1] for r in found)


def _data_range(image: da.Array, spec: FeatureSpec, split_every: int = 16):
    """Lazy ``(min, max)`` of the feature values of the pixels with data (``None``: none),
    exact Python ints for integers."""
    spatial_ndim = len(spec.spatial_shape)
    block = dask.delayed(_block_range, pure=True)
    merge = dask.delayed(_merge_ranges, pure=True)
    parts = [block(b, spec) for b in spatial_block_keys(image, spatial_ndim)]
    while len(parts) > 1:
        parts = [merge(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def _display_rgb(spec: FeatureSpec, centres: np.ndarray) -> np.ndarray:
    """Centre colours in [0, 1] for display, ``(k, 3)``; ``(k, 0)`` when the features are not
    a colour (one channel, or a number of channels other than RGB / RGBA)."""
    if spec.colour_space == "lab":
        return np.clip(spec.to_input_units(centres) - spec.low, 0, None) / spec.scale
    n = spec.n_value_features
    if n == 3 or (n == 4 and spec.alpha is None and spec.channels == (0, 1, 2, 3)):
        return np.clip(centres[:, :3], 0, 1)
    return np.empty((len(centres), 0))


def _result(
    config: JobConfig,
    job: ImageJob,
    stat: np.ndarray,
    values: np.ndarray,
    paths: list[str] | None = None,
) -> SegmentationResult:
    paths = paths if paths is not None else [job.source.path]
    fit = job.fit
    assert fit is not None and job.spec is not None
    counts = stat[0, 1:].astype(np.int64)
    inertia = float(stat[1, 1:].sum())
    n_valid = int(counts.sum())
    mse = inertia / n_valid if n_valid else float("nan")
    centres_input = job.spec.to_input_units(fit.centres)
    metadata = {
        "version": __version__,
        "status": "complete",
        "k": len(fit.centres),
        "engine": fit.engine,
        "optimal": bool(fit.optimal),
        "n_iter": fit.n_iter,
        "random_state": config.random_state,
        "mse": mse,
        "inertia": inertia,
        "pixels_per_cluster": counts.tolist(),
        "pixels_without_data": int(stat[0, 0]),
        "no_data_rules": list(job.spec.no_data_rules),
        "centres": centres_input.tolist(),
        "centre_values": palette(
            job.spec, fit.centres, job.source.dtype, fit.values
        )[1:].tolist(),
        "label_colours": label_rgb(_display_rgb(job.spec, fit.centres))[1],
        "centres_features": fit.centres.tolist(),
        "classes": class_measurements(
            values,
            centres_input,
            job.source.spacing,
            job.source.unit,
            channel_labels(job.spec.channels, job.source.channel_names),
        ),
        "features": {
            "colour_space": job.spec.colour_space,
            "spatial_weight": job.spec.spatial_weight,
            "channels": list(job.spec.channels),
            "scaled_from": [job.spec.low, job.spec.high],
        },
        "engine_info": fit.info,
        "input": job.source.describe(),
        "chunks": [list(c[:1]) for c in job.image.chunks],
        "timings": {k: round(v, 4) for k, v in job.timings.items()},
        "config": config.to_dict(),
        "warnings": warn.for_input(warn.recorded(), job.source.path, paths),
    }
    return SegmentationResult(
        name=job.name,
        output=config.output if len(config.inputs) == 1 else f"{config.output}/{job.name}",
        k=len(fit.centres),
        engine=fit.engine,
        centres=centres_input,
        centres_features=fit.centres,
        mse=mse,
        inertia=inertia,
        counts=counts,
        no_data=int(stat[0, 0]),
        metadata=_jsonable(metadata),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def build_plan(config: JobConfig, sources: list[ImageSource] | None = None) -> Plan:
    """Open every input's metadata, check the output and choose chunks; read no pixels.

    ``sources`` replaces opening ``config.inputs`` (used for in-memory arrays).
    """
    config = config.validate()
    if sources is None:
        paths = expand_urls([resolve_sample(item) for item in config.inputs])
        sources = [
            open_input(shared_path(p, config), config.read_options())
            for p in paths
        ]
    config = dataclasses.replace(config, output=shared_path(config.output, config))
    check_output(config.output, config.overwrite, [s.path for s in sources],
                 given=[str(i) for i in config.inputs])
    names = unique_names([s.path for s in sources])
    workers = config.n_workers or os.cpu_count() or 1
    if config.chunk_mb:
        target_bytes = config.chunk_mb * 2**20
    elif uses_cluster(config):
        # The plan is made before connecting, and workers' memory is not this machine's.
        target_bytes = CLUSTER_CHUNK_BYTES
    else:
        target_bytes = chunk_bytes_for_memory(local_memory_bytes(), workers)
    jobs = []
    for name, source in zip(names, sources, strict=True):
        native = source.native_chunks[: source.spatial_ndim] if source.native_chunks else None
        image_bytes = math.prod(source.shape) * source.dtype.itemsize
        source_target = (
            target_bytes
            if config.chunk_mb
            else parallel_chunk_bytes(target_bytes, image_bytes, workers)
        )
        chunks = (
            tuple(config.chunks)
            if config.chunks
            else choose_chunks(
                source.spatial_shape,
                source.dtype.itemsize,
                source.n_channels,
                source_target,
                native,
            )
        )
        if len(chunks) != source.spatial_ndim:
            raise InputError(
                source.path,
                f"chunks {list(chunks)} do not match its {source.spatial_ndim} spatial axes",
            )
        jobs.append(
            ImageJob(
                name=name,
                source=source,
                image=source.to_dask(chunks),
            )
        )
    return Plan(config=config, jobs=jobs)
