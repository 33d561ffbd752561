"""Memory stays flat: an image larger than the memory the run may use is segmented."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

#: 1 GiB of uint8 pixels.
SIDE = 32768
#: Peak resident memory the whole run may use (interpreter, Dask, NumPy included).
LIMIT_BYTES = 768 * 2**20


def _make_image(path: str) -> None:
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(SIDE, SIDE))
    band = np.arange(SIDE, dtype=np.uint16)
    for start in range(0, SIDE, 2048):
        rows = np.arange(start, start + 2048, dtype=np.uint16)[:, None]
        image[start : start + 2048] = ((rows // 128 + band[None] // 128) % 4 * 60 + 10).astype(
            np.uint8
        )
    image.flush()
    del image


@pytest.mark.slow
def test_peak_memory_below_image_size(tmp_path):
    source = str(tmp_path / "big.npy")
    _make_image(source)
    assert os.path.getsize(source) > LIMIT_BYTES
    out = str(tmp_path / "big.zarr")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    code = (
        "import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print('MAXRSS', hwm.split()[1]); sys.exit(rc)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "segment",
            source,
            "-k",
            "4",
            "-o",
            out,
            "-q",
            "--chunk-mb",
            "16",
            "--n-workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.split("MAXRSS")[-1]) * 1024  # VmHWM is in KiB
    assert peak < LIMIT_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"
    group = zarr.open_group(out, mode="r")
    meta = dict(group.attrs["kmseg"])
    assert meta["status"] == "complete"
    assert sum(meta["pixels_per_cluster"]) == SIDE * SIDE
    # Four grey levels, four clusters: a perfect fit.
    assert meta["mse"] < 1e-12
    assert group["labels/clusters/0"].shape == (SIDE, SIDE)
    corner = group["labels/clusters/0"][:512, :512]
    values = np.load(source, mmap_mode="r")[:512, :512]
    pairs = np.unique(np.stack([corner.ravel(), values.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(values)) == len(np.unique(corner)) == 4
