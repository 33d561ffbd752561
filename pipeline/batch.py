"""Executing a plan: inputs streamed through in bounded windows, resumable, with progress.

Memory does not grow with the number of inputs. The inputs are taken in *windows* of at most
``batch_inputs`` inputs (a config key, default 32) and :data:`WINDOW_PIXELS` pixels (an input
larger than that is a window of its own); only the inputs of one window are open at a time
(metadata, graphs, fitted tables), and each stage runs as one Dask compute over the whole
window, so on a cluster the inputs of a window run side by side on the workers. Per window:

1. open: each input's metadata; its feature spec (no-data rules and, later, its mask) and the
   parameters of its fit (``k``) are decided in :func:`_prepare`;
2. data ranges of floating-point and wider-than-16-bit integer inputs (one compute, if any);
3. engine summaries (one compute); fits (side by side in threads); classes renumbered by the
   ``label_order`` rule (:mod:`pipeline.order`), after an extra counting pass for ``size`` when
   the engine has no exact counts;
4. labels, recoloured pyramid, label pyramid and per-cluster statistics (one compute);
5. each input's metadata, its ``status`` set to ``complete`` last.

Resuming (grouped outputs): the store's root metadata holds the job's fingerprint (every config
key that changes the output) and ``status: incomplete`` until the batch ends. A rerun of the same
job over an unfinished (or partial) store keeps the groups whose own metadata says ``complete``,
removes the others (they may hold half-written chunks) and does only the rest. A rerun with a
different config is refused unless ``overwrite`` is set (which starts over).

Errors: with ``on_error: stop`` (the default) the first failing input stops the job; with
``continue`` it is reported in one line on stderr and recorded in the root metadata
(``failed``), the batch goes on, and the root ends with ``status: partial``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from pipeline import __version__, warn
from pipeline.blocks import spatial_block_keys, tree_merge
from pipeline.chunking import (
    CLUSTER_CHUNK_BYTES,
    choose_chunks,
    chunk_bytes_for_memory,
    local_memory_bytes,
    parallel_chunk_bytes,
)
from pipeline.config import JobConfig
from pipeline.engines import FitParams, FitResult, TooFewValues, select_engine
from pipeline.errors import ConfigError, InputError, OutputError
from pipeline.execution import Executor, uses_cluster
from pipeline.features import FeatureSpec, make_feature_spec, needs_data_range, span_problem
from pipeline.io.colours import label_rgb
from pipeline.io.ngff import (
    LABEL_NAME,
    Node,
    SpatialMeta,
    create_nodes,
    hold_back_ome,
    image_pyramid_nodes,
    label_colours,
    label_pyramid_nodes,
    labels_group_node,
    omero_for,
)
from pipeline.io.pyramid import n_levels
from pipeline.labels import NearestCentreLabeller, cluster_stats, label_image, palette, recolour
from pipeline.measure import channel_labels, class_measurements, class_value_stats
from pipeline.order import class_order, reorder_fit
from pipeline.plan import BatchResults, FailedInput, InputJob, Plan, SegmentationResult
from pipeline.readers import ImageSource

log = logging.getLogger("kmseg")

#: Most pixels of the inputs open at once (one window); a larger input is a window of its own.
WINDOW_PIXELS = 1 << 25

#: Config keys that do not change what is written (where and how the job runs, messages).
RUN_KEYS = frozenset({
    "quiet", "overwrite", "scheduler", "scheduler_file", "cluster", "n_workers",
    "local_scheduler", "tls_ca_file", "tls_cert", "tls_key", "connect_timeout",
    "performance_report", "on_error", "output", "batch_inputs", "batch_processes", "report",
})

#: Exit status of the CLI when some inputs of a batch failed (``on_error: continue``).
EXIT_SOME_FAILED = 3


@dataclass
class Working:
    """One input while its window runs (execution state, never stored on the plan)."""

    job: InputJob
    source: ImageSource | None = None
    image: da.Array | None = None
    spec: FeatureSpec | None = None
    params: FitParams | None = None
    engine: Any = None
    fit: FitResult | None = None
    order: list[int] | None = None
    #: The input's mask (``mask`` key); ``image`` and ``spec`` then carry it as no data.
    mask: Any = None
    #: ``(image, spec)`` without the mask: what is recoloured and measured.
    unmasked: tuple[da.Array, FeatureSpec] | None = None
    #: The curve and the choice of ``k: auto``.
    k_auto: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    #: With ``on_error: stop``, the exception that stops the batch at this input: the inputs
    #: before it in its window are still written, then it is raised (:func:`_write_window`).
    stop: BaseException | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def pixels(self) -> int:
        return math.prod(self.source.spatial_shape) if self.source is not None else 0


def job_fingerprint(config: JobConfig) -> str:
    """Hash of every config key that changes the output (not where or how it runs), and of the
    contents of the model file and the stamp (size, modification time) of a mask file, so a
    batch is never resumed with another model or mask under the same name."""
    keys = {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_KEYS}
    if config.model and os.path.isfile(config.model):
        with open(config.model, "rb") as fh:
            keys["model_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    if config.mask and config.mask != "auto" and os.path.isfile(config.mask):
        stat = os.stat(config.mask)
        keys["mask_stamp"] = [stat.st_size, stat.st_mtime_ns]
    text = json.dumps(keys, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_batch(plan: Plan, executor: Executor, model: Any = None) -> BatchResults:
    """Execute ``plan`` (see the module docstring); return the results of finished inputs.

    The output's lock is held from start to end (:class:`pipeline.lock.OutputLock`), and
    write failures (full disk, read-only) become one-line errors
    (:func:`pipeline.outputs.writing`).
    """
    from pipeline.lock import OutputLock
    from pipeline.outputs import writing

    with OutputLock(plan.config.output), writing(plan.config.output):
        return _run(plan, executor, model)


def _run(plan: Plan, executor: Executor, model: Any) -> BatchResults:
    config = plan.config
    started = time.perf_counter()
    resume = _resumable(plan)
    done = _finished(plan) if resume else set()
    root = _LazyRoot(plan, resume)
    todo = [job for job in plan.jobs if job.name not in done]
    quiet = config.quiet
    if done:  # a warning, shown even with quiet: the run does less than the command says
        log.warning("%d of %d done, resuming", len(done), len(plan.jobs))
    inner = (Executor(executor.client, progress=False, threads=executor.threads)
             if plan.grouped else executor)
    bar = _progress(len(plan.jobs), len(done), quiet or not plan.grouped)
    results: dict[str, SegmentationResult] = {}
    failed: list[FailedInput] = []
    pixels_done = 0

    # Warnings are told apart by the paths they name: a window's range of recorded warnings
    # (from before it was opened) also holds those of its neighbours, in flight at the time.
    written: list[Working] = []

    def write(window: list[Working], fitting: Future | None, warnings_from: int,
              following: list[str], outcome: Any = None) -> None:
        """Write ``window`` here (its fit is ``fitting``), or take what a worker process wrote
        (``outcome``); ``following`` are the paths of the windows in flight after it."""
        nonlocal pixels_done, written
        if outcome is None:
            fitting.result()
            neighbours = [w.job.path for w in written] + following
            _write_window(plan, inner, root, window, failed, results, warnings_from, neighbours)
        else:
            _take_outcome(plan, root, window, outcome, failed, results)
        written = window
        pixels_done += sum(w.pixels for w in window if w.error is None)
        if bar is not None:
            bar.update(len(window))
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{pixels_done / elapsed / 1e6:.2f} Mpx/s")

    n_processes = 0
    if todo:
        from pipeline.batchpool import pool_processes

        n_processes = pool_processes(plan, executor, len(todo))
    if n_processes:
        from pipeline.batchpool import POOL_WINDOW

        windows = _windows(todo, config, POOL_WINDOW)
    else:
        windows = _windows(todo, config)
    try:
        if n_processes:
            _run_pooled(plan, inner, root, windows, model, n_processes, write)
        else:
            _run_here(plan, inner, windows, model, write)
    finally:
        if bar is not None:
            bar.close()
    if plan.grouped:
        finished = [job.name for job in plan.jobs if job.name in done or job.name in results]
        root.get().attrs["kmseg"] = {
            **_root_attrs(plan, "partial" if failed else "complete"),
            "outputs": finished,
            "failed": [
                {"input": f.name, "path": f.path, "error": f.error} for f in failed
            ],
            "config": config.to_dict(),
        }
    ordered = [results[job.name] for job in plan.jobs if job.name in results]
    return BatchResults(ordered, failed, resumed=len(done))


def _run_here(plan: Plan, executor: Executor, windows: Iterator[list[Working]], model: Any,
              write) -> None:
    """Every window in this process: window n + 1 is opened and fitted (a thread) while window
    n is written (this thread); fits are mostly compiled code, writes mostly Python, so the two
    share the cores. At most two windows are in flight."""
    ahead = ThreadPoolExecutor(1, thread_name_prefix="kmseg-fit")
    pending: tuple[list[Working], Future, int] | None = None
    try:
        while True:
            opening = len(warn.recorded())  # the window's warnings start with its opening
            window = next(windows, None)
            if window is None:
                break
            fitting = ahead.submit(_fit_window, plan, executor, window, model)
            if pending is not None:
                write(*pending, [w.job.path for w in window])
            pending = (window, fitting, opening)
        if pending is not None:
            write(*pending, [])
    finally:
        # After an error, a window not yet fitting is dropped and the one fitting ends first.
        ahead.shutdown(wait=True, cancel_futures=True)


def _run_pooled(plan: Plan, executor: Executor, root: _LazyRoot,
                windows: Iterator[list[Working]], model: Any, n_processes: int,
                write) -> None:
    """Windows of small inputs in worker processes (:mod:`pipeline.batchpool`); the first
    window and windows with a large input here, once the pool's windows before them ended."""
    from pipeline.batchpool import Pool, is_small

    pool: Pool | None = None  # started after the first window (see batchpool.START_METHOD)
    drained: list[str] = []  # paths of the pool's windows whose warnings were replayed

    def collect() -> None:
        window, outcome = pool.next_done()
        warn.replay(outcome.warnings)
        drained.extend(w.job.path for w in window)
        write(window, None, 0, [], outcome=outcome)

    try:
        first = True
        while True:
            opening = len(warn.recorded())
            window = next(windows, None)
            if window is None:
                break
            if first or not is_small(window):
                while pool is not None and pool.pending:
                    collect()
                fitting: Future = Future()
                fitting.set_result(_fit_window(plan, executor, window, model))
                write(window, fitting, opening, drained)
                drained = []
                first = False
                continue
            opened = warn.recorded()[opening:]
            if pool is None:
                pool = Pool(n_processes, plan, model)
            while pool.full():
                collect()
            pool.submit(window, opened)
        while pool is not None and pool.pending:
            collect()
    except BaseException:
        if pool is not None:
            # on_error: stop (or an output error): no input after the failing one may remain
            for window in pool.close():
                _discard(window, root)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.close()


