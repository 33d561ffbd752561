"""Keep libraries from importing optional modules that kmseg never uses (start-up time).

* At import, ``dask.array`` registers the chunk types of every array library it can import
  (``dask/array/chunk_types.py``: ``sparse``, ``scipy.sparse``, ``cupy``) and ``dask.array.fft``
  imports ``scipy.fftpack``. With dask-ml installed, ``sparse`` always is (dask-glm requires it).
  kmseg never makes sparse, CuPy or FFT arrays. Hidden wherever kmseg is imported. Dask defers
  in arithmetic to any array type it has not registered, so :class:`HiddenChunkTypes` is
  registered in their place: the hidden libraries' array types, once a program imports them
  itself, are chunk types as without kmseg (``dask.array * sparse.COO`` is a Dask array).
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


#: Hidden module -> the names of its array types that ``dask.array.chunk_types`` registers.
CHUNK_TYPES: dict[str, tuple[str, ...]] = {
    "cupy": ("ndarray",),
    "cupyx.scipy.sparse": ("spmatrix",),
    "sparse": ("SparseArray",),
    "scipy.sparse": ("spmatrix", "sparray"),
}


def _hidden_chunk_types() -> tuple[type, ...]:
    """The array types of :data:`CHUNK_TYPES` whose module is imported now."""
    found = []
    for module, names in CHUNK_TYPES.items():
        library = sys.modules.get(module)
        found += [t for t in (getattr(library, n, None) for n in names) if isinstance(t, type)]
    return tuple(found)


class _HiddenChunkTypesMeta(type):
    def __subclasscheck__(cls, other: Any) -> bool:
        types = _hidden_chunk_types()
        return bool(types) and isinstance(other, type) and issubclass(other, types)

    def __instancecheck__(cls, instance: Any) -> bool:
        return cls.__subclasscheck__(type(instance))


class HiddenChunkTypes(metaclass=_HiddenChunkTypesMeta):
    """Stands for the array types of :data:`CHUNK_TYPES` in Dask's chunk-type registry.

    A class is a subclass when it derives from one of them, looked up at each check (no
    cache: a library may be imported at any time after Dask).
    """


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
                if frame.f_globals["__name__"] == "dask.array.chunk_types":
                    _register_chunk_types(frame.f_globals)
                raise ImportError(f"{name} is not used by kmseg (pipeline.lean_imports)")
            frame = frame.f_back
        return None


def _register_chunk_types(chunk_types: dict[str, Any]) -> None:
    """Register :class:`HiddenChunkTypes` (once) in ``dask.array.chunk_types``, being imported
    (``chunk_types`` is its namespace)."""
    handled = chunk_types["_HANDLED_CHUNK_TYPES"]
    if HiddenChunkTypes not in handled:
        chunk_types["register_chunk_type"](HiddenChunkTypes)


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
