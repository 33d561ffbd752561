"""Every bad input kind runs through the CLI: exit 2, one line naming it, inputs unchanged.

The cases are in :mod:`tests.fuzz.cases` (one small generator each); this module only runs
them. ``pipeline.cli.main`` runs in-process, under an alarm so that a hang fails the case
instead of the suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

from .cases import CASES, Workspace

#: Seconds a case may take before it counts as a hang.
HANG_S = 20


class Hung(BaseException):
    """Raised by the alarm; a BaseException so the CLI's handlers do not swallow it."""


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (FIFOs and links are not read)."""
    out = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[str(path)] = stat.filemode(mode)
    return out


def _alarm(signum: int, frame: object) -> None:
    raise Hung(f"no answer within {HANG_S} s")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, capsys, monkeypatch):
    with contextlib.ExitStack() as stack:
        inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
        inputs.mkdir()
        outputs.mkdir()
        work = Workspace(inputs, outputs, stack)
        run = CASES[name](work)
        for key, value in work.env.items():
            monkeypatch.setenv(key, value)
        before = checksums(inputs)
        capsys.readouterr()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HANG_S)
        try:
            code = main(run.argv)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
            logging.getLogger("distributed").setLevel(logging.NOTSET)
        err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("kmseg: error: ")
    assert "Traceback" not in err
    assert any(n in lines[0] for n in run.names), (run.names, lines[0])
    assert checksums(inputs) == before


def test_processes_cluster_is_quiet(tmp_path):
    """Issue 11 item 11: no ``distributed`` INFO lines without ``-v``."""
    image = tmp_path / "img.npy"
    np.save(image, np.arange(16 * 20 * 3, dtype=np.uint8).reshape(16, 20, 3))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "segment", str(image), "-k", "2", "-q",
         "-o", str(tmp_path / "o.zarr"), "--local-scheduler", "processes", "--n-workers", "2"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
