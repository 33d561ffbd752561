"""Reproducible pixel samples drawn across chunks.

Pixels are chosen by their global raster index with one seeded generator, so the sample does not
depend on the chunking; each block task then extracts its own chosen pixels.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from pipeline.blocks import block_origins, spatial_block_keys
from pipeline.features import FeatureSpec


def choose_indices(n_total: int, n: int, random_state: int | None) -> np.ndarray:
    """Sorted distinct raster indices of ``min(n, n_total)`` pixels."""
    rng = np.random.default_rng(random_state)
    n = min(int(n), int(n_total))
    return np.sort(rng.choice(n_total, size=n, replace=False))


def _sample_block(
    block: np.ndarray, spec: FeatureSpec, origin, local: tuple, global_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    feats, valid = spec.block_features(block, origin)
    flat = np.ravel_multi_index(local, block.shape[: len(origin)])
    keep = valid[flat]
    return global_index[keep], feats[flat[keep]]


def _assemble(parts: list[tuple[np.ndarray, np.ndarray]], n_features: int) -> np.ndarray:
    """Rows in global raster order, so the sample is the same for any chunking."""
    if not parts:
        return np.empty((0, n_features), np.float64)
    index = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts])
    return rows[np.argsort(index, kind="stable")]


def sample_features(image: da.Array, spec: FeatureSpec, n: int, random_state: int | None):
    """Lazy ``(m, n_features)`` array of the features of ``n`` pixels (m ≤ n: no-data dropped)."""
    spatial_shape = spec.spatial_shape
    indices = choose_indices(int(np.prod(spatial_shape)), n, random_state)
    chosen = np.unravel_index(indices, spatial_shape)
    blocks = spatial_block_keys(image, len(spatial_shape))
    sample = dask.delayed(_sample_block, pure=True)
    parts = []
    for block, (_, origin, shape) in zip(
        blocks, block_origins(image, len(spatial_shape)), strict=True
    ):
        inside = np.ones(len(chosen[0]), dtype=bool)
        for d, (o, s) in enumerate(zip(origin, shape, strict=True)):
            inside &= (chosen[d] >= o) & (chosen[d] < o + s)
        if not inside.any():
            continue
        local = tuple(c[inside] - o for c, o in zip(chosen, origin, strict=True))
        parts.append(sample(block, spec, origin, local, indices[inside]))
    rows = dask.delayed(_assemble, pure=True)(parts, spec.n_features)
    return da.from_delayed(rows, shape=(np.nan, spec.n_features), dtype=spec.feature_dtype)
