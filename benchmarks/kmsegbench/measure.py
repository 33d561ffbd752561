"""What the script measures itself, the same way for every method.

* Features: raw values scaled to [0, 1] by the value range kmseg uses (the dtype's range for
  integers, the data's range for floats), float64.
* mse: the mean over every pixel of the squared float64 distance to the nearest centre, from
  each method's centres, in batches so memory stays bounded.
* Peak memory: a process's own ``VmHWM``, or the sampled resident memory of a whole process
  tree (a command and every process it starts).
* Floors: reading every pixel once, writing kmseg's full-resolution outputs once.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import ZARR_CHUNK, Input

#: Pixels per batch when computing distances (bounds the float64 temporaries to ~100 MiB).
BATCH_PIXELS = 1 << 22


# --------------------------------------------------------------------------------------------
# Features and mse
# --------------------------------------------------------------------------------------------


def iter_bands(array: Any, rows: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive bands of ``rows`` along axis 0."""
    n = array.shape[0]
    for r0 in range(0, n, rows):
        yield r0, min(n, r0 + rows)


def band_rows(item: Input, target_bytes: int = 128 * 2**20) -> int:
    """Rows per band so one band of raw values is about ``target_bytes``."""
    per_row = math.prod(item.shape[1:]) * item.dtype.itemsize
    rows = max(1, target_bytes // per_row)
    if item.format == "zarr":  # whole chunk rows, so no chunk is decoded twice
        rows = max(ZARR_CHUNK, rows // ZARR_CHUNK * ZARR_CHUNK)
    return rows


def to_features(values: np.ndarray, item: Input) -> np.ndarray:
    """float64 features ``(n, channels)`` of raw values, scaled to [0, 1] by the input's
    value range (:attr:`Input.low_high`)."""
    low, high = item.low_high
    flat = values.reshape(-1, item.channels)
    return (flat.astype(np.float64) - low) / ((high - low) or 1.0)


def all_features(item: Input) -> np.ndarray:
    """Every pixel's float64 features in memory, shape ``(n_pixels, channels)``."""
    array = item.open()
    out = np.empty((item.n_pixels, item.channels), dtype=np.float64)
    pos = 0
    for r0, r1 in iter_bands(array, band_rows(item)):
        feats = to_features(np.asarray(array[r0:r1]), item)
        out[pos : pos + len(feats)] = feats
        pos += len(feats)
    return out


def min_sq_dist(feats: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared float64 distance of each row of ``feats`` to its nearest centre (direct
    differences, no expansion, so there is no cancellation)."""
    cols = [np.ascontiguousarray(feats[:, j], dtype=np.float64) for j in range(feats.shape[1])]
    best = np.full(len(feats), np.inf)
    for centre in np.asarray(centres, dtype=np.float64):
        d = np.zeros(len(feats))
        for col, c in zip(cols, centre, strict=True):
            diff = col - c
            d += diff * diff
        np.minimum(best, d, out=best)
    return best


def mse_all(item: Input, centres: dict[str, np.ndarray], workers: int) -> dict[str, float]:
    """mse of each method's centres (feature units) over every pixel of ``item``, in one pass
    over the pixels."""
    array = item.open()

    def band_sums(bounds: tuple[int, int]) -> dict[str, float]:
        r0, r1 = bounds
        flat = np.asarray(array[r0:r1]).reshape(-1, item.channels)
        sums = dict.fromkeys(centres, 0.0)
        for start in range(0, len(flat), BATCH_PIXELS):
            feats = to_features(flat[start : start + BATCH_PIXELS], item)
            for name, c in centres.items():
                sums[name] += float(min_sq_dist(feats, c).sum())
        return sums

    total = dict.fromkeys(centres, 0.0)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for sums in pool.map(band_sums, iter_bands(array, band_rows(item))):
            for name, value in sums.items():
                total[name] += value
    return {name: value / item.n_pixels for name, value in total.items()}


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    ``VmHWM`` of ``/proc/self/status`` where there is one: ``getrusage``'s ``ru_maxrss`` keeps
    the parent's high-water mark across ``vfork`` + ``exec`` on Linux, so a child started by a
    parent holding GiBs of features would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class ProcessRun:
    """A finished command: wall seconds, peak resident memory of its process tree (bytes, 0
    when not sampled), exit status and output."""

    seconds: float
    peak_tree_bytes: int
    returncode: int
    stdout: str
    stderr: str


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` and all its descendants (bytes; 0 once gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # a process that ended in between
            total += proc.memory_info().rss
    return total


def run_process(cmd: list[str], *, env: dict[str, str] | None = None,
                sample_memory: bool = False, interval: float = 0.05,
                timeout: float | None = None) -> ProcessRun:
    """Run ``cmd`` to the end and time it (``time.perf_counter`` from start to exit).

    With ``sample_memory`` the resident memory of the whole process tree (the command and every
    process it starts: Dask worker processes, compilers) is summed every ``interval`` seconds
    from a thread and the largest sum is returned; a peak shorter than ``interval`` can be
    missed.
    """
    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True) if sample_memory else None
    if sampler is not None:
        sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import psutil

        with contextlib.suppress(psutil.Error):  # the command's own children first
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        proc.kill()
        stdout, stderr = proc.communicate()
        stderr += f"\n(killed after {timeout} s)"
    seconds = time.perf_counter() - t0
    done.set()
    if sampler is not None:
        sampler.join()
    return ProcessRun(seconds, peak, proc.returncode, stdout, stderr)


# --------------------------------------------------------------------------------------------
# Floors
# --------------------------------------------------------------------------------------------


def read_floor(item: Input, chunks: list[list[int]] | None) -> float:
    """Seconds to read every pixel once: a Dask reduction (max) over the input with kmseg's
    chunks (decoding the file for PNG/JPEG photos)."""
    import dask.array as da

    t0 = time.perf_counter()
    if item.kmseg_input.startswith("sample:"):
        import skimage.io

        from pipeline.samples import resolve

        int(skimage.io.imread(resolve(item.kmseg_input)).max())
        return time.perf_counter() - t0
    array = item.open()
    n_spatial = len(item.shape) - (1 if item.channels > 1 else 0)
    spatial = [c[0] for c in chunks[:n_spatial]] if chunks else ["auto"] * n_spatial
    chunk_shape = tuple(spatial) + ((item.channels,) if item.channels > 1 else ())
    if item.format == "zarr":
        lazy = da.from_zarr(array, chunks=chunk_shape)
    else:
        lazy = da.from_array(array, chunks=chunk_shape)
    lazy.max().compute()  # a reduction that costs next to nothing beside the reading
    return time.perf_counter() - t0


def write_floor(output: str, scratch: str) -> tuple[float, int]:
    """Seconds to write kmseg's full-resolution labels and recoloured image once to Zarr with
    the same chunks and codecs (Dask ``store``, threads), and the bytes written.

    Every chunk is compressed and written (no emptiness test), the least work that leaves the
    bytes on disk. The arrays are read back from kmseg's output band by band; only the writes
    are timed.
    """
    import dask.array as da
    import zarr

    root = zarr.open_group(output, mode="r")
    sources = [root["0"], root["labels/clusters/0"]]
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    group = zarr.open_group(scratch, mode="w")
    seconds = 0.0
    for i, src in enumerate(sources):
        target = group.create_array(
            str(i), shape=src.shape, dtype=src.dtype, chunks=src.chunks,
            compressors=src.compressors, filters=src.filters, fill_value=0,
            # Every chunk is written, without Zarr's test for chunks of only the fill value.
            config={"write_empty_chunks": True},
        )
        # Bands along the first spatial axis (the image has c first when it has channels).
        axis = 1 if i == 0 and src.ndim > sources[1].ndim else 0
        chunk = src.chunks[axis]
        rows = max(chunk, (256 * 2**20 // max(1, src.nbytes // src.shape[axis])) // chunk * chunk)
        for r0 in range(0, src.shape[axis], rows):
            key = (slice(None),) * axis + (slice(r0, r0 + rows),)
            band = np.asarray(src[key])
            lazy = da.from_array(band, chunks=src.chunks)
            t0 = time.perf_counter()
            da.store(lazy, target, regions=key, lock=False)
            seconds += time.perf_counter() - t0
    written = disk_usage(scratch)
    shutil.rmtree(scratch)
    return seconds, written


def disk_usage(path: str) -> int:
    """Bytes of every file under ``path``."""
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total
