"""Downsampled levels of an image and its labels (pure, lazy array arithmetic)."""

from __future__ import annotations

import dask.array as da
import numpy as np

#: Stop adding levels once the smaller of y and x would fall below this many pixels.
MIN_LEVEL_SIZE = 64


def n_levels(spatial_shape: tuple[int, ...], requested: int | None, max_levels: int = 5) -> int:
    """Number of pyramid levels (including full resolution) for an image."""
    if requested is not None:
        return max(1, int(requested))
    size = min(spatial_shape[-2:])
    levels = 1
    while levels < max_levels and size // 2 >= MIN_LEVEL_SIZE:
        size //= 2
        levels += 1
    return levels


def downsample_image(image: da.Array, spatial_ndim: int) -> da.Array:
    """Halve y and x by 2x2 mean (odd edges trimmed), keeping the dtype; NaN is ignored."""
    factors = {a: 1 for a in range(image.ndim)}
    factors[spatial_ndim - 2] = factors[spatial_ndim - 1] = 2
    if image.dtype.kind == "f":
        return da.coarsen(np.nanmean, image, factors, trim_excess=True).astype(image.dtype)
    out = da.coarsen(np.mean, image.astype(np.float64), factors, trim_excess=True)
    info = np.iinfo(image.dtype)
    return da.clip(da.rint(out), info.min, info.max).astype(image.dtype)


def downsample_labels(labels: da.Array) -> da.Array:
    """Halve y and x of a label image by taking every second pixel (labels never blend)."""
    index = (slice(None),) * (labels.ndim - 2) + (slice(None, None, 2), slice(None, None, 2))
    y, x = labels.shape[-2:]
    return labels[..., : (y // 2) * 2, : (x // 2) * 2][index]
