"""Per-class measurements: pixel counts, physical sizes and input-value statistics.

Two kinds of pure functions:

* :func:`block_value_stats` reduces one block of the input and its labels to a small table of
  per-label count, sum, minimum and maximum of each feature channel; :func:`class_value_stats`
  maps it over every block of a lazy image and merges the tables (sums add, minima and maxima
  take the extreme), so the statistics are computed in the same graph as the labels and share
  their reading and labelling tasks.
* :func:`class_measurements` turns the merged table, the centres and the input's spacing into
  the ``kmseg.classes`` records: pixels, fraction of the pixels with data, area or volume in the
  input's physical unit (and in mm² or mL), and the mean, min and max of the input values.

Sizes need a physical pixel size: an input without a spacing unit (a photo) gets pixels only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numba
import numpy as np

from pipeline.blocks import spatial_block_keys, tree_merge

#: Size in metres of each OME-NGFF length unit kmseg can measure in.
UNIT_METRES: dict[str, float] = {
    "angstrom": 1e-10,
    "picometer": 1e-12,
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "decimeter": 1e-1,
    "meter": 1.0,
    "kilometer": 1e3,
    "inch": 0.0254,
    "foot": 0.3048,
    "yard": 0.9144,
    "mile": 1609.344,
}

#: Short symbols of those units, for ``size_unit`` (``"µm²"``, ``"mm³"``).
UNIT_SYMBOLS: dict[str, str] = {
    "angstrom": "Å",
    "picometer": "pm",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "decimeter": "dm",
    "meter": "m",
    "kilometer": "km",
    "inch": "in",
    "foot": "ft",
    "yard": "yd",
    "mile": "mi",
}

_POWERS = {2: "²", 3: "³"}


#: Significant digits kept in physical sizes: ``n * spacing**d`` carries float noise in the last
#: digits (14111.999999999998 mm³ for 14112); 12 digits keep far more than any spacing holds.
SIZE_DIGITS = 12


def round_size(value: float | None) -> float | None:
    """``value`` rounded to :data:`SIZE_DIGITS` significant digits (None stays None)."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(value, SIZE_DIGITS - 1 - math.floor(math.log10(abs(value))))


def stats_columns(n_channels: int) -> int:
    """Columns of a value-statistics table: count, then sum, min and max of each channel."""
    return 1 + 3 * n_channels


@numba.njit(nogil=True, cache=True)
def _accumulate(labels, values, channels, out):  # pragma: no cover - compiled
    # out[l] = [count, sum_0..sum_C-1, min_0..min_C-1, max_0..max_C-1]; NaN never wins a min
    # or max (the comparisons are false) and only reaches sums of label 0 (no data).
    n_ch = channels.shape[0]
    for i in range(labels.shape[0]):
        lab = labels[i]
        row = out[lab]
        row[0] += 1.0
        for j in range(n_ch):
            v = np.float64(values[i, channels[j]])
            row[1 + j] += v
            if v < row[1 + n_ch + j]:
                row[1 + n_ch + j] = v
            if v > row[1 + 2 * n_ch + j]:
                row[1 + 2 * n_ch + j] = v


def empty_value_stats(k: int, n_channels: int) -> np.ndarray:
    """The identity of the merge: zero counts and sums, +inf minima, -inf maxima."""
    out = np.zeros((k + 1, stats_columns(n_channels)), dtype=np.float64)
    out[:, 1 + n_channels : 1 + 2 * n_channels] = np.inf
    out[:, 1 + 2 * n_channels :] = -np.inf
    return out


