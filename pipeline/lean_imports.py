"""In the ``kmseg`` command's own process, keep libraries from importing optional modules that
kmseg never uses (start-up time).

* At import, ``dask.array`` registers the chunk types of every array library it can import
  (``dask/array/chunk_types.py``: ``sparse``, ``scipy.sparse``, ``cupy``) and ``dask.array.fft``
  imports ``scipy.fftpack``. With dask-ml installed, ``sparse`` always is (dask-glm requires it).
  kmseg never makes sparse, CuPy or FFT arrays.
* At its first compilation, numba checks for BLAS by importing ``scipy.linalg`` whole
  (``numba/np/arraymath.py``, ``_check_blas``), for ``np.dot`` and ``np.linalg`` in jitted code.
  kmseg's kernels use neither.

Together they cost about 0.15 s of every kmseg process, a tenth of a small job. A hidden module
raises ``ImportError`` in those library modules only, which they handle as "not installed"; any
other importer gets the real module. Only the command's process hides them (``pipeline.cli.main``
called without arguments, and the benchmark's stand-in for it): a program that imports kmseg
keeps every feature of those libraries (dask arithmetic with sparse arrays, numba's ``np.dot``).
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

#: Library module -> the modules hidden from it in the ``kmseg`` command's process.
HIDDEN: dict[str, frozenset[str]] = {
    "dask.array.chunk_types": frozenset({"sparse", "scipy.sparse", "cupy", "cupyx.scipy.sparse"}),
    "dask.array.fft": frozenset({"scipy.fftpack"}),
    "numba.np.linalg": frozenset({"scipy.linalg"}),
}


class _Hide(importlib.abc.MetaPathFinder):
    """Refuses the modules of :data:`HIDDEN` to imports made by their library module."""

    names = frozenset().union(*HIDDEN.values())

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        top = name.split(".", 1)[0]
        if name not in self.names and top not in self.names:
            return None
        frame = sys._getframe(1)
        while frame is not None:
            hidden = HIDDEN.get(frame.f_globals.get("__name__", ""))
            if hidden is not None and (name in hidden or top in hidden):
                raise ImportError(f"{name} is not used by kmseg (pipeline.lean_imports)")
            frame = frame.f_back
        return None


def install() -> None:
    """Hide the modules of :data:`HIDDEN` in this process from now on (idempotent).

    Call first thing in the command's process: a library module already imported has made its
    imports.
    """
    if not any(isinstance(finder, _Hide) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Hide())
