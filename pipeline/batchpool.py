"""Windows of small inputs segmented side by side in worker processes (local batches).

On the local threaded scheduler a window of small images is mostly per-input Python (graphs,
Zarr metadata, the fit's glue code), which holds the GIL: threads do not add up. For a batch of
many small inputs the windows therefore go to a pool of worker processes, one per core, each
running a window from end to end (open, fit, label, write, then each input's ``status:
complete``) with Dask's synchronous scheduler, while the main process opens the next windows'
metadata, reports progress and failures and keeps the root's metadata.

The rules of a batch do not change (:mod:`pipeline.batch`):

* windows are consumed in input order, and at most ``processes + 1`` are in flight, so memory
  stays bounded whatever the number of inputs;
* the first window (the pool starts after it), and any window holding an input of more than
  :data:`POOL_PIXELS` pixels, runs in the main process with its threads (after the pool's
  windows before it ended), so a batch that stops at its first input leaves no output, and
  large images keep every core;
* ``on_error: stop``: the inputs before the failing one are complete; the groups of every input
  from it on, in its window and in the windows after it, are removed before the error is raised;
* warnings are captured in the worker, per window, and replayed once in the main process, so
  each input's metadata holds exactly the warnings raised while it was processed.

On Linux the workers are forked after the first window (they inherit the loaded modules and
kernels); elsewhere they are spawned, without re-running the caller's main module. A worker dies
with the main process (Linux), so a killed batch leaves no writer behind: the rerun resumes from
the groups marked complete. Workers ignore SIGINT: Ctrl-C, which a terminal sends to the whole
process group, stops the main process alone, which lets the running windows end and removes
their groups.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import pickle
import sys
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InputError, KmsegError

#: Inputs of more pixels than this make their window run in the main process (threads).
POOL_PIXELS = 1 << 22
#: How worker processes start. On Linux they are forked once the main process has run its first
#: window, so they inherit its imports and loaded kernels (a spawned process spends about 1 s
#: of CPU importing kmseg and loading its compiled kernels); elsewhere fork is unsafe.
START_METHOD = "fork" if sys.platform == "linux" else "spawn"
#: Memory a worker may take (its share of kmseg's imports and one window): the default number
#: of processes is at most the machine's memory over this.
WORKER_MEMORY = 1 << 29
#: Most inputs of a window run by a worker (small windows balance the processes).
POOL_WINDOW = 8
#: Batches of fewer inputs than this run in the main process: below about 100 small images the
#: pool's start and its ramp cost what it saves (measured on 256² photos, 2 cores).
POOL_MIN_INPUTS = 128


@dataclass
class InputOutcome:
    """What became of one input of a window run by a worker (in the window's order)."""

    error: str | None
    stop: BaseException | None
    result: Any


@dataclass
class WindowOutcome:
    """The inputs of a window, in order, and the warnings raised while it ran."""

    inputs: list[InputOutcome]
    warnings: list[str]


def pool_processes(plan: Any, executor: Any, n_todo: int) -> int:
    """Worker processes for ``plan``'s windows of small inputs; 0: run every window here.

    A pool is used for a batch of file or URL inputs on the local threaded scheduler, with
    ``batch_processes`` (or, unset, one process per core, at most one per
    :data:`WORKER_MEMORY` of memory, for batches of at least :data:`POOL_MIN_INPUTS` inputs)
    above 1, and at most one per window the pool can get.
    """
    from pipeline.execution import local_scheduler, uses_cluster

    config = plan.config
    if not plan.grouped or executor.client is not None or uses_cluster(config):
        return 0
    if local_scheduler(config)[0] != "threads" or config.performance_report:
        return 0
    if any(job.source is not None for job in plan.jobs):  # in-memory arrays stay here
        return 0
    if config.batch_processes is not None:
        n = config.batch_processes
    elif n_todo >= POOL_MIN_INPUTS:
        from pipeline.chunking import local_memory_bytes

        n = min(config.n_workers or os.cpu_count() or 1,
                max(1, local_memory_bytes() // WORKER_MEMORY))
    else:
        n = 0
    # No more processes than windows for them: windows of small inputs hold POOL_WINDOW (or
    # batch_inputs) inputs (their pixels never reach the window limit), and the first runs here.
    window = min(POOL_WINDOW, config.batch_inputs)
    n = min(n, -(-n_todo // window) - 1)
    if n > 1 and config.batch_processes is not None:  # the default fits the memory already
        from pipeline.execution import check_process_count

        check_process_count(n, "batch_processes")
    return n if n > 1 else 0


def is_small(window: list[Any]) -> bool:
    """Whether every input of ``window`` may run in a worker process."""
    return all(w.pixels <= POOL_PIXELS for w in window)


class Pool:
    """The worker processes of one batch (see the module docstring)."""

    def __init__(self, n_processes: int, plan: Any, model: Any) -> None:
        level = logging.getLogger("kmseg").getEffectiveLevel()
        self.executor = ProcessPoolExecutor(
            n_processes, mp_context=multiprocessing.get_context(START_METHOD),
            initializer=_start_worker, initargs=(level,),
        )
        self.plan = plan
        self.model = model
        self.limit = n_processes + 1
        self.pending: deque[tuple[list[Any], Future]] = deque()
        with _without_main(), _interrupts_held(), warnings.catch_warnings():
            # Python 3.12+ warns about any fork of a process running threads (here Dask's,
            # the progress bar's): the workers rebuild what a fork does not carry
            # (_start_worker), so the warning would only reach the caller.
            warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded",
                                    category=DeprecationWarning)
            for _ in range(n_processes):  # start every process now
                self.executor.submit(int)

    def submit(self, window: list[Any], warnings: list[str]) -> None:
        """Run ``window`` in a worker; ``warnings`` were raised here while it was opened."""
        jobs = tuple(w.job for w in window)
        plan = dataclasses.replace(self.plan, jobs=jobs)
        items = [(w.job, w.source, w.error, w.stop is not None) for w in window]
        try:
            future = self.executor.submit(segment_window, plan, items, self.model, warnings)
        except BrokenProcessPool:  # a worker died since the last window ended
            raise self._broken() from None
        self.pending.append((window, future))

    def full(self) -> bool:
        return len(self.pending) >= self.limit

    def next_done(self) -> tuple[list[Any], WindowOutcome]:
        """The oldest window in flight and its outcome (waits for it).

        Raises
        ------
        KmsegError
            A worker process ended abruptly (killed, out of memory); the window stays in flight
            so that :meth:`close` returns it.
        """
        window, future = self.pending[0]
        try:
            outcome = future.result()
        except BrokenProcessPool:
            raise self._broken() from None
        self.pending.popleft()
        return window, outcome

    def _broken(self) -> KmsegError:
        """The one-line error for a pool whose worker ended abruptly. The pool does not say
        which worker died, so the message names the inputs of every window in flight."""
        jobs = [w.job for window, _ in self.pending for w in window]
        names = "" if not jobs else f" while segmenting {jobs[0].path}" + (
            f" ... {jobs[-1].path} ({len(jobs)} inputs in flight)" if len(jobs) > 1 else "")
        return KmsegError(
            f"{self.plan.config.output}: a worker process ended abruptly (killed, or out of "
            f"memory?){names}; rerun the same command to resume"
        )

    def close(self) -> list[list[Any]]:
        """Stop: windows not started are dropped, running ones end; returns the windows that
        were in flight (their inputs may have been written)."""
        windows = [window for window, _ in self.pending]
        self.pending.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)
        return windows


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Processes started inside do not run the main module of this process.

    A spawned process normally re-imports the parent's main script (as ``__mp_main__``), so a
    script calling :func:`pipeline.api.segment` without an ``if __name__ == "__main__"`` guard
    would start the batch again in every worker. The workers only need kmseg's own modules, so
    the main module is left out of what they are told to prepare.
    """
    import multiprocessing.spawn as spawn

    original = spawn.get_preparation_data

    def preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    spawn.get_preparation_data = preparation_data
    try:
        yield
    finally:
        spawn.get_preparation_data = original


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT is held (pending, not lost) in this thread while worker processes start, so that
    they start with it blocked until they ignore it (:func:`_start_worker`).

    Ctrl-C in a terminal signals the whole process group: the main process stops the batch
    (it lets the windows running in the workers end, then removes their groups, see
    :meth:`Pool.close`); a worker interrupted as well would print a traceback, or stop waiting
    for writes that go on while the main process removes the group they write to.
    """
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process groups of this kind
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# -- in the worker process ------------------------------------------------------------------


def _start_worker(level: int) -> None:
    import dask
    from threadpoolctl import threadpool_limits

    from pipeline.engines import lloyd
    from pipeline.execution import LOCAL_SETTINGS

    _die_with_parent()
    _ignore_interrupts()
    # A forked process has the parent's state but none of its threads: thread pools made
    # there would wait forever, and the parent's log handlers would print here.
    lloyd._pool.cache_clear()
    logger = logging.getLogger("kmseg")
    logger.setLevel(level)
    logger.handlers = [logging.NullHandler()]
    logger.propagate = False  # the main process reports what a window returns
    dask.config.set({**LOCAL_SETTINGS, "scheduler": "synchronous"})
    global _LIMITS
    _LIMITS = threadpool_limits(limits=1, user_api="blas")


_LIMITS: Any = None


def _ignore_interrupts() -> None:
    """Leave Ctrl-C (SIGINT) to the main process (see :func:`_interrupts_held`); SIGTERM ends
    a worker at once, as by default (a forked worker inherits the command's SIGTERM handler,
    which raises an interrupt where the main process cleans up)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (no-op elsewhere)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class _OpenRoot:
    """The output's root group, opened (never created) by a worker."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.root: Any = None
        self.opened = True

    def get(self) -> Any:
        if self.root is None:
            import zarr

            self.root = zarr.open_group(self.path, mode="r+", zarr_format=3)
        return self.root


def segment_window(plan: Any, items: list[tuple[Any, Any, str | None, bool]],
                   model: Any, opened: list[str]) -> WindowOutcome:
    """Run one window from end to end in this worker process (see the module docstring).

    ``items`` are ``(job, source, error, stops)`` as the main process opened them, and
    ``opened`` the warnings raised there while opening them.
    """
    from pipeline import warn
    from pipeline.batch import Working, _fit_window, _live, _write, discard_failed
    from pipeline.execution import Executor
    from pipeline.outputs import writing

    config = plan.config
    window = []
    for job, source, error, stops in items:
        w = Working(job, source=source, error=error)
        if stops:  # the main process keeps (and raises) its own exception for this input
            problem = (error or "failed").removeprefix(f"{job.path}: ")
            w.stop = InputError(job.path, problem)
        window.append(w)
    executor = Executor(None, progress=False, threads=1)  # the pool is the parallelism
    root = _OpenRoot(config.output)
    results: dict[str, Any] = {}
    with warn.capture(echo=False, forward=False) as captured, writing(config.output):
        warn.replay(opened)
        _fit_window(plan, executor, window, model)
        if _live(window) or not any(w.stop is not None for w in window):
            _write(plan, window, executor, root, results, 0, [])
        discard_failed(window, root)
    return WindowOutcome(
        [InputOutcome(w.error, _portable(w) if w.stop is not None else None,
                      results.get(w.job.name)) for w in window],
        list(captured.lines),
    )


def _portable(w: Any) -> BaseException:
    """The exception that stops the batch at ``w``, as it can travel to the main process: itself
    when it pickles (some libraries' exceptions do not), else an :class:`InputError` with its
    one-line message."""
    try:
        pickle.loads(pickle.dumps(w.stop))
        return w.stop
    except Exception:
        problem = w.error or type(w.stop).__name__
        return InputError(w.job.path, problem.removeprefix(f"{w.job.path}: "))
