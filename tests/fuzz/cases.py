"""The bad inputs and misuses of the fuzz suite: one small generator per case.

A case is a function ``make(case: Workspace) -> Run``: it writes its files under
``case.inputs`` (checksummed before and after), returns the ``kmseg`` arguments and the name
(file, key or variable) the one-line error must contain. Add a case with :func:`case`; every
new bad input found becomes one.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np


@dataclass
class Workspace:
    """Folders of one case: ``inputs`` (never to change) and ``outputs``."""

    inputs: Path
    outputs: Path
    stack: contextlib.ExitStack
    env: dict[str, str] = field(default_factory=dict)

    def image(self, name: str = "img.npy", shape: tuple[int, ...] = (16, 20, 3)) -> Path:
        path = self.inputs / name
        np.save(path, np.arange(np.prod(shape), dtype=np.uint8).reshape(shape))
        return path

    def png(self, name: str = "img.png", shape: tuple[int, ...] = (16, 20, 3)) -> Path:
        from PIL import Image

        path = self.inputs / name
        data = (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)
        Image.fromarray(data).save(path)
        return path

    @property
    def out(self) -> str:
        return str(self.outputs / "out.zarr")


@dataclass
class Run:
    """What a case runs: ``kmseg ARGV``; the error must name one of ``names``."""

    argv: list[str]
    names: tuple[str, ...]


CASES: dict[str, Callable[[Workspace], Run]] = {}

#: Arguments every case adds: small, quiet, deterministic.
COMMON = ["-q", "--random-state", "0"]


def case(name: str) -> Callable[[Callable[[Workspace], Run]], Callable[[Workspace], Run]]:
    def register(make: Callable[[Workspace], Run]) -> Callable[[Workspace], Run]:
        CASES[name] = make
        return make

    return register


def segment(*args: str) -> list[str]:
    return ["segment", *args, *COMMON]


# --- issue 11 item 1-4: the output -----------------------------------------------------------


@case("output-through-symlinked-input-folder")
def _(w: Workspace) -> Run:
    import zarr

    data = w.inputs / "data"
    scan = data / "scan.zarr"
    zarr.create_array(str(scan), data=np.arange(400, dtype=np.uint8).reshape(20, 20))
    os.symlink(data, w.outputs / "link")
    out = str(w.outputs / "link" / "scan.zarr")
    return Run(segment(str(scan), "-k", "2", "-o", out, "--overwrite"), (out,))


@case("output-contains-input-zarr")
def _(w: Workspace) -> Run:
    import zarr

    scan = w.inputs / "scan.zarr"
    root = zarr.open_group(str(scan), mode="w", zarr_format=3)
    root.create_array("0", data=np.arange(400, dtype=np.uint8).reshape(20, 20))
    return Run(segment(f"{scan}/0", "-k", "2", "-o", str(scan), "--overwrite"), (str(scan),))


@case("overwrite-folder-with-user-files")
def _(w: Workspace) -> Run:
    import zarr

    src = w.image()
    folder = w.inputs / "project.zarr"
    zarr.open_group(str(folder), mode="w", zarr_format=3)
    (folder / "raw").mkdir()
    (folder / "raw" / "a.bin").write_bytes(b"only copy")
    (folder / "notes.txt").write_text("notes")
    return Run(segment(str(src), "-k", "2", "-o", str(folder), "--overwrite"), ("notes.txt",))


@case("second-writer")
def _(w: Workspace) -> Run:
    from pipeline.lock import OutputLock

    src = w.image()
    w.stack.enter_context(OutputLock(w.out))
    return Run(segment(str(src), "-k", "2", "-o", w.out), (f"kmseg process {os.getpid()}",))


@case("existing-output-without-overwrite")
def _(w: Workspace) -> Run:
    import zarr

    src = w.image()
    root = zarr.open_group(w.out, mode="w", zarr_format=3)
    root.attrs["kmseg"] = {"version": "0", "status": "complete"}
    return Run(segment(str(src), "-k", "2", "-o", w.out), (w.out,))


@case("output-parent-missing")
def _(w: Workspace) -> Run:
    out = str(w.outputs / "no" / "such" / "out.zarr")
    return Run(segment(str(w.image()), "-k", "2", "-o", out), (out,))


@case("output-https")
def _(w: Workspace) -> Run:
    out = "https://example.org/out.zarr"
    return Run(segment(str(w.image()), "-k", "2", "-o", out), (out,))


# --- item 5, 6, 10: files --------------------------------------------------------------------


@case("fifo-named-png")
def _(w: Workspace) -> Run:
    fifo = w.inputs / "pipe.png"
    os.mkfifo(fifo)
    return Run(segment(str(fifo), "-k", "2", "-o", w.out), (str(fifo),))


@case("missing-file")
def _(w: Workspace) -> Run:
    missing = str(w.inputs / "missing.png")
    return Run(segment(missing, "-k", "2", "-o", w.out), (missing,))


@case("zero-rows-npy")
def _(w: Workspace) -> Run:
    path = w.inputs / "empty0.npy"
    np.save(path, np.zeros((0, 7), np.uint8))
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("zero-columns-npy")
def _(w: Workspace) -> Run:
    path = w.inputs / "empty1.npy"
    np.save(path, np.zeros((7, 0), np.uint8))
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("complex-npy")
def _(w: Workspace) -> Run:
    path = w.inputs / "complex.npy"
    np.save(path, np.ones((8, 8), np.complex64))
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("object-npy")
def _(w: Workspace) -> Run:
    path = w.inputs / "object.npy"
    np.save(path, np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("garbage-npy")
def _(w: Workspace) -> Run:
    path = w.inputs / "broken.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("nan-only-float")
def _(w: Workspace) -> Run:
    path = w.inputs / "nan.npy"
    np.save(path, np.full((8, 8), np.nan, np.float32))
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("nifti-corrupt-header")
def _(w: Workspace) -> Run:
    import nibabel as nib

    path = w.inputs / "bad.nii"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 3), np.int16), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[42:44] = struct.pack("<h", -5)  # dim[1] < 0
    path.write_bytes(bytes(raw))
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("png-header-declares-100000x100000")
def _(w: Workspace) -> Run:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 301)) + chunk(b"IEND", b"")
    path = w.inputs / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("truncated-png")
def _(w: Workspace) -> Run:
    path = w.png("cut.png", (64, 64, 3))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("truncated-tiff")
def _(w: Workspace) -> Run:
    import tifffile

    path = w.inputs / "cut.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("empty-file")
def _(w: Workspace) -> Run:
    path = w.inputs / "empty.png"
    path.write_bytes(b"")
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("unsupported-extension")
def _(w: Workspace) -> Run:
    path = w.inputs / "notes.txt"
    path.write_text("not an image")
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


@case("directory-of-junk")
def _(w: Workspace) -> Run:
    folder = w.inputs / "junk"
    folder.mkdir()
    for i in range(3):
        (folder / f"s{i}.png").write_bytes(os.urandom(64))
    return Run(segment(str(folder), "-k", "2", "-o", w.out), (str(folder),))


@case("empty-directory")
def _(w: Workspace) -> Run:
    folder = w.inputs / "nothing"
    folder.mkdir()
    return Run(segment(str(folder), "-k", "2", "-o", w.out), (str(folder),))


# --- item 7 and 8: keys and environment variables --------------------------------------------


def _key_case(flag: str, value: str, *names: str) -> Callable[[Workspace], Run]:
    def make(w: Workspace) -> Run:
        return Run(segment(str(w.image()), "-k", "2", "-o", w.out, flag, value), names)

    return make


for _flag, _value, _names in [
    ("--pyramid-levels", "-2", ("pyramid_levels", "pyramid-levels")),
    ("--n-workers", "0", ("n_workers", "n-workers")),
    ("--spatial-weight", "nan", ("spatial_weight", "spatial-weight")),
    ("-k", "0", ("k",)),
    ("--engine", "nonsense", ("engine",)),
    ("--colour-space", "xyz", ("colour_space", "colour-space")),
    ("--set", "no_such_key=1", ("no_such_key",)),
    ("--set", "overwrite=maybe", ("overwrite",)),
]:
    case(f"key{_flag}={_value}")(_key_case(_flag, _value, *_names))


@case("chunks-of-wrong-rank")
def _(w: Workspace) -> Run:
    src = w.image()
    return Run(segment(str(src), "-k", "2", "-o", w.out, "--chunks", "4", "4", "4", "4"),
               (str(src), "chunks"))


@case("env-KMSEG_K=abc")
def _(w: Workspace) -> Run:
    w.env["KMSEG_K"] = "abc"
    return Run(segment(str(w.image()), "-o", w.out), ("KMSEG_K",))


@case("env-DASK_SCHEDULER_ADDRESS=nonsense")
def _(w: Workspace) -> Run:
    w.env["DASK_SCHEDULER_ADDRESS"] = "nonsense"
    return Run(segment(str(w.image()), "-k", "2", "-o", w.out), ("DASK_SCHEDULER_ADDRESS",))


@case("yaml-not-a-mapping")
def _(w: Workspace) -> Run:
    job = w.inputs / "job.yaml"
    job.write_text("- just\n- a list\n")
    return Run(["run", str(job)], (str(job),))


@case("yaml-syntax-error")
def _(w: Workspace) -> Run:
    job = w.inputs / "job.yaml"
    job.write_text("inputs: [a.png\nk: :\n")
    return Run(["run", str(job)], (str(job),))


# --- item 9: the disk fills up while writing -------------------------------------------------


@case("disk-full-while-writing")
def _(w: Workspace) -> Run:
    import errno

    import zarr.storage._local as local

    real = local._put

    def full(path: Path, value: object, exclusive: bool = False) -> int:
        if "/c/" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, value, exclusive)

    w.stack.enter_context(mock.patch.object(local, "_put", full))
    return Run(segment(str(w.image()), "-k", "2", "-o", w.out), (w.out,))


@case("lock-path-is-a-folder")
def _(w: Workspace) -> Run:
    from pipeline.lock import lock_path

    Path(lock_path(w.out)).mkdir()
    return Run(segment(str(w.image()), "-k", "2", "-o", w.out), (w.out,))


# --- tester's findings: messages, job files, demo --------------------------------------------


@case("path-starting-with-kmseg")
def _(w: Workspace) -> Run:
    # a relative path whose text starts with "kmseg" must still get the "kmseg: error:" prefix
    return Run(segment("kmseg_missing.png", "-k", "2", "-o", w.out), ("kmseg_missing.png",))


@case("yaml-not-utf8")
def _(w: Workspace) -> Run:
    job = w.inputs / "job.yaml"
    job.write_bytes(b"\xff\xfe garbage")
    return Run(["run", str(job)], (str(job),))


@case("yaml-duplicate-key")
def _(w: Workspace) -> Run:
    job = w.inputs / "job.yaml"
    job.write_text(f"inputs: [{w.image()}]\nk: 3\nk: 4\n")
    return Run(["run", str(job)], (f"{job}: k: given twice",))


@case("demo-folder-is-a-file")
def _(w: Workspace) -> Run:
    target = w.inputs / "kmseg-demo"
    target.write_text("a user's file")
    return Run(["demo", str(target), "-q"], (str(target),))


@case("environment-malformed-list")
def _(w: Workspace) -> Run:
    w.env["KMSEG_VALID_RANGE"] = "[1,"
    return Run(segment(str(w.image()), "-k", "2", "-o", w.out), ("KMSEG_VALID_RANGE",))


@case("k-none-has-no-unset")
def _(w: Workspace) -> Run:
    return Run(segment(str(w.image()), "--set", "k=none", "-o", w.out), ("k: has no unset",))


@case("segment-without-any-input")
def _(w: Workspace) -> Run:
    return Run(segment("-o", w.out), ("inputs",))


# --- the performance report, folder and glob inputs (safety review A1, A4) -------------------


@case("performance-report-is-the-input")
def _(w: Workspace) -> Run:
    src = w.png("victim.png")
    return Run(segment(str(src), "-k", "2", "-o", w.out, "--performance-report", str(src)),
               (str(src),))


@case("performance-report-is-a-users-file")
def _(w: Workspace) -> Run:
    notes = w.inputs / "notes.txt"
    notes.write_text("my notes\n")
    return Run(segment(str(w.image()), "-k", "2", "-o", w.out,
                       "--performance-report", str(notes)), (str(notes),))


@case("performance-report-inside-a-folder-input")
def _(w: Workspace) -> Run:
    folder = w.inputs / "folder"
    folder.mkdir()
    w.png("folder/a.png")
    report = str(folder / "report.html")
    return Run(segment(str(folder), "-k", "2", "-o", w.out, "--performance-report", report),
               (report,))


@case("performance-report-is-the-output")
def _(w: Workspace) -> Run:
    return Run(segment(str(w.image()), "-k", "2", "-o", w.out, "--performance-report", w.out),
               (w.out,))


@case("performance-report-is-the-outputs-lock")
def _(w: Workspace) -> Run:
    from pipeline.lock import lock_path

    return Run(segment(str(w.image()), "-k", "2", "-o", w.out,
                       "--performance-report", lock_path(w.out)), (w.out,))


@case("output-inside-a-folder-input")
def _(w: Workspace) -> Run:
    folder = w.inputs / "folder"
    folder.mkdir()
    w.png("folder/a.png")
    w.png("folder/b.png")
    out = str(folder / "x.zarr")
    return Run(segment(str(folder), "-k", "2", "-o", out), (out,))


@case("output-matched-by-a-glob-input")
def _(w: Workspace) -> Run:
    folder = w.inputs / "folder"
    folder.mkdir()
    w.png("folder/a.png")
    w.png("folder/b.png")
    out = str(folder / "y.zarr")  # the pattern matches the output: a rerun would read it
    return Run(segment(str(folder / "*"), "-k", "2", "-o", out), (out,))


# --- trial 4: a hostile new user -------------------------------------------------------------


@case("float64-span-beyond-float64")
def _(w: Workspace) -> Run:
    path = w.inputs / "extreme.npy"
    np.save(path, np.array([[1e308, -1e308], [1.7e308, 0.0]]))
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))


def _cluster_job(w: Workspace, block: str, *named: str) -> Run:
    """``kmseg run`` of a job file whose ``cluster:`` block is ``block``; the error line names
    ``named`` (the job file itself when empty)."""
    job = w.inputs / "job.yaml"
    job.write_text(f"input: {w.image()}\noutput: {w.out}\ncluster: {block}\n")
    return Run(["run", str(job), "-q"], named or (str(job),))


@case("cluster-local-n_workers-not-a-number")
def _(w: Workspace) -> Run:
    return _cluster_job(w, "{kind: local, n_workers: two}", "cluster")


@case("cluster-local-unknown-key")
def _(w: Workspace) -> Run:
    return _cluster_job(w, "{kind: local, processes: false, n_worker: 1}", "n_worker")


@case("cluster-block-without-kind")
def _(w: Workspace) -> Run:
    return _cluster_job(w, "{type: local}")


@case("jpeg-named-tif")
def _(w: Workspace) -> Run:
    from PIL import Image

    path = w.inputs / "scan.tif"
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(path, format="JPEG")
    return Run(segment(str(path), "-k", "2", "-o", w.out), (str(path),))
