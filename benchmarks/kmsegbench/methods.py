"""The K-Means methods compared, each returning its centres in feature units and its time.

* ``kmseg``: ``pipeline.segment`` end to end in a fresh interpreter per run (so its peak memory
  is its own); the child prints one JSON line.
* ``dask-ml``: ``dask_ml.cluster.KMeans(n_clusters=k, random_state=0)`` on a persisted Dask
  array of the features.
* ``sklearn n_init=10`` / ``sklearn default``: ``sklearn.cluster.KMeans`` with ``n_init=10`` /
  ``'auto'``, ``random_state=0``.
* ``faiss``: ``faiss.Kmeans`` (faiss-cpu), the fast peer users would pick.
* ``sample 1000``: scikit-learn's colour-quantisation example (fit on 1,000 random pixels,
  predict every pixel).

The in-memory methods get ``X``, every pixel's float64 features, loaded beforehand and not
timed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import Input
from .measure import BATCH_PIXELS, band_rows, iter_bands, peak_rss_bytes, to_features

KMSEG = "kmseg"
DASKML = "dask-ml"
SKLEARN10 = "sklearn n_init=10"
SKLEARN_DEFAULT = "sklearn default"
FAISS = "faiss"
SAMPLE = "sample 1000"
METHODS = (KMSEG, DASKML, SKLEARN10, SKLEARN_DEFAULT, FAISS, SAMPLE)
#: Methods that need every pixel's float64 features in memory.
FULL_ANCHORS = (DASKML, SKLEARN10, SKLEARN_DEFAULT, FAISS)
#: The script that starts the kmseg child (``bench.py --child SPEC``).
BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "bench.py"


@dataclass
class Outcome:
    """One method's result on one input and k: seconds, centres (feature units), mse."""

    method: str
    seconds: float | None = None
    centres: np.ndarray | None = None
    mse: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def faiss_missing() -> str | None:
    """Why faiss cannot run here (``None`` when ``import faiss`` works)."""
    try:
        import faiss  # noqa: F401
    except ImportError as exc:
        return f"skipped: faiss is not importable ({exc}); pip install -e '.[bench]'"
    return None


def run_kmseg(item: Input, k: int, out_dir: str) -> Outcome:
    """kmseg end to end in a fresh interpreter; the child reports its own peak RSS.

    Raises
    ------
    RuntimeError
        When the child fails (its stderr tail is in the message).
    """
    output = os.path.join(out_dir, f"{slug(item.name)}-k{k}.zarr")
    spec = {"input": item.kmseg_input, "output": output, "k": k}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(BENCH_SCRIPT), "--child", json.dumps(spec)],
        capture_output=True, text=True, check=False,
    )
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"kmseg child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["process_s"] = process_s
    report["load"] = (load_before, os.getloadavg()[0])
    report["output"] = output
    method = report.get("engine_info", {}).get("method")
    note = f"engine {report['engine']}" + (f" ({method})" if method else "")
    # kmseg's centres in input units, put in the script's feature space (kmseg scales wide
    # integers and floats by the data's range, the script by item.low_high), so every method's
    # mse is measured alike.
    low, high = item.low_high
    centres = (np.asarray(report["centres"], dtype=np.float64) - low) / ((high - low) or 1.0)
    scaled = report.get("scaled_from")
    if scaled and report.get("mse_reported") is not None:
        # kmseg's own mse, in the script's feature units (for the agreement check)
        ratio = (float(scaled[1]) - float(scaled[0])) / ((high - low) or 1.0)
        report["mse_reported"] = report["mse_reported"] * ratio**2
    return Outcome(KMSEG, report["wall_s"], centres, note=note, extra=report)


def child_main(spec_json: str) -> int:
    """The subprocess side of :func:`run_kmseg`: segment, then print one JSON line.

    The process is set up as the ``kmseg`` command sets up its own (``lean_imports``): it
    stands for that command."""
    import pipeline
    from pipeline import lean_imports

    lean_imports.install()

    spec = json.loads(spec_json)
    t0 = time.perf_counter()
    [result] = pipeline.segment(spec["input"], spec["output"], k=spec["k"], quiet=True,
                                overwrite=True)
    wall = time.perf_counter() - t0
    print(json.dumps({
        "wall_s": wall,
        "peak_rss_bytes": peak_rss_bytes(),
        "engine": result.engine,
        "mse_reported": result.mse,
        "scaled_from": result.metadata.get("features", {}).get("scaled_from"),
        "centres_features": np.asarray(result.centres_features).tolist(),
        "centres": np.asarray(result.centres).tolist(),
        "timings": result.metadata.get("timings", {}),
        "engine_info": result.metadata.get("engine_info", {}),
        "chunks": result.metadata.get("chunks"),
    }))
    return 0


def run_sklearn(X: np.ndarray, k: int, n_init: int | str) -> Outcome:
    """``sklearn.cluster.KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(X)``, timed."""
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    model = KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(X)
    seconds = time.perf_counter() - t0
    name = SKLEARN10 if n_init == 10 else SKLEARN_DEFAULT
    return Outcome(name, seconds, model.cluster_centers_, note=f"{model.n_iter_} iterations")


def run_daskml(X: np.ndarray, k: int) -> Outcome:
    """``dask_ml.cluster.KMeans(n_clusters=k, random_state=0).fit`` on ``X`` persisted in
    chunks of 2**20 rows; only ``fit`` is timed."""
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


def run_faiss(X: np.ndarray, k: int) -> Outcome:
    """``faiss.Kmeans(d, k, seed=0, max_points_per_centroid=ceil(n / k))``: train on every
    pixel (faiss's default would subsample 256 points per centroid) with its defaults
    otherwise (25 iterations, one start), then assign every pixel (``index.search``), as
    scikit-learn's ``fit`` does. Timed: train + assign; the float32 copy of ``X`` faiss needs
    is made before and not timed."""
    import faiss

    Xf = np.ascontiguousarray(X, dtype=np.float32)
    t0 = time.perf_counter()
    model = faiss.Kmeans(Xf.shape[1], k, seed=0, verbose=False,
                         max_points_per_centroid=max(256, math.ceil(len(Xf) / k)))
    model.train(Xf)
    model.index.search(Xf, 1)
    seconds = time.perf_counter() - t0
    return Outcome(FAISS, seconds, np.asarray(model.centroids, dtype=np.float64),
                   note=f"{model.cp.niter} iterations, all points; train + assign")


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


def run_in_memory(method: str, item: Input, X: np.ndarray | None, k: int,
                  workers: int) -> Outcome:
    """Run one non-kmseg method by name."""
    if method == SAMPLE:
        return run_sample(item, X, k, workers)
    if X is None:
        raise ValueError(f"{method} needs the features in memory")
    if method == DASKML:
        return run_daskml(X, k)
    if method == FAISS:
        return run_faiss(X, k)
    return run_sklearn(X, k, 10 if method == SKLEARN10 else "auto")


def slug(name: str) -> str:
    """``name`` with every non-alphanumeric character replaced by ``-``."""
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