def block_value_stats(
    block: np.ndarray, labels: np.ndarray, channels: Sequence[int], k: int
) -> np.ndarray:
    """Per-label count, sum, min and max of the input values of one block.

    Parameters
    ----------
    block : ndarray
        Input pixels, spatial axes first and an optional trailing channel axis; any real dtype.
    labels : ndarray of uint8 or uint16
        Labels of the block's pixels (spatial shape of ``block``), 0..k.
    channels : sequence of int
        Input channels to measure (the feature channels; alpha excluded). Empty for an image
        without a channel axis.
    k : int
        Number of classes.

    Returns
    -------
    ndarray, shape (k + 1, 1 + 3 * n_channels), float64
        Row ``l`` holds label ``l``'s pixel count, then the sum, minimum and maximum of each
        channel (``+inf``/``-inf`` minima and maxima for labels without pixels). Row 0 is the
        pixels without data.
    """
    channels = tuple(int(c) for c in channels)
    spatial = labels.shape
    flat_labels = np.ascontiguousarray(labels).reshape(-1)
    if block.ndim == len(spatial):
        values = np.ascontiguousarray(block).reshape(-1, 1)
        index = np.zeros(1, dtype=np.intp)
    else:
        values = np.ascontiguousarray(block).reshape(-1, block.shape[-1])
        index = np.asarray(channels or (0,), dtype=np.intp)
    out = empty_value_stats(k, len(index))
    if flat_labels.size:
        _accumulate(flat_labels, _compiled_dtype(values), index, out)
    return out


def _compiled_dtype(values: np.ndarray) -> np.ndarray:
    """``values`` in a dtype the compiled kernel takes (native-endian, no bool or float16)."""
    if values.dtype.kind == "b":
        return values.view(np.uint8)
    if values.dtype == np.float16:
        return values.astype(np.float32)
    if not values.dtype.isnative:
        return values.astype(values.dtype.newbyteorder("="))
    return values


def class_value_stats(
    image: da.Array, labels: da.Array, channels: Sequence[int], k: int
) -> da.Array:
    """Lazy per-label value statistics of a whole image (see :func:`block_value_stats`).

    One small task per block reads the same image and label blocks as the writers, so when
    computed together with them nothing is read or labelled twice. The per-block tables are
    merged by tree reductions (sum, min and max over the block axis).

    Parameters
    ----------
    image : dask.array.Array
        The input, spatial axes first and an optional trailing (unsplit) channel axis.
    labels : dask.array.Array
        Its labels, same spatial chunks.
    channels, k
        As in :func:`block_value_stats`.

    Returns
    -------
    dask.array.Array, shape (k + 1, 1 + 3 * n_channels), float64
    """
    spatial_ndim = labels.ndim
    n_channels = max(1, len(channels)) if image.ndim > spatial_ndim else 1
    task = dask.delayed(block_value_stats, pure=True)
    channels = tuple(int(c) for c in channels)
    parts = [
        task(b, lb, channels, k)
        for b, lb in zip(
            spatial_block_keys(image, spatial_ndim),
            spatial_block_keys(labels, spatial_ndim),
            strict=True,
        )
    ]
    merged = tree_merge(parts, lambda *tables: merge_value_stats(tables, n_channels))
    return da.from_delayed(merged, shape=(k + 1, stats_columns(n_channels)), dtype=np.float64)


def merge_value_stats(tables: Sequence[np.ndarray], n_channels: int) -> np.ndarray:
    """Merge value-statistics tables of disjoint pixels (counts and sums add, min, max)."""
    out = np.array(tables[0], dtype=np.float64)
    for t in tables[1:]:
        out[:, : 1 + n_channels] += t[:, : 1 + n_channels]
        np.minimum(out[:, 1 + n_channels : 1 + 2 * n_channels],
                   t[:, 1 + n_channels : 1 + 2 * n_channels],
                   out=out[:, 1 + n_channels : 1 + 2 * n_channels])
        np.maximum(out[:, 1 + 2 * n_channels :], t[:, 1 + 2 * n_channels :],
                   out=out[:, 1 + 2 * n_channels :])
    return out


