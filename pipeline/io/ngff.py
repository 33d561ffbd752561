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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import zarr

from pipeline.io.pyramid import downsample_image, downsample_labels

if TYPE_CHECKING:
    from pipeline.features import FeatureSpec
    from pipeline.readers import ImageSource

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
    omero: dict[str, Any] | None = None,
) -> list[Any]:
    """Create the multiscale image arrays in ``group`` and return lazy store tasks.

    ``image`` has spatial axes first and an optional trailing channel axis; it is stored with
    the channel axis first as NGFF requires. With ``channel_first``, ``image`` already has its
    channel axis first (no transposing copy). ``omero`` (see :func:`image_omero`) is written
    beside the multiscales so viewers show the channels in their colours.
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
        **({"omero": omero} if omero else {}),
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
        "omero": LABEL_OMERO,
    }
    return tasks


#: ``omero`` of the label image: one active channel. napari-ome-zarr (0.10) opens label images
#: hidden unless their ``omero`` channel says ``active``; it passes an ``omero`` window to the
#: labels layer, which takes none, so there is no window here (the colours come from
#: ``image-label``).
LABEL_OMERO: dict[str, Any] = {
    "channels": [{"label": "labels", "color": "FFFFFF", "active": True}],
}

#: Display colours of red, green and blue channels.
RGB_COLOURS = ("FF0000", "00FF00", "0000FF")


def image_omero(
    n_channels: int,
    dtype: np.dtype,
    feature_channels: Sequence[int],
    value_range: tuple[float, float],
    centres: np.ndarray,
    *,
    channel_names: Sequence[str] = (),
    depth: int | None = None,
) -> dict[str, Any]:
    """``omero`` rendering settings of the recoloured image.

    Viewers (napari-ome-zarr, OMERO, vizarr) colour each channel and map its ``window`` to the
    screen. Three or more feature channels are shown as an RGB composite in their true colours
    (red, green and blue, each windowed over the full value range: the dtype's for integers,
    the data's for floats); one channel in grey, windowed over the range of the centre values,
    the only values the recoloured image holds. Channels that are not features (alpha) and
    channels past the third are inactive.

    Parameters
    ----------
    n_channels : int
        Channels stored (1 for an image without a channel axis).
    dtype : numpy.dtype
        dtype of the recoloured image (the input's).
    feature_channels : sequence of int
        Channels clustered (``FeatureSpec.channels``; empty for one channel).
    value_range : (float, float)
        Range of the input values the features were scaled from (``FeatureSpec.low/high``).
    centres : ndarray, shape (k, n_features)
        Cluster centres in input units (feature channels only).
    channel_names : sequence of str
        The input's channel names (``R, G, B, A``), used as labels.
    depth : int, optional
        Number of z slices of a volume (its middle one is the default plane).

    Returns
    -------
    dict
        ``{"channels": [...], "rdefs": {...}}`` as in OME-NGFF's transitional ``omero``
        metadata: ``color`` (hex RGB), ``window`` (``min``, ``max``, ``start``, ``end``),
        ``label``, ``active``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        full = (float(info.min), float(info.max))
    else:
        full = (float(value_range[0]), float(value_range[1]))
    features = list(feature_channels) or [0]
    colour = len(features) >= 3
    centres = np.asarray(centres, dtype=np.float64).reshape(len(centres), -1)
    channels = []
    for c in range(max(1, n_channels)):
        if c < len(channel_names) and channel_names[c]:
            label = channel_names[c]
        else:
            label = "value" if n_channels <= 1 else f"c{c}"
        entry: dict[str, Any] = {"label": label, "active": False, "color": "FFFFFF"}
        window = full
        if c in features:
            position = features.index(c)
            if colour and position < 3:
                entry.update(color=RGB_COLOURS[position], active=True)
            elif not colour and position == 0:
                entry["active"] = True
                values = centres[:, position] if centres.size else np.array(full)
                low, high = float(values.min()), float(values.max())
                if dtype.kind in "iu":  # the recoloured image holds the rounded centres
                    low, high = float(np.rint(low)), float(np.rint(high))
                window = (low, high if high > low else low + 1.0)
        entry["window"] = {
            "min": min(full[0], window[0]),
            "max": max(full[1], window[1]),
            "start": window[0],
            "end": window[1],
        }
        channels.append(entry)
    rdefs: dict[str, Any] = {"model": "color" if colour else "greyscale", "defaultT": 0}
    if depth:
        rdefs["defaultZ"] = int(depth) // 2
    return {"channels": channels, "rdefs": rdefs}


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


def omero_for(source: ImageSource, spec: FeatureSpec, centres: np.ndarray) -> dict[str, Any]:
    """:func:`image_omero` of an input's recoloured image (``centres`` in feature units)."""
    return image_omero(
        source.n_channels,
        source.dtype,
        spec.channels,
        (spec.low, spec.high),
        spec.to_input_units(centres),
        channel_names=source.channel_names,
        depth=source.spatial_shape[0] if source.spatial_ndim == 3 else None,
    )
