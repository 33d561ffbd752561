"""Connecting, cluster blocks, profiles, outputs and secrets, without real cluster processes."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import ClassVar

import dask
import dask.array as da
import dask.threaded
import numpy as np
import pytest
import zarr

from pipeline.cli import main
from pipeline.cluster import KINDS, start_cluster, validate_cluster
from pipeline.config import build_config, load_yaml
from pipeline.errors import ConfigError, KmsegError, OutputError
from pipeline.execution import connect, make_security, open_executor
from pipeline.outputs import check_output, create_root, output_status
from pipeline.redaction import redact, redact_url
from tests.cluster.procs import free_port

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BASE = {"inputs": ["x.npy"], "output": "o.zarr", "quiet": True}


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    return path


# --- connecting ------------------------------------------------------------------------------


def test_unreachable_scheduler_fails_within_the_timeout(tiny, tmp_path, capsys):
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["segment", str(tiny), "-o", str(tmp_path / "o.zarr"), "-q",
                 "--scheduler", address, "--connect-timeout", "1"])
    assert code == 2
    assert time.monotonic() - started < 20
    err = capsys.readouterr().err
    assert f"cannot reach the Dask scheduler at {address} within 1 s" in err
    assert not (tmp_path / "o.zarr").exists()


def test_default_timeout_is_30_seconds():
    assert build_config(BASE).connect_timeout == 30
    with pytest.raises(ConfigError, match="connect_timeout"):
        build_config(BASE, {"connect_timeout": 0})


def test_missing_scheduler_file(tmp_path):
    with pytest.raises(KmsegError, match="does not exist"):
        connect(scheduler_file=str(tmp_path / "nope.json"), timeout=1)


def test_tls_settings_are_checked(tmp_path):
    pem = tmp_path / "x.pem"
    pem.write_text("not a certificate")
    assert make_security(None, None, None) is None
    with pytest.raises(ConfigError, match="no such file"):
        make_security(str(tmp_path / "missing.pem"), str(pem), None)
    with pytest.raises(ConfigError, match="both tls_ca_file and tls_cert"):
        make_security(str(pem), None, None)
    with pytest.raises(ConfigError, match="uses TLS"):
        connect("tls://127.0.0.1:1", timeout=1)


def test_performance_report_on_local_threads(tmp_path):
    report = tmp_path / "report.html"
    before = dask.config.get("scheduler", None)
    with open_executor(build_config(BASE, {"performance_report": str(report)})) as ex:
        assert ex.client is not None  # an in-process scheduler, which the report needs
        assert ex.compute(da.ones(100, chunks=10).sum()) == (100,)
    assert "Dask Performance Report" in report.read_text()
    assert dask.config.get("scheduler", None) == before
    with pytest.raises(ConfigError, match="does not exist"), open_executor(
        build_config(BASE, {"performance_report": "/nope/r.html"})
    ):
        pass


def test_threads_block_and_global_config_untouched():
    before = dask.config.get("scheduler", None)
    config = build_config(BASE, {"cluster": {"kind": "threads", "n_workers": 3}})
    with open_executor(config) as ex:
        assert ex.client is None
        # Dask's threaded scheduler, given as its function (by name Dask imports distributed)
        assert dask.config.get("scheduler") is dask.threaded.get
        assert dask.config.get("num_workers") == 3
    assert dask.config.get("scheduler", None) == before


# --- cluster blocks --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "{kind: local, n_workers: 2}",
    {"kind": "local", "n_workers": 2},
    "cluster: {kind: local, n_workers: 2}",
])
def test_cluster_values(value):
    assert build_config(BASE, {"cluster": value}).cluster == {"kind": "local", "n_workers": 2}


def test_cluster_from_a_file(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("cluster:\n  kind: slurm\n  cores: 4\n  scale: {jobs: 2}\n")
    config = build_config(BASE, {"cluster": str(profile)})
    assert config.cluster == {"kind": "slurm", "cores": 4, "scale": {"jobs": 2}}
    bare = tmp_path / "bare.yaml"
    bare.write_text("kind: pbs\nqueue: short\n")
    assert build_config(BASE, {"cluster": str(bare)}).cluster == {"kind": "pbs", "queue": "short"}


@pytest.mark.parametrize("block, message", [
    ({"kind": "nope"}, "cluster kind must be one of"),
    ({"kind": "remote"}, "needs 'address' or 'scheduler_file'"),
    ({"kind": "remote", "address": "tcp://x:1", "cores": 2}, "unknown keys"),
    ({"kind": "local", "scale": "lots"}, "scale"),
    ({"kind": "local", "adapt": 3}, "adapt"),
    ({"kind": "local", "wait_for_workers": -1}, "wait_for_workers"),
    ({"kind": "threads", "n_workers": 0}, "n_workers"),
    ({"kind": "threads", "memory_limit": "1GB"}, "unknown keys"),
])
def test_bad_cluster_blocks(block, message):
    with pytest.raises(ConfigError, match=message):
        validate_cluster(block)
    with pytest.raises(ConfigError):
        build_config(BASE, {"cluster": block})
    with pytest.raises(ConfigError):
        build_config(BASE, {"cluster": "[1, 2]"})


def test_block_without_kind_names_its_keys():
    # {type: local} (a wrong key name) used to say "got None".
    with pytest.raises(ConfigError, match=r"needs a 'kind' key \(it has type\)"):
        validate_cluster({"type": "local"})


@pytest.mark.parametrize("block, message", [
    # LocalCluster divided its memory by the text: a TypeError, exit status 1.
    ({"kind": "local", "n_workers": "two"}, r"local cluster refused the block's keys \(TypeError"),
    # Unknown keys went on to the workers, whose processes each failed with a traceback.
    ({"kind": "local", "processes": False, "bogus_key": 1}, "unknown keys .*: bogus_key"),
    ({"kind": "local", "processes": False, "n_workers": 1, "scale": {"jobs": 2}},
     r"refused the block's keys \(TypeError: .*jobs"),
    # A million worker processes were started until the machine ran out of memory.
    ({"kind": "local", "n_workers": 10**6}, r"n_workers: 1000000 worker processes need"),
])
def test_keys_a_cluster_class_refuses_are_one_config_line(tiny, tmp_path, capsys, block,
                                                          message):
    with pytest.raises(ConfigError, match=message), start_cluster(block):
        pass
    code = main(["segment", str(tiny), "-o", str(tmp_path / "o.zarr"), "-q",
                 "--set", f"cluster={block}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cluster" in err and "Traceback" not in err
    assert not (tmp_path / "o.zarr").exists()


def test_a_jobqueue_block_without_cores_is_one_config_line(monkeypatch):
    fake = types.ModuleType("dask_jobqueue")

    class NeedsCores:
        def __init__(self, cores=None, memory=None, **kwargs):
            if cores is None or memory is None:  # as dask-jobqueue's JobQueueCluster says it
                raise ValueError("You must specify how much cores and memory per job you want "
                                 "to use, for example:\ncluster = SLURMCluster(cores=...)")

    fake.SLURMCluster = NeedsCores
    monkeypatch.setitem(sys.modules, "dask_jobqueue", fake)
    with pytest.raises(ConfigError, match=r"slurm cluster refused .*cores and memory") as info, \
            start_cluster({"kind": "slurm"}):
        pass
    assert "\n" not in str(info.value)


def test_a_batch_system_without_its_submit_command_is_one_config_line(tmp_path, monkeypatch,
                                                                        capsys):
    """`--cluster configs/cluster-slurm.yaml` on a machine without sbatch printed
    dask-jobqueue's traceback and then waited for workers for ever."""
    pytest.importorskip("dask_jobqueue")
    image = tmp_path / "a.npy"
    np.save(image, np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))
    monkeypatch.setenv("PATH", str(tmp_path / "no-batch-system"))
    for kind, command in [("slurm", "sbatch"), ("pbs", "qsub")]:
        out = tmp_path / f"{kind}.zarr"
        block = f"{{kind: {kind}, cores: 1, memory: 1GiB, scale: {{jobs: 1}}, wait_for_workers: 1}}"
        assert main(["segment", str(image), "-k", "2", "-o", str(out), "-q",
                     "--cluster", block]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert f"the {kind} cluster submits worker jobs with {command}" in err[0]
        assert not out.exists()


@pytest.mark.parametrize("kind, module", [("slurm", "dask_jobqueue"),
                                          ("kubernetes", "dask_kubernetes.operator"),
                                          ("gateway", "dask_gateway")])
def test_missing_optional_package(kind, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, module.split(".")[0], None)
    extra = {"slurm": "jobqueue"}.get(kind, kind)
    with pytest.raises(ConfigError, match=rf"pip install 'kmseg\[{extra}\]'"), start_cluster(
        {"kind": kind}
    ):
        pass


class _FakeCluster:
    """Stands in for a jobqueue / Kubernetes cluster: an in-process LocalCluster inside."""

    instances: ClassVar[list[_FakeCluster]] = []

    def __init__(self, **kwargs) -> None:
        from distributed import LocalCluster

        self.kwargs = kwargs
        self.calls: list[tuple] = []
        self.inner = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0")
        self.scheduler_address = self.inner.scheduler_address
        _FakeCluster.instances.append(self)

    def __getattr__(self, name: str):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def scale(self, n=None, **kwargs) -> None:
        self.calls.append(("scale", n, kwargs))

    def adapt(self, **kwargs) -> None:
        self.calls.append(("adapt", kwargs))

    def close(self) -> None:
        self.calls.append(("close",))
        self.inner.close()


def test_jobqueue_block_builds_scales_and_closes(monkeypatch):
    fake = types.ModuleType("dask_jobqueue")
    fake.SLURMCluster = _FakeCluster
    monkeypatch.setitem(sys.modules, "dask_jobqueue", fake)
    _FakeCluster.instances.clear()
    block = {"kind": "slurm", "cores": 8, "memory": "32GiB", "scale": {"jobs": 2},
             "adapt": {"maximum_jobs": 4}, "wait_for_workers": 1}
    with open_executor(build_config(BASE, {"cluster": block})) as ex:
        assert ex.client is not None
        assert ex.compute(da.ones(10, chunks=5).sum()) == (10,)
    [cluster] = _FakeCluster.instances
    assert cluster.kwargs == {"cores": 8, "memory": "32GiB"}
    assert cluster.calls == [("scale", None, {"jobs": 2}), ("adapt", {"maximum_jobs": 4}),
                             ("close",)]


def test_kubernetes_block(monkeypatch):
    package = types.ModuleType("dask_kubernetes")
    operator = types.ModuleType("dask_kubernetes.operator")
    operator.KubeCluster = _FakeCluster
    package.operator = operator
    monkeypatch.setitem(sys.modules, "dask_kubernetes", package)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", operator)
    _FakeCluster.instances.clear()
    block = {"kind": "kubernetes", "name": "kmseg", "image": "kmseg:1", "n_workers": 3}
    with open_executor(build_config(BASE, {"cluster": block})) as ex:
        assert ex.compute(da.ones(4, chunks=2).sum()) == (4,)
    [cluster] = _FakeCluster.instances
    assert cluster.kwargs == {"name": "kmseg", "image": "kmseg:1", "n_workers": 3}
    assert cluster.calls == [("close",)]


def test_gateway_block(monkeypatch):
    calls: list[tuple] = []

    class Cluster(_FakeCluster):
        def get_client(self, set_as_default=True):
            from distributed import Client

            calls.append(("get_client", set_as_default))
            return Client(self.inner, set_as_default=set_as_default)

        def shutdown(self):
            calls.append(("shutdown",))
            self.inner.close()

    class Gateway:
        def __init__(self, **kwargs):
            calls.append(("gateway", kwargs))

        def new_cluster(self, **options):
            calls.append(("new_cluster", options))
            return Cluster()

        def close(self):
            calls.append(("close_gateway",))

    fake = types.ModuleType("dask_gateway")
    fake.Gateway = Gateway
    monkeypatch.setitem(sys.modules, "dask_gateway", fake)
    block = {"kind": "gateway", "address": "https://gw.example.org", "auth": "jupyterhub",
             "worker_cores": 2, "scale": 4}
    with open_executor(build_config(BASE, {"cluster": block})) as ex:
        assert ex.compute(da.ones(4, chunks=2).sum()) == (4,)
    assert calls[0] == ("gateway", {"address": "https://gw.example.org", "auth": "jupyterhub"})
    assert calls[1] == ("new_cluster", {"worker_cores": 2})
    assert ("get_client", True) in calls
    assert calls[-2:] == [("shutdown",), ("close_gateway",)]


# --- profiles in configs/ --------------------------------------------------------------------


def _profiles() -> list[Path]:
    return sorted(CONFIGS.glob("cluster-*.yaml"))


def test_profiles_exist():
    names = {p.name for p in _profiles()}
    assert {"cluster-threads.yaml", "cluster-local.yaml", "cluster-remote.yaml",
            "cluster-slurm.yaml", "cluster-pbs.yaml", "cluster-kubernetes.yaml",
            "cluster-gateway.yaml"} <= names


@pytest.mark.parametrize("profile", _profiles(), ids=lambda p: p.name)
def test_profiles_are_valid(profile):
    config = build_config(load_yaml(profile), {"inputs": ["a.npy"], "output": "o.zarr"})
    assert config.cluster["kind"] in KINDS
    via_flag = build_config(BASE, {"cluster": str(profile)})
    assert via_flag.cluster == config.cluster


# --- outputs ---------------------------------------------------------------------------------


def _fake_output(path: Path, status: str) -> None:
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs["kmseg"] = {"version": "0", "status": status}
    root.create_array("stale", shape=(2,), dtype="u1")


def test_unfinished_output_is_replaced_without_overwrite(tmp_path):
    out = tmp_path / "o.zarr"
    _fake_output(out, "incomplete")
    assert output_status(str(out)) == "incomplete"
    check_output(str(out), False, ["in.npy"])
    root = create_root(str(out), False)
    assert "stale" not in root
    assert output_status(str(out)) is None


def test_finished_or_foreign_outputs_need_overwrite(tmp_path):
    out = tmp_path / "o.zarr"
    _fake_output(out, "complete")
    with pytest.raises(OutputError, match="already exists"):
        check_output(str(out), False, [])
    check_output(str(out), True, [])
    other = tmp_path / "other.zarr"
    zarr.open_group(str(other), mode="w", zarr_format=3)
    assert output_status(str(other)) is None
    with pytest.raises(OutputError, match="already exists"):
        check_output(str(other), False, [])
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a Zarr store"):
        check_output(str(folder), True, [])


def test_http_outputs_are_refused():
    with pytest.raises(OutputError, match="read-only"):
        check_output("https://example.org/out.zarr", True, [])


def test_unfinished_output_that_is_an_input_is_kept(tmp_path):
    out = tmp_path / "o.zarr"
    _fake_output(out, "incomplete")
    with pytest.raises(OutputError):
        check_output(str(out), False, [str(out)])


# --- secrets ---------------------------------------------------------------------------------


def test_recorded_config_has_no_secrets():
    block = {"kind": "gateway", "address": "https://user:pw123@gw.example.org",
             "auth": {"kind": "basic", "password": "hunter2"}, "api_token": "t0k3n",
             "worker_cores": 2}
    config = build_config(BASE, {"cluster": block, "scheduler": "tls://me:s3cr3t@host:8786"})
    recorded = repr(config.to_dict())
    for secret in ("pw123", "hunter2", "t0k3n", "s3cr3t"):
        assert secret not in recorded
    assert config.to_dict()["cluster"]["worker_cores"] == 2
    assert config.cluster["auth"]["password"] == "hunter2"  # still usable by the job


def test_redaction_helpers():
    assert redact_url("s3://AKIA:secret@bucket/x") == "s3://***@bucket/x"
    assert redact_url("/plain/path") == "/plain/path"
    assert redact({"key": "AKIA", "secret": "s", "tls_key": "/k.pem", "n": 1}) == {
        "key": "***", "secret": "***", "tls_key": "/k.pem", "n": 1}


@pytest.mark.parametrize("name, directive", [("cluster-slurm.yaml", "#SBATCH"),
                                             ("cluster-pbs.yaml", "#PBS")])
def test_jobqueue_profiles_make_job_scripts(name, directive):
    """The HPC recipes build real dask-jobqueue clusters (no job is submitted)."""
    pytest.importorskip("dask_jobqueue")
    from pipeline.cluster import CONTROL_KEYS, cluster_class

    spec = load_yaml(CONFIGS / name)["cluster"]
    options = {k: v for k, v in spec.items() if k not in CONTROL_KEYS}
    cluster = cluster_class(spec["kind"])(
        **options, scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert directive in script
    assert "source /path/to/kmseg-venv/bin/activate" in script
    assert "--nworkers 2" in script


def test_local_copies_are_evicted_and_fetched_again(tmp_path):
    from pipeline.readers.urls import LocalCopies

    for i in range(3):
        (tmp_path / f"f{i}.npy").write_bytes(b"x" * (i + 1))
    copies = LocalCopies(maxsize=2)
    paths = [copies.get(f"file://{tmp_path}/f{i}.npy", "v1") for i in range(3)]
    assert [Path(p).read_bytes() for p in paths[1:]] == [b"xx", b"xxx"]
    assert not Path(paths[0]).exists()  # evicted
    again = copies.get(f"file://{tmp_path}/f0.npy", "v1")
    assert Path(again).read_bytes() == b"x"
