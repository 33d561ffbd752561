"""The job configuration: one typed, immutable object, validated once, loaded in layers.

:class:`JobConfig` is a frozen pydantic dataclass: each key is one field with its type, its
allowed range and the description that ``kmseg segment --help`` prints. Values may arrive as text
(environment variables, flags, ``--set``) or typed (YAML, the Python API); pydantic converts and
checks them, and an invalid value is one :class:`~pipeline.errors.ConfigError` line that names
where it came from: the key, the environment variable (``KMSEG_K``) or the job file and key.

Layers, later ones winning: defaults < ``KMSEG_<KEY>`` environment variables (and
``DASK_SCHEDULER_ADDRESS``) < the YAML job file < explicit values (flags, ``--set``, keyword
arguments of the Python API). The environment holds settings for every job of a machine or a
container; a job file is written for one job, so it wins over them; a flag is typed for this run.

Adding a key is one field in :class:`JobConfig`, e.g.
``my_key: int = Field(3, ge=0, description="what it does")``, and one row in the README's
"Configuration keys" table; the flag, the environment variable, ``--set``, YAML and ``--help``
follow from the field.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PositiveInt, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from pipeline.errors import ConfigError

if typing.TYPE_CHECKING:
    from pipeline.readers.base import ReadOptions

#: The ``engine`` key's values: ``auto`` and the name of every fitting engine. The one list of
#: engine names; :data:`pipeline.engines.ENGINES` implements each (a test checks both ways).
EngineName = Literal["auto", "exact", "binned", "dask-ml", "sample"]
ENGINE_NAMES: tuple[str, ...] = typing.get_args(EngineName)
#: Default of ``max_pixels``: refuse inputs whose header declares more pixels (all axes but
#: channels) than this. 10**11 (100 Gpixels) holds the largest whole-slide images (about
#: 2 * 10**10) and 4096**3 volumes, and refuses headers that declare absurd sizes.
DEFAULT_MAX_PIXELS = 10**11
#: Distributed's address schemes a scheduler may be reached by.
ADDRESS_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")
_ADDRESS = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?:[^@/\s]+@)?"  # user:password@ (redacted in messages)
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
    r":(?P<port>\d{1,5})/?$"
)
#: Text that means "unset" for a key that may be unset.
_UNSET_TEXT = ("", "none", "null")


@dataclass(
    frozen=True,
    config=ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True),
)
class JobConfig:
    """Everything that defines a segmentation job; see each field's description.

    Construction validates every value (raising :class:`pydantic.ValidationError`);
    :func:`build_config` turns that into one :class:`~pipeline.errors.ConfigError` line.
    """

    inputs: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="image paths, folders, globs or sample:NAME",
    )
    output: str = Field(
        "", validate_default=True, description="output Zarr store (a folder or an s3:// URL)"
    )
    k: int | Literal["auto"] = Field(
        4,
        description="number of clusters (1-65535), or auto: chosen from the mse curve of "
        "k_min..k_max (a heuristic; see the README)",
    )
    engine: EngineName = Field(
        "auto",
        description="fitting engine; auto picks exact where it applies, then binned, else dask-ml",
    )
    random_state: int | None = Field(
        0, ge=0, le=2**32 - 1, description="seed for initialisation and sampling"
    )
    sample: int | None = Field(
        None, ge=1, description="fit on this many pixels drawn reproducibly across chunks"
    )
    max_iter: int = Field(300, ge=1, description="K-Means iteration limit")
    tol: float = Field(1e-4, ge=0, description="K-Means convergence tolerance")
    n_init: int = Field(10, ge=1, description="K-Means restarts")
    colour_space: Literal["rgb", "lab"] = Field(
        "rgb", description="feature colour space (lab: CIELAB, RGB inputs only)"
    )
    spatial_weight: float = Field(
        0.0, ge=0, description="weight of pixel coordinates (scaled to [0, 1]) in the features"
    )
    level: int = Field(0, ge=0, description="pyramid level of a TIFF or OME-Zarr input")
    series: int = Field(0, ge=0, description="series of a TIFF input")
    array_path: str | None = Field(None, description="array inside a Zarr group input")
    chunks: list[PositiveInt] | None = Field(
        None,
        min_length=2,
        max_length=3,
        description="spatial chunk shape, e.g. 512x512 or 512,512 ([z,] y, x); "
        "none: chosen from chunk_mb",
    )
    chunk_mb: float | None = Field(
        None,
        gt=0,
        description="target input MiB per chunk; none: from the memory per thread (4-64 MiB)",
    )
    pyramid_levels: int | None = Field(
        None, ge=1, le=64, description="output pyramid levels; none: from the image size"
    )
    overwrite: bool = Field(False, description="replace an existing output store")
    scheduler: str | None = Field(
        None,
        description="address of a running Dask scheduler (tcp://HOST:PORT, tls://HOST:PORT "
        "or HOST:PORT); also DASK_SCHEDULER_ADDRESS",
    )
    local_scheduler: Literal["threads", "processes", "synchronous"] = Field(
        "threads", description="without a scheduler: local threads, a LocalCluster or one thread"
    )
    n_workers: int | None = Field(
        None, ge=1, description="threads (or worker processes) for local execution; none: all cores"
    )
    quiet: bool = Field(False, description="no progress bar or progress messages")
    scheduler_file: str | None = Field(
        None, description="Dask scheduler file (dask scheduler --scheduler-file) to connect to"
    )
    cluster: dict[str, Any] | None = Field(
        None,
        description="cluster block {kind: local|remote|slurm|pbs|kubernetes|gateway|..., ...}: "
        "a YAML file or inline YAML (docs/clusters.md)",
    )
    tls_ca_file: str | None = Field(None, description="CA certificate (PEM) for a tls:// scheduler")
    tls_cert: str | None = Field(
        None, description="client certificate (PEM) for TLS; may also hold the key"
    )
    tls_key: str | None = Field(None, description="client private key (PEM) for TLS")
    connect_timeout: float = Field(
        30.0, gt=0, description="seconds to wait for a Dask scheduler before failing"
    )
    performance_report: str | None = Field(
        None, description="write Dask's HTML performance report of the job to this file"
    )
    valid_range: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="LOW HIGH: values outside this closed range are no data (label 0)",
    )
    alpha: Literal["mask", "channel"] = Field(
        "mask",
        description="mask: alpha is no feature, alpha 0 is no data, alpha passes through; "
        "channel: alpha is a feature",
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="refuse inputs whose header declares more pixels than this",
    )
    missing_slices: Literal["warn", "error"] = Field(
        "warn", description="a DICOM series with missing slices: warn or error"
    )
    reorient: bool = Field(
        False, description="reorient NIfTI volumes to the closest canonical (RAS+) orientation"
    )
    on_error: Literal["stop", "continue"] = Field(
        "stop",
        description="a batch input that fails: stop the job, or continue with the others "
        "(reported, recorded in the output's metadata, exit status 3)",
    )
    label_order: Literal["luminance", "size", "none"] = Field(
        "luminance",
        description="class numbering: luminance (label 1 darkest), size (label 1 largest) "
        "or none (as fitted)",
    )
    model: str | None = Field(
        None, description="apply this model file (kmseg fit) instead of fitting each input"
    )
    shared_model: bool = Field(
        False, description="fit one model on all inputs pooled and apply it to each"
    )
    batch_inputs: int = Field(
        32, ge=1, description="most inputs of a batch open at once (bounds memory)"
    )
    batch_processes: int | None = Field(
        None,
        ge=1,
        description="local batches: worker processes that segment windows of small inputs "
        "side by side (1: none); none: one per core for batches of 128 inputs or more",
    )
    mask: str | None = Field(
        None,
        description="segment only inside a mask: an image file (nonzero = inside; a lower "
        "resolution is upsampled), a folder or a pattern with {name} (one mask per input), "
        "or auto (tissue of slides and photos, the body in CT)",
    )
    report: bool = Field(
        False,
        description="after the job, write the report page NAME.report.html beside the output "
        "(kmseg report)",
    )
    k_min: int = Field(2, ge=2, le=64, description="smallest k tried by k: auto")
    k_max: int = Field(12, ge=2, le=64, description="largest k tried by k: auto")

    # --- conversions of text and YAML values, before the type check ---------------------------

    @field_validator("*", mode="before")
    @classmethod
    def _before(cls, value: Any, info: Any) -> Any:
        """Text to values: ``none`` unsets, ``512x512`` is a list, a path or YAML a mapping."""
        name = info.field_name
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if name in LIST_KEYS and isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]  # a flag's list of texts: --chunks none is --set chunks=none
        if isinstance(value, str) and value.strip().lower() in _UNSET_TEXT and name in _OPTIONAL:
            return None
        if isinstance(value, str) and value.strip().lower() in _UNSET_TEXT[1:] and (
            name in _NUMERIC or name in _BOOLEAN
        ):
            raise ValueError(
                f"has no unset value; give a value (default: {default_of(name)})"
            )
        if isinstance(value, bool) and name in _NUMERIC:
            raise ValueError("expected a number, got a boolean")
        if name in LIST_KEYS:
            return _as_list(name, value)
        if name in _WHOLE and isinstance(value, str):
            value = _whole_number(value)
        if name == "cluster" and value is not None:
            return _mapping(name, value)
        return value

    @field_validator("inputs")
    @classmethod
    def _some_input(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("no input given")
        return value

    @field_validator("output")
    @classmethod
    def _an_output(cls, value: str) -> str:
        if not value:
            raise ValueError("no output given (-o OUT.zarr; for kmseg fit, -o MODEL.json)")
        return value

    @field_validator("k", mode="before")
    @classmethod
    def _k_number_or_auto(cls, value: Any) -> Any:
        """``k`` is a whole number or ``auto`` (text from the CLI, environment or YAML)."""
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "auto":
                return "auto"
            if text in _UNSET_TEXT:
                raise ValueError(
                    f"has no unset value; give a value (default: {default_of('k')})"
                )
            try:
                return int(text)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        raise ValueError(f"must be a whole number or auto, got {value!r}")

    @field_validator("k")
    @classmethod
    def _k_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError(f"must be 1-65535 or auto, got {value}")
        return value

    @field_validator("k_max")
    @classmethod
    def _k_max_not_below_k_min(cls, value: int, info: Any) -> int:
        k_min = info.data.get("k_min")
        if k_min is not None and value < k_min:
            raise ValueError(f"must be at least k_min ({k_min}), got {value}")
        return value

    @field_validator("valid_range")
    @classmethod
    def _ordered_range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not value[0] <= value[1]:
            raise ValueError("must be [low, high] with low <= high")
        return value

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            check_address(value)
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster_block(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from pipeline.cluster import validate_cluster

            try:
                validate_cluster(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    # --- use ----------------------------------------------------------------------------------

    def validate(self) -> JobConfig:
        """Return ``self``: every value was checked when the object was made."""
        return self

    def read_options(self) -> ReadOptions:
        """The keys that readers use."""
        from pipeline.readers.base import ReadOptions

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
        import dataclasses

        from pipeline.redaction import redact

        return redact(dataclasses.asdict(self))


def config_fields() -> dict[str, Any]:
    """Every key of :class:`JobConfig` and its pydantic ``FieldInfo``, in definition order."""
    return dict(JobConfig.__pydantic_fields__)


def default_of(name: str) -> Any:
    """The default value of the key ``name``."""
    info = config_fields()[name]
    return info.default_factory() if info.default_factory is not None else info.default


def _accepts(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, kind) for a in typing.get_args(annotation))
    return origin is kind


_OPTIONAL = {n for n, f in config_fields().items() if _accepts(f.annotation, type(None))}
_BOOLEAN = {n for n, f in config_fields().items() if f.annotation is bool}
_NUMERIC = {
    n for n, f in config_fields().items()
    if _accepts(f.annotation, int) or _accepts(f.annotation, float)
}
#: Keys whose value is a list (several flag arguments, or text such as ``512x512``).
LIST_KEYS = {n for n, f in config_fields().items() if _accepts(f.annotation, list)}
#: Keys whose value is a whole number (not ``k``, which is also ``auto``).
_WHOLE = {
    n for n, f in config_fields().items()
    if _accepts(f.annotation, int) and not _accepts(f.annotation, float) and n != "k"
}
_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _whole_number(text: str) -> Any:
    """``1e12`` and ``2.5e3`` (text from a flag, a variable or YAML, which reads ``1e12`` as
    text) as the whole numbers they are; any other text unchanged, for the type check."""
    from decimal import Decimal

    if _SCIENTIFIC.fullmatch(text.strip()):
        number = Decimal(text.strip())
        if number == number.to_integral_value():
            return int(number)
    return text


def _as_list(name: str, value: Any) -> Any:
    """A list key's value from text: ``512x512``, ``512,512``, ``[-1000, 3000]`` or one path.

    Flags give a list of such texts (``--chunks 512 512`` or ``--chunks 512x512``).
    """
    if value is None:
        return None
    if name == "inputs":
        if isinstance(value, (list, tuple)):
            return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        return [value] if isinstance(value, str) else value
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        return value
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            text = item.strip()
            opened, closed = text[:1] in ("[", "("), text[-1:] in ("]", ")")
            if opened != closed or (opened and len(text) < 2):
                raise ValueError(f"malformed list {item!r}: unbalanced brackets")
            text = text[1:-1] if opened else text
            separators = "x," if name == "chunks" else ","
            parts = [part.strip() for part in re.split(f"[{separators}]", text)]
            if len(parts) > 1 and not all(parts):
                raise ValueError(f"malformed list {item!r}: an empty item")
            out += [part for part in parts if part]
        else:
            out.append(item)
    return out


def check_address(address: str) -> str:
    """Return ``address`` if it has the form of a Dask scheduler address; raise ValueError.

    Accepted: ``SCHEME://HOST:PORT`` with a scheme of :data:`ADDRESS_SCHEMES`, or a bare
    ``HOST:PORT`` (tcp). IPv6 hosts go in brackets (``tcp://[::1]:8786``).
    """
    from pipeline.redaction import redact_url

    match = _ADDRESS.match(address.strip())
    problem = None
    if match is None:
        problem = "expected SCHEME://HOST:PORT or HOST:PORT"
    elif match["scheme"] and match["scheme"].lower() not in ADDRESS_SCHEMES:
        problem = f"unknown scheme {match['scheme']!r}; use one of {', '.join(ADDRESS_SCHEMES)}"
    elif not 1 <= int(match["port"]) <= 65535:
        problem = "the port must be 1-65535"
    if problem:
        raise ValueError(f"not a scheduler address ({problem}), got {redact_url(address)!r}")
    return address


def _mapping(key: str, value: Any) -> dict[str, Any]:
    """A mapping key's value: a mapping, a YAML/JSON file holding one, or inline YAML.

    A file whose only key is ``key`` itself (a ``cluster:`` profile) gives that key's value.
    """
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise ValueError("must be a mapping")
    import yaml

    text = value
    if os.path.isfile(value):
        try:
            text = Path(value).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {value} ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict) and set(data) == {key} and isinstance(data[key], dict):
        data = data[key]
    if not isinstance(data, dict):
        raise ValueError(
            "must be a mapping, a YAML file holding one or inline YAML such as '{kind: local}'"
        )
    return data


# --- layers -------------------------------------------------------------------------------------


class Layer(dict):
    """Config keys from one source, with the name under which each key is reported in errors.

    ``where`` maps a key to ``KMSEG_K``, ``job.yaml: k``, ...; keys missing there are reported
    under their own name.
    """

    def __init__(self, values: Mapping[str, Any] = (), where: Mapping[str, str] = ()) -> None:
        super().__init__(values)
        self.where = dict(where)


class _DuplicateKey(ValueError):
    """A YAML mapping names one key twice."""


def _unique_key_loader() -> type:
    """A yaml ``SafeLoader`` that refuses a mapping with a duplicate key (YAML 1.2 forbids it;
    PyYAML would silently keep the last value)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if duplicate:
                    line = key_node.start_mark.line + 1
                    raise _DuplicateKey(f"{key}: given twice (again on line {line})")
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml(path: str | os.PathLike) -> Layer:
    """Read a YAML job file into config keys (``input`` is accepted for ``inputs``).

    Relative paths in the file are relative to the current folder, as on the command line.

    Raises
    ------
    ConfigError
        The file cannot be read, is not UTF-8 YAML, names a key twice, or is not a mapping.
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); a job file is YAML text"
        ) from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader()) or {}
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a job file must be a mapping of keys to values")
    if "input" in data:
        if "inputs" in data:
            raise ConfigError(f"{path}: give either input or inputs, not both")
        data["inputs"] = data.pop("input")
    return Layer(data, {str(key): f"{path}: {key}" for key in data})


#: ``KMSEG_*`` variables that are not config keys but that kmseg's own Docker files, compose
#: files and CI scripts use for themselves: never warned about.
OTHER_VARIABLES = frozenset({
    "KMSEG_BASE_CACHE", "KMSEG_BASE_MIRROR", "KMSEG_BASE_REBUILD", "KMSEG_BASE_SECURITY",
    "KMSEG_BASE_SECURITY_MIRROR", "KMSEG_BASE_TAG", "KMSEG_BIND_HOST", "KMSEG_CI_MAX_GB",
    "KMSEG_DASHBOARD_PORT", "KMSEG_DATA", "KMSEG_DOCKER_ROOT", "KMSEG_GID", "KMSEG_IMAGE",
    "KMSEG_JOB", "KMSEG_SCHEDULER_HOST", "KMSEG_SCHEDULER_PORT", "KMSEG_UID",
    "KMSEG_WHEELHOUSE", "KMSEG_WORKERS", "KMSEG_WORKER_MEMORY", "KMSEG_WORKER_NTHREADS",
})
_warned_variables: set[str] = set()


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """One warning per unknown ``KMSEG_*`` variable (a typo such as ``KMSEG_CHUNK``)."""
    import warnings

    from pipeline.errors import KmsegWarning

    known = ["KMSEG_" + key.upper() for key in config_fields()]
    for name in sorted(environ):
        if (
            not name.startswith("KMSEG_") or name in known or name in OTHER_VARIABLES
            or name in _warned_variables
        ):
            continue
        _warned_variables.add(name)
        close = difflib.get_close_matches(name[6:], [k[6:] for k in known], n=1)
        hint = f"; did you mean KMSEG_{close[0]}?" if close else ""
        warnings.warn(
            f"{name}: not a kmseg setting, ignored{hint}", KmsegWarning, stacklevel=3
        )


def from_environment(environ: Mapping[str, str] | None = None) -> Layer:
    """Config keys from ``KMSEG_<KEY>`` variables and ``DASK_SCHEDULER_ADDRESS``.

    Empty variables count as unset. A ``KMSEG_*`` variable that names no key is ignored with
    one :class:`~pipeline.errors.KmsegWarning` (with the closest key's variable), except those
    of :data:`OTHER_VARIABLES` (the Docker files use ``KMSEG_DATA`` and others for themselves).
    ``KMSEG_INPUTS`` is split on ``os.pathsep``. ``KMSEG_SCHEDULER`` wins over
    ``DASK_SCHEDULER_ADDRESS``.
    """
    environ = os.environ if environ is None else environ
    _warn_unknown_variables(environ)
    layer = Layer()
    if environ.get("DASK_SCHEDULER_ADDRESS"):
        layer["scheduler"] = environ["DASK_SCHEDULER_ADDRESS"]
        layer.where["scheduler"] = "DASK_SCHEDULER_ADDRESS"
    for key in config_fields():
        name = "KMSEG_" + key.upper()
        value: Any = environ.get(name)
        if value:
            layer[key] = value.split(os.pathsep) if key == "inputs" else value
            layer.where[key] = name
    return layer


def build_config(*layers: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> JobConfig:
    """Validate the environment and ``layers`` merged over the defaults, later layers winning.

    Typical call: ``build_config(load_yaml(job), flags)``: defaults < environment < job file
    < flags.

    Parameters
    ----------
    *layers : mapping
        Config keys; a :class:`Layer` also says where each key came from, for messages.
    environ : mapping, optional
        Environment variables (default ``os.environ``).

    Raises
    ------
    ConfigError
        One line naming every invalid key (or variable, or file and key) and the problem.
    """
    merged: dict[str, Any] = {}
    where: dict[str, str] = {}
    known = config_fields()
    for layer in (from_environment(environ), *layers):
        names = getattr(layer, "where", {})
        for key, value in layer.items():
            key = str(key)
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{names.get(key, key)}: unknown config key{hint}")
            merged[key] = value
            where[key] = names.get(key, key)
    try:
        config = JobConfig(**merged)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, where)) from None
    if "k" in merged and config.model:
        # Only here are the layers known: a k equal to the default's value but typed out
        # (-k 4) would otherwise be ignored without a word.
        from pipeline.model import Model

        check_k_against_model(config.k, Model.load(config.model).k, where["k"])
    return config


def check_k_against_model(k: int | str, model_k: int, where: str) -> None:
    """Refuse a ``k`` that is given with a model and is not the model's (the model decides k).

    Raises
    ------
    ConfigError
        Naming where ``k`` came from (``k``, ``KMSEG_K``, ``job.yaml: k``) and the model's k.
    """
    if k != model_k:
        raise ConfigError(f"{where}: {k} does not apply with a model, whose k is {model_k}; "
                          "leave k out")


def describe_errors(exc: ValidationError, where: Mapping[str, str] | None = None) -> str:
    """One line for a pydantic ``ValidationError``: ``KEY: problem (got VALUE)`` per error."""
    from pipeline.redaction import redact

    where = where or {}
    parts = []
    for error in exc.errors():
        loc = error.get("loc") or ("config",)
        name = where.get(str(loc[0]), str(loc[0])) + "".join(f"[{i}]" for i in loc[1:])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error":
            message = message.replace("Input should be", "must be")
        shown = error.get("input")
        got = "" if "got " in message or isinstance(shown, dict) else _got(redact(shown))
        parts.append(f"{name}: {message}{got}")
    return "; ".join(parts)


def _got(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f" (got {value})"
    text = repr(value)
    return f" (got {text[:77] + '...' if len(text) > 80 else text})"
