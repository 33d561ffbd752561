"""In the ``kmseg`` command's own process, keep libraries from importing optional modules that
kmseg never uses (start-up time).

* At import, ``dask.array`` registers the chunk types of every array library it can import
  (``dask/array/chunk_types.py``: ``sparse``, ``scipy.sparse``, ``cupy``) and ``dask.array.fft``
  imports ``scipy.fftpack``. With dask-ml installed, ``sparse`` always is (dask-glm requires it).
  kmseg never makes sparse, CuPy or FFT arrays.
* At its first compilation, numba checks for BLAS by importing ``scipy.linalg`` whole
  (``numba/np/arraymath.py``, ``_check_blas``), for ``np.dot`` and ``np.linalg`` in jitted code.
  kmseg's kernels use neither.
* Before its first compilation, numba loads every installed ``numba_extensions`` entry point
  (``numba/core/entrypoints.py``, ``init_all``): it reads the metadata of every installed
  distribution and imports each extension (``sparse`` registers one). kmseg's kernels use no
  extension types, so the command's process marks them loaded (0.04 s).

Together they cost about 0.2 s of every kmseg process, a tenth of a small job. A hidden module
raises ``ImportError`` in those library modules only, which they handle as "not installed"; any
other importer gets the real module. Only the command's process hides them (``pipeline.cli.main``
called without arguments, and the benchmark's stand-in for it): a program that imports kmseg
keeps every feature of those libraries (dask arithmetic with sparse arrays, numba's ``np.dot``
and extensions).
"""

from __future__ import annotations

import importlib.abc
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

#: Library module -> the modules hidden from it in the ``kmseg`` command's process.
HIDDEN: dict[str, frozenset[str]] = {
    "dask.array.chunk_types": frozenset({"sparse", "scipy.sparse", "cupy", "cupyx.scipy.sparse"}),
    "dask.array.fft": frozenset({"scipy.fftpack"}),
    "numba.np.linalg": frozenset({"scipy.linalg"}),
}


#: Library module -> attributes set on it as soon as it is imported in the command's process.
PRESET: dict[str, dict[str, Any]] = {
    "numba.core.entrypoints": {"_already_initialized": True},
}


class _Preset(importlib.abc.Loader):
    """A module's own loader, then the attributes of :data:`PRESET` set on the module."""

    def __init__(self, loader: importlib.abc.Loader, attributes: dict[str, Any]) -> None:
        self.loader = loader
        self.attributes = attributes

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        for attribute, value in self.attributes.items():
            setattr(module, attribute, value)


class _Hide(importlib.abc.MetaPathFinder):
    """Refuses the modules of :data:`HIDDEN` to imports made by their library module, and
    presets the attributes of :data:`PRESET`."""

    names = frozenset().union(*HIDDEN.values())

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name in PRESET:
            return self._preset(name, path, target)
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

    def _preset(self, name: str, path: Any, target: Any) -> ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Preset(spec.loader, PRESET[name])
                return spec
        return None


def install() -> None:
    """Hide the modules of :data:`HIDDEN` and preset :data:`PRESET` in this process from now
    on (idempotent).

    Call first thing in the command's process: a library module already imported has made its
    imports.
    """
    if not any(isinstance(finder, _Hide) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Hide())
