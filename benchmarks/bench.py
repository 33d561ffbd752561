#!/usr/bin/env python
"""Benchmark kmseg against the usual ways of running K-Means on an image.

One invocation runs, on the same inputs:

* ``kmseg`` end to end (``pipeline.segment`` with the default engine ``auto`` and the default
  local threaded scheduler), in a subprocess per input so that its peak RSS can be read;
* ``dask-ml``: ``dask_ml.cluster.KMeans(n_clusters=k, random_state=0)`` (default parameters)
  on a persisted Dask array of every pixel's features;
* ``sklearn n_init=10`` and ``sklearn default`` (``n_init='auto'``): scikit-learn's KMeans on
  every pixel, ``random_state=0``;
* ``sample 1000``: scikit-learn's colour-quantisation example: KMeans fitted on 1,000 random
  pixels (``sklearn.utils.shuffle(..., random_state=0, n_samples=1000)``), then ``predict`` on
  every pixel.

Every method's mse is computed here, by the same code, from the method's centres: the mean over
all pixels of the squared float64 distance to the nearest centre (features = values scaled to
[0, 1] by the dtype's range, ``uint8 / 255``), in batches so memory stays bounded.

For kmseg it also measures two floors: reading every pixel once (a Dask sum over the input with
kmseg's chunks) and writing the full-resolution labels and recoloured image once to Zarr with the
same chunks and codecs, so the report shows where kmseg's time goes against them.

Run ``python benchmarks/bench.py --help``; ``--smoke`` is a run of a few seconds (used by the
tests). Timings come from ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_DATA_DIR = os.path.join("/tmp", "kmseg-bench")
ALL_SIZES = ("photos", "4096", "8192", "16384", "32768", "volume")
DEFAULT_SIZES = ALL_SIZES
PHOTOS = ("astronaut", "coffee", "retina")

KMSEG = "kmseg"
DASKML = "dask-ml"
SKLEARN10 = "sklearn n_init=10"
SKLEARN_DEFAULT = "sklearn default"
SAMPLE = "sample 1000"
METHODS = (KMSEG, DASKML, SKLEARN10, SKLEARN_DEFAULT, SAMPLE)
#: Methods that hold every pixel's float64 features in memory and iterate over all of them.
FULL_ANCHORS = (DASKML, SKLEARN10, SKLEARN_DEFAULT)

#: Pixels per batch when computing distances (bounds the float64 temporaries to ~100 MiB).
BATCH_PIXELS = 1 << 22
#: Chunk shape of the generated Zarr images (y, x); kmseg aligns its chunks to it.
ZARR_CHUNK = 1024


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass
class Input:
    """One benchmark input: what kmseg reads and how the script reads the same pixels."""

    name: str
    kmseg_input: str  # path or sample:NAME given to kmseg
    open: Callable[[], Any]  # returns an array-like (numpy, memmap or zarr) with axis 0 sliceable
    shape: tuple[int, ...]
    dtype: np.dtype
    channels: int
    ks: list[int]
    methods: tuple[str, ...]
    format: str
    skip: dict[str, str] = field(default_factory=dict)  # method -> reason

    @property
    def n_pixels(self) -> int:
        spatial = self.shape[:-1] if self.channels > 1 else self.shape
        return math.prod(spatial)

    @property
    def mpx(self) -> float:
        return self.n_pixels / 1e6

    @property
    def low_high(self) -> tuple[float, float]:
        info = np.iinfo(self.dtype)
        return float(info.min), float(info.max)


def _complete_marker(path: str) -> str:
    return path.rstrip("/") + ".complete"


def _is_complete(path: str) -> bool:
    return os.path.exists(path) and os.path.exists(_complete_marker(path))


def _mark_complete(path: str) -> None:
    with open(_complete_marker(path), "w") as fh:
        fh.write(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def tiled_zarr(data_dir: str, size: int, base: str = "retina", noise: int = 2) -> str:
    """A ``size`` x ``size`` RGB uint8 Zarr made by tiling a real photo, with light noise.

    Made once under ``data_dir`` (reused while its ``.complete`` marker exists). Noise is
    uniform in ``[-noise, noise]`` per value, clipped to uint8, so colours are not all repeats.
    """
    import zarr

    path = os.path.join(data_dir, f"{base}-tiled-{size}.zarr")
    if _is_complete(path):
        return path
    log(f"making {path} ({size}x{size} RGB uint8, tiled {base} + noise)")
    t0 = time.perf_counter()
    photo = _photo(base)
    h, w = photo.shape[:2]
    chunk = min(ZARR_CHUNK, size)
    array = zarr.create_array(
        store=path, shape=(size, size, 3), chunks=(chunk, chunk, 3), dtype=np.uint8,
        dimension_names=("y", "x", "c"), overwrite=True,
    )
    cols = np.arange(size) % w
    band_rows = max(chunk, (64 * 2**20 // (size * 3)) // chunk * chunk)
    for r0 in range(0, size, band_rows):
        r1 = min(size, r0 + band_rows)
        band = photo[np.arange(r0, r1) % h][:, cols].astype(np.int16)
        rng = np.random.default_rng([size, r0])
        band += rng.integers(-noise, noise + 1, size=band.shape, dtype=np.int16)
        array[r0:r1] = np.clip(band, 0, 255).astype(np.uint8)
    _mark_complete(path)
    log(f"made {path} in {time.perf_counter() - t0:.1f} s")
    return path


def ct_volume(data_dir: str, size: int = 512, seed: int = 0) -> str:
    """A synthetic CT-like ``size``^3 int16 volume (HU): air, fat, soft tissue, organs, lungs,
    bone, plus Gaussian noise (sd 25 HU); saved once as ``.npy``."""
    path = os.path.join(data_dir, f"ct-{size}.npy")
    if _is_complete(path):
        return path
    log(f"making {path} ({size}^3 int16 CT-like volume)")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=(size,) * 3)
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    for z in range(size):
        zz = (z / (size - 1)) * 2 - 1
        s = np.full((size, size), -1000.0)  # air
        body = (yy / 0.75) ** 2 + (xx / 0.9) ** 2 + (zz / 1.2) ** 2
        s[body < 1.0] = -100.0  # fat
        s[body < 0.8] = 40.0  # soft tissue
        for cx in (-0.4, 0.4):  # lungs
            lung = ((yy + 0.1) / 0.45) ** 2 + ((xx - cx) / 0.3) ** 2 + (zz / 0.9) ** 2
            s[lung < 1.0] = -800.0
        organ = ((yy - 0.35) / 0.2) ** 2 + ((xx + 0.2) / 0.25) ** 2 + ((zz + 0.3) / 0.4) ** 2
        s[organ < 1.0] = 70.0  # e.g. liver
        spine = ((yy - 0.55) / 0.09) ** 2 + (xx / 0.09) ** 2
        s[spine < 1.0] = 700.0  # bone
        ribs = np.abs(np.sqrt((yy / 0.72) ** 2 + (xx / 0.86) ** 2) - 0.95) < 0.02
        s[ribs & (np.sin(zz * 40) > 0.5)] = 500.0
        s += rng.normal(0.0, 25.0, size=s.shape)
        out[z] = np.clip(np.rint(s), -32768, 32767).astype(np.int16)
    out.flush()
    del out
    _mark_complete(path)
    return path


def _open_zarr(path: str) -> Callable[[], Any]:
    def opener():
        import zarr

        return zarr.open_array(path, mode="r")

    return opener


def _open_npy(path: str) -> Callable[[], Any]:
    return lambda: np.load(path, mmap_mode="r")


def build_inputs(args: argparse.Namespace) -> list[Input]:
    """The inputs chosen by ``--sizes`` (made on disk first where needed)."""
    data_dir = args.data_dir
    os.makedirs(data_dir, exist_ok=True)
    inputs: list[Input] = []
    if args.smoke:
        crop = np.ascontiguousarray(_photo("astronaut")[96:160, 160:224])  # 64x64, the face
        path = os.path.join(data_dir, "astronaut-crop-64.npy")
        np.save(path, crop)
        inputs.append(Input("astronaut crop 64x64", path, _open_npy(path), crop.shape,
                            np.dtype(np.uint8), 3, [3], METHODS, "npy"))
        return inputs
    sizes = args.sizes
    if "photos" in sizes:
        for name in PHOTOS:
            img = _photo(name)
            inputs.append(Input(f"{name} {img.shape[1]}x{img.shape[0]}", f"sample:{name}",
                                (lambda img=img: img), img.shape, img.dtype, img.shape[-1],
                                list(args.k), METHODS, "png/jpeg"))
    for size in (4096, 8192, 16384, 32768):
        if str(size) not in sizes:
            continue
        path = tiled_zarr(data_dir, size)
        inputs.append(Input(f"tiled {size}x{size}", path, _open_zarr(path), (size, size, 3),
                            np.dtype(np.uint8), 3, [args.big_k], METHODS, "zarr"))
    if "volume" in sizes:
        path = ct_volume(data_dir)
        inputs.append(Input("CT volume 512^3 int16", path, _open_npy(path), (512, 512, 512),
                            np.dtype(np.int16), 1, [args.volume_k], (KMSEG, SKLEARN_DEFAULT),
                            "npy"))
    for item in inputs:
        for method in item.methods:
            limit = args.max_anchor_mpx if method in (DASKML, SKLEARN10) else (
                args.max_sklearn_default_mpx if method == SKLEARN_DEFAULT else None
            )
            if limit is not None and item.mpx > limit:
                gib = item.n_pixels * item.channels * 8 / 2**30
                item.skip[method] = (
                    f"skipped: {item.mpx:.0f} Mpx > {limit:g} Mpx limit for this method "
                    f"(its float64 features alone take {gib:.1f} GiB)"
                )
    return inputs


# --------------------------------------------------------------------------------------------
# Reading pixels in batches
# --------------------------------------------------------------------------------------------


def iter_bands(array: Any, rows: int) -> Iterator[tuple[int, int]]:
    n = array.shape[0]
    for r0 in range(0, n, rows):
        yield r0, min(n, r0 + rows)


def band_rows(item: Input, target_bytes: int = 128 * 2**20) -> int:
    per_row = math.prod(item.shape[1:]) * item.dtype.itemsize
    rows = max(1, target_bytes // per_row)
    if item.format == "zarr":  # whole chunk rows, so no chunk is decoded twice
        rows = max(ZARR_CHUNK, rows // ZARR_CHUNK * ZARR_CHUNK)
    return rows


def to_features(values: np.ndarray, item: Input) -> np.ndarray:
    """float64 features ``(n, channels)`` of raw values: scaled to [0, 1] by the dtype range."""
    low, high = item.low_high
    flat = values.reshape(-1, item.channels)
    return (flat.astype(np.float64) - low) / (high - low)


def all_features(item: Input) -> np.ndarray:
    """Every pixel's float64 features in memory (for the in-memory anchors)."""
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
    """mse of each method's centres over every pixel of ``item`` (one pass over the pixels)."""
    array = item.open()

    def band_sums(bounds: tuple[int, int]) -> dict[str, float]:
        r0, r1 = bounds
        values = np.asarray(array[r0:r1])
        flat = values.reshape(-1, item.channels)
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
# Methods
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    method: str
    seconds: float | None = None
    centres: np.ndarray | None = None
    mse: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_kmseg(item: Input, k: int, out_dir: str) -> Outcome:
    """kmseg end to end in a fresh interpreter; the child reports its own peak RSS."""
    output = os.path.join(out_dir, f"{_slug(item.name)}-k{k}.zarr")
    spec = {"input": item.kmseg_input, "output": output, "k": k}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
        capture_output=True, text=True, check=False,
    )
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"kmseg child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["process_s"] = process_s
    report["load"] = (load_before, os.getloadavg()[0])
    report["chunk_text"] = chunk_text(report.get("chunks"), item)
    report["output"] = output
    method = report.get("engine_info", {}).get("method")
    note = f"engine {report['engine']}" + (f" ({method})" if method else "")
    return Outcome(KMSEG, report["wall_s"], np.asarray(report["centres_features"]),
                   note=note, extra=report)


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


