"""Helpers for reading kmseg outputs back in tests."""

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