def _progress(total: int, initial: int, off: bool):
    if off:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="image", desc="kmseg", file=sys.stderr,
                mininterval=0.5, dynamic_ncols=True)


# -- the output store ---------------------------------------------------------------------


def _root_attrs(plan: Plan, status: str) -> dict[str, Any]:
    return {
        "version": __version__,
        "status": status,
        "layout": "groups",
        "fingerprint": job_fingerprint(plan.config),
        "n_inputs": len(plan.jobs),
        # every group the batch may write (pipeline.outputs treats others as foreign)
        "outputs": [job.name for job in plan.jobs],
    }


def check_same_job(path: str, config: JobConfig) -> None:
    """Refuse to resume the unfinished batch at ``path`` with another job configuration.

    Raises
    ------
    OutputError
        When the batch's fingerprint (:func:`job_fingerprint`) differs from ``config``'s.
    """
    import zarr

    before = zarr.open_group(path, mode="r", zarr_format=3).attrs.get("kmseg", {})
    if not isinstance(before, dict) or before.get("layout") != "groups":
        return
    if before.get("fingerprint") != job_fingerprint(config):
        raise OutputError(
            f"{path}: holds an unfinished batch of a different job configuration; rerun it "
            "with the same settings to resume, or pass --overwrite (overwrite=True in Python) "
            "to start over"
        )


