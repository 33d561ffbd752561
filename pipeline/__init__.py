"""kmseg: segment images of any size with K-Means on Dask, writing OME-NGFF Zarr.

The public API (:func:`segment`, :func:`plan`, :func:`run`, :class:`JobConfig`) and
``__version__`` are looked up on first use, so that ``import pipeline.cli`` (and
``kmseg --help``) loads no Dask, NumPy or Zarr.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, InputError, KmsegError, OutputError

if TYPE_CHECKING:
    from pipeline.api import plan, run, segment
    from pipeline.config import JobConfig

#: Public names imported on first access: name -> module.
_LAZY = {
    "plan": "pipeline.api",
    "run": "pipeline.api",
    "segment": "pipeline.api",
    "JobConfig": "pipeline.config",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kmseg")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = _version()
        return globals()[name]
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


class _Package(types.ModuleType):
    """The package module, keeping ``pipeline.plan`` the function, not the same-named module.

    Importing a submodule sets it as an attribute of its package; for ``pipeline.plan`` that
    would hide :func:`pipeline.api.plan`. The submodule stays reachable through ``sys.modules``
    and ``from pipeline.plan import ...``, as before the API was imported lazily.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ConfigError",
    "InputError",
    "JobConfig",
    "KmsegError",
    "OutputError",
    "__version__",
    "plan",
    "run",
    "segment",
]
