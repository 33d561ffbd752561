"""Keep ``import dask.array`` from loading optional array libraries kmseg never uses.

At import, ``dask.array`` registers the chunk types of every array library it can import
(``dask/array/chunk_types.py``: ``sparse``, ``scipy.sparse``, ``cupy``) and ``dask.array.fft``
imports ``scipy.fftpack``. With dask-ml installed, ``sparse`` always is (dask-glm requires it),
and these imports cost about 0.1 s of every kmseg process, a tenth of a small job. kmseg never
makes sparse, CuPy or FFT arrays, so :func:`install` hides those modules from those two dask
modules only: the import there raises ``ImportError``, which dask handles as "not installed".
Any other importer, before or after, gets the real module, and a module already imported is
never hidden (a program that imported ``sparse`` first keeps dask's sparse support).
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

#: The modules hidden, and the dask modules they are hidden from.
HIDDEN = frozenset({"sparse", "scipy.sparse", "scipy.fftpack", "cupy", "cupyx.scipy.sparse"})
IMPORTERS = frozenset({"dask.array.chunk_types", "dask.array.fft"})


class _HideFromDask(importlib.abc.MetaPathFinder):
    """Refuses the modules of :data:`HIDDEN` to imports made by :data:`IMPORTERS`."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in HIDDEN or name.split(".", 1)[0] in HIDDEN:
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_globals.get("__name__") in IMPORTERS:
                    raise ImportError(f"{name} is not used by kmseg (pipeline.lean_imports)")
                frame = frame.f_back
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once); no effect once dask.array is loaded."""
    if "dask.array" in sys.modules:
        return
    if not any(isinstance(finder, _HideFromDask) for finder in sys.meta_path):
        sys.meta_path.insert(0, _HideFromDask())