def child_main(spec_json: str) -> int:
    """The subprocess side of :func:`run_kmseg`: segment, then print one JSON line."""
    import pipeline

    spec = json.loads(spec_json)
    t0 = time.perf_counter()
    [result] = pipeline.segment(spec["input"], spec["output"], k=spec["k"], quiet=True,
                                overwrite=True)
    wall = time.perf_counter() - t0
    rss = peak_rss_bytes()
    print(json.dumps({
        "wall_s": wall,
        "peak_rss_bytes": rss,
        "engine": result.engine,
        "mse_reported": result.mse,
        "centres_features": np.asarray(result.centres_features).tolist(),
        "timings": result.metadata.get("timings", {}),
        "engine_info": result.metadata.get("engine_info", {}),
        "chunks": result.metadata.get("chunks"),
    }))
    return 0


def run_sklearn(X: np.ndarray, k: int, n_init: int | str) -> Outcome:
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    model = KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(X)
    seconds = time.perf_counter() - t0
    name = SKLEARN10 if n_init == 10 else SKLEARN_DEFAULT
    return Outcome(name, seconds, model.cluster_centers_, note=f"{model.n_iter_} iterations")


def run_daskml(X: np.ndarray, k: int) -> Outcome:
    import dask.array as da
    from dask_ml.cluster import KMeans

    chunk_rows = max(1, min(len(X), 1 << 20))
    t0 = time.perf_counter()
    Xd = da.from_array(X, chunks=(chunk_rows, X.shape[1])).persist()
    persist_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = KMeans(n_clusters=k, random_state=0).fit(Xd)
    seconds = time.perf_counter() - t0
    return Outcome(DASKML, seconds, np.asarray(model.cluster_centers_),
                   note=f"{model.n_iter_} iterations; persist {persist_s:.2f} s not counted")


