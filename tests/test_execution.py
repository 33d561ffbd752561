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


def test_blas_runs_one_thread_while_kmseg_runs(tmp_path):
    """Dask's threads are the parallelism: BLAS libraries get one thread inside the executor
    (their own threads spin beside Dask's) and their setting is restored afterwards."""
    from threadpoolctl import threadpool_info

    from pipeline.execution import open_executor

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library loaded that threadpoolctl can see")
    config = build_config({"inputs": ["x.png"], "output": str(tmp_path / "o.zarr")})
    with open_executor(config):
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