def voxel_size(
    spacing: Sequence[float], unit: str | None
) -> tuple[float | None, str | None, float | None]:
    """Physical size of one pixel (2-D: area) or voxel (3-D: volume).

    Parameters
    ----------
    spacing : sequence of float
        Pixel spacing along each spatial axis (``yx`` or ``zyx``), in ``unit``.
    unit : str or None
        OME-NGFF length unit of ``spacing`` (``"micrometer"``, ``"millimeter"``, ...).

    Returns
    -------
    size : float or None
        Product of the spacings, in ``unit`` squared or cubed; None without a known unit.
    size_unit : str or None
        ``"µm²"``, ``"mm³"``, ...
    size_m : float or None
        The same size in m² or m³ (to convert to mm² or mL).
    """
    if unit not in UNIT_METRES or not spacing:
        return None, None, None
    spacing = [float(s) for s in spacing]
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        return None, None, None
    ndim = len(spacing)
    size = float(np.prod(spacing))
    power = _POWERS.get(ndim, f"^{ndim}")
    return size, UNIT_SYMBOLS[unit] + power, size * UNIT_METRES[unit] ** ndim


def channel_labels(channels: Sequence[int], channel_names: Sequence[str]) -> list[str]:
    """Names of the measured channels: the input's channel names, ``c0``.., or ``value``."""
    if not channels:
        return ["value"]
    return [
        str(channel_names[c]) if c < len(channel_names) and channel_names[c] else f"c{c}"
        for c in channels
    ]


def class_measurements(
    value_stats: np.ndarray,
    centres: np.ndarray,
    spacing: Sequence[float],
    unit: str | None,
    channel_names: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Records of ``kmseg.classes``: one dict per class 1..k.

    Parameters
    ----------
    value_stats : ndarray, shape (k + 1, 1 + 3 * n_channels)
        Merged table of :func:`class_value_stats` (row 0 = no data, not reported).
    centres : ndarray, shape (k, n_channels)
        Cluster centres in input units.
    spacing, unit
        The input's pixel spacing and its OME-NGFF unit (see :func:`voxel_size`).
    channel_names : sequence of str
        Names of the measured channels (:func:`channel_labels`), keys of the value dicts.

    Returns
    -------
    list of dict
        ``label`` (1..k), ``pixels``, ``fraction`` (of the pixels with data), ``size`` and
        ``size_unit`` (None without a physical pixel size), ``area_mm2`` (2-D) or
        ``volume_ml`` (3-D) when the unit is known, and ``centre``, ``mean``, ``min``,
        ``max`` as ``{channel: value}`` in input units (None for an empty class).
    """
    table = np.asarray(value_stats, dtype=np.float64)
    n_channels = (table.shape[1] - 1) // 3
    names = list(channel_names) or [f"c{i}" for i in range(n_channels)]
    if len(names) != n_channels:
        raise ValueError(f"{len(names)} channel names for {n_channels} channels")
    counts = table[1:, 0]
    with_data = float(counts.sum())
    size, size_unit, size_m = voxel_size(spacing, unit)
    ndim = len(spacing)
    records = []
    for i, row in enumerate(table[1:]):
        n = int(row[0])
        sums = row[1 : 1 + n_channels]
        lows = row[1 + n_channels : 1 + 2 * n_channels]
        highs = row[1 + 2 * n_channels :]

        def per_channel(values: np.ndarray, n: int = n) -> dict[str, float | None]:
            return {
                name: (float(v) if n and np.isfinite(v) else None)
                for name, v in zip(names, values, strict=True)
            }

        record: dict[str, Any] = {
            "label": i + 1,
            "pixels": n,
            "fraction": n / with_data if with_data else None,
            "size": round_size(n * size) if size is not None else None,
            "size_unit": size_unit,
        }
        if size_m is not None and ndim == 2:
            record["area_mm2"] = round_size(n * size_m * 1e6)
        elif size_m is not None and ndim == 3:
            record["volume_ml"] = round_size(n * size_m * 1e6)  # 1 mL = 1 cm³ = 1e-6 m³
        record["centre"] = per_channel(np.asarray(centres[i], dtype=np.float64), n=1)
        record["mean"] = per_channel(sums / n if n else sums)
        record["min"] = per_channel(lows)
        record["max"] = per_channel(highs)
        records.append(record)
    return records