def _resumable(plan: Plan) -> bool:
    """True when the output is an unfinished (or partial) batch of this job to resume."""
    import zarr

    from pipeline.outputs import output_status

    config = plan.config
    if not plan.grouped or config.overwrite:
        return False
    if output_status(config.output) not in ("incomplete", "partial"):
        return False
    before = zarr.open_group(config.output, mode="r", zarr_format=3).attrs.get("kmseg", {})
    if not (isinstance(before, dict) and before.get("layout") == "groups"):
        return False
    check_same_job(config.output, config)
    return True


def _finished(plan: Plan) -> set[str]:
    """Inputs an earlier run of this batch finished (their group says complete); reads only.

    Raises
    ------
    OutputError
        A finished input whose file or mask file changed since (its recorded size and
        modification time), or that is no longer an input of the job (its file removed or
        renamed): resuming would mix old and new results.
    """
    import zarr

    from pipeline.readers.base import input_stamp

    root = zarr.open_group(plan.config.output, mode="r", zarr_format=3)
    paths = {job.name: job.path for job in plan.jobs}
    done = set()
    for name, group in _groups(root):
        meta = group.attrs.get("kmseg", {})
        if not isinstance(meta, dict) or meta.get("status") != "complete":
            continue
        if name not in paths:
            gone = (meta.get("input") or {}).get("path") or name
            raise OutputError(
                f"{plan.config.output}: this unfinished batch segmented {gone}, which is no "
                "longer one of its inputs; pass --overwrite (overwrite=True in Python) to start "
                "over"
            )
        recorded = (meta.get("input") or {}).get("stamp")
        if recorded is not None and recorded != input_stamp(paths[name]):
            raise OutputError(
                f"{plan.config.output}: the input {paths[name]} changed since this unfinished "
                "batch segmented it; pass --overwrite (overwrite=True in Python) to start over"
            )
        mask = meta.get("mask") or {}
        if mask.get("stamp") is not None and mask["stamp"] != input_stamp(mask.get("source")):
            raise OutputError(
                f"{plan.config.output}: the mask {mask.get('source')} of the input "
                f"{paths[name]} changed since this unfinished batch segmented it; pass "
                "--overwrite (overwrite=True in Python) to start over"
            )
        done.add(name)
    return done


