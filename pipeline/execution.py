"""Where the graph runs: local threads, a local process cluster, or a remote scheduler.

:class:`Executor` is the tiny interface the plan uses (``compute`` with an optional progress
bar); :func:`open_executor` makes one from the config and closes what it opened. The user's
global Dask configuration is never modified: settings apply inside the context only.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import dask

from pipeline.config import JobConfig
from pipeline.errors import KmsegError

#: Seconds to wait for a remote scheduler before giving up.
CONNECT_TIMEOUT_S = 30


class Executor:
    """Computes Dask collections on one scheduler, optionally with a progress bar."""

    def __init__(self, client: Any = None, *, progress: bool = True, description: str = "") -> None:
        self.client = client
        self.progress = progress
        self.description = description

    @property
    def kind(self) -> str:
        if self.client is None:
            return dask.config.get("scheduler", "threads")
        return "distributed"

    def compute(self, *collections: Any, label: str = "computing") -> tuple:
        """Compute ``collections`` in one graph and return their results."""
        if self.client is not None:
            futures = self.client.compute(list(collections))
            if self.progress:
                from distributed import progress

                print(f"kmseg: {label}", file=sys.stderr)
                progress(futures, notebook=False)
                print(file=sys.stderr)
            return tuple(self.client.gather(futures))
        if self.progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=f"kmseg: {label}", file=sys.stderr, mininterval=0.5):
                return dask.compute(*collections)
        return dask.compute(*collections)


@contextlib.contextmanager
def open_executor(config: JobConfig) -> Iterator[Executor]:
    """Yield an :class:`Executor` for the config's scheduler settings."""
    progress = not config.quiet
    if config.scheduler:
        client = _connect(config.scheduler)
        try:
            if progress and getattr(client, "dashboard_link", None):
                print(f"kmseg: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
            yield Executor(client, progress=progress)
        finally:
            client.close()
        return
    if config.local_scheduler == "processes":
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=config.n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            if progress:
                print(f"kmseg: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
            yield Executor(client, progress=progress)
        return
    settings: dict[str, Any] = {"scheduler": config.local_scheduler}
    if config.n_workers and config.local_scheduler == "threads":
        settings["num_workers"] = config.n_workers
    with dask.config.set(settings):
        yield Executor(None, progress=progress)


def _connect(address: str) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise KmsegError(
            f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s ({exc})"
        ) from None