def run_sample(item: Input, X: np.ndarray | None, k: int, workers: int) -> Outcome:
    """scikit-learn's colour-quantisation example: fit on 1,000 random pixels, predict all.

    With ``X`` in memory the sample is ``shuffle(X, random_state=0, n_samples=1000)`` as in the
    example. Larger inputs are not held in memory: the 1,000 pixel indices are drawn with
    ``numpy.random.default_rng(0).choice`` and ``predict`` streams the pixels from disk (its
    time then includes reading them).
    """
    from sklearn.cluster import KMeans
    from sklearn.utils import shuffle

    n_sample = min(1000, item.n_pixels)
    t0 = time.perf_counter()
    if X is not None:
        sample = shuffle(X, random_state=0, n_samples=n_sample)
        model = KMeans(n_clusters=k, random_state=0).fit(sample)
        model.predict(X)
        note = "fit + predict in memory"
    else:
        array = item.open()
        flat_index = np.random.default_rng(0).choice(item.n_pixels, n_sample, replace=False)
        spatial = item.shape[:-1] if item.channels > 1 else item.shape
        coords = np.unravel_index(flat_index, spatial)
        # Coordinate selection: zarr decodes each chunk holding a sampled pixel once.
        if item.channels > 1:  # one coordinate per value: (y, x, c) for every channel
            coords = (*(np.repeat(c, item.channels) for c in coords),
                      np.tile(np.arange(item.channels), n_sample))
        picked = array.vindex[coords] if hasattr(array, "vindex") else array[coords]
        values = np.asarray(picked).reshape(-1, item.channels)
        model = KMeans(n_clusters=k, random_state=0).fit(to_features(values, item))

        def predict_band(bounds: tuple[int, int]) -> int:
            r0, r1 = bounds
            flat = np.asarray(array[r0:r1]).reshape(-1, item.channels)
            for start in range(0, len(flat), BATCH_PIXELS):
                model.predict(to_features(flat[start : start + BATCH_PIXELS], item))
            return r1 - r0

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(predict_band, iter_bands(array, band_rows(item))))
        note = "sample via default_rng(0).choice; predict streamed from disk (includes reading)"
    return Outcome(SAMPLE, time.perf_counter() - t0, model.cluster_centers_, note=note)


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
    bytes on disk.

    The arrays are read back from kmseg's output band by band; only the writes are timed.
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
    written = _du(scratch)
    shutil.rmtree(scratch)
    return seconds, written


