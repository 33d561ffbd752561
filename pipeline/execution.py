"""Where the graph runs: local threads, a local process cluster, or a Dask cluster.

:class:`Executor` is the tiny interface the plan uses (``compute`` with an optional progress
bar); :func:`open_executor` makes one from the config and closes what it opened. The choice, in
order: ``scheduler`` (an address, also from ``DASK_SCHEDULER_ADDRESS``), ``scheduler_file``,
a ``cluster`` block (:mod:`pipeline.cluster`), ``local_scheduler``. The user's global Dask
configuration is never modified: settings apply inside the context only, and every cluster
kmseg starts is closed when the context ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import dask
import dask.local
import dask.threaded

from pipeline.config import JobConfig
from pipeline.errors import ConfigError, KmsegError
from pipeline.paths import is_url
from pipeline.redaction import redact_url

log = logging.getLogger(__name__)

#: Seconds to wait for a remote scheduler before giving up (``connect_timeout``'s default).
CONNECT_TIMEOUT_S = 30
#: The least memory a local worker process takes (Python, NumPy, Dask and kmseg's imports):
#: more processes than the available memory holds at this size are refused before any starts.
PROCESS_MIN_BYTES = 200 * 2**20


class Executor:
    """Computes Dask collections on one scheduler, optionally with a progress bar."""

    def __init__(self, client: Any = None, *, progress: bool = True,
                 threads: int | None = None) -> None:
        self.client = client
        self.progress = progress
        #: Threads the caller may run beside Dask (a window's fits); None: one per core.
        self.threads = threads

    def compute(self, *collections: Any, label: str = "computing") -> tuple:
        """Compute ``collections`` in one graph and return their results."""
        if self.client is not None:
            futures = self.client.compute(list(collections))
            if self.progress:
                from distributed import progress

                log.info("%s", label)
                with contextlib.redirect_stdout(sys.stderr):  # its bar writes to stdout
                    progress(futures, notebook=False)
            return tuple(self.client.gather(futures))
        if self.progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=f"kmseg: {label}", file=sys.stderr, mininterval=0.5):
                return dask.compute(*collections)
        return dask.compute(*collections)


#: Dask settings for every local run. Without a rechunk method, each ``rechunk`` imports
#: distributed (0.13 s, more with a cold disk cache) only to learn that no client exists.
LOCAL_SETTINGS: dict[str, Any] = {"array.rechunk.method": "tasks"}

#: Local schedulers passed to Dask as functions (see open_executor).
_SCHEDULERS: dict[str, Any] = {"threads": dask.threaded.get, "synchronous": dask.local.get_sync}


@contextlib.contextmanager
def open_executor(config: JobConfig) -> Iterator[Executor]:
    """Yield an :class:`Executor` for the config's scheduler settings.

    With ``performance_report`` set, Dask's HTML performance report of everything computed
    inside the context is written when it closes (local threads then run on an in-process
    distributed scheduler, which the report needs).
    """
    progress = not config.quiet
    if config.performance_report:
        _check_report_path(config)
    with contextlib.ExitStack() as stack:
        # One BLAS thread, as scikit-learn's KMeans sets for itself: Dask's threads and
        # kmseg's pools are the parallelism, and OpenBLAS threads beside them spin while they
        # wait (a 256² photo's fit took 90 ms of CPU for 46 ms of wall time; 44 ms with one).
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        client = _open_client(config, stack)
        if client is None:
            scheduler, n_threads = local_scheduler(config)
            # The scheduler function itself: by name, Dask imports distributed (0.13 s) to
            # look for a client first.
            settings = {**LOCAL_SETTINGS, "scheduler": _SCHEDULERS.get(scheduler, scheduler)}
            if n_threads and scheduler == "threads":
                settings["num_workers"] = n_threads
            stack.enter_context(dask.config.set(settings))
            yield Executor(None, progress=progress)
            return
        if progress:
            _announce(client)
        if config.performance_report:
            from distributed import performance_report

            stack.enter_context(performance_report(filename=config.performance_report))
        yield Executor(client, progress=progress)


def check_process_count(n: int, key: str) -> None:
    """Refuse ``n`` local worker processes when they cannot fit in the memory available.

    Each process needs at least :data:`PROCESS_MIN_BYTES`; ``n_workers: 1000`` with
    ``local_scheduler: processes`` used to start processes until the machine ran out of memory
    and the kernel killed kmseg.

    Raises
    ------
    ConfigError
        Naming ``key``, the memory needed and available, and the largest number that fits.
    """
    from pipeline.chunking import local_memory_bytes

    available = local_memory_bytes()
    most = max(1, available // PROCESS_MIN_BYTES)
    if n > most:
        raise ConfigError(
            f"{key}: {n} worker processes need at least {n * PROCESS_MIN_BYTES / 2**30:.1f} GiB "
            f"({PROCESS_MIN_BYTES >> 20} MiB each), more than the {available / 2**30:.1f} GiB "
            f"of memory available; use at most {most}"
        )


def local_scheduler(config: JobConfig) -> tuple[str, int | None]:
    """The local scheduler and its number of threads (a ``threads`` block wins)."""
    spec = config.cluster or {}
    if spec.get("kind") == "threads":
        return "threads", spec.get("n_workers") or config.n_workers
    return config.local_scheduler, config.n_workers


def _open_client(config: JobConfig, stack: contextlib.ExitStack) -> Any:
    """A distributed client for the config (closed by ``stack``), or None for local threads."""
    timeout = config.connect_timeout
    spec = config.cluster or {}
    scheduler, n_threads = local_scheduler(config)
    if not (uses_cluster(config) or scheduler == "processes" or config.performance_report):
        return None
    level = stack.enter_context(distributed_logging())
    if config.scheduler or config.scheduler_file:
        security = make_security(config.tls_ca_file, config.tls_cert, config.tls_key)
        return stack.enter_context(
            connect(config.scheduler, config.scheduler_file, security=security, timeout=timeout)
        )
    if spec and spec.get("kind") != "threads":
        if spec.get("kind") == "remote":
            security = make_security(
                config.tls_ca_file or spec.get("tls_ca_file"),
                config.tls_cert or spec.get("tls_cert"),
                config.tls_key or spec.get("tls_key"),
            )
            return stack.enter_context(
                connect(spec.get("address"), spec.get("scheduler_file"), security=security,
                        timeout=timeout)
            )
        from pipeline.cluster import start_cluster

        cluster = stack.enter_context(start_cluster(spec))
        client = stack.enter_context(_client_for(cluster, spec.get("kind"), timeout))
        if spec.get("wait_for_workers"):
            client.wait_for_workers(int(spec["wait_for_workers"]))
        return client
    from distributed import Client, LocalCluster

    processes = scheduler == "processes"
    threads = 1 if scheduler == "synchronous" else (n_threads or os.cpu_count() or 1)
    if processes and config.n_workers is not None:
        check_process_count(config.n_workers, "n_workers")
    cluster = stack.enter_context(
        LocalCluster(
            n_workers=(config.n_workers if processes else 1),
            threads_per_worker=(1 if processes else threads),
            processes=processes,
            dashboard_address=":0",
            silence_logs=level,  # its workers' processes, which log on their own
        )
    )
    return stack.enter_context(Client(cluster))


def distributed_log_level() -> int:
    """The level of Dask distributed's messages: INFO when kmseg logs at DEBUG (``kmseg -v``).

    Without ``-v`` a local cluster's scheduler, nanny and worker INFO lines (dozens per job)
    are not shown; warnings and errors are.
    """
    return logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.WARNING


@contextlib.contextmanager
def distributed_logging() -> Iterator[int]:
    """Hold the ``distributed`` logger at :func:`distributed_log_level` inside the context.

    distributed sets its own level when it is imported, so this is entered after importing it;
    the previous level is restored afterwards.
    """
    import distributed  # noqa: F401  (its import configures its loggers; ours comes after)

    level = distributed_log_level()
    logger = logging.getLogger("distributed")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield level
    finally:
        logger.setLevel(previous)


def _client_for(cluster: Any, kind: str | None, timeout: float) -> Any:
    if kind == "gateway":
        return cluster.get_client(set_as_default=True)
    from distributed import Client

    return Client(cluster, timeout=timeout)


def make_security(ca_file: str | None, cert: str | None, key: str | None) -> Any:
    """Dask :class:`~distributed.Security` for TLS from PEM files, or None without any.

    ``cert`` may hold the private key too, in which case ``key`` can be left out.
    """
    if not (ca_file or cert or key):
        return None
    for name, path in (("tls_ca_file", ca_file), ("tls_cert", cert), ("tls_key", key)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{name}: no such file {path}")
    if not (ca_file and cert):
        raise ConfigError("TLS needs both tls_ca_file and tls_cert (and tls_key unless the "
                          "certificate file holds the key)")
    from distributed import Security

    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key,
                    require_encryption=True)


def connect(
    address: str | None = None,
    scheduler_file: str | None = None,
    *,
    security: Any = None,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Any:
    """Connect a :class:`distributed.Client` to a running scheduler, failing within ``timeout``.

    Raises
    ------
    KmsegError
        The scheduler cannot be reached, the scheduler file is missing, or the TLS settings
        do not fit the address.
    """
    from distributed import Client

    if not (address or scheduler_file):
        raise ConfigError("no scheduler address or scheduler file given")
    if scheduler_file and not address and not os.path.isfile(scheduler_file):
        raise KmsegError(f"scheduler file {scheduler_file} does not exist (is the scheduler "
                         "running, and is the file on storage this machine shares?)")
    where = redact_url(address) if address else f"the address in {scheduler_file}"
    if address and address.startswith("tls://") and security is None:
        raise ConfigError(f"{where} uses TLS: give tls_ca_file, tls_cert and tls_key")
    try:
        return Client(address, scheduler_file=None if address else scheduler_file,
                      security=security, timeout=timeout, set_as_default=True)
    except (OSError, TimeoutError) as exc:
        raise KmsegError(
            f"cannot reach the Dask scheduler at {where} within {timeout:g} s ({exc})"
        ) from None
    except (TypeError, ValueError) as exc:  # distributed's complaints about TLS settings
        raise KmsegError(f"cannot connect to the Dask scheduler at {where}: {exc}") from None


def uses_cluster(config: JobConfig) -> bool:
    """True when the job runs on a cluster named by the config (workers may be elsewhere)."""
    kind = (config.cluster or {}).get("kind")
    return bool(config.scheduler or config.scheduler_file or kind not in (None, "threads"))


def shared_path(path: str, config: JobConfig) -> str:
    """``path`` made absolute when workers on other machines must find it (URLs unchanged).

    Workers of a cluster do not share the client's working folder, so relative local paths
    would point elsewhere there.
    """
    if not uses_cluster(config) or is_url(path) or not path:
        return path
    return os.path.abspath(path)


def _announce(client: Any) -> None:
    """Tell the user where the dashboard is and how many workers there are."""
    link = getattr(client, "dashboard_link", None)
    if link:
        log.info("Dask dashboard at %s", link)
    try:
        n = len(client.scheduler_info().get("workers", {}))
    except Exception:  # informational only
        return
    if n == 0:
        log.warning("the scheduler has no workers yet; tasks wait until some join")


def _check_report_path(config: JobConfig) -> None:
    """The performance report may replace only an earlier one, never an input or the output."""
    from pipeline.outputs import check_report_path

    folder = os.path.dirname(os.path.abspath(str(config.performance_report)))
    if not is_url(str(config.performance_report)) and not os.path.isdir(folder):
        raise ConfigError(f"performance_report: the folder {folder} does not exist")
    check_report_path(str(config.performance_report), str(config.output),
                      [str(i) for i in config.inputs])