def _groups(root: Any) -> list[tuple[str, Any]]:
    """The groups of a batch's root. A folder or prefix without ``zarr.json`` is none: a kill
    while a group was being created leaves one, and some S3 servers (SeaweedFS) keep the empty
    prefix of a group kmseg removed; zarr's warning about each is left out (it would only
    repeat on every resume; what kmseg did not write is refused by :mod:`pipeline.outputs`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Object at .* is not recognized as a component of a Zarr")
        return list(root.groups())


def _entries(root: Any) -> list[str]:
    """Names directly under ``root`` in its store, nodes or not."""
    from zarr.core.sync import sync

    async def listed() -> list[str]:
        return [name async for name in root.store.list_dir(root.path)]

    return sync(listed())


class _LazyRoot:
    """The output's root group, created (or reopened to resume) when first needed, so that a
    job that fails before writing anything leaves no output behind."""

    def __init__(self, plan: Plan, resume: bool) -> None:
        self.plan = plan
        self.resume = resume
        self.root: Any = None

    @property
    def opened(self) -> bool:
        return self.root is not None

    def get(self) -> Any:
        if self.root is None:
            self.root = self._open()
        return self.root

    def _open(self) -> Any:
        import zarr

        from pipeline.outputs import create_root

        plan = self.plan
        path = plan.config.output
        if not plan.grouped:
            return create_root(path, plan.config.overwrite)
        if self.resume:
            root = zarr.open_group(path, mode="r+", zarr_format=3)
            complete = set()
            for name, group in _groups(root):
                meta = group.attrs.get("kmseg", {})
                if isinstance(meta, dict) and meta.get("status") == "complete":
                    complete.add(name)
                else:
                    del root[name]  # half written by the interrupted run
            ours = {job.group for job in plan.jobs}
            for name in _entries(root):
                if name in ours and name not in complete:
                    # a group's folder without its zarr.json (killed while it was created)
                    del root[name]
        else:
            root = create_root(path, plan.config.overwrite)
        root.attrs["kmseg"] = _root_attrs(plan, "incomplete")
        return root


# -- windows ------------------------------------------------------------------------------


def _windows(jobs: list[InputJob], config: JobConfig,
             most: int | None = None) -> Iterator[list[Working]]:
    """Consecutive windows of opened inputs, bounded by count and pixels (module docstring).

    An input that cannot be opened still takes its place (with its error) so that it is
    reported in order; with ``on_error: stop`` it is the last input of the last window.
    """
    window: list[Working] = []
    pixels = 0
    most = min(most or config.batch_inputs, config.batch_inputs)
    for job in jobs:
        if len(window) >= most:
            yield window
            window, pixels = [], 0
        working = Working(job)
        try:
            with _naming(job):
                working.source = job.open(config)
        except OutputError:
            raise
        except (InputError, OSError, ValueError) as exc:
            _failed(working, exc, config)
        if window and pixels + working.pixels > WINDOW_PIXELS:
            yield window
            window, pixels = [], 0
        window.append(working)
        pixels += working.pixels
        if working.stop is not None:
            break  # on_error: stop; the window is written up to this input, then it raises
    if window:
        yield window


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, InputError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _naming(job: InputJob, mask: Any = None) -> Iterator[None]:
    """Re-raise errors of engines and feature specs, which know no path, naming the input (and
    ``mask``, a :class:`~pipeline.mask.Mask`, when too few values are left inside it)."""
    try:
        yield
    except (TooFewValues, ConfigError) as exc:
        raise InputError(job.path, _problem(exc, mask)) from None


def _problem(exc: Exception, mask: Any) -> str:
    if not isinstance(exc, TooFewValues) or mask is None:
        return str(exc)
    if exc.n_distinct == 0:
        return f"no pixel inside {_mask_name(mask)} has data"
    return (f"k={exc.k} is larger than the {exc.n_distinct} distinct value(s) inside "
            f"{_mask_name(mask)}")


def _mask_name(mask: Any) -> str:
    """How messages name a :class:`~pipeline.mask.Mask`."""
    return (f"the mask {mask.source}" if mask.method == "file"
            else f"the automatic mask ({mask.method})")


def _no_data(w: Working) -> str:
    """Why no pixel of ``w`` has data: the rules that mark pixels as no data, and its mask."""
    plain = w.unmasked[1] if w.unmasked is not None else w.spec
    rules = "; ".join(plain.no_data_rules)
    if w.mask is not None:
        return f"no pixel inside {_mask_name(w.mask)} has data" + (
            f" (no data: {rules})" if rules else "")
    return f"no pixel has data (no data: {rules or 'no pixels'})"


def _live(window: list[Working]) -> list[Working]:
    """The inputs of ``window`` still running: none that failed, and none after one that stops
    the batch (``on_error: stop``; a sequential run would never reach them)."""
    live = []
    for w in window:
        if w.stop is not None:
            break
        if w.error is None:
            live.append(w)
    return live


def _failed(w: Working, exc: BaseException, config: JobConfig) -> None:
    """Record that ``w`` failed with ``exc``; with ``on_error: stop`` it stops the batch."""
    w.error = _one_line(exc)
    if config.on_error != "continue":
        w.stop = exc


@contextlib.contextmanager
def _isolated(w: Working, config: JobConfig) -> Iterator[None]:
    """One input's step: its errors name it and are recorded on it (:func:`_failed`), except
    output errors, which end the job."""
    try:
        with _naming(w.job, w.mask):
            yield
    except OutputError:
        raise
    except Exception as exc:
        _failed(w, exc, config)


def _each(window: list[Working], config: JobConfig, step) -> None:
    """Run ``step(working)`` for each live input, isolating failures (:func:`_isolated`)."""
    for w in _live(window):
        with _isolated(w, config):
            step(w)
        if w.stop is not None:
            return


def _compute(executor: Executor, config: JobConfig, items: list[tuple[Working, Any]],
             label: str) -> list[tuple[Working, Any]]:
    """Compute the lazy values of ``items`` in one graph; a failing graph is computed input by
    input, in order, so that only the inputs that fail are dropped (``continue``) or the inputs
    before the first that fails are kept (``stop``)."""
    if not items:
        return []
    try:
        values = executor.compute(*[lazy for _, lazy in items], label=label)
        return list(zip([w for w, _ in items], values, strict=True))
    except OutputError:
        raise
    except Exception:
        pass
    out = []
    for w, lazy in items:
        with _isolated(w, config):
            (value,) = executor.compute(lazy, label=label)
            out.append((w, value))
        if w.stop is not None:
            break
    return out


def _remove_group(w: Working, root: Any) -> None:
    if w.job.group is not None and root.opened and w.job.group in root.get():
        del root.get()[w.job.group]


def discard_failed(window: list[Working], root: Any) -> None:
    """Remove the groups of the inputs of ``window`` that failed, and with ``on_error: stop``
    of every input from the one that stops the batch on (none may look started)."""
    stopped = False
    for w in window:
        stopped = stopped or w.stop is not None
        if stopped or w.error is not None:
            _remove_group(w, root)


def _discard(window: list[Working], root: Any) -> None:
    """Remove the groups of every input of ``window`` (a window after a stop)."""
    for w in window:
        _remove_group(w, root)


def _report_failures(window: list[Working], failed: list[FailedInput], config: JobConfig,
                     root: Any) -> None:
    discard_failed(window, root)
    stops = [w for w in window if w.stop is not None]
    if stops:
        raise stops[0].stop
    for w in window:
        if w.error is None or any(f.name == w.job.name for f in failed):
            continue
        failed.append(FailedInput(w.job.name, w.job.path, w.error))
        message = w.error if w.job.path in w.error else f"{w.job.path}: {w.error}"
        log.error("%s (skipped; on_error: continue)", message)


def _take_outcome(plan: Plan, root: Any, window: list[Working], outcome: Any,
                  failed: list[FailedInput], results: dict[str, SegmentationResult]) -> None:
    """Record what a worker process did with ``window`` (:mod:`pipeline.batchpool`)."""
    for w, done in zip(window, outcome.inputs, strict=True):
        # An input that failed while it was opened (here) keeps the exception raised here.
        w.error, w.stop = done.error, w.stop if w.stop is not None else done.stop
        if done.result is not None:
            results[w.job.name] = done.result
    _report_failures(window, failed, plan.config, root)


# -- the stages of one window -------------------------------------------------------------


def _fit_window(plan: Plan, executor: Executor, window: list[Working], model: Any) -> None:
    """Everything of a window up to its centres and label order."""
    config = plan.config
    _each(window, config, lambda w: _prepare(w, config, model, executor))
    _data_ranges(window, config, executor, model)
    if model is None:
        _fit(window, config, executor)
    else:
        _each(window, config, lambda w: _apply_model(w, model))
    _order(window, config, executor, model)


def _write_window(plan: Plan, executor: Executor, root: Any, window: list[Working],
                  failed: list[FailedInput], results: dict[str, SegmentationResult],
                  warnings_from: int, neighbours: list[str]) -> None:
    """Write ``window``; its warnings are those recorded from ``warnings_from`` on that name
    none of the ``neighbours`` (the paths of the windows in flight beside it)."""
    if _live(window) or not any(w.stop is not None for w in window):
        _write(plan, window, executor, root, results, warnings_from, neighbours)
    _report_failures(window, failed, plan.config, root)


def _params(config: JobConfig) -> FitParams:
    # With k: auto the summaries are made for k_max (no engine's summary depends on k) and
    # each input's k is chosen in _fit.
    return FitParams(
        k=config.k_max if config.k == "auto" else config.k,
        random_state=config.random_state,
        sample=config.sample,
        max_iter=config.max_iter,
        tol=config.tol,
        n_init=config.n_init,
    )


def chunk_target(config: JobConfig) -> int:
    """Bytes per chunk of an input (``chunk_mb``, or from the memory per worker)."""
    workers = config.n_workers or os.cpu_count() or 1
    if config.chunk_mb:
        return int(config.chunk_mb * 2**20)
    if uses_cluster(config):
        # The plan is made before connecting, and workers' memory is not this machine's.
        return CLUSTER_CHUNK_BYTES
    return chunk_bytes_for_memory(local_memory_bytes(), workers)


def open_image(source: ImageSource, config: JobConfig) -> da.Array:
    """The input as a Dask array chunked for the job (``chunks`` or from ``chunk_mb``)."""
    workers = config.n_workers or os.cpu_count() or 1
    native = source.native_chunks[: source.spatial_ndim] if source.native_chunks else None
    image_bytes = math.prod(source.shape) * source.dtype.itemsize
    target = chunk_target(config)
    if not config.chunk_mb:
        target = parallel_chunk_bytes(target, image_bytes, workers)
    chunks = (
        tuple(config.chunks)
        if config.chunks
        else choose_chunks(
            source.spatial_shape, source.dtype.itemsize, source.n_channels, target, native
        )
    )
    if len(chunks) != source.spatial_ndim:
        raise InputError(
            source.path,
            f"chunks {list(chunks)} do not match its {source.spatial_ndim} spatial axes",
        )
    return source.to_dask(chunks)


def feature_spec(source: ImageSource, config: JobConfig, model: Any = None) -> FeatureSpec:
    """The input's feature spec (placeholder range for inputs whose range is computed).

    With a model, the feature space and its scaling are the model's, not the image's.
    """
    if model is not None:
        model.check_fits(source.path, source.dtype, source.n_channels, source.has_alpha)
    spec = make_feature_spec(
        source.dtype,
        source.n_channels,
        source.spatial_shape,
        has_alpha=source.has_alpha,
        data_range=(0, 1) if needs_data_range(source.dtype) else None,
        colour_space=(model.colour_space if model else config.colour_space),  # type: ignore[arg-type]
        spatial_weight=(model.spatial_weight if model else config.spatial_weight),
        alpha=config.alpha,  # type: ignore[arg-type]
        no_data=source.no_data,
        valid_range=tuple(config.valid_range) if config.valid_range else None,
    )
    if model is not None:
        if tuple(spec.channels) != tuple(model.channels):
            raise InputError(source.path, "the model does not fit this image: its feature "
                             f"channels are {list(spec.channels)}, the model's "
                             f"{list(model.channels)}")
        spec = spec.with_range(model.low, model.high)
    return spec


def _prepare(w: Working, config: JobConfig, model: Any, executor: Executor) -> None:
    """Decide everything about one input before its pixels are read: its Dask array, its
    feature spec (the no-data rules, the mask) and its fit parameters (k).

    A mask becomes a trailing no-data channel of the image (:func:`pipeline.mask.apply_mask`);
    ``mask: auto`` reads a small copy of the image (one compute).
    """
    assert w.source is not None
    w.image = open_image(w.source, config)
    w.spec = feature_spec(w.source, config, model)
    w.params = _params(config)
    if config.mask:
        from pipeline.mask import apply_mask, open_mask

        w.mask = open_mask(
            config.mask, w.source, w.image, config.read_options(),
            lambda *lazy: executor.compute(*lazy, label="finding the mask"),
        )
        w.unmasked = (w.image, w.spec)
        w.image, w.spec = apply_mask(w.image, w.spec, w.mask)


def _data_ranges(window: list[Working], config: JobConfig, executor: Executor,
                 model: Any) -> None:
    """Data ranges (floats, integers wider than 16 bits) of the window in one compute."""
    if model is not None:
        return
    ranged = [w for w in _live(window) if needs_data_range(w.source.dtype)]
    t0 = time.perf_counter()
    found = _compute(executor, config, [(w, data_range(w.image, w.spec)) for w in ranged],
                     "finding data ranges")
    for w, value in found:
        if value is None:
            _failed(w, InputError(w.job.path, _no_data(w)), config)
            continue
        if (problem := span_problem(*value)) is not None:
            _failed(w, InputError(w.job.path, problem), config)
            continue
        w.spec = w.spec.with_range(*value)
        if w.unmasked is not None:
            w.unmasked = (w.unmasked[0], w.unmasked[1].with_range(*value))
        w.timings["range_s"] = time.perf_counter() - t0


def _fit(window: list[Working], config: JobConfig, executor: Executor) -> None:
    def choose(w: Working) -> None:
        w.engine = select_engine(config.engine, w.image, w.spec, w.params)

    _each(window, config, choose)
    t0 = time.perf_counter()
    lazy = [(w, w.engine.summarise(w.image, w.spec, w.params)) for w in _live(window)]
    summaries = dict(
        (id(w), v) for w, v in lazy if v is None
    )
    summaries.update(
        (id(w), v) for w, v in _compute(
            executor, config, [(w, v) for w, v in lazy if v is not None], "summarising"
        )
    )
    summary_s = time.perf_counter() - t0
    live = [w for w in _live(window) if id(w) in summaries]
    if live and not _is_batch(window):  # none live: the input's error says why
        described = ", ".join(f"{w.job.name} ({w.engine.name})" for w in live)
        log.info("fitting k=%s: %s", config.k, described)

    def fit_one(w: Working) -> None:
        t1 = time.perf_counter()
        if config.k == "auto":
            from pipeline.engines.krange import choose_k_auto

            k, w.k_auto = choose_k_auto(
                w.engine, summaries[id(w)], w.image, w.spec, w.params, config.k_min,
                config.k_max, lambda *lazy: executor.compute(*lazy, label="fitting the k curve"),
            )
            w.params = dataclasses.replace(w.params, k=k)
        w.fit = w.engine.fit(summaries[id(w)], w.image, w.spec, w.params)
        w.timings.update(summary_s=summary_s, fit_s=time.perf_counter() - t1)

    if not live:  # every input of the window failed (on_error: continue)
        return
    threads = min(len(live), executor.threads or os.cpu_count() or 1)
    if threads == 1:
        _each(live, config, fit_one)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        errors = list(pool.map(lambda w: _catch(w, fit_one), live))
    for w, error in zip(live, errors, strict=True):  # in input order: the first one stops
        if isinstance(error, OutputError):
            raise error
        if error is not None:
            _failed(w, error, config)
            if w.stop is not None:
                return


def _catch(w: Working, step) -> BaseException | None:
    """``step(w)`` in a thread: the error it raised (named after the input), or None."""
    try:
        with _naming(w.job, w.mask):
            step(w)
    except Exception as exc:
        return exc
    return None


def _is_batch(window: list[Working]) -> bool:
    return any(w.job.group is not None for w in window)


def model_fit(model: Any) -> FitResult:
    """A fit result that applies ``model``'s centres (no fit; labels by nearest centre)."""
    return FitResult(
        centres=np.asarray(model.centres_features, dtype=np.float64),
        engine="model",
        info={"model": {"engine": model.engine, "label_order": model.label_order,
                        "provenance": model.provenance}},
    )


