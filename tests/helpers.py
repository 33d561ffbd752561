"""Helpers shared by tests: reading kmseg outputs back, listening to numba compilations."""

from __future__ import annotations

import numpy as np
import zarr


def read_output(path: str, name: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return (labels level 0, recoloured level 0 with channels last, kmseg metadata)."""
    group = zarr.open_group(path, mode="r")
    if name:
        group = group[name]
    labels = group["labels/clusters/0"][...]
    image = group["0"][...]
    if image.ndim > labels.ndim:
        image = np.moveaxis(image, 0, -1)
    return labels, image, dict(group.attrs["kmseg"])


def mse_of(features: np.ndarray, centres: np.ndarray) -> float:
    """Mean squared distance of each row to its nearest centre."""
    d = ((features[:, None, :] - centres[None]) ** 2).sum(-1)
    return float(d.min(1).mean())


#: Python source for a child process: records in ``compiled`` every function numba compiles
#: from then on (kmseg's kernels and the library functions compiled inside them), through
#: numba's Event API. Append the code that runs kmseg and prints ``compiled``.
NUMBA_COMPILE_LISTENER = """
import json, sys
from numba.core import event
compiled = []
class Listener(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        compiled.append(f"{f.__module__}.{f.__qualname__}")
    def on_end(self, ev):
        pass
event.register("numba:compile", Listener())
"""