def _du(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    input: str
    mpx: float
    k: int
    method: str
    outcome: Outcome | None
    skipped: str = ""


@dataclass
class StageRow:
    input: str
    mpx: float
    k: int
    report: dict[str, Any]
    read_floor_s: float
    write_floor_s: float
    written_bytes: int
    output_bytes: int
    mse_script: float


def run_input(item: Input, k: int, args: argparse.Namespace, X: np.ndarray | None,
              rates: dict[str, float]) -> tuple[list[Row], StageRow | None]:
    workers = os.cpu_count() or 1
    out_dir = os.path.join(args.data_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    outcomes: dict[str, Outcome] = {}
    rows: list[Row] = []

    log(f"{item.name} k={k}: read floor")
    # The first read warms the page cache for every method alike; the second is the floor.
    read_floor(item, None)
    log(f"{item.name} k={k}: kmseg")
    kmseg = run_kmseg(item, k, out_dir)
    outcomes[KMSEG] = kmseg
    r_floor = read_floor(item, kmseg.extra.get("chunks"))
    log(f"{item.name} k={k}: kmseg {kmseg.seconds:.2f} s ({kmseg.note}); write floor")
    w_floor, written = write_floor(kmseg.extra["output"], os.path.join(out_dir, "floor.zarr"))
    output_bytes = _du(kmseg.extra["output"])
    if not args.keep_outputs:
        shutil.rmtree(kmseg.extra["output"], ignore_errors=True)

    for method in item.methods:
        if method == KMSEG:
            continue
        if method in item.skip:
            reason = item.skip[method]
            if method in rates:
                reason += f"; ~{rates[method] * item.mpx:.0f} s by linear extrapolation"
            rows.append(Row(item.name, item.mpx, k, method, None, reason))
            continue
        log(f"{item.name} k={k}: {method}")
        if method == SAMPLE:
            outcome = run_sample(item, X, k, workers)
        else:
            assert X is not None
            if method == DASKML:
                outcome = run_daskml(X, k)
            else:
                outcome = run_sklearn(X, k, 10 if method == SKLEARN10 else "auto")
        log(f"{item.name} k={k}: {method} {outcome.seconds:.2f} s")
        outcomes[method] = outcome
        rates[method] = max(rates.get(method, 0.0), outcome.seconds / item.mpx)

    log(f"{item.name} k={k}: mse of every method over all pixels")
    t0 = time.perf_counter()
    mses = mse_all(item, {m: o.centres for m, o in outcomes.items()}, workers)
    log(f"{item.name} k={k}: mse pass {time.perf_counter() - t0:.1f} s")
    for method in item.methods:
        if method in outcomes:
            outcomes[method].mse = mses[method]
            rows.append(Row(item.name, item.mpx, k, method, outcomes[method]))
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: order[r.method])
    stage = StageRow(item.name, item.mpx, k, kmseg.extra, r_floor, w_floor, written,
                     output_bytes, mses[KMSEG])
    return rows, stage


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _f(value: float | None, fmt: str) -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def _ratio(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.2f}x" if value < 1 else f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


def _mpx(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:.0f}"


def results_table(rows: list[Row]) -> str:
    head = ("| input | Mpx | k | method | wall s | time / kmseg | mse | mse / best | notes |\n"
            "|---|---:|---:|---|---:|---:|---:|---:|---|\n")
    lines = []
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.input, row.k), []).append(row)
    for group in groups.values():
        done = [r for r in group if r.outcome is not None and r.outcome.mse is not None]
        best = min((r.outcome.mse for r in done), default=None)  # type: ignore[union-attr]
        kmseg_s = next((r.outcome.seconds for r in done if r.method == KMSEG), None)
        for row in group:
            o = row.outcome
            if o is None:
                lines.append(f"| {row.input} | {_mpx(row.mpx)} | {row.k} | {row.method} | – | – "
                             f"| – | – | {row.skipped} |")
                continue
            note = o.note
            if row.method == KMSEG:
                note += f"; peak RSS {o.extra['peak_rss_bytes'] / 2**30:.2f} GiB"
            ratio = o.seconds / kmseg_s if kmseg_s else None
            mse_ratio = o.mse / best if best else None
            lines.append(
                f"| {row.input} | {_mpx(row.mpx)} | {row.k} | {row.method} "
                f"| {_f(o.seconds, '.2f')} | {_ratio(ratio)} | {_f(o.mse, '.6g')} "
                f"| {_f(mse_ratio, '.4f')} | {note} |"
            )
    return head + "\n".join(lines) + "\n"


