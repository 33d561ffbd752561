"""The job configuration: one typed object, loaded in layers and validated once.

Layers, later ones winning: defaults → YAML file → ``KMSEG_*`` environment variables → explicit
overrides (the CLI's flags). Every key can be set in each layer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from pipeline.errors import ConfigError
from pipeline.readers.base import DEFAULT_MAX_PIXELS, ReadOptions

ENGINE_NAMES = ("auto", "exact", "dask-ml", "sample")
SCHEDULERS = ("threads", "processes", "synchronous")


@dataclass(frozen=True)
class JobConfig:
    """Everything that defines a segmentation job.

    Attributes
    ----------
    inputs : list of str
        Image paths, globs or folders.
    output : str
        Output Zarr store (one input) or folder group holding one store per input.
    k : int
        Number of clusters.
    engine : str
        ``auto``, ``exact``, ``dask-ml`` or ``sample``.
    random_state : int or None
        Seed for initialisation and sampling.
    sample : int or None
        Fit on this many pixels drawn reproducibly across chunks.
    max_iter, tol, n_init : int, float, int
        K-Means iteration limits and restarts.
    colour_space : str
        ``rgb`` or ``lab`` (RGB inputs only).
    spatial_weight : float
        Weight of pixel coordinates appended to the features (0 = colour only).
    level, series : int
        Pyramid level and series of TIFF/OME-Zarr inputs.
    array_path : str or None
        Array inside a Zarr group input.
    chunks : list of int or None
        Spatial chunk shape; chosen from ``chunk_mb`` when unset.
    chunk_mb : float or None
        Target size of one chunk of the input in MiB; chosen from the memory available
        per thread when unset.
    pyramid_levels : int or None
        Number of output levels; chosen from the image size when unset.
    overwrite : bool
        Replace an existing output store.
    scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``); local execution when unset.
    local_scheduler : str
        Local execution: ``threads`` (default), ``processes`` (a LocalCluster) or
        ``synchronous``.
    n_workers : int or None
        Workers (``processes``) or threads (``threads``) for local execution.
    quiet : bool
        No progress bar.
    scheduler_file : str or None
        Dask scheduler file (written by ``dask scheduler --scheduler-file``) to connect to.
    cluster : mapping or None
        Cluster block {kind: local|remote|slurm|pbs|kubernetes|gateway|..., ...}: YAML file or text.
        On the command line, a YAML file holding the block (or ``cluster:`` and the block) or
        inline YAML; see docs/clusters.md.
    tls_ca_file : str or None
        CA certificate (PEM) for a scheduler that requires TLS.
    tls_cert : str or None
        Client certificate (PEM) for TLS; may also hold the key.
    tls_key : str or None
        Client private key (PEM) for TLS.
    connect_timeout : float
        Seconds to wait for a Dask scheduler before failing (default 30).
    performance_report : str or None
        Write Dask's HTML performance report of the job to this file.
    valid_range : list of float or None
        ``[low, high]``: values outside this closed range are no data (label 0, left out of the
        fit and the statistics), e.g. CT outside the scanner's field of view.
    alpha : str
        ``mask`` (default): an alpha channel is not a feature, pixels with alpha 0 are no data,
        and alpha passes through to the recoloured image; ``channel``: alpha is an ordinary
        feature channel.
    max_pixels : int
        Refuse inputs whose header declares more pixels than this (checked before anything is
        allocated).
    missing_slices : str
        A DICOM series with missing slices: ``warn`` (default) or ``error``.
    reorient : bool
        Reorient NIfTI volumes to the closest canonical (RAS+) orientation.
    on_error : str
        A batch input that fails: ``stop`` the job (default) or ``continue`` with the others
        (reported, recorded in the output's metadata, exit status 3).
    label_order : str
        How classes are numbered: ``luminance`` (default; label 1 darkest), ``size`` (label 1
        largest) or ``none`` (as the fit found them).
    model : str or None
        Apply this model file (written by ``kmseg fit``) instead of fitting each input.
    shared_model : bool
        Fit one model on all inputs pooled and apply it to each.
    batch_inputs : int
        Most inputs of a batch open at once (one window; default 32). Memory grows with it,
        not with the number of inputs.
    """

    inputs: list[str] = field(default_factory=list)
    output: str = ""
    k: int = 4
    engine: str = "auto"
    random_state: int | None = 0
    sample: int | None = None
    max_iter: int = 300
    tol: float = 1e-4
    n_init: int = 10
    colour_space: str = "rgb"
    spatial_weight: float = 0.0
    level: int = 0
    series: int = 0
    array_path: str | None = None
    chunks: list[int] | None = None
    chunk_mb: float | None = None
    pyramid_levels: int | None = None
    overwrite: bool = False
    scheduler: str | None = None
    local_scheduler: str = "threads"
    n_workers: int | None = None
    quiet: bool = False
    scheduler_file: str | None = None
    cluster: dict[str, Any] | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout: float = 30.0
    performance_report: str | None = None
    valid_range: list[float] | None = None
    alpha: str = "mask"
    max_pixels: int = DEFAULT_MAX_PIXELS
    missing_slices: str = "warn"
    reorient: bool = False
    on_error: str = "stop"
    label_order: str = "luminance"
    model: str | None = None
    shared_model: bool = False
    batch_inputs: int = 32

    def validate(self) -> JobConfig:
        """Return ``self`` after checking every value; raise :class:`ConfigError` otherwise."""
        if not self.inputs:
            raise ConfigError("no input given")
        if not self.output:
            raise ConfigError("no output given (-o OUT.zarr)")
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if self.k > 65535:
            raise ConfigError(f"k must be at most 65535, got {self.k}")
        if self.engine not in ENGINE_NAMES:
            raise ConfigError(
                f"engine must be one of {', '.join(ENGINE_NAMES)}, got {self.engine!r}"
            )
        if self.colour_space not in ("rgb", "lab"):
            raise ConfigError(f"colour_space must be 'rgb' or 'lab', got {self.colour_space!r}")
        if self.spatial_weight < 0:
            raise ConfigError("spatial_weight must be >= 0")
        if self.sample is not None and self.sample < 1:
            raise ConfigError("sample must be a positive number of pixels")
        if self.local_scheduler not in SCHEDULERS:
            raise ConfigError(f"local_scheduler must be one of {', '.join(SCHEDULERS)}")
        if self.chunks is not None and any(c < 1 for c in self.chunks):
            raise ConfigError("chunks must be positive")
        if self.chunk_mb is not None and self.chunk_mb <= 0:
            raise ConfigError("chunk_mb must be positive")
        if self.max_iter < 1 or self.n_init < 1 or self.tol < 0:
            raise ConfigError("max_iter and n_init must be >= 1 and tol >= 0")
        if self.connect_timeout <= 0:
            raise ConfigError("connect_timeout must be positive")
        if self.valid_range is not None and (
            len(self.valid_range) != 2 or not self.valid_range[0] <= self.valid_range[1]
        ):
            raise ConfigError("valid_range must be [low, high] with low <= high")
        if self.alpha not in ("mask", "channel"):
            raise ConfigError(f"alpha must be 'mask' or 'channel', got {self.alpha!r}")
        if self.max_pixels < 1:
            raise ConfigError("max_pixels must be positive")
        if self.missing_slices not in ("warn", "error"):
            raise ConfigError(
                f"missing_slices must be 'warn' or 'error', got {self.missing_slices!r}"
            )
        if self.on_error not in ("stop", "continue"):
            raise ConfigError(f"on_error must be 'stop' or 'continue', got {self.on_error!r}")
        if self.label_order not in ("luminance", "size", "none"):
            raise ConfigError(
                f"label_order must be 'luminance', 'size' or 'none', got {self.label_order!r}"
            )
        if self.batch_inputs < 1:
            raise ConfigError("batch_inputs must be at least 1")
        if self.model and self.shared_model:
            raise ConfigError("give either model or shared_model, not both")
        if self.cluster is not None:
            from pipeline.cluster import validate_cluster

            validate_cluster(self.cluster)
        return self

    def read_options(self) -> ReadOptions:
        """The keys that readers use."""
        return ReadOptions(
            level=self.level,
            series=self.series,
            array_path=self.array_path,
            max_pixels=self.max_pixels,
            missing_slices=self.missing_slices,
            reorient=self.reorient,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every key (recorded in output metadata), secrets redacted."""
        from pipeline.redaction import redact

        return redact(dataclasses.asdict(self))


_FIELDS = {f.name: f for f in fields(JobConfig)}
_TYPES = get_type_hints(JobConfig)


def coerce(key: str, value: Any) -> Any:
    """Convert a value given as text (environment, CLI) or YAML to the key's type."""
    if key not in _FIELDS:
        raise ConfigError(f"unknown config key {key!r}")
    hint = str(_TYPES[key])
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        if "None" in hint:
            return None
        raise ConfigError(f"{key} cannot be empty")
    try:
        if hint.startswith("dict"):
            return _mapping(key, value)
        if "list[str]" in hint:
            return [value] if isinstance(value, str) else [str(v) for v in value]
        if "list[float]" in hint:
            if isinstance(value, str):
                value = value.strip("[]").split(",")
            return [float(v) for v in value]
        if "list[int]" in hint:
            if isinstance(value, str):
                value = value.replace("x", ",").split(",")
            return [int(v) for v in value]
        if hint.startswith("bool") or hint == "<class 'bool'>":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if "int" in hint and "float" not in hint:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if "float" in hint:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid value for {key}: {value!r}") from None


def _mapping(key: str, value: Any) -> dict[str, Any]:
    """A mapping key's value: a mapping, a YAML/JSON file holding one, or inline YAML.

    A file whose only key is ``key`` itself (a ``cluster:`` profile) gives that key's value.
    """
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise ValueError(value)
    text = value
    if os.path.isfile(value):
        try:
            text = Path(value).read_text()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {value} ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict) and set(data) == {key} and isinstance(data[key], dict):
        data = data[key]
    if not isinstance(data, dict):
        raise ConfigError(
            f"{key} must be a mapping, a YAML file holding one or inline YAML "
            f"such as '{{kind: local}}', got {value!r}"
        )
    return data


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML job file into a dict of config keys (``input`` is accepted for ``inputs``).

    Relative paths in the file are relative to the current folder, as on the command line.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a job file must be a mapping of keys to values")
    if "input" in data:
        data["inputs"] = data.pop("input")
    return data


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Config keys from ``KMSEG_<KEY>`` variables (and ``DASK_SCHEDULER_ADDRESS``)."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    if environ.get("DASK_SCHEDULER_ADDRESS"):
        out["scheduler"] = environ["DASK_SCHEDULER_ADDRESS"]
    for key in _FIELDS:
        name = "KMSEG_" + key.upper()
        if name in environ:
            value: Any = environ[name]
            if key == "inputs":
                value = value.split(os.pathsep)
            out[key] = value
    return out


def build_config(*layers: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> JobConfig:
    """Merge defaults, the given layers (in order) with the environment before the last layer.

    Typical call: ``build_config(yaml_dict, cli_overrides)``.
    """
    merged: dict[str, Any] = {}
    ordered = (
        [*layers[:-1], from_environment(environ), *layers[-1:]]
        if layers
        else [from_environment(environ)]
    )
    for layer in ordered:
        for key, value in layer.items():
            merged[key] = coerce(key, value)
    return JobConfig(**merged).validate()