def _apply_model(w: Working, model: Any) -> None:
    w.fit = model_fit(model)


def _order(window: list[Working], config: JobConfig, executor: Executor, model: Any) -> None:
    """Renumber each fit's classes by ``label_order`` (a model's classes are already ordered)."""
    if model is not None:
        return
    rule = config.label_order
    live = [w for w in _live(window) if w.fit is not None]
    if rule == "size":
        counting = [
            (w, cluster_stats(w.image, label_image(w.image, w.spec, _labeller(w), len(
                w.fit.centres)), w.spec, w.fit.centres))
            for w in live if w.fit.stats is None
        ]
        for w, stats in _compute(executor, config, counting, "counting pixels per class"):
            w.fit = dataclasses.replace(w.fit, stats=stats)
    for w in _live(window):
        if w.fit is None:
            continue
        counts = None if w.fit.stats is None else w.fit.stats[0, 1:]
        order = class_order(w.fit.centres, rule, colour_space=w.spec.colour_space,
                            n_value_features=w.spec.n_value_features, counts=counts)
        w.order = [int(i) for i in order]
        w.fit = reorder_fit(w.fit, order)


def _labeller(w: Working) -> Any:
    return w.fit.labeller or NearestCentreLabeller(w.spec, w.fit.centres)


def _write(plan: Plan, window: list[Working], executor: Executor, lazy_root: _LazyRoot,
           results: dict[str, SegmentationResult], warnings_from: int,
           neighbours: list[str]) -> None:
    config = plan.config
    t0 = time.perf_counter()
    tasks: dict[int, list[Any]] = {}
    stats: dict[int, Any] = {}
    measured: dict[int, Any] = {}

    nodes: dict[int, list[Node]] = {}
    held_back: dict[int, list[Node]] = {}  # NGFF attributes, written with "status": "complete"
    counting: dict[int, Any] = {}

    def build(w: Working) -> None:
        # Only plans the groups and arrays; they are created for the whole window at once.
        path = w.job.group or ""
        centres = w.fit.centres
        labels = label_image(w.image, w.spec, _labeller(w), len(centres))
        table = palette(w.spec, centres, w.source.dtype, w.fit.values)
        # Recoloured and measured without the mask channel: outside the mask is the palette's
        # no-data row (label 0), an input alpha passes through.
        plain, plain_spec = w.unmasked if w.unmasked is not None else (w.image, w.spec)
        recoloured = recolour(labels, plain, w.spec, table)
        spatial = SpatialMeta(
            axes=w.source.axes.replace("c", ""), spacing=w.source.spacing, unit=w.source.unit
        )
        levels = n_levels(w.source.spatial_shape, config.pyramid_levels)
        # A group without "status": "complete" is unfinished (see _open_root); a single
        # output's root says so itself.
        own = image_pyramid_nodes(
            path, recoloured, spatial, levels, name=w.job.name,
            omero=omero_for(w.source, plain_spec, centres),
            attributes=(None if path else {"kmseg": {"version": __version__,
                                                      "status": "incomplete"}}),
            overwrite=bool(path),
        )
        names, mask_nodes = [LABEL_NAME], []
        if w.mask is not None:
            from pipeline.mask import MASK_LABEL, mask_count, mask_pyramid_nodes

            names.append(MASK_LABEL)
            mask_nodes = mask_pyramid_nodes(path, w.mask, spatial, levels)
            if w.mask.fraction is None:
                counting[id(w)] = mask_count(w.mask)
        own.append(labels_group_node(path, names))
        own += label_pyramid_nodes(path, labels, spatial, levels,
                                   label_colours(_display_rgb(w.spec, centres)))
        own += mask_nodes
        nodes[id(w)], held_back[id(w)] = hold_back_ome(own)
        measured[id(w)] = class_value_stats(plain, labels, plain_spec.channels, len(centres))
        stats[id(w)] = (w.fit.stats if w.fit.stats is not None
                        else cluster_stats(w.image, labels, w.spec, centres))

    _each([w for w in window if w.fit is not None], config, build)
    live = [w for w in _live(window) if id(w) in nodes]
    stores = iter(create_nodes(lazy_root.get(), [n for w in live for n in nodes[id(w)]]))
    for w in live:
        tasks[id(w)] = [next(stores) for n in nodes[id(w)] if n.array is not None]
        if id(w) in counting:
            tasks[id(w)].append(counting[id(w)])
    lazy = [(w, (stats[id(w)], measured[id(w)], *tasks[id(w)])) for w in live]
    computed = _compute(executor, config, [(w, dask.delayed(list)(list(v))) for w, v in lazy],
                        "labelling and writing")
    write_s = time.perf_counter() - t0
    lines = warn.recorded()[warnings_from:]
    paths = [w.job.path for w in window] + neighbours
    finished: list[Node] = []
    for w, value in computed:
        stat, values = value[0], value[1]
        w.timings["label_write_s"] = write_s
        w.timings["total_s"] = time.perf_counter() - w.started
        inside = int(value[-1]) if w.mask is not None and w.mask.fraction is None else None
        result = _result(config, w, np.asarray(stat), np.asarray(values),
                         warn.for_input(lines, w.job.path, paths), inside)
        finished.append(Node(w.job.group or "", {"kmseg": result.metadata}, update=True))
        results[w.job.name] = result
    # Once every pixel is written: each input's NGFF attributes (a viewer finds no image before
    # them), then, last, its "status": "complete" (one round trip each, in that order: a job
    # killed between them leaves an input marked incomplete, never one marked complete
    # without its NGFF attributes).
    create_nodes(lazy_root.get(), [n for w, _ in computed for n in held_back[id(w)]])
    create_nodes(lazy_root.get(), finished)


