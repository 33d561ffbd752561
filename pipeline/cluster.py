"""Clusters that kmseg starts for a job from a ``cluster:`` block, and closes after it.

A block names a ``kind`` and passes every other key to that kind's cluster class::

    cluster:
      kind: slurm            # dask_jobqueue.SLURMCluster(**the other keys)
      cores: 8
      memory: 32GiB
      walltime: "02:00:00"
      scale: {jobs: 4}       # kmseg's own keys: scale, adapt, wait_for_workers

Kinds: ``threads`` (local threads: ``n_workers`` of them, no cluster at all), ``local``
(:class:`distributed.LocalCluster`), ``remote`` (an existing scheduler:
``address`` or ``scheduler_file``, optional ``tls_*``), the dask-jobqueue systems (``slurm``,
``pbs``, ``sge``, ``lsf``, ``htcondor``, ``moab``, ``oar``), ``kubernetes`` (the dask-kubernetes
operator's ``KubeCluster``) and ``gateway`` (Dask Gateway). The optional packages are imported
only when their kind is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
from collections.abc import Iterator, Mapping
from typing import Any

from pipeline.errors import ConfigError

#: kind -> (module, class, pip extra) for cluster classes built from the block's keys.
FACTORIES: dict[str, tuple[str, str, str]] = {
    "slurm": ("dask_jobqueue", "SLURMCluster", "jobqueue"),
    "pbs": ("dask_jobqueue", "PBSCluster", "jobqueue"),
    "sge": ("dask_jobqueue", "SGECluster", "jobqueue"),
    "lsf": ("dask_jobqueue", "LSFCluster", "jobqueue"),
    "htcondor": ("dask_jobqueue", "HTCondorCluster", "jobqueue"),
    "moab": ("dask_jobqueue", "MoabCluster", "jobqueue"),
    "oar": ("dask_jobqueue", "OARCluster", "jobqueue"),
    "kubernetes": ("dask_kubernetes.operator", "KubeCluster", "kubernetes"),
}
#: Every kind a block may name.
KINDS = ("threads", "local", "remote", "gateway", *FACTORIES)
#: Keys kmseg reads itself; all others go to the cluster class.
CONTROL_KEYS = ("kind", "scale", "adapt", "wait_for_workers")
#: Keys of a ``remote`` block.
REMOTE_KEYS = ("kind", "address", "scheduler_file", "tls_ca_file", "tls_cert", "tls_key",
               "timeout")
#: Keys of a ``gateway`` block that go to :class:`dask_gateway.Gateway`; the others are
#: cluster options given to ``Gateway.new_cluster``.
GATEWAY_KEYS = ("address", "proxy_address", "public_address", "auth")


def validate_cluster(spec: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` if a cluster block is malformed (imports nothing)."""
    if not isinstance(spec, Mapping):
        raise ConfigError("cluster must be a mapping with a 'kind' key")
    kind = spec.get("kind")
    if kind is None:
        keys = f" (it has {', '.join(map(str, spec))})" if spec else ""
        raise ConfigError(f"a cluster block needs a 'kind' key{keys}; one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise ConfigError(f"cluster kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "threads":
        unknown = sorted(set(spec) - {"kind", "n_workers"})
        if unknown:
            raise ConfigError(f"unknown keys in a threads cluster block: {', '.join(unknown)}")
        n = spec.get("n_workers")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ConfigError("n_workers of a threads cluster block must be a positive number")
        return
    if kind == "remote":
        unknown = sorted(set(spec) - set(REMOTE_KEYS))
        if unknown:
            raise ConfigError(f"unknown keys in a remote cluster block: {', '.join(unknown)}")
        if not (spec.get("address") or spec.get("scheduler_file")):
            raise ConfigError("a remote cluster block needs 'address' or 'scheduler_file'")
        return
    scale = spec.get("scale")
    if scale is not None and not (
        (isinstance(scale, int) and not isinstance(scale, bool) and scale >= 0)
        or isinstance(scale, Mapping)
    ):
        raise ConfigError("cluster scale must be a number of workers or a mapping ({jobs: 4})")
    adapt = spec.get("adapt")
    if adapt is not None and not isinstance(adapt, Mapping):
        raise ConfigError("cluster adapt must be a mapping ({minimum: 1, maximum: 10})")
    wait = spec.get("wait_for_workers", 0)
    if not isinstance(wait, int) or isinstance(wait, bool) or wait < 0:
        raise ConfigError("cluster wait_for_workers must be a number of workers >= 0")


def cluster_class(kind: str) -> Any:
    """The cluster class of a factory kind, imported now; a clear error if it is missing."""
    module_name, attr, extra = FACTORIES[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cluster kind {kind!r} needs the {module_name.split('.')[0]} package "
            f"(pip install 'kmseg[{extra}]'): {exc}"
        ) from None
    return getattr(module, attr)


@contextlib.contextmanager
def start_cluster(spec: Mapping[str, Any]) -> Iterator[Any]:
    """Start the cluster a block describes, scale it, yield it and close it afterwards.

    Not for ``remote`` blocks (a cluster that is already running) nor ``threads`` (none).
    """
    validate_cluster(spec)
    kind = spec["kind"]
    if kind in ("remote", "threads"):
        raise ConfigError(f"a {kind} cluster block does not start a cluster")
    options = {k: v for k, v in spec.items() if k not in CONTROL_KEYS}
    if kind == "gateway":
        with _gateway_cluster(options) as cluster:
            with _refused_keys(kind):
                _scale(cluster, spec)
            yield cluster
        return
    if kind == "local":
        from distributed import LocalCluster

        options.setdefault("dashboard_address", ":0")
        _check_local_keys(options)
        n_workers = options.get("n_workers")
        if options.get("processes", True) and isinstance(n_workers, int):
            from pipeline.execution import check_process_count

            check_process_count(n_workers, "cluster: n_workers")
        factory = LocalCluster
    else:
        factory = cluster_class(kind)
        _check_submit_command(kind, factory)
    with _refused_keys(kind):
        cluster = factory(**options)
    try:
        with _refused_keys(kind):
            _scale(cluster, spec)
        yield cluster
    finally:
        cluster.close()


def _check_submit_command(kind: str, factory: Any) -> None:
    """Refuse a batch-system block (dask-jobqueue) whose submit command is not on ``PATH``.

    dask-jobqueue submits the worker jobs in the background: a missing ``sbatch`` (kmseg run
    outside the cluster's login nodes) is only a traceback in its log, and the job would then
    wait for workers for ever.

    Raises
    ------
    ConfigError
        Naming the kind and the command.
    """
    command = getattr(getattr(factory, "job_cls", None), "submit_command", None)
    program = command.split()[0] if isinstance(command, str) and command.split() else None
    if program is not None and shutil.which(program) is None:
        raise ConfigError(
            f"cluster: the {kind} cluster submits worker jobs with {program}, which is not on "
            "this machine's PATH; run kmseg on a node of the batch system (a login node)"
        )


def _check_local_keys(options: Mapping[str, Any]) -> None:
    """Refuse keys of a ``local`` block that no layer of a LocalCluster takes.

    ``LocalCluster`` hands unknown keys on to its workers, whose processes then fail to start
    with a traceback each; the keys it, the nanny, the worker and the server underneath accept
    are their signatures' parameters (the last one takes no ``**kwargs``).

    Raises
    ------
    ConfigError
        Naming the unknown keys.
    """
    import inspect

    from distributed import LocalCluster, Nanny, Worker
    from distributed.core import Server

    known: set[str] = set()
    for cls in (LocalCluster, Nanny, Worker, Server):
        known.update(
            name for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name != "self"
        )
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"cluster: unknown keys in a local cluster block: {', '.join(unknown)}"
                          " (keys of distributed.LocalCluster and its workers)")


