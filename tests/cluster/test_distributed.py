"""Jobs on real Dask clusters: same result everywhere, survive a lost worker or client.

Each full job run here is compared byte for byte with the same job on local threads.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import dask.array as da
import pytest

from pipeline.cli import main
from pipeline.config import build_config
from pipeline.errors import KmsegError
from pipeline.execution import open_executor
from pipeline.outputs import output_status
from pipeline.plan import build_plan
from tests.cluster.conftest import JOB_ARGS
from tests.cluster.helpers import assert_same_output

pytestmark = pytest.mark.cluster


def _stored_chunks(out: Path) -> int:
    """Label chunks written so far at full resolution."""
    return sum(len(files) for _, _, files in os.walk(out / "labels" / "clusters" / "0" / "c"))


def _writing(out: Path) -> bool:
    """True once the job writes pixels: the output is unfinished and holds some chunks."""
    return output_status(str(out)) == "incomplete" and _stored_chunks(out) > 0


def test_worker_killed_mid_job(dask_cluster, image_path, reference, tmp_path, capsys):
    """A worker dies while chunks are being written: same output as an undisturbed run."""
    out = tmp_path / "killed-worker.zarr"
    report = tmp_path / "report.html"
    args = [a for a in JOB_ARGS if a != "-q"]
    result: dict[str, int] = {}

    def job() -> None:
        result["code"] = main(["segment", str(image_path), *args, "-o", str(out),
                               "--scheduler", dask_cluster.address,
                               "--performance-report", str(report)])

    thread = threading.Thread(target=job, daemon=True)
    victim = None
    with dask_cluster.client() as monitor:
        ours = {w.pid: w for w in dask_cluster.alive_workers()}
        pids = monitor.run(os.getpid)  # worker address -> PID
        thread.start()
        deadline = time.monotonic() + 120
        while victim is None and thread.is_alive() and time.monotonic() < deadline:
            if _writing(out):
                for address, keys in monitor.processing().items():
                    pid = pids.get(address)
                    if keys and pid in ours:
                        os.kill(pid, signal.SIGKILL)
                        victim = ours[pid]
                        break
            time.sleep(0.01)
        assert victim is not None, "the job ended before a worker could be killed mid-job"
        assert output_status(str(out)) == "incomplete"
        thread.join(180)
    assert not thread.is_alive()
    assert victim.wait(10) == -signal.SIGKILL
    assert result["code"] == 0
    assert_same_output(str(reference), str(out))
    # Observability: the dashboard link, Dask's report and per-stage timings.
    assert "Dask dashboard at http://127.0.0.1:" in capsys.readouterr().err
    assert "Dask Performance Report" in report.read_text()
    meta = json.loads((out / "zarr.json").read_text())["attributes"]["kmseg"]
    assert {"summary_s", "fit_s", "label_write_s", "total_s"} <= set(meta["timings"])


@pytest.mark.filterwarnings("always::pipeline.errors.KmsegWarning")
def test_client_killed_then_rerun(
    dask_cluster, image_path, reference, tmp_path, processes, capsys
):
    """kmseg is SIGKILLed mid-job; the same command again finishes the job correctly."""
    out = tmp_path / "killed-client.zarr"
    args = ["segment", str(image_path), *JOB_ARGS, "-o", str(out),
            "--scheduler-file", dask_cluster.scheduler_file]
    client = processes.start("kmseg", [sys.executable, "-m", "pipeline", *args])
    deadline = time.monotonic() + 120
    while client.poll() is None and time.monotonic() < deadline:
        if _writing(out):
            os.kill(client.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    code = client.wait(30)
    assert code == -signal.SIGKILL, processes.logs()
    assert output_status(str(out)) == "incomplete"
    # Rerunning the same command, without --overwrite, replaces the unfinished output; the
    # killed client's lock is found stale and taken over.
    capsys.readouterr()
    assert main(args) == 0
    assert f"stale lock of kmseg process {client.pid}" in capsys.readouterr().err
    assert_same_output(str(reference), str(out))
    # A finished output is kept: without --overwrite the command now refuses.
    assert main(args) == 2


def test_environment_address_and_shared_paths(dask_cluster, image_path, tmp_path,
                                              monkeypatch):
    """DASK_SCHEDULER_ADDRESS connects; local paths given to workers are made absolute."""
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster.address)
    monkeypatch.chdir(image_path.parent)
    config = build_config({"inputs": [image_path.name], "output": "rel.zarr", "quiet": True})
    assert config.scheduler == dask_cluster.address
    plan = build_plan(config)
    assert plan.config.output == str(image_path.parent / "rel.zarr")
    assert plan.jobs[0].path == str(image_path)
    with open_executor(plan.config) as executor:
        assert executor.client is not None
        assert len(executor.client.scheduler_info()["workers"]) >= 1
        assert executor.compute(da.arange(10, chunks=5).sum()) == (45,)


def test_tls_scheduler(tls_files):
    """A scheduler that requires TLS: connect with the CA, certificate and key from config."""
    from distributed import LocalCluster, Security

    server = Security(tls_ca_file=tls_files["ca"], tls_scheduler_cert=tls_files["cert"],
                      tls_scheduler_key=tls_files["key"], tls_worker_cert=tls_files["cert"],
                      tls_worker_key=tls_files["key"], tls_client_cert=tls_files["cert"],
                      tls_client_key=tls_files["key"], require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://",
                      host="127.0.0.1", security=server, dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        base = {"inputs": ["x.npy"], "output": "o.zarr", "quiet": True, "connect_timeout": 10}
        tls = {"tls_ca_file": tls_files["ca"], "tls_cert": tls_files["cert"],
               "tls_key": tls_files["key"]}
        with open_executor(build_config(base, {"scheduler": address, **tls})) as ex:
            assert ex.compute(da.ones((100, 100), chunks=10).sum()) == (10000,)
        with pytest.raises(KmsegError, match="uses TLS"), open_executor(
            build_config(base, {"scheduler": address})
        ):
            pass
        remote = {"kind": "remote", "address": address, **tls}
        with open_executor(build_config(base, {"cluster": remote})) as ex:
            assert ex.compute(da.ones(10, chunks=5).sum()) == (10,)


def test_other_chunking_gives_the_same_labels(image_path, reference, tmp_path):
    """With a sample the fit does not depend on the chunks, nor does per-pixel labelling."""
    args = list(JOB_ARGS)
    i = args.index("--chunks")
    args[i + 1 : i + 3] = ["96", "200"]
    out = tmp_path / "other-chunks.zarr"
    assert main(["segment", str(image_path), *args, "-o", str(out)]) == 0
    assert_same_output(str(reference), str(out))
