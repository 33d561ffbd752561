"""Faults with real processes: kmseg killed or interrupted mid-run, a full disk, two writers.

Each run is ``python -m pipeline segment ...`` in a subprocess. After a fault the output is
absent or marked incomplete, the lock is released (or, after SIGKILL, stale: nobody holds it),
and running the same command again finishes with the same labels as an undisturbed run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.lock import current_holder, lock_path
from pipeline.outputs import output_status

ROOT = Path(__file__).parents[1]
JOB = ["-k", "5", "-q", "--random-state", "0", "--chunks", "200", "200"]


def kmseg(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> bool:
    """Poll until ``condition`` holds; False if the process ended first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def labels(out: Path) -> np.ndarray:
    return zarr.open_group(str(out), mode="r")["labels/clusters/0"][...]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Noise with five colour clusters, large enough for a run of a few seconds."""
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, (5, 3))
    data = centres[rng.integers(0, 5, (1000, 1000))] + rng.integers(-20, 21, (1000, 1000, 3))
    path = tmp_path_factory.mktemp("faults") / "noise.npy"
    np.save(path, np.clip(data, 0, 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def reference(image: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("reference") / "ref.zarr"
    code, err = finish(kmseg("segment", str(image), *JOB, "-o", str(out)))
    assert code == 0, err
    return labels(out)


def started(out: Path) -> Callable[[], bool]:
    """The run holds its lock (it is fitting, or writing)."""
    return lambda: os.path.exists(lock_path(str(out)))


def writing(out: Path) -> Callable[[], bool]:
    """The run writes pixels: the output says incomplete and holds some label chunks."""
    chunks = out / "labels" / "clusters" / "0" / "c"
    return lambda: output_status(str(out)) == "incomplete" and chunks.is_dir() and any(
        chunks.iterdir())


@pytest.mark.parametrize("point", [started, writing], ids=["started", "writing"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_interrupted_then_rerun(image, reference, tmp_path, point, sig):
    out = tmp_path / "out.zarr"
    before = sha256(image)
    args = ["segment", str(image), *JOB, "-o", str(out)]
    process = kmseg(*args)
    assert wait_for(point(out), process), finish(process)
    process.send_signal(sig)
    code, err = finish(process)
    assert output_status(str(out)) in (None, "incomplete")
    if output_status(str(out)) is None:
        assert not (out / "zarr.json").exists()
    # An unfinished output is no OME-Zarr image to a viewer: its NGFF attributes come last.
    for document in out.rglob("zarr.json"):
        assert "ome" not in json.loads(document.read_text()).get("attributes", {}), document
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert current_holder(str(out)) is None  # the lock file may stay; nobody holds it
    else:
        # SIGTERM (kill, docker stop, a batch system's limit) used to end the process at
        # once: no word, and the lock file left for the next run to take over.
        assert code == 128 + sig, err
        word = "interrupted" if sig == signal.SIGINT else "terminated"
        assert err.strip().splitlines()[-1] == f"kmseg: {word}"
        assert not os.path.exists(lock_path(str(out)))
    code, err = finish(kmseg(*args))
    assert code == 0, err
    assert sig == signal.SIGKILL or "stale lock" not in err
    if sig == signal.SIGKILL and "stale lock" in err:
        assert f"kmseg process {process.pid}" in err
    assert output_status(str(out)) == "complete"
    assert not os.path.exists(lock_path(str(out)))
    np.testing.assert_array_equal(labels(out), reference)
    assert sha256(image) == before
    ome = [json.loads((out / name / "zarr.json").read_text())["attributes"]["ome"]
           for name in ("", "labels", "labels/clusters")]
    assert "multiscales" in ome[0] and ome[1]["labels"] == ["clusters"]
    assert "image-label" in ome[2]


def test_second_writer_fails_at_once_and_the_first_completes(image, reference, tmp_path):
    out = tmp_path / "out.zarr"
    first = kmseg("segment", str(image), *JOB, "-o", str(out))
    assert wait_for(writing(out), first), finish(first)
    first.send_signal(signal.SIGSTOP)  # paused mid-write, as a slow job would be
    try:
        code, err = finish(kmseg("segment", str(image), "-k", "3", "-q", "-o", str(out),
                                 "--overwrite"), timeout=60)
    finally:
        first.send_signal(signal.SIGCONT)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(f"kmseg: error: {out}: the output is being written by kmseg process "
                           f"{first.pid} on host ")
    code, err = finish(first)
    assert code == 0, err
    meta = json.loads((out / "zarr.json").read_text())["attributes"]["kmseg"]
    assert (meta["status"], meta["k"]) == ("complete", 5)
    np.testing.assert_array_equal(labels(out), reference)
    assert not os.path.exists(lock_path(str(out)))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 512 KiB tmpfs; skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_full_disk(image, small_disk):
    out = small_disk / "out.zarr"
    before = sha256(image)
    code, err = finish(kmseg("segment", str(image), *JOB, "-o", str(out)))
    assert code == 2, err
    [line] = err.strip().splitlines()
    assert line.startswith(f"kmseg: error: {out}: cannot write the output: the disk is full")
    assert output_status(str(out)) == "incomplete"
    assert not os.path.exists(lock_path(str(out)))
    assert sha256(image) == before
