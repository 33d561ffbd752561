"""Comparing two kmseg outputs array by array."""

from __future__ import annotations

import numpy as np
import zarr


def arrays(path: str, storage_options: dict | None = None) -> dict[str, np.ndarray]:
    """Every array of an output (all levels of the image and the labels) by path."""
    group = zarr.open_group(path, mode="r", storage_options=storage_options)
    out = {}
    for level in group.attrs["ome"]["multiscales"][0]["datasets"]:
        out[level["path"]] = group[level["path"]][...]
    labels = group["labels/clusters"]
    for level in labels.attrs["ome"]["multiscales"][0]["datasets"]:
        out["labels/clusters/" + level["path"]] = labels[level["path"]][...]
    return out


def assert_same_output(a: str, b: str, storage_options: dict | None = None) -> None:
    """Labels and recoloured pixels identical byte for byte; same centres and counts."""
    left, right = arrays(a), arrays(b, storage_options)
    assert sorted(left) == sorted(right)
    for key in left:
        assert left[key].dtype == right[key].dtype, key
        assert left[key].tobytes() == right[key].tobytes(), f"{key} differs"
    meta_a = zarr.open_group(a, mode="r").attrs["kmseg"]
    meta_b = zarr.open_group(b, mode="r", storage_options=storage_options).attrs["kmseg"]
    assert meta_b["status"] == "complete"
    assert meta_a["centres"] == meta_b["centres"]
    assert meta_a["pixels_per_cluster"] == meta_b["pixels_per_cluster"]
