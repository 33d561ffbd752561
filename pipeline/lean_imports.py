"""Keep libraries from importing optional modules that kmseg never uses (start-up time).

* At import, ``dask.array`` registers the chunk types of every array library it can import
  (``dask/array/chunk_types.py``: ``sparse``, ``scipy.sparse``, ``cupy``) and ``dask.array.fft``
  imports ``scipy.fftpack``. With dask-ml installed, ``sparse`` always is (dask-glm requires it).
  kmseg never makes sparse, CuPy or FFT arrays. Hidden wherever kmseg is imported.
* At its first compilation, numba checks for BLAS by importing ``scipy.linalg`` whole
  (``numba/np/arraymath.py``, ``_check_blas``), for ``np.dot`` and ``np.linalg`` in jitted code.
  kmseg's kernels use neither. Hidden only in the ``kmseg`` command's own process
  (:func:`install` with ``command=True``): a program that imports kmseg may jit such code itself.

Together they cost about 0.15 s of every kmseg process, a tenth of a small job. A hidden module
raises ``ImportError`` in those library modules only, which they handle as "not installed". Any
other importer, before or after, gets the real module, and a module already imported is never
hidden.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

#: Library module -> the modules hidden from it, wherever kmseg is imported.
LIBRARY: dict[str, frozenset[str]] = {
    "dask.array.chunk_types": frozenset({"sparse", "scipy.sparse", "cupy", "cupyx.scipy.sparse"}),
    "dask.array.fft": frozenset({"scipy.fftpack"}),
}
#: Library module -> the modules hidden from it in the ``kmseg`` command's process only.
COMMAND: dict[str, frozenset[str]] = {
    "numba.np.linalg": frozenset({"scipy.linalg"}),
}


class _Hide(importlib.abc.MetaPathFinder):
    """Refuses the modules of :attr:`hidden` to imports made by their library module."""

    def __init__(self) -> None:
        self.hidden: dict[str, frozenset[str]] = {}
        self.names: frozenset[str] = frozenset()

    def add(self, hidden: dict[str, frozenset[str]]) -> None:
        self.hidden = {**self.hidden, **hidden}
        self.names = frozenset().union(*self.hidden.values())

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        top = name.split(".", 1)[0]
        if name not in self.names and top not in self.names:
            return None
        frame = sys._getframe(1)
        while frame is not None:
            hidden = self.hidden.get(frame.f_globals.get("__name__", ""))
            if hidden is not None and (name in hidden or top in hidden):
                raise ImportError(f"{name} is not used by kmseg (pipeline.lean_imports)")
            frame = frame.f_back
        return None


def install(*, command: bool = False) -> None:
    """Hide the modules of :data:`LIBRARY`, and of :data:`COMMAND` with ``command=True``.

    Call before the library modules are imported (later, the hiding has no effect); calling
    again only adds.
    """
    finder = next((f for f in sys.meta_path if isinstance(f, _Hide)), None)
    if finder is None:
        finder = _Hide()
        sys.meta_path.insert(0, finder)
    finder.add({**LIBRARY, **(COMMAND if command else {})})
