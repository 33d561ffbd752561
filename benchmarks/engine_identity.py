#!/usr/bin/env python
"""Bit-identity of the exact and binned engines' results between two checkouts of kmseg.

For kernel rewrites that must not change any result: runs the same fits in this checkout and in
``OTHER`` (each in its own process, ``PYTHONPATH`` set to the checkout) and compares every array
byte for byte: centres, per-cluster statistics, objective, exact values, labels of the fitted
image, of another image (values not in the table: nearest centre) and of pickled labellers,
Lloyd runs and restarts on tables of 1 to 5 features, and the binned levels.

Inputs: 256x256 RGB photos (``--photos DIR`` of PNGs, else tiles cut from scikit-image's
bundled photos), k = 3, 4, 8; alpha and value ranges as no-data; CIELAB; 16-bit RGB and grey
(one channel: dynamic programming), int16 RGB; the binned engine on uint8, uint16 and float32.

``python benchmarks/engine_identity.py /work/main [--photos /tmp/benchdata/many-256-1000]``
(exit 1 when any array differs).
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def _photos(folder: str | None, count: int) -> list[np.ndarray]:
    if folder:
        from PIL import Image

        paths = sorted(Path(folder).glob("*.png"))
        step = max(1, len(paths) // count)
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths[::step][:count]]
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        img = getattr(data, name)()[..., :3]
        for y in range(0, img.shape[0] - 255, 128):
            for x in range(0, img.shape[1] - 255, 128):
                out.append(np.ascontiguousarray(img[y : y + 256, x : x + 256]))
    return out[:count]


def dump(out_path: str, folder: str | None, count: int) -> None:
    """Run every case with the ``pipeline`` on ``sys.path`` and save the arrays."""
    import dask
    import dask.array as da

    from pipeline.engines import tablefit
    from pipeline.engines.base import FitParams
    from pipeline.engines.binned import BinnedEngine
    from pipeline.engines.exact import ExactEngine, require_codec, table_features
    from pipeline.engines.lloyd import assign, kmeans_plusplus, weighted_lloyd
    from pipeline.features import make_feature_spec

    out: dict[str, np.ndarray] = {}

    def run(engine, name, px, k, other=None, chunks=None, **kw):
        nch = px.shape[-1] if px.ndim == 3 else 1
        spec = make_feature_spec(px.dtype, nch, px.shape[:2], **kw)
        img = da.from_array(px, chunks=chunks or px.shape)
        params = FitParams(k=k)
        summary = dask.compute(engine.summarise(img, spec, params), scheduler="sync")[0]
        res = engine.fit(summary, img, spec, params)
        out[name + "/centres"] = res.centres
        out[name + "/labels"] = res.labeller(px, (0, 0))
        if res.stats is not None:
            out[name + "/stats"] = res.stats
        if res.values is not None:
            out[name + "/values"] = res.values
        if "objective" in res.info:
            out[name + "/objective"] = np.array([res.info["objective"]])
        if other is not None:
            out[name + "/other"] = res.labeller(other, (0, 0))
        copy = pickle.loads(pickle.dumps(res.labeller))
        out[name + "/pickled"] = copy(px, (0, 0))

    exact, binned = ExactEngine(), BinnedEngine()
    imgs = _photos(folder, count)
    rng = np.random.default_rng(1)
    for i, px in enumerate(imgs):
        nxt = imgs[(i + 1) % len(imgs)]
        for k in (3, 4, 8):
            run(exact, f"photo{i}/k{k}", px, k, other=nxt if k == 4 else None)
        if i < 5:
            alpha = np.where(rng.random(px.shape[:2]) < 0.1, 0, 255).astype(np.uint8)
            run(exact, f"rgba{i}", np.dstack([px, alpha]), 4,
                other=np.dstack([nxt, alpha]), has_alpha=True)
            run(exact, f"nodata{i}", px, 4, other=nxt, no_data=((0, 20),))
            run(exact, f"lab{i}", px, 4, other=nxt, colour_space="lab")
            deep = (px.astype(np.uint16) * 257 + rng.integers(0, 64, px.shape)).astype(np.uint16)
            deep2 = (nxt.astype(np.uint16) * 257 + rng.integers(0, 64, px.shape)).astype(np.uint16)
            for k in (3, 8):
                run(exact, f"rgb16_{i}/k{k}", deep, k, other=deep2)
            run(exact, f"grey16_{i}", deep[..., 0], 4, other=deep2[..., 0])
            run(exact, f"int16_{i}", (px.astype(np.int16) * 200 - 20000).astype(np.int16), 5)
            flt = (px / 255 + rng.normal(0, 0.01, px.shape)).astype(np.float32)
            for kind, image, kw in (("u8", px, {}), ("u16", deep, {}),
                                    ("f32", flt, {"data_range": (float(flt.min()),
                                                                 float(flt.max()))})):
                run(binned, f"binned_{kind}{i}", image, 6, chunks=(128, 128, 3), **kw)
        if i < 20:
            spec = make_feature_spec(px.dtype, 3, px.shape[:2])
            summary = dask.compute(exact.summarise(da.from_array(px), spec, FitParams(k=4)),
                                   scheduler="sync")[0]
            codec = require_codec(spec)
            F = table_features(summary, codec)
            w = summary.counts.astype(float)
            for j, lv in enumerate(tablefit.binned_levels(F, w, summary.keys, codec, 4)):
                out[f"levels{i}/{j}"] = np.concatenate([lv.keys.astype(float), lv.weights,
                                                        lv.sums.ravel()])
    for d in (1, 2, 3, 4, 5):
        for n, k in ((200_000, 4), (50_000, 4), (30_000, 16), (3_000, 6)):
            X = rng.normal(size=(n, d)) + rng.integers(0, 3, size=(n, 1))
            w = rng.integers(1, 50, n).astype(float)
            r = weighted_lloyd(X, w, kmeans_plusplus(X, w, k, 3))
            out[f"lloyd{d}/{n}/{k}"] = np.concatenate([r.centres.ravel(), [r.cost, r.n_iter]])
            a = assign(X, w, r.centres)
            out[f"assign{d}/{n}/{k}"] = np.concatenate([a[1], a[2].ravel(), a[3], [a[4]]])
            res = tablefit.restarts(X[:2000], w[:2000], k, 20, 0, enough=5)
            out[f"restarts{d}/{n}/{k}"] = np.array([[r.cost, r.n_iter] for r in res])
    np.savez(out_path, **out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="the other checkout (its root, holding pipeline/)")
    parser.add_argument("--photos", help="folder of RGB PNG photos (default: scikit-image's)")
    parser.add_argument("--count", type=int, default=100, help="photos to fit (default 100)")
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        dump(args.dump, args.photos, args.count)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for root in (HERE, Path(args.other).resolve()):
            path = os.path.join(tmp, f"{len(files)}.npz")
            env = {**os.environ, "PYTHONPATH": str(root)}
            cmd = [sys.executable, __file__, str(root), "--dump", path, "--count",
                   str(args.count)] + (["--photos", args.photos] if args.photos else [])
            subprocess.run(cmd, env=env, check=True)
            files.append(np.load(path))
        mine, theirs = files
        if set(mine.files) != set(theirs.files):
            print("different cases:", sorted(set(mine.files) ^ set(theirs.files))[:10])
            return 1
        differ = [f for f in mine.files if mine[f].dtype != theirs[f].dtype
                  or mine[f].shape != theirs[f].shape or mine[f].tobytes() != theirs[f].tobytes()]
        print(f"{len(mine.files)} arrays compared, {len(differ)} differ"
              + (f": {differ[:20]}" if differ else ""))
        return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
