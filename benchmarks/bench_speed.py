#!/usr/bin/env python
"""kmseg (engine auto: binned) against scikit-learn KMeans(n_init=10) on inputs beyond 8 bits.

Inputs (generated, realistic structure): 16-bit RGB 2048x2048 (astronaut upscaled, x257, noise),
4-channel uint16 2048x2048 (coffee RGB + a smoothed grey channel, noise), float32 volume 256^3
(smoothed binary blobs at four levels plus noise). kmseg runs end to end (``pipeline.segment``
from a ``.npy`` file, default engine ``auto``); scikit-learn's fit alone on the in-memory float64
features. mse of both is computed here from their centres over every pixel.

``python benchmarks/bench_speed.py [--only rgb16,mc4,vol] [--engine auto] [--dask-ml]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def rgb16() -> np.ndarray:
    from skimage.data import astronaut
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    img = resize(astronaut(), (2048, 2048), order=1, preserve_range=True) * 257.0
    img += rng.normal(0, 400, img.shape)
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16)


def mc4() -> np.ndarray:
    from scipy.ndimage import gaussian_filter
    from skimage.color import rgb2gray
    from skimage.data import coffee
    from skimage.transform import resize

    rng = np.random.default_rng(1)
    rgb = resize(coffee(), (2048, 2048), order=1, preserve_range=True) * 257.0
    grey = gaussian_filter(rgb2gray(rgb / 65535.0), 8) * 50000.0
    img = np.concatenate([rgb, grey[..., None]], axis=-1)
    img += rng.normal(0, 300, img.shape)
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16)


def vol() -> np.ndarray:
    from scipy.ndimage import gaussian_filter
    from skimage.data import binary_blobs

    rng = np.random.default_rng(2)
    a = binary_blobs(256, blob_size_fraction=0.1, n_dim=3, volume_fraction=0.3, rng=1)
    b = binary_blobs(256, blob_size_fraction=0.05, n_dim=3, volume_fraction=0.2, rng=2)
    v = 100.0 + 400.0 * a + 250.0 * b
    v = gaussian_filter(v, 1.5).astype(np.float32)
    v += rng.normal(0, 30, v.shape).astype(np.float32)
    return v


INPUTS = {"rgb16": (rgb16, 8), "mc4": (mc4, 6), "vol": (vol, 4)}


def features(img: np.ndarray, channels: bool) -> np.ndarray:
    if img.dtype.kind == "f":
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        f = (img.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    else:
        f = img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
    return f.reshape(-1, img.shape[-1] if channels else 1).astype(np.float64)


def mse(X: np.ndarray, C: np.ndarray) -> float:
    C = np.asarray(C, dtype=np.float64)
    total = 0.0
    for s in range(0, len(X), 1 << 21):
        x = X[s : s + (1 << 21)]
        d = (x**2).sum(1)[:, None] - 2 * x @ C.T + (C**2).sum(1)[None]
        total += np.maximum(d.min(1), 0).sum()
    return total / len(X)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="rgb16,mc4,vol")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--dask-ml", action="store_true", help="also dask-ml KMeans (default params)")
    ap.add_argument("--no-sklearn", action="store_true")
    args = ap.parse_args()
    import pipeline

    tmp = tempfile.mkdtemp(prefix="kmseg-speed-")
    try:
        print("| input | k | kmseg s | sklearn n_init=10 s | ratio | kmseg mse | sklearn mse "
              "| mse ratio | kmseg engine/method |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in args.only.split(","):
            make, k = INPUTS[name]
            img = make()
            path = os.path.join(tmp, f"{name}.npy")
            np.save(path, img)
            channels = img.ndim == 3 and name != "vol"
            X = features(img, channels)
            # warm the compiled kernels once on a small crop (not timed)
            pipeline.segment(img[:64, :64], os.path.join(tmp, "warm.zarr"), k=k, quiet=True,
                             overwrite=True, engine=args.engine)
            t0 = time.perf_counter()
            res = pipeline.segment(path, os.path.join(tmp, f"{name}.zarr"), k=k, quiet=True,
                                   overwrite=True, engine=args.engine)[0]
            t_kmseg = time.perf_counter() - t0
            m_kmseg = mse(X, res.centres_features)
            info = res.metadata["engine_info"]
            if args.no_sklearn:
                t_sk, m_sk = float("nan"), float("nan")
            else:
                from sklearn.cluster import KMeans

                t0 = time.perf_counter()
                model = KMeans(k, n_init=10, random_state=0).fit(X)
                t_sk = time.perf_counter() - t0
                m_sk = mse(X, model.cluster_centers_)
            row = (f"| {name} {img.shape} {img.dtype} | {k} | {t_kmseg:.2f} | {t_sk:.2f} | "
                   f"{t_sk / t_kmseg:.1f}x | {m_kmseg:.6g} | {m_sk:.6g} | "
                   f"{m_kmseg / m_sk:.5f} | {res.engine}/{info.get('method')} |")
            print(row, flush=True)
            print("  timings", res.metadata["timings"], "info", {
                key: info.get(key) for key in (
                    "n_bins", "fit_bins", "bin_fit_s", "fit_s", "summary_task_s",
                    "objective_before_refine", "within_bin_mse", "proven_within")
            }, file=sys.stderr, flush=True)
            if args.dask_ml:
                import dask.array as da
                from dask_ml.cluster import KMeans as DKMeans

                Xd = da.from_array(X, chunks=(1 << 20, X.shape[1])).persist()
                t0 = time.perf_counter()
                dm = DKMeans(n_clusters=k, random_state=0).fit(Xd)
                print(f"  dask-ml {time.perf_counter() - t0:.2f} s mse "
                      f"{mse(X, dm.cluster_centers_):.6g}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