@contextlib.contextmanager
def _refused_keys(kind: str) -> Iterator[None]:
    """Turn a cluster class's refusal of the block's keys into one :class:`ConfigError` line.

    The keys of a block go to the cluster class unchecked; a wrong name or type (``n_workers:
    two``, a jobqueue block without ``cores``) makes the class raise ``TypeError`` or
    ``ValueError``, which is the user's configuration, not a failure of kmseg.
    """
    try:
        yield
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"cluster: the {kind} cluster refused the block's keys ({type(exc).__name__}: "
            f"{first})"
        ) from exc


@contextlib.contextmanager
def _gateway_cluster(options: dict[str, Any]) -> Iterator[Any]:
    try:
        from dask_gateway import Gateway
    except ImportError as exc:
        raise ConfigError(
            f"cluster kind 'gateway' needs the dask-gateway package "
            f"(pip install 'kmseg[gateway]'): {exc}"
        ) from None
    gateway_options = {k: options.pop(k) for k in GATEWAY_KEYS if k in options}
    with _refused_keys("gateway"):
        gateway = Gateway(**gateway_options)
    try:
        with _refused_keys("gateway"):
            cluster = gateway.new_cluster(**options)
        try:
            yield cluster
        finally:
            cluster.shutdown()
    finally:
        gateway.close()


def _scale(cluster: Any, spec: Mapping[str, Any]) -> None:
    scale = spec.get("scale")
    if isinstance(scale, Mapping):
        cluster.scale(**scale)
    elif scale is not None:
        cluster.scale(scale)
    if spec.get("adapt") is not None:
        cluster.adapt(**spec["adapt"])
