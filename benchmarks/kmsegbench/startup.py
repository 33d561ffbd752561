"""Start-up costs (issue 9): small commands and a small whole job, and numba's first compile.

Every kmseg command runs as ``python -m pipeline ...`` (what the ``kmseg`` script runs) in a
fresh process, timed from start to exit; each is run ``repeats`` times and the median kept.

The first-run time: kmseg's numba kernels are compiled on first use and cached
(``cache=True``: ``*.nbi`` index and ``*.nbc`` code files, by default in ``__pycache__`` next to
each module of ``pipeline/``). A first run after a fresh install is simulated without touching
that cache: the job runs with ``NUMBA_CACHE_DIR`` set to a new empty folder (numba then reads
and writes its cache only there), then again with the same folder (warm).
"""

from __future__ import annotations

import glob
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from .log import log
from .measure import run_process

PHOTO = "astronaut.png"
PHOTO_K = 8


@dataclass
class StartupRow:
    """One start-up measurement: seconds (median of ``runs``), the target, a note."""

    what: str
    seconds: float | None
    runs: int
    target: str = ""
    note: str = ""


def bundled_photo() -> str:
    """Path of scikit-image's bundled astronaut PNG (512x512 RGB uint8)."""
    import skimage.data

    return os.path.join(os.path.dirname(skimage.data.__file__), PHOTO)


def numba_cache_files(root: str) -> int:
    """How many numba cache files (``*.nbi``, ``*.nbc``) there are under ``root``."""
    return sum(len(glob.glob(os.path.join(root, "**", pattern), recursive=True))
               for pattern in ("*.nbi", "*.nbc"))


def _median_process(cmd: list[str], repeats: int, env: dict[str, str] | None = None,
                    before=None) -> tuple[float | None, str]:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        run = run_process(cmd, env=env)
        if run.returncode != 0:
            return None, f"failed (exit {run.returncode}): {run.stderr.strip()[-300:]}"
        times.append(run.seconds)
    spread = f"{min(times):.2f}-{max(times):.2f} s" if len(times) > 1 else ""
    return statistics.median(times), spread


def run_startup(out_dir: str, repeats: int = 3) -> list[StartupRow]:
    """The start-up rows; see the module docstring."""
    import pipeline

    kmseg = [sys.executable, "-m", "pipeline"]
    rows = []
    for flag in ("--version", "--help"):
        log(f"startup: kmseg {flag} x{repeats}")
        seconds, note = _median_process([*kmseg, flag], repeats)
        rows.append(StartupRow(f"`kmseg {flag}` (whole process)", seconds, repeats, "≤ 0.3 s",
                               note))

    photo = bundled_photo()
    output = os.path.join(out_dir, "startup-astronaut.zarr")
    segment = [*kmseg, "segment", photo, "-k", str(PHOTO_K), "-o", output, "-q"]

    def clear_output() -> None:
        shutil.rmtree(output, ignore_errors=True)  # our own output of the previous repeat

    log(f"startup: kmseg segment {PHOTO} -k {PHOTO_K} x{repeats}")
    warm_default, note = _median_process(segment, repeats, before=clear_output)

    from PIL import Image
    from sklearn.cluster import KMeans

    with Image.open(photo) as image:
        X = np.asarray(image.convert("RGB")).reshape(-1, 3) / 255.0
    fits = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        KMeans(n_clusters=PHOTO_K, n_init=10, random_state=0).fit(X)
        fits.append(time.perf_counter() - t0)
    sk = statistics.median(fits)
    rows.append(StartupRow(f"`kmseg segment {PHOTO} -k {PHOTO_K}` (whole process)",
                           warm_default, repeats, f"≤ sklearn fit ({sk:.2f} s)", note))
    rows.append(StartupRow(f"sklearn `KMeans(n_clusters={PHOTO_K}, n_init=10).fit` on the same "
                           f"{len(X)} pixels (in process, fit alone)", sk, repeats, "",
                           f"{min(fits):.2f}-{max(fits):.2f} s" if repeats > 1 else ""))

    package = os.path.dirname(os.path.abspath(pipeline.__file__))
    cache = tempfile.mkdtemp(prefix="kmseg-numba-cache-")
    try:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        log("startup: kmseg segment with an empty numba cache, then warm")
        clear_output()
        cold, cold_note = _median_process(segment, 1, env=env)
        written = numba_cache_files(cache)
        clear_output()
        warm, warm_note = _median_process(segment, 1, env=env)
        clear_output()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    ratio = f"{cold / warm:.1f}x the warm time" if cold and warm else ""
    rows.append(StartupRow("same job, first run (empty numba cache)", cold, 1, "near warm",
                           "; ".join(filter(None, [cold_note, ratio,
                                               f"{written} numba cache files written"]))))
    rows.append(StartupRow("same job, second run (warm numba cache)", warm, 1, "", warm_note))
    rows.append(StartupRow(
        "numba cache of this install", None, 0, "",
        f"{numba_cache_files(package)} *.nbi/*.nbc files under {package} (__pycache__); "
        f"NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR', 'unset')}"))
    return rows
