"""Worker processes of a batch (pipeline/batchpool.py) used as a user would: interrupted from
a terminal, with real ``python -m pipeline`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_batch import (
    _alive,
    _children,
    assert_same_store,
    group_status,
    kmseg,
    kmseg_background,
    write_pngs,
)


def _noisy_pngs(folder: Path, n: int, size: int, first: int) -> None:
    """``n`` RGB images of ``size`` x ``size`` random pixels (many distinct values: a window
    of them takes a while), named after the small images before them."""
    rng = np.random.default_rng(first)
    for i in range(first, first + n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")


def test_ctrl_c_stops_the_workers_quietly_and_the_rerun_resumes(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the whole process group, the worker processes
    included. The batch ends with ``kmseg: interrupted`` alone (exit 130); the bug: every idle
    worker printed a ``KeyboardInterrupt`` traceback, and a busy one stopped waiting for its
    writes while they went on (on S3 the main process then removed the window's group while
    the worker's writes still landed, leaving objects the rerun warned about). No process is
    left, and the same command resumes to the bytes of an uninterrupted run.

    Three processes for three windows of the pool, one of a small image: its worker is idle
    when the signal comes."""
    folder = tmp_path / "in"
    write_pngs(folder, 2, size=24)  # the first window (in the main process), and a small one
    _noisy_pngs(folder, 2, 512, first=2)
    args = ["-k", "3", "-q", "--batch-inputs", "1", "--batch-processes", "3"]
    reference = tmp_path / "reference.zarr"
    assert kmseg("segment", str(folder), *args, "-o", str(reference)).returncode == 0

    out = tmp_path / "out.zarr"
    proc = kmseg_background("segment", str(folder), *args, "-o", str(out),
                            stderr=subprocess.PIPE, start_new_session=True)  # own group
    workers: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            workers = [pid for pid in _children(proc.pid)
                       if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
            # once the small window's worker is done (idle), the others still at work
            if len(workers) >= 3 and group_status(out, "img001") == "complete":
                time.sleep(0.05)
                os.killpg(proc.pid, signal.SIGINT)
                break
            time.sleep(0.005)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert len(workers) >= 3, "the batch ended before its workers could be interrupted"
    assert proc.returncode == 130, stderr
    assert stderr == "kmseg: interrupted\n"
    assert _alive(workers) == []

    again = kmseg("segment", str(folder), *args, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr and "not recognized" not in again.stderr
    assert_same_store(reference, out)


def test_starting_the_workers_warns_nothing(tmp_path):
    """The workers are forked from a process that runs threads (Dask's, the progress bar's);
    Python 3.12+ warns about any such fork (``DeprecationWarning: This process is
    multi-threaded, use of fork() may lead to deadlocks``), which the API passed on to the
    caller and a test-suite run with ``-W error`` failed on. kmseg forks knowingly (the
    workers rebuild what a fork cannot carry, see ``batchpool._start_worker``): no warning."""
    import warnings

    import pipeline

    folder = tmp_path / "in"
    write_pngs(folder, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = pipeline.segment(str(folder), str(tmp_path / "out.zarr"), k=4, quiet=True,
                                   batch_processes=2, batch_inputs=1)
    assert len(results) == 4
    assert [str(w.message) for w in caught] == []


def test_no_more_processes_than_windows_for_them(tmp_path):
    """``batch_processes`` above the number of windows the pool can get starts only those
    (the first window runs in the main process). The bug: ``--batch-processes 100000`` on 12
    images started processes until the machine ran out of them."""
    from pipeline.batchpool import POOL_MIN_INPUTS, pool_processes
    from pipeline.config import build_config
    from pipeline.execution import Executor
    from pipeline.plan import build_plan

    write_pngs(tmp_path / "in", 12)

    def processes(n_todo: int, **keys) -> int:
        config = build_config({"inputs": [str(tmp_path / "in")], "output": str(tmp_path / "o"),
                               "quiet": True, **keys})
        return pool_processes(build_plan(config), Executor(None), n_todo)

    # 12 inputs in windows of 2: six windows, the first here, five for the pool
    assert processes(12, batch_processes=100000, batch_inputs=2) == 5
    assert processes(12, batch_processes=3, batch_inputs=2) == 3
    # windows of at most 8 (batchpool.POOL_WINDOW): two windows, one for the pool: none
    assert processes(12, batch_processes=4) == 0
    assert processes(3, batch_processes=4, batch_inputs=1) == 2  # resuming: 3 left
    assert processes(12, batch_processes=1, batch_inputs=1) == 0
    assert processes(POOL_MIN_INPUTS, n_workers=2) == 2


def test_window_submitted_after_a_worker_died_is_the_one_line_error():
    """A worker that dies between two windows breaks the pool before the next submit: that
    submit raises the same one-line error as a window in flight would (not the pool's own
    BrokenProcessPool, which the CLI would print as an unexpected failure, exit 1)."""
    import dataclasses
    from types import SimpleNamespace

    import pytest

    from pipeline.batchpool import Pool
    from pipeline.errors import KmsegError

    @dataclasses.dataclass(frozen=True)
    class Plan:
        config: object
        jobs: tuple = ()

    plan = Plan(SimpleNamespace(output="out.zarr"))
    window = [SimpleNamespace(job=SimpleNamespace(path="a.png"), source=None, error=None,
                              stop=None)]
    pool = Pool(1, plan, model=None)
    try:
        [worker] = list(pool.executor._processes.values())
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=30)
        deadline = time.monotonic() + 30
        with pytest.raises(KmsegError, match=r"^out\.zarr: a worker process ended abruptly"):
            while time.monotonic() < deadline:  # the pool learns of the death asynchronously
                pool.submit(window, [])
                pool.pending.clear()
                time.sleep(0.05)
    finally:
        pool.executor.shutdown(wait=True, cancel_futures=True)


def test_worker_death_message_names_every_input_in_flight():
    """The pool does not say which worker died: the line names the inputs of all windows in
    flight (first ... last, and how many), not only the oldest window's."""
    from collections import deque
    from types import SimpleNamespace

    from pipeline.batchpool import Pool

    def window(*paths):
        return [SimpleNamespace(job=SimpleNamespace(path=p)) for p in paths]

    pool = Pool.__new__(Pool)  # no processes: only the message is under test
    pool.plan = SimpleNamespace(config=SimpleNamespace(output="out.zarr"))
    pool.pending = deque([(window("a.png", "b.png"), None), (window("c.png", "d.png"), None)])
    assert str(pool._broken()) == (
        "out.zarr: a worker process ended abruptly (killed, or out of memory?) while segmenting "
        "a.png ... d.png (4 inputs in flight); rerun the same command to resume")
    pool.pending = deque([(window("a.png"), None)])
    assert "while segmenting a.png;" in str(pool._broken())
    pool.pending = deque()
    assert str(pool._broken()) == (
        "out.zarr: a worker process ended abruptly (killed, or out of memory?); rerun the same "
        "command to resume")


def test_more_processes_than_memory_holds_are_refused(tmp_path, monkeypatch, capsys):
    """``--n-workers 1000 --local-scheduler processes`` started worker processes until the
    kernel killed kmseg (status 137, tracebacks); an explicit ``batch_processes`` had no
    bound but the number of windows. Both are one line before any process starts."""
    import pipeline.chunking
    from pipeline.batchpool import pool_processes
    from pipeline.cli import main
    from pipeline.config import build_config
    from pipeline.errors import ConfigError
    from pipeline.execution import PROCESS_MIN_BYTES, Executor
    from pipeline.plan import build_plan

    monkeypatch.setattr(pipeline.chunking, "local_memory_bytes", lambda: 3 * PROCESS_MIN_BYTES)
    [first, *_] = write_pngs(tmp_path / "in", 12)
    out = tmp_path / "o.zarr"
    code = main(["segment", str(first), "-k", "2", "-o", str(out), "-q",
                 "--local-scheduler", "processes", "--n-workers", "4"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "n_workers: 4 worker processes need at least" in err and "use at most 3" in err
    assert not out.exists()
    config = build_config({"inputs": [str(tmp_path / "in")], "output": str(out), "quiet": True,
                           "batch_processes": 100, "batch_inputs": 1})
    with pytest.raises(ConfigError, match=r"batch_processes: 11 worker processes .* at most 3"):
        pool_processes(build_plan(config), Executor(None), 12)
    config = build_config({"inputs": [str(tmp_path / "in")], "output": str(out), "quiet": True,
                           "batch_processes": 3, "batch_inputs": 1})
    assert pool_processes(build_plan(config), Executor(None), 12) == 3
