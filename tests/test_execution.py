"""Execution on a LocalCluster of processes gives the same output as threads."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from pipeline import run
from pipeline.config import build_config
from pipeline.plan import build_plan
from tests.helpers import read_output


class _ComputeCounter:
    """Dask scheduler that counts graph computes instead of failing on them."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


def test_planning_computes_nothing(tmp_path, photos):
    path = tmp_path / "a.npy"
    np.save(path, photos["astronaut"])
    counter = _ComputeCounter()
    with dask.config.set(scheduler=counter):
        build_plan(build_config({"inputs": [str(path)], "output": str(tmp_path / "o.zarr")}))
    assert counter.calls == 0


def test_process_cluster_matches_threads(tmp_path, photos):
    path = tmp_path / "coffee.npy"
    np.save(path, photos["coffee"])
    common = {"inputs": [str(path)], "k": 4, "quiet": True, "chunks": [150, 250]}
    run(build_config({**common, "output": str(tmp_path / "threads.zarr")}))
    run(
        build_config(
            {
                **common,
                "output": str(tmp_path / "procs.zarr"),
                "local_scheduler": "processes",
                "n_workers": 2,
            }
        )
    )
    threads = read_output(str(tmp_path / "threads.zarr"))
    procs = read_output(str(tmp_path / "procs.zarr"))
    np.testing.assert_array_equal(threads[0], procs[0])
    np.testing.assert_array_equal(threads[1], procs[1])
    assert threads[2]["mse"] == pytest.approx(procs[2]["mse"], rel=1e-12)
