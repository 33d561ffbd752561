"""Pixels for the report: display windows, class colours, label overlays and PNG data URIs.

Pure array functions on small previews (at most about 1024 px on a side); nothing here reads
files.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

#: Opacity of the class colours laid over the input.
OVERLAY_ALPHA = 0.45


def class_colours(k: int) -> np.ndarray:
    """Distinct display colours of classes 1..k (matplotlib's tab10/tab20, else turbo).

    Returns
    -------
    ndarray, shape (k, 3), uint8
    """
    import matplotlib

    if k <= 10:
        table = matplotlib.colormaps["tab10"].colors[:k]
    elif k <= 20:
        table = matplotlib.colormaps["tab20"].colors[:k]
    else:
        table = matplotlib.colormaps["turbo"](np.linspace(0.05, 0.95, k))[:, :3]
    return np.round(np.asarray(table, dtype=np.float64) * 255).astype(np.uint8)


def hex_colour(rgb: Sequence[float]) -> str:
    """``#rrggbb`` of an RGB triple in 0..255."""
    r, g, b = (int(np.clip(round(float(v)), 0, 255)) for v in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def to_display(
    values: np.ndarray,
    window: Sequence[tuple[float, float]],
    channels: Sequence[int],
) -> np.ndarray:
    """Map image values to 8-bit RGB for display.

    Parameters
    ----------
    values : ndarray, shape (h, w) or (h, w, c)
        Pixel values in input units; NaN (no data) is shown black.
    window : sequence of (low, high)
        Value range mapped to 0..255, one per displayed channel (one for grey).
    channels : sequence of int
        Channels shown: three for colour (R, G, B), one for grey.

    Returns
    -------
    ndarray, shape (h, w, 3), uint8
    """
    if values.ndim == 2:
        values = values[..., None]
    picked = values[..., list(channels)].astype(np.float64)
    low = np.array([w[0] for w in window], dtype=np.float64)
    high = np.array([w[1] for w in window], dtype=np.float64)
    scaled = (picked - low) / np.where(high > low, high - low, 1.0)
    scaled = np.nan_to_num(np.clip(scaled, 0, 1), nan=0.0)
    out = np.round(scaled * 255).astype(np.uint8)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return out


def overlay(base: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Class colours over an RGB image, with each class's outline drawn opaque.

    Parameters
    ----------
    base : ndarray, shape (h, w, 3), uint8
    labels : ndarray, shape (h, w), integer
        0 (no data) leaves the base unchanged; 1..k take ``colours[label - 1]``.
    colours : ndarray, shape (k, 3), uint8

    Returns
    -------
    ndarray, shape (h, w, 3), uint8
    """
    from skimage.segmentation import find_boundaries

    table = np.vstack([np.zeros((1, 3)), colours]).astype(np.float64)
    tint = table[np.asarray(labels, dtype=np.intp)]
    inside = (labels > 0)[..., None]
    out = np.where(inside, (1 - OVERLAY_ALPHA) * base + OVERLAY_ALPHA * tint, base)
    edges = find_boundaries(labels, mode="inner") & (labels > 0)
    out[edges] = tint[edges]
    return np.round(out).astype(np.uint8)


def paint_labels(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Labels as an RGB picture: class colours, no data (0) white."""
    table = np.vstack([np.full((1, 3), 255), colours]).astype(np.uint8)
    return table[np.asarray(labels, dtype=np.intp)]


def resample_nearest(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of the first two axes to ``shape`` (keeps the dtype)."""
    rows = np.minimum((np.arange(shape[0]) + 0.5) * array.shape[0] / shape[0], array.shape[0] - 1)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * array.shape[1] / shape[1], array.shape[1] - 1)
    return array[rows.astype(np.intp)][:, cols.astype(np.intp)]


def physical_shape(
    shape: tuple[int, int], spacing: tuple[float, float], longest: int = 0
) -> tuple[int, int]:
    """Pixel shape that shows a plane with its physical aspect ratio.

    The longer physical side keeps its pixel count (or becomes ``longest`` when given).
    """
    height, width = shape[0] * spacing[0], shape[1] * spacing[1]
    if height <= 0 or width <= 0:
        return shape
    side = longest or max(shape)
    if height >= width:
        return side, max(1, round(side * width / height))
    return max(1, round(side * height / width)), side


def png_data_uri(rgb: np.ndarray) -> str:
    """An RGB(A) uint8 image as a ``data:image/png;base64,...`` URI (optimised PNG)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
