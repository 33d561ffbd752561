"""One writer per output: a lock file next to the output store.

The lock of ``OUT.zarr`` is the file ``OUT.zarr.kmseg-lock`` beside it (never inside the store,
so it is never mistaken for part of an output), beside its real path (links and ``..``
resolved) so that two spellings of one output meet the same lock. It holds the holder's host,
process id and start time as JSON.

Local paths use ``flock`` on that file: the kernel drops the lock when its process ends however
it ends (even SIGKILL), so a lock file whose ``flock`` can be taken is stale: it is taken over
with a warning naming the dead holder. The file itself is removed when the job ends.

fsspec URLs (object stores) have no ``flock``: the lock is an object created with exclusive
create (``mode="xb"``) where the filesystem supports it, else after an existence check (a race
of two jobs started within the same moment is then not excluded). A lock object left by a dead
process on this host is taken over; one from another host is reported, and must be deleted by
hand once that job is known to be gone.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from pipeline.errors import KmsegWarning, OutputError
from pipeline.paths import is_url

#: Suffix of the lock file beside an output store.
LOCK_SUFFIX = ".kmseg-lock"
#: Seconds to wait for a lock holder that has not yet written who it is.
_SETTLE_S = 2.0


def lock_path(output: str) -> str:
    """The lock file (or object) of an output: ``OUTPUT.kmseg-lock`` beside it.

    A local output's lock lies beside its real path (symbolic links and ``..`` resolved), so
    every spelling of one output meets the same lock.
    """
    text = str(output)
    if not is_url(text):
        text = os.path.realpath(os.path.expanduser(text))
    return text.rstrip("/") + LOCK_SUFFIX


@dataclass(frozen=True)
class Holder:
    """Who holds an output's lock."""

    host: str
    pid: int
    started: str
    token: str = ""

    def describe(self) -> str:
        return f"kmseg process {self.pid} on host {self.host}, started {self.started}"

    @classmethod
    def me(cls) -> Holder:
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), started, uuid.uuid4().hex)

    @classmethod
    def parse(cls, raw: bytes) -> Holder | None:
        try:
            data = json.loads(raw)
            return cls(str(data["host"]), int(data["pid"]), str(data["started"]),
                       str(data.get("token", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def current_holder(output: str) -> Holder | None:
    """The live holder of ``output``'s lock, or None if nobody holds it.

    Raises
    ------
    OutputError
        If the lock cannot be read.
    """
    path = lock_path(output)
    if is_url(path):
        holder = _read_url(path)
        if holder is None or _url_stale(holder):
            return None
        return holder
    try:
        fd = os.open(path, os.O_RDWR)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise OutputError(f"{output}: cannot read its lock {path} ({exc.strerror})") from None
    try:
        if _try_flock(fd):
            return None
        return Holder.parse(_read_fd(fd)) or Holder("?", 0, "?")
    finally:
        os.close(fd)


def _try_flock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_fd(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


class OutputLock:
    """Hold ``output``'s lock for a ``with`` block; released however the block ends.

    Raises
    ------
    OutputError
        On entry, when another live kmseg process holds the lock (naming it), or when the lock
        cannot be created.
    """

    def __init__(self, output: str) -> None:
        self.output = str(output)
        self.path = lock_path(self.output)
        self.holder = Holder.me()
        self._fd: int | None = None
        self._fs: Any = None

    def __enter__(self) -> OutputLock:
        if is_url(self.path):
            self._acquire_url()
        else:
            self._acquire_local()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _busy(self, holder: Holder | None) -> OutputError:
        who = holder.describe() if holder else "another kmseg process"
        return OutputError(f"{self.output}: the output is being written by {who} "
                           f"(lock {self.path})")

    def _stale(self, holder: Holder | None) -> None:
        if holder is not None:
            warnings.warn(f"{self.output}: taking over the stale lock of {holder.describe()}, "
                          "which is no longer running", KmsegWarning, stacklevel=3)

    def _acquire_local(self) -> None:
        deadline = time.monotonic() + _SETTLE_S
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"{self.output}: cannot create its lock {self.path} "
                                  f"({exc.strerror})") from None
            try:
                if self._hold(fd, deadline):
                    return
            except BaseException:
                # Refused, or interrupted while taking the lock: if nobody else holds it, the
                # file is ours or stale, and is removed.
                if _try_flock(fd):
                    _unlink_if_same(self.path, fd)
                os.close(fd)
                raise
            os.close(fd)

    def _hold(self, fd: int, deadline: float) -> bool:
        """Take the lock through ``fd``; False to retry with a fresh open."""
        if not _try_flock(fd):
            holder = Holder.parse(_read_fd(fd))
            if holder is None and time.monotonic() < deadline:
                # No holder written yet: another process is between its flock and its write,
                # or is only checking the lock (planning); both take milliseconds.
                time.sleep(0.02)
                return False
            raise self._busy(holder)
        # The file may have been unlinked by its previous holder between our open and our
        # flock: then we hold a lock on a file nobody else sees; try again.
        try:
            if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                return False
        except FileNotFoundError:
            return False
        previous = _read_fd(fd)
        if previous:
            self._stale(Holder.parse(previous))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, self.holder.dumps())
        os.fsync(fd)
        self._fd = fd
        return True

    def _acquire_url(self) -> None:
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.path)
        existing = _read_url(self.path)
        if existing is not None:
            if not _url_stale(existing):
                raise self._busy(existing)
            self._stale(existing)
            fs.rm(path)
        try:
            with fs.open(path, "xb") as fh:
                fh.write(self.holder.dumps())
        except FileExistsError:
            raise self._busy(_read_url(self.path)) from None
        except (ValueError, NotImplementedError, TypeError):
            fs.pipe_file(path, self.holder.dumps())  # no exclusive create on this filesystem
        self._fs = (fs, path)

    def release(self) -> None:
        """Remove the lock if this object holds it (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlink_if_same(self.path, fd)
            finally:
                os.close(fd)  # drops the flock
        if self._fs is not None:
            (fs, path), self._fs = self._fs, None
            try:
                if Holder.parse(fs.cat_file(path)) == self.holder:
                    fs.rm(path)
            except (OSError, FileNotFoundError):
                pass


def _unlink_if_same(path: str, fd: int) -> None:
    """Remove ``path`` if it is still the file open as ``fd``."""
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.unlink(path)
    except OSError:
        pass


def _read_url(path: str) -> Holder | None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    try:
        raw = fs.cat_file(root)
    except FileNotFoundError:
        return None
    return Holder.parse(raw) or Holder("?", 0, "?")


def _url_stale(holder: Holder) -> bool:
    """A lock object is stale only when provably so: its process on this host is gone."""
    return holder.host == socket.gethostname() and not _pid_alive(holder.pid)
