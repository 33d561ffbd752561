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


def _sample_block(block: np.ndarray, spec: FeatureSpec, origin, local: np.ndarray) -> np.ndarray:
    feats, valid = spec.block_features(block, origin)
    flat = np.ravel_multi_index(local, block.shape[: len(origin)]) if len(local[0]) else local[0]
    keep = valid[flat]
    return feats[flat[keep]]


def sample_features(image: da.Array, spec: FeatureSpec, n: int, random_state: int | None):
    """Lazy ``(m, n_features)`` array of the features of ``n`` pixels (m ≤ n: no-data dropped)."""
    spatial_shape = spec.spatial_shape
    chosen = np.unravel_index(
        choose_indices(int(np.prod(spatial_shape)), n, random_state), spatial_shape
    )
    blocks = spatial_block_keys(image, len(spatial_shape))
    sample = dask.delayed(_sample_block, pure=True)
    parts = []
    for block, (_, origin, shape) in zip(blocks, block_origins(image, len(spatial_shape)), strict=True):
        inside = np.ones(len(chosen[0]), dtype=bool)
        for d, (o, s) in enumerate(zip(origin, shape, strict=True)):
            inside &= (chosen[d] >= o) & (chosen[d] < o + s)
        if not inside.any():
            continue
        local = tuple(c[inside] - o for c, o in zip(chosen, origin, strict=True))
        parts.append(
            da.from_delayed(
                sample(block, spec, origin, local),
                shape=(np.nan, spec.n_features),
                dtype=np.float32,
            )
        )
    return da.concatenate(parts, axis=0)
