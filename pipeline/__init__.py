"""kmseg: segment images of any size with K-Means on Dask, writing OME-NGFF Zarr.

The public API (:func:`segment`, :func:`plan`, :func:`run`, :func:`fit`, :class:`Model`,
:class:`JobConfig`) and
``__version__`` are looked up on first use, so that ``import pipeline.cli`` (and
``kmseg --help``) loads no Dask, NumPy or Zarr.

Where each stage lives (a job runs them top to bottom):

- read: ``pipeline/readers/`` opens every input format as a lazy ``ImageSource``
  (``dispatch.py`` picks the reader; one module per format; ``base.py`` the interface).
- features: ``pipeline/features.py`` turns blocks of pixels into feature rows (scaling,
  CIELAB, spatial coordinates); ``sampling.py`` draws reproducible pixel samples.
- fit: ``pipeline/engines/`` fits the centres (``__init__.py`` chooses the engine;
  ``exact``, ``dask-ml``, ``sample`` ...); ``autok.py`` chooses k; ``order.py`` numbers them.
- label: ``pipeline/labels.py`` labels each pixel by its nearest centre, recolours it and
  counts the clusters; ``measure.py`` gives per-class measurements.
- write: ``pipeline/io/`` writes the OME-NGFF 0.5 output (``ngff.py`` arrays and metadata,
  ``pyramid.py`` the downsampled levels, ``colours.py`` the label colours).
- execute: ``pipeline/plan.py`` builds one job per input and runs it; ``pipeline/execution.py``
  computes on the chosen scheduler; ``cluster.py`` starts a cluster from a ``cluster:`` block.

Around them: ``cli.py`` the ``kmseg`` command; ``api.py`` the Python API; ``config.py`` the
typed job configuration and its layers; ``outputs.py`` and ``lock.py`` where kmseg may write
(never overwriting what it did not create), ``sigterm.py`` clean-up on SIGTERM; ``errors.py``
and ``warn.py`` one-line errors and warnings; ``redaction.py`` keeps secrets out of metadata;
``model.py`` saved models; ``info.py`` and ``report/`` describe an output; ``demo.py`` and
``samples.py`` bundled images.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, InputError, KmsegError, OutputError

if TYPE_CHECKING:
    from pipeline.api import fit, plan, run, segment
    from pipeline.config import JobConfig
    from pipeline.model import Model

#: Public names imported on first access: name -> module.
_LAZY = {
    "plan": "pipeline.api",
    "run": "pipeline.api",
    "segment": "pipeline.api",
    "fit": "pipeline.api",
    "Model": "pipeline.model",
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
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # A submodule used as an attribute after `import pipeline` (the README's
        # `pipeline.report.write_report(...)`); importing it sets the attribute.
        return importlib.import_module(f"{__name__}.{name}")
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
    "Model",
    "OutputError",
    "__version__",
    "fit",
    "plan",
    "run",
    "segment",
]