def data_range(image: da.Array, spec: FeatureSpec, split_every: int = 16):
    """Lazy ``(min, max)`` of the feature values of the pixels with data (``None``: none),
    exact Python ints for integers."""
    spatial_ndim = len(spec.spatial_shape)
    block = dask.delayed(_block_range, pure=True)
    parts = [block(b, spec) for b in spatial_block_keys(image, spatial_ndim)]
    return tree_merge(parts, merge_ranges, split_every)


def _block_range(block: np.ndarray, spec: FeatureSpec) -> tuple[float, float] | None:
    return spec.value_range(block)


def merge_ranges(*ranges: tuple[float, float] | None) -> tuple[float, float] | None:
    """The smallest range holding every given range (``None``: none given)."""
    found = [r for r in ranges if r is not None]
    if not found:
        return None
    return min(r[0] for r in found), max(r[1] for r in found)


def _display_rgb(spec: FeatureSpec, centres: np.ndarray) -> np.ndarray:
    """Centre colours in [0, 1] for display, ``(k, 3)``; ``(k, 0)`` when the features are not
    a colour (one channel, or a number of channels other than RGB / RGBA)."""
    if spec.colour_space == "lab":
        return np.clip(spec.to_input_units(centres) - spec.low, 0, None) / spec.scale
    n = spec.n_value_features
    if n == 3 or (n == 4 and spec.alpha is None and spec.channels == (0, 1, 2, 3)):
        return np.clip(centres[:, :3], 0, 1)
    return np.empty((len(centres), 0))


