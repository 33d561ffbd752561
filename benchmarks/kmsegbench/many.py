"""The many-images benchmark (issue 8): one ``kmseg segment FOLDER`` batch against the
seed-method loop, on the same folder of PNG photos, in the same run.

* kmseg: ``python -m pipeline segment FOLDER -k K -o OUT.zarr -q`` (the ``kmseg`` command),
  one process; timed from start to exit; peak memory = the largest sum of the resident memory
  of the process and all its children, sampled every 50 ms.
* the seed-method loop: a fresh Python process (``bench.py --seed-loop FOLDER``) that, for each
  PNG in name order, reads it with Pillow (``Image.open(path).convert("RGB")``), scales it to
  float64 ``/ 255``, fits ``sklearn.cluster.KMeans(n_clusters=K, n_init='auto',
  random_state=0)``, predicts every pixel and builds the recoloured image in memory
  (``centres[labels]``), writing nothing. The process is timed and sampled like kmseg's; the
  loop alone (after the imports) is timed inside it too.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .log import log
from .measure import ProcessRun, run_process
from .methods import BENCH_SCRIPT


@dataclass
class ManyResult:
    """Both sides of the many-images benchmark.

    ``kmseg_mse`` and ``loop_mse`` are the means over the images of each image's mse
    (features ``/ 255``), ``None`` when not readable.
    """

    folder: str
    count: int
    megapixels: float
    k: int
    kmseg: ProcessRun
    loop: ProcessRun
    loop_s: float | None
    kmseg_mse: float | None
    loop_mse: float | None
    outputs: int


def seed_loop_main(folder: str, k: int) -> int:
    """The seed-method loop over every PNG of ``folder``; prints one JSON line
    ``{"loop_s", "images", "mean_mse"}``."""
    from PIL import Image
    from sklearn.cluster import KMeans

    paths = sorted(glob.glob(os.path.join(folder, "*.png")))
    mse_sum = 0.0
    t0 = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        X = pixels.reshape(-1, 3) / 255.0
        model = KMeans(n_clusters=k, n_init="auto", random_state=0).fit(X)
        labels = model.predict(X)
        recoloured = model.cluster_centers_[labels].reshape(pixels.shape)
        del recoloured
        mse_sum += float(model.inertia_) / len(X)
    loop_s = time.perf_counter() - t0
    print(json.dumps({"loop_s": loop_s, "images": len(paths),
                      "mean_mse": mse_sum / max(1, len(paths))}))
    return 0


def _kmseg_mean_mse(output: str) -> tuple[float | None, int]:
    """Mean of the per-image mse kmseg recorded in its output groups, and how many groups
    have one (``None``, 0 when the layout is not readable)."""
    import zarr

    values = []
    try:
        root = zarr.open_group(output, mode="r")
        for _, group in root.groups():
            meta = group.attrs.get("kmseg", {})
            if isinstance(meta, dict) and meta.get("mse") is not None:
                values.append(float(meta["mse"]))
    except Exception:  # the batch layout is being rewritten; the mse is a bonus
        return None, 0
    return (float(np.mean(values)) if values else None), len(values)


def run_many(folder: str, out_dir: str, k: int = 4, timeout: float | None = None,
             keep_output: bool = False) -> ManyResult:
    """Run kmseg's batch, then the seed-method loop, on ``folder``; see the module docstring.

    Raises
    ------
    RuntimeError
        When the seed-method loop fails (a kmseg failure is reported in the result).
    """
    count = len(glob.glob(os.path.join(folder, "*.png")))
    megapixels = 0.0
    first = sorted(glob.glob(os.path.join(folder, "*.png")))[:1]
    if first:
        from PIL import Image

        with Image.open(first[0]) as image:
            megapixels = count * image.width * image.height / 1e6
    output = os.path.join(out_dir, f"many-{count}-k{k}.zarr")
    if os.path.exists(output):  # our own output of an earlier run (out_dir is the script's)
        shutil.rmtree(output)
    log(f"many images: kmseg segment {folder} ({count} PNG) -k {k}")
    kmseg = run_process([sys.executable, "-m", "pipeline", "segment", folder, "-k", str(k),
                         "-o", output, "-q"], sample_memory=True, timeout=timeout)
    log(f"many images: kmseg {kmseg.seconds:.1f} s, exit {kmseg.returncode}")
    kmseg_mse, outputs = _kmseg_mean_mse(output) if kmseg.returncode == 0 else (None, 0)
    if not keep_output:
        shutil.rmtree(output, ignore_errors=True)
    log(f"many images: seed-method loop over {count} PNG")
    loop = run_process([sys.executable, str(BENCH_SCRIPT), "--seed-loop", folder, "--many-k",
                        str(k)], sample_memory=True, timeout=timeout)
    if loop.returncode != 0:
        raise RuntimeError(f"seed-method loop failed ({loop.returncode}):\n{loop.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(loop.stdout.strip().splitlines()[-1])
    log(f"many images: loop {loop.seconds:.1f} s (loop alone {report['loop_s']:.1f} s)")
    return ManyResult(folder, count, megapixels, k, kmseg, loop, report["loop_s"], kmseg_mse,
                      report["mean_mse"], outputs)