def chunk_text(chunks: list[list[int]] | None, item: Input) -> str:
    """kmseg's spatial chunk shape and how many chunks the image has, e.g. ``4096x4096 (64)``."""
    if not chunks:
        return "?"
    n_spatial = len(item.shape) - (1 if item.channels > 1 else 0)
    spatial = [int(c[0]) for c in chunks[:n_spatial]]
    count = math.prod(-(-n // c) for n, c in zip(item.shape, spatial, strict=False))
    return f"{'x'.join(map(str, spatial))} ({count})"


def stages_table(stages: list[StageRow]) -> str:
    head = (
        "| input | k | total s | process s | Mpx/s | read floor s | summary s | fit s "
        "| label+write s | write floor s | summary − read floor | label+write − floors "
        "| other s | output MiB | peak RSS GiB | engine | chunk | load before/after |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n"
    )
    lines = []
    for s in stages:
        t = s.report.get("timings", {})
        range_s = float(t.get("range_s", 0.0))
        summary = float(t.get("summary_s", 0.0)) + range_s
        fit = float(t.get("fit_s", 0.0))
        lw = float(t.get("label_write_s", 0.0))
        other = s.report["wall_s"] - summary - fit - lw
        lines.append(
            f"| {s.input} | {s.k} | {s.report['wall_s']:.2f} | {s.report['process_s']:.2f} "
            f"| {s.mpx / s.report['wall_s']:.1f} "
            f"| {s.read_floor_s:.2f} | {summary:.2f} | {fit:.2f} | {lw:.2f} "
            f"| {s.write_floor_s:.2f} "
            f"| {summary - s.read_floor_s:+.2f} | {lw - s.read_floor_s - s.write_floor_s:+.2f} "
            f"| {other:.2f} | {s.output_bytes / 2**20:.1f} "
            f"| {s.report['peak_rss_bytes'] / 2**30:.2f} | {s.report['engine']} "
            f"| {s.report.get('chunk_text', '?')} "
            f"| {'/'.join(f'{v:.1f}' for v in s.report.get('load', ()))} |"
        )
    return head + "\n".join(lines) + "\n"


def machine() -> str:
    import dask
    import dask_ml
    import sklearn
    import zarr

    import pipeline

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, kmseg "
        f"{getattr(pipeline, '__version__', '?')}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}, dask {dask.__version__}, dask-ml {dask_ml.__version__}, zarr "
        f"{zarr.__version__}"
    )


def provenance() -> str:
    """The commit of the working tree (read-only git) and the newest edit of pipeline/."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "pipeline"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        head, dirty = "", ""
    newest = 0.0
    for folder, _, files in os.walk(os.path.join(root, "pipeline")):
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.path.getmtime(os.path.join(folder, name)))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)) if newest else "?"
    return (f"commit {head or '?'}{' + uncommitted changes in pipeline/' if dirty else ''}; "
            f"newest pipeline/*.py edit {stamp}")


def report(rows: list[Row], stages: list[StageRow], started: float, argv: list[str]) -> str:
    parts = [
        f"Machine: {machine()}",
        "",
        f"Code: {provenance()}",
        "",
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        "the stage table gives it before and after each kmseg run (timings are only "
        "comparable on a quiet machine).",
        "",
        f"Command: `python benchmarks/bench.py {' '.join(argv)}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}, {time.perf_counter() - started:.0f} s in all)",
        "",
        "### Methods",
        "",
        results_table(rows),
        "### kmseg stages against the floors",
        "",
        stages_table(stages),
    ]
    checks = []
    worst = 0.0
    for s in stages:
        reported = s.report.get("mse_reported")
        if reported is not None and s.mse_script > 0:
            rel = abs(reported - s.mse_script) / s.mse_script
            worst = max(worst, rel)
            if rel > 1e-4:
                checks.append(f"* {s.input} k={s.k}: kmseg reports mse {reported:.8g}, the "
                              f"script measures {s.mse_script:.8g} (relative difference "
                              f"{rel:.2e})")
    if stages:
        checks.append(f"* kmseg's own mse agrees with the script's to a relative {worst:.1e} "
                      "at worst (kmseg computes features in float32)")
    parts += ["### Checks", "", *checks, "", "### Targets", "", *targets(rows, stages), ""]
    return "\n".join(parts)


def targets(rows: list[Row], stages: list[StageRow]) -> list[str]:
    """One line per target of benchmarks/README.md that the measured inputs allow to judge."""
    done = {(r.input, r.k, r.method): r.outcome for r in rows if r.outcome is not None}
    by_input = {(s.input, s.k): s for s in stages}
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    for (name, k, method), o in done.items():
        if method != KMSEG or name.split()[0] not in PHOTOS or "crop" in name:
            continue
        ref = done.get((name, k, SKLEARN10))
        if ref is None or o.mse is None or ref.mse is None:
            continue
        ratio = o.mse / ref.mse
        out.append(f"* {name} k={k}: kmseg mse / sklearn n_init=10 mse = {ratio:.5f} "
                   f"(≤ 1.001): {verdict(ratio <= 1.001)}")
    for (name, k, method), o in done.items():
        if method != KMSEG or name != "tiled 4096x4096":
            continue
        for anchor, factor in ((SKLEARN10, 20), (DASKML, 10)):
            ref = done.get((name, k, anchor))
            if ref is None:
                continue
            speedup = ref.seconds / o.seconds
            out.append(f"* {name} k={k}: kmseg {o.seconds:.1f} s vs {anchor} fit "
                       f"{ref.seconds:.1f} s = {speedup:.1f}x faster (≥ {factor}x): "
                       f"{verdict(speedup >= factor)}")
    big = {key: s for key, s in by_input.items() if key[0] == "tiled 32768x32768"}
    for (name, k), s in big.items():
        wall, rss = s.report["wall_s"], s.report["peak_rss_bytes"] / 2**30
        out.append(f"* {name} k={k}: {wall:.1f} s (≤ 60 s): {verdict(wall <= 60)}; peak RSS "
                   f"{rss:.2f} GiB (≤ 3 GiB): {verdict(rss <= 3)}")
        ref = by_input.get(("tiled 8192x8192", k))
        if ref is not None:
            t_big, t_ref = s.mpx / wall, ref.mpx / ref.report["wall_s"]
            out.append(f"* throughput at 1074 Mpx {t_big:.1f} Mpx/s vs {t_ref:.1f} Mpx/s at "
                       f"67 Mpx = {t_big / t_ref:.2f} (≥ 0.80): {verdict(t_big >= 0.8 * t_ref)}")
    for (name, k), s in by_input.items():
        if name.startswith("CT volume"):
            wall = s.report["wall_s"]
            out.append(f"* {name} k={k}: {wall:.1f} s end to end (≤ 10 s): "
                       f"{verdict(wall <= 10)}")
    return out or ["* (none of the target inputs was run)"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help=f"comma-separated inputs from {','.join(ALL_SIZES)} "
                             "(default: all)")
    parser.add_argument("--k", default="4,8,16", help="k values for the photos (default 4,8,16)")
    parser.add_argument("--big-k", type=int, default=8,
                        help="k for the tiled images (default 8)")
    parser.add_argument("--volume-k", type=int, default=4, help="k for the volume (default 4)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"where generated inputs are cached and outputs written "
                             f"(default {DEFAULT_DATA_DIR})")
    parser.add_argument("--out", help="also write the markdown report to this file")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run (64x64 photo crop, k=3) of a few seconds")
    parser.add_argument("--max-anchor-mpx", type=float, default=20.0,
                        help="largest input (Mpx) for dask-ml and sklearn n_init=10 "
                             "(default 20: the photos and 4096x4096)")
    parser.add_argument("--max-sklearn-default-mpx", type=float, default=140.0,
                        help="largest input (Mpx) for sklearn default (default 140: up to "
                             "8192x8192 and the 512^3 volume)")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep kmseg's output stores under DATA_DIR/out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        unknown = sorted(set(args.sizes) - set(ALL_SIZES))
        if unknown:
            parser.error(f"unknown sizes {unknown}; choose from {', '.join(ALL_SIZES)}")
        args.k = [int(v) for v in str(args.k).split(",") if v.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        return child_main(args.child)
    started = time.perf_counter()
    rows: list[Row] = []
    stages: list[StageRow] = []
    rates: dict[str, float] = {}  # seconds per Mpx of each anchor on the largest input run
    for item in build_inputs(args):
        X = None
        needs_x = any(m in FULL_ANCHORS and m not in item.skip for m in item.methods)
        if needs_x:
            log(f"{item.name}: loading {item.mpx:.1f} Mpx as float64 features")
            X = all_features(item)
        for k in item.ks:
            try:
                new_rows, stage = run_input(item, k, args, X, rates)
            except Exception as exc:  # report it and go on with the other inputs
                import traceback

                traceback.print_exc()
                reason = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                new_rows = [Row(item.name, item.mpx, k, m, None, reason) for m in item.methods]
                stage = None
            rows += new_rows
            if stage is not None:
                stages.append(stage)
            print(results_table(new_rows), file=sys.stderr, flush=True)
        del X
    text = report(rows, stages, started, argv)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