def _result(config: JobConfig, w: Working, stat: np.ndarray, values: np.ndarray,
            warnings: list[str], inside: int | None = None) -> SegmentationResult:
    fit = w.fit
    spec = w.spec
    plain = w.unmasked[1] if w.unmasked is not None else spec
    rules = list(plain.no_data_rules) + (["outside the mask"] if w.mask is not None else [])
    counts = stat[0, 1:].astype(np.int64)
    inertia = float(stat[1, 1:].sum())
    n_valid = int(counts.sum())
    mse = inertia / n_valid if n_valid else float("nan")
    centres_input = fit.centres_input(spec)
    metadata = {
        "version": __version__,
        "status": "complete",
        "k": len(fit.centres),
        "engine": fit.engine,
        "optimal": bool(fit.optimal),
        "n_iter": fit.n_iter,
        "random_state": config.random_state,
        "label_order": "model" if fit.engine == "model" else config.label_order,
        "mse": mse,
        "inertia": inertia,
        "pixels_per_cluster": counts.tolist(),
        "pixels_without_data": int(stat[0, 0]),
        "no_data_rules": rules,
        "centres": centres_input.tolist(),
        "centre_values": palette(spec, fit.centres, w.source.dtype, fit.values)[1:].tolist(),
        "label_colours": label_rgb(_display_rgb(spec, fit.centres))[1],
        "centres_features": fit.centres.tolist(),
        "classes": class_measurements(
            values,
            centres_input,
            w.source.spacing,
            w.source.unit,
            channel_labels(plain.channels, w.source.channel_names),
        ),
        "features": {
            "colour_space": spec.colour_space,
            "spatial_weight": spec.spatial_weight,
            "channels": list(plain.channels),
            "scaled_from": [spec.low, spec.high],
        },
        "engine_info": fit.info,
        "input": w.source.describe(),
        "chunks": [list(c[:1]) for c in w.image.chunks],
        "timings": {k: round(v, 4) for k, v in w.timings.items()},
        "config": config.to_dict(),
        "warnings": warnings,
    }
    if w.mask is not None:
        fraction = None if inside is None else inside / math.prod(w.source.spatial_shape)
        metadata["mask"] = w.mask.metadata(fraction)
    if w.k_auto is not None:
        metadata["k_auto"] = w.k_auto
    return SegmentationResult(
        name=w.job.name,
        output=w.job.output,
        k=len(fit.centres),
        engine=fit.engine,
        centres=centres_input,
        centres_features=fit.centres,
        mse=mse,
        inertia=inertia,
        counts=counts,
        no_data=int(stat[0, 0]),
        metadata=jsonable(metadata),
    )


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python values, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
