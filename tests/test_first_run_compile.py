"""The first run after an install compiles kmseg's numba kernels: none of them may pull in
Numba's array-to-slice assignment, whose shape-mismatch message (string formatting) costs about
1.5 s of compile time in every kernel that uses it (issue 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.helpers import NUMBA_COMPILE_LISTENER

ROOT = Path(__file__).parents[1]

# Runs kmseg in a fresh process with an empty numba cache and prints, as JSON, every function
# numba compiled (kmseg's kernels and the library functions compiled inside them).
SCRIPT = NUMBA_COMPILE_LISTENER + """
from pipeline.cli import main
for args in json.loads(sys.argv[1]):
    if main(args) != 0:
        sys.exit(1)
print(json.dumps(compiled))
"""


@pytest.mark.slow
def test_first_run_compiles_no_slice_assignment_message(tmp_path):
    rng = np.random.default_rng(0)
    rgb8 = tmp_path / "rgb8.tif"  # the exact engine
    tifffile.imwrite(rgb8, rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), photometric="rgb")
    rgb16 = tmp_path / "rgb16.tif"  # the binned engine and the pixel passes
    tifffile.imwrite(rgb16, rng.integers(0, 65536, (96, 96, 3), dtype=np.uint16),
                     photometric="rgb")
    grey = tmp_path / "grey.tif"  # one float channel: dynamic programming
    tifffile.imwrite(grey, rng.normal(size=(96, 96)).astype(np.float32))
    jobs = [["segment", str(path), "-k", "4", "-q", "-o", str(tmp_path / f"{path.stem}.zarr")]
            for path in (rgb8, rgb16, grey)]
    jobs[0].remove("-q")  # the first job tells why it takes seconds, once
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(jobs)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    compiled = json.loads(run.stdout.strip().splitlines()[-1])
    assert "pipeline.engines.lloyd._kmeanspp" in compiled  # the listener saw the kernels
    assert "pipeline.engines.pixelpass._lloyd_block" in compiled
    assert not [name for name in compiled if "raise_with_shape_context" in name]
    assert run.stderr.count("kmseg: compiling kmseg's kernels for their first use") == 1
