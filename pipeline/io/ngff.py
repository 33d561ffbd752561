"""OME-NGFF 0.5 (Zarr v3) output: a recoloured multiscale image with a label image.

Layout of one output group::

    OUT/                 multiscale image (c, [z,] y, x): the recoloured pixels, levels 0..n-1
    OUT/labels/          {"ome": {"labels": ["clusters"]}}
    OUT/labels/clusters  multiscale label image ([z,] y, x), 0 = no data, 1..k = clusters

Arrays are created on the client (metadata only); pixels are written by Dask tasks whose chunks
equal the Zarr chunks, so no two tasks ever write one chunk. ``write_*`` functions return lazy
Dask objects and never compute (``compute=False`` in ome-zarr's terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr

from pipeline.io.pyramid import downsample_image, downsample_labels

NGFF_VERSION = "0.5"
LABEL_NAME = "clusters"


@dataclass(frozen=True)
class SpatialMeta:
    """Axis names, physical spacing and unit of the spatial axes."""

    axes: str  # "yx" or "zyx"
    spacing: tuple[float, ...]
    unit: str | None = None


def _axes(spatial: SpatialMeta, with_channel: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "c", "type": "channel"}] if with_channel else []
    for name in spatial.axes:
        axis: dict[str, Any] = {"name": name, "type": "space"}
        if spatial.unit:
            axis["unit"] = spatial.unit
        out.append(axis)
    return out


def _multiscale(name: str, spatial: SpatialMeta, n_levels: int, with_channel: bool) -> dict:
    datasets = []
    for level in range(n_levels):
        factor = [1.0] * (len(spatial.axes) - 2) + [2.0**level] * 2
        scale = [float(s) * f for s, f in zip(spatial.spacing, factor, strict=True)]
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": ([1.0] if with_channel else []) + scale}
                ],
            }
        )
    return {"name": name, "axes": _axes(spatial, with_channel), "datasets": datasets}


#: Zstandard level of the output chunks. Level 1 compresses recoloured and label images about
#: as well as the default (3) at a fraction of the time; decoding speed is the same.
ZSTD_LEVEL = 1


def output_compressors() -> tuple[Any, ...]:
    """Compressors of every output array (lossless Zstandard)."""
    from zarr.codecs import ZstdCodec

    return (ZstdCodec(level=ZSTD_LEVEL),)


class _SkipEmptyChunks:
    """Writes chunks to a Zarr array (fill value 0), leaving chunks of only zeros unwritten.

    Zarr does the same by itself, but its emptiness test (``array_equal`` against the fill
    value) takes as long as compressing the chunk; ``ndarray.any`` stops at the first non-zero.
    The array must be created with ``write_empty_chunks`` on so Zarr skips its own test.
    """

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        value = np.asarray(value)
        if value.any():  # NaN counts as non-zero: only all-zero chunks are skipped
            self.array[key] = value


#: Array settings of every output array (see :class:`_SkipEmptyChunks`).
_ARRAY_CONFIG = {"write_empty_chunks": True}


def _store(source: da.Array, target: zarr.Array) -> Any:
    source = source.rechunk(target.chunks)
    return da.store(
        source, _SkipEmptyChunks(target), lock=False, compute=False, return_stored=False
    )


#: Downsampled levels keep chunks of at least this many pixels per axis.
MIN_LEVEL_CHUNK = 128


def level_chunks(
    full_chunks: tuple[int, ...], shape: tuple[int, ...], level: int, spatial_ndim: int
) -> tuple[int, ...]:
    """Spatial Zarr chunk shape of pyramid ``level`` (y and x halved per level).

    Halving the chunks with the pixels keeps each chunk of a level computed from one chunk of
    full resolution, so memory does not grow with the number of levels.
    """
    out = []
    for axis, (chunk, size) in enumerate(zip(full_chunks, shape, strict=True)):
        if axis >= spatial_ndim - 2:
            chunk = max(chunk >> level, min(chunk, MIN_LEVEL_CHUNK))
        out.append(max(1, min(chunk, size)))
    return tuple(out)


def write_image_pyramid(
    group: zarr.Group,
    image: da.Array,
    spatial: SpatialMeta,
    n_levels: int,
    *,
    name: str,
    channel_first: bool = False,
) -> list[Any]:
    """Create the multiscale image arrays in ``group`` and return lazy store tasks.

    ``image`` has spatial axes first and an optional trailing channel axis; it is stored with
    the channel axis first as NGFF requires. With ``channel_first``, ``image`` already has its
    channel axis first (no transposing copy).
    """
    spatial_ndim = len(spatial.axes)
    with_channel = image.ndim > spatial_ndim
    first = channel_first and with_channel
    space = slice(1, None) if first else slice(0, spatial_ndim)
    n_channels = (image.shape[0] if first else image.shape[-1]) if with_channel else 0
    tasks = []
    level_image = image
    for level in range(n_levels):
        if level:
            level_image = downsample_image(level_image, spatial_ndim, channel_first=first)
        stored = level_image if first or not with_channel else da.moveaxis(level_image, -1, 0)
        chunks = level_chunks(
            tuple(c[0] for c in image.chunks[space]),
            level_image.shape[space],
            level,
            spatial_ndim,
        )
        chunks = ((n_channels,) if with_channel else ()) + chunks
        target = group.create_array(
            str(level),
            shape=stored.shape,
            dtype=stored.dtype,
            chunks=chunks,
            fill_value=0,
            compressors=output_compressors(),
            config=_ARRAY_CONFIG,
            dimension_names=[a["name"] for a in _axes(spatial, with_channel)],
        )
        tasks.append(_store(stored, target))
    group.attrs["ome"] = {
        "version": NGFF_VERSION,
        "multiscales": [_multiscale(name, spatial, n_levels, with_channel)],
    }
    return tasks


def write_label_pyramid(
    image_group: zarr.Group,
    labels: da.Array,
    spatial: SpatialMeta,
    n_levels: int,
    colours: list[dict[str, Any]],
    properties: list[dict[str, Any]] | None = None,
) -> list[Any]:
    """Create ``labels/clusters`` in ``image_group`` and return lazy store tasks."""
    labels_group = image_group.require_group("labels")
    labels_group.attrs["ome"] = {"version": NGFF_VERSION, "labels": [LABEL_NAME]}
    group = labels_group.require_group(LABEL_NAME)
    tasks = []
    level_labels = labels
    full_chunks = tuple(c[0] for c in labels.chunks)
    for level in range(n_levels):
        if level:
            level_labels = downsample_labels(level_labels)
        target = group.create_array(
            str(level),
            shape=level_labels.shape,
            dtype=level_labels.dtype,
            chunks=level_chunks(full_chunks, level_labels.shape, level, labels.ndim),
            fill_value=0,
            compressors=output_compressors(),
            config=_ARRAY_CONFIG,
            dimension_names=list(spatial.axes),
        )
        tasks.append(_store(level_labels, target))
    image_label: dict[str, Any] = {"colors": colours, "source": {"image": "../../"}}
    if properties:
        image_label["properties"] = properties
    group.attrs["ome"] = {
        "version": NGFF_VERSION,
        "image-label": image_label,
        "multiscales": [_multiscale(LABEL_NAME, spatial, n_levels, with_channel=False)],
    }
    return tasks


def label_colours(display_rgb: np.ndarray) -> list[dict[str, Any]]:
    """``image-label`` colours: label 0 transparent, labels 1..k visibly distinct.

    ``display_rgb`` holds the centres' colours in [0, 1], ``(k, 3)``, or is ``(k, 0)`` when
    the centres have no colour; see :func:`pipeline.io.colours.label_rgb` for when the
    centres' colours are kept and when a qualitative palette replaces them.
    """
    from pipeline.io.colours import label_rgb

    rgb, _ = label_rgb(display_rgb)
    colours = [{"label-value": 0, "rgba": [0, 0, 0, 0]}]
    for i, (r, g, b) in enumerate(rgb.tolist(), start=1):
        colours.append({"label-value": i, "rgba": [r, g, b, 255]})
    return colours
