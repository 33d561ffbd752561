"""kmseg: segment images of any size with K-Means on Dask, writing OME-NGFF Zarr."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kmseg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from pipeline.api import fit, plan, run, segment
from pipeline.config import JobConfig
from pipeline.errors import ConfigError, InputError, KmsegError, OutputError
from pipeline.model import Model

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
