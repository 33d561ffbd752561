"""pipeline.lean_imports hides optional modules only in the kmseg command's own process: a
program that imports kmseg keeps every feature of those libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _program(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sparse_arrays_with_dask_after_importing_kmseg():
    pytest.importorskip("sparse")
    out = _program(
        "import pipeline.api\n"  # kmseg's API imports dask.array first
        "import numpy as np, dask.array as da\n"
        "import sparse\n"
        "product = da.full((4, 4), 3.0, chunks=2) * sparse.COO.from_numpy(np.eye(4))\n"
        "print(type(product).__name__, product.compute().todense().tolist())\n"
        "print(da.core.is_valid_array_chunk(sparse.COO.from_numpy(np.eye(2))))\n"
        "import scipy.sparse\n"
        "print(da.core.is_valid_array_chunk(scipy.sparse.csr_matrix(np.eye(2))))\n"
        "print(da.core.is_valid_array_chunk([1, 2]))\n"
    )
    lines = out.splitlines()
    eye3 = [[3.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
    assert lines[0] == f"Array {eye3}"
    assert lines[1:] == ["True", "True", "False"]


def test_numba_blas_after_importing_kmseg():
    out = _program(
        "import pipeline.cli\n"
        "import numba, numpy as np\n"
        "dot = numba.njit(lambda a, b: np.dot(a, b))\n"
        "print(dot(np.arange(4.0).reshape(2, 2), np.eye(2) * 2).tolist())\n"
    )
    assert out.strip() == "[[0.0, 2.0], [4.0, 6.0]]"


def test_numba_extensions_after_importing_kmseg():
    """numba loads the installed extensions (sparse registers one) in a program that imports
    kmseg; only the kmseg command's process skips them."""
    pytest.importorskip("sparse")
    out = _program(
        "import pipeline.cli, sys\n"
        "import numba\n"
        "print(numba.njit(lambda x: x + 1)(1), 'sparse' in sys.modules)\n"
    )
    assert out.split() == ["2", "True"]
