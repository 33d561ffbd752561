"""docker/entrypoint.sh passes every kmseg command to the kmseg CLI (``docker run IMAGE fit``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _kmseg_commands() -> list[str]:
    """Every command of the kmseg CLI, from its parser (a new command is tested here too)."""
    import argparse

    from pipeline.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


@pytest.mark.parametrize("command", _kmseg_commands())
def test_entrypoint_runs_each_kmseg_command(command, tmp_path):
    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
    # A stand-in `kmseg` first on PATH: the entrypoint must exec it with the arguments as given.
    stand_in = tmp_path / "kmseg"
    stand_in.write_text(f"#!{sys.executable}\nimport sys\nprint('kmseg', *sys.argv[1:])\n")
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), command, "--help"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"kmseg {command} --help\n"
