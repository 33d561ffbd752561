"""``kmseg compile`` fills numba's cache, so that the first job after an install compiles
nothing (issue 9)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipeline.precompile import KINDS
from tests.helpers import NUMBA_COMPILE_LISTENER

ROOT = Path(__file__).parents[1]

# Runs the kmseg CLI in a fresh process and prints, as JSON, the exit status of each command
# and every function numba compiled (kmseg's kernels and anything compiled inside them).
LISTEN = NUMBA_COMPILE_LISTENER + """
from pipeline.cli import main
codes = [main(args) for args in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "compiled": compiled}))
"""


def _env(tmp_path: Path, cache: Path) -> dict[str, str]:
    temp = tmp_path / "tmp"  # kmseg compile's temporary folder goes here: it must be removed
    temp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache),
           "TMPDIR": str(temp)}
    for name in list(env):  # the child runs kmseg's defaults, whatever this shell sets
        if name.startswith("KMSEG_") or name == "DASK_SCHEDULER_ADDRESS":
            del env[name]
    return env


def _listen(jobs: list[list[str]], env: dict[str, str]) -> dict:
    run = subprocess.run([sys.executable, "-c", LISTEN, json.dumps(jobs)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1]) | {"stdout": run.stdout,
                                                               "stderr": run.stderr}


def _photo(shape: tuple[int, int]) -> np.ndarray:
    """A generated photo: smooth colour gradients, a disc and noise, uint8 (y, x, 3)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    disc = (y - shape[0] / 2) ** 2 + (x - shape[1] / 2) ** 2 < (min(shape) / 4) ** 2
    image = np.stack([255 * x / shape[1], 255 * y / shape[0], np.where(disc, 220, 40)], -1)
    noise = np.random.default_rng(7).normal(0, 10, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_compile_then_first_jobs_compile_nothing(tmp_path):
    cache = tmp_path / "numba-cache"
    env = _env(tmp_path, cache)
    done = subprocess.run([sys.executable, "-m", "pipeline", "compile"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(KINDS) + 1  # one line per kind, then the summary
    first = re.fullmatch(r" *\d+\.\d\d s  8-bit RGB photo \(exact engine\): (\d+) kernel "
                         r"signatures? compiled", lines[0])
    assert first and int(first[1]) > 0, lines[0]
    assert "in all: " in lines[-1] and f"in {cache})" in lines[-1]
    assert done.stderr == ""
    written = {p.name for p in cache.rglob("*") if p.suffix in (".nbi", ".nbc")}
    # numba names a cache file after the module and the kernel: kmseg's kernels are there.
    for kernel in ("lloyd._kmeanspp", "pixelpass._lloyd_block", "bins._hash_pixels",
                   "lookup._search", "labels._paint", "pyramid._mean_2x2_planes"):
        assert any(name.startswith(kernel) and name.endswith(".nbi") for name in written), kernel
        assert any(name.startswith(kernel) and name.endswith(".nbc") for name in written), kernel
    assert not any((tmp_path / "tmp").iterdir())  # the tiny jobs' folder is gone

    # A fresh process: the first jobs after `kmseg compile`, on images it never saw, load
    # every kernel from the cache: 8-bit photo (exact engine), 16-bit RGB (binned engine).
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo((512, 512))).save(photo)
    rgb16 = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb16, _photo((300, 400)).astype(np.uint16) * 257
                     + np.random.default_rng(8).integers(0, 257, (300, 400, 3), dtype=np.uint16),
                     photometric="rgb")
    # ... and a float grey image with k auto (the binned engine and the 1-D k curve).
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(grey, np.random.default_rng(9).normal(size=(200, 150)).astype(np.float32))
    jobs = [["segment", str(path), "-k", "8", "-q", "-o", str(tmp_path / f"{path.stem}.zarr")]
            for path in (photo, rgb16, grey)]
    jobs[-1][jobs[-1].index("8")] = "auto"
    jobs[0].remove("-q")  # a job that compiles nothing says nothing of compiling
    # ... and a second `kmseg compile` compiles nothing either, and says nothing with -q.
    jobs.append(["compile", "-q"])
    child = _listen(jobs, env)
    assert child["codes"] == [0, 0, 0, 0]
    assert child["compiled"] == []
    assert "compiling" not in child["stderr"]
    results = child["stdout"].strip().splitlines()[:-1]  # compile -q added no line
    assert [line.split(" engine=")[1].split()[0] for line in results] == ["exact", "binned",
                                                                           "binned"]


def _unwritable(tmp_path: Path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "numba-cache"


def _read_only(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("make", [_unwritable, _read_only], ids=["under-a-file", "read-only"])
def test_compile_unwritable_cache_dir_is_one_line(tmp_path, make):
    cache = make(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pipeline", "compile"],
                          env=_env(tmp_path, cache), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stdout == ""
    err = done.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"kmseg: error: NUMBA_CACHE_DIR={cache}: the numba cache folder "
                             "cannot be created or written (")
    assert not list(tmp_path.rglob("*.nbi"))  # nothing compiled anywhere under it


def test_compile_terminated_removes_its_temporary_folder(tmp_path):
    # SIGTERM (docker stop, kill, a CI time-out) in the middle of the tiny jobs: Python's
    # default would end the process there and leave the temporary folder behind.
    env = _env(tmp_path, tmp_path / "numba-cache")
    temp = tmp_path / "tmp"
    child = subprocess.Popen([sys.executable, "-m", "pipeline", "compile"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # The first tiny job's input is written: the jobs are running (and compiling).
        while not any(temp.glob("kmseg-compile-*/*")) and child.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert not any(temp.iterdir())  # the tiny jobs' folder is gone


def test_summary_names_a_relative_cache_dir_as_absolute(tmp_path, monkeypatch):
    # NUMBA_CACHE_DIR=cache is relative to the current folder of each job: the summary line
    # says which folder this run filled.
    import numba

    from pipeline.precompile import Summary

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(numba.config, "CACHE_DIR", "cache")
    assert Summary([], 0.0, [], 0, 0).cache_root == tmp_path / "cache"
