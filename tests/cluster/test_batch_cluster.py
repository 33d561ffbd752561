"""A batch on a real Dask cluster: inputs spread over the workers, a lost worker changes
nothing in the output."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import zarr

from pipeline.cli import main
from tests.test_batch import write_pngs

pytestmark = pytest.mark.cluster

ARGS = ["-k", "3", "-q", "--batch-inputs", "12"]


def _chunk_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != "zarr.json"}


def test_batch_spreads_over_workers_and_survives_a_lost_worker(dask_cluster, tmp_path):
    folder = tmp_path / "in"
    write_pngs(folder, 24, size=96, noise=True)
    reference = tmp_path / "reference.zarr"
    assert main(["segment", str(folder), *ARGS, "-o", str(reference)]) == 0

    out = tmp_path / "cluster.zarr"
    result: dict[str, int] = {}

    def job() -> None:
        result["code"] = main(["segment", str(folder), *ARGS, "-o", str(out),
                               "--scheduler", dask_cluster.address])

    thread = threading.Thread(target=job, daemon=True)
    busy: set[str] = set()
    victim = None
    with dask_cluster.client() as monitor:
        ours = {w.pid: w for w in dask_cluster.alive_workers()}
        pids = monitor.run(os.getpid)
        thread.start()
        deadline = time.monotonic() + 300
        while thread.is_alive() and time.monotonic() < deadline:
            processing = {a: keys for a, keys in monitor.processing().items() if keys}
            busy |= set(processing)
            if victim is None and len(busy) >= 2 and (out / "img000").exists():
                for address in processing:
                    pid = pids.get(address)
                    if pid in ours:
                        os.kill(pid, signal.SIGKILL)
                        victim = ours[pid]
                        break
            time.sleep(0.01)
        thread.join(300)
    assert not thread.is_alive()
    assert result["code"] == 0
    assert len(busy) >= 2, "the inputs of a window did not spread over the workers"
    assert victim is not None, "the batch ended before a worker could be killed"
    assert _chunk_files(out) == _chunk_files(reference)
    left, right = zarr.open_group(reference, mode="r"), zarr.open_group(out, mode="r")
    assert right.attrs["kmseg"]["status"] == "complete"
    for name in left.attrs["kmseg"]["outputs"]:
        assert left[name].attrs["kmseg"]["centres"] == right[name].attrs["kmseg"]["centres"]
