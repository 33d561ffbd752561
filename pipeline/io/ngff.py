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

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import zarr
from ome_zarr_models.base import BaseAttrs
from ome_zarr_models.common.omero import Channel, Omero, Window
from ome_zarr_models.v05.axes import Axis
from ome_zarr_models.v05.image import ImageAttrs
from ome_zarr_models.v05.image_label import ImageLabelAttrs
from ome_zarr_models.v05.image_label_types import Color, Label, Source
from ome_zarr_models.v05.labels import LabelsAttrs
from ome_zarr_models.v05.multiscales import Dataset, Multiscale

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


@dataclass(frozen=True)
class Downsampling:
    """How the levels of a pyramid were made: the NGFF ``multiscales`` ``type`` and ``metadata``.

    NGFF 0.5 recommends (and its strict schema requires) both; ``metadata`` follows the spec's
    example keys: ``description``, ``method`` (the function), ``version`` and ``kwargs``.
    """

    type: str
    description: str
    method: str

    def metadata(self) -> dict[str, Any]:
        from pipeline import __version__

        return {
            "description": self.description,
            "method": self.method,
            "version": __version__,
            "kwargs": {"factor": 2, "axes": ["y", "x"]},
        }


#: The recoloured image: each level is the 2x2 mean of the one above (odd edges trimmed).
IMAGE_DOWNSAMPLING = Downsampling(
    type="mean",
    description="2x2 mean in y and x of the level above; odd edges trimmed, integers round "
    "half up, NaN ignored",
    method="pipeline.io.pyramid.downsample_image",
)
#: The label image: every second pixel in y and x (labels never blend).
LABEL_DOWNSAMPLING = Downsampling(
    type="nearest",
    description="every second pixel in y and x of the level above (labels are never blended)",
    method="pipeline.io.pyramid.downsample_labels",
)


def _axes(spatial: SpatialMeta, with_channel: bool) -> list[Axis]:
    out = [Axis(name="c", type="channel")] if with_channel else []
    out += [Axis(name=name, type="space", unit=spatial.unit or None) for name in spatial.axes]
    return out


def multiscale(
    name: str,
    spatial: SpatialMeta,
    n_levels: int,
    with_channel: bool,
    downsampling: Downsampling,
) -> Multiscale:
    """NGFF ``multiscales`` entry of a pyramid whose level ``n`` is halved ``n`` times in y, x.

    Parameters
    ----------
    name : str
        Name of the multiscale image.
    spatial : SpatialMeta
        Spatial axes, spacing (physical units per pixel of level 0) and unit.
    n_levels : int
        Number of levels, stored at paths ``"0"`` .. ``str(n_levels - 1)``.
    with_channel : bool
        Whether a leading ``c`` axis precedes the spatial axes.
    downsampling : Downsampling
        The method recorded as ``type`` and ``metadata``.

    Returns
    -------
    ome_zarr_models.v05.multiscales.Multiscale
        Validated by the library (axis order and types, scales ordered from fine to coarse).
    """
    return Multiscale(
        axes=_axes(spatial, with_channel),
        datasets=_datasets(len(spatial.axes), tuple(float(s) for s in spatial.spacing), n_levels,
                           with_channel),
        name=name,
        type=downsampling.type,
        metadata=downsampling.metadata(),
    )


@functools.lru_cache(maxsize=64)
def _datasets(
    n_axes: int, spacing: tuple[float, ...], n_levels: int, with_channel: bool
) -> tuple[Dataset, ...]:
    # Cached: a folder of images of one spacing builds (and validates) them once.
    datasets = []
    for level in range(n_levels):
        factor = [1.0] * (n_axes - 2) + [2.0**level] * 2
        scale = [s * f for s, f in zip(spacing, factor, strict=True)]
        datasets.append(
            Dataset.build(
                path=str(level),
                scale=([1.0] if with_channel else []) + scale,
                translation=None,
            )
        )
    return tuple(datasets)


def _attrs(model: BaseAttrs) -> dict[str, Any]:
    """The JSON of an ``ome`` attributes model, as written under the group's ``ome`` key."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


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

    def __dask_tokenize__(self) -> tuple:
        # Dask names the store tasks after their target; without this it pickles the whole
        # Zarr array to name it (a third of the graph building of a small image).
        return (type(self).__name__, str(self.array.store_path), self.array.shape,
                str(self.array.dtype))

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


@dataclass
class Node:
    """A Zarr group or array to create below a root group (see :func:`create_nodes`).

    Attributes
    ----------
    path : str
        Path below the root; ``""`` is the root itself, whose attributes are updated.
    attributes : dict
        Attributes written with the node (merged into the existing ones when ``update``).
    array : dict or None
        ``create_array`` arguments (shape, dtype, chunks, ...); ``None`` for a group.
    source : dask.array.Array or None
        The pixels to store in the array.
    update : bool
        The group exists: only its attributes are updated.
    overwrite : bool
        Replace whatever is at ``path`` (only for groups kmseg itself is rewriting).
    """

    path: str
    attributes: dict[str, Any]
    array: dict[str, Any] | None = None
    source: da.Array | None = None
    update: bool = False
    overwrite: bool = False


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def image_pyramid_nodes(
    path: str,
    image: da.Array,
    spatial: SpatialMeta,
    n_levels: int,
    *,
    name: str,
    omero: Omero | dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
    update: bool = False,
    overwrite: bool = False,
) -> list[Node]:
    """The group and level arrays of a multiscale image at ``path`` (nothing is created).

    Parameters
    ----------
    path : str
        The image group below the root (``""``: the root, which must exist).
    image : dask.array.Array
        ``(c, [z,] y, x)`` with a channel axis, ``([z,] y, x)`` without one (grey images and
        volumes are stored without a ``c`` axis).
    spatial : SpatialMeta
        Spatial axes, spacing and unit.
    n_levels : int
        Pyramid levels including full resolution (see :func:`pipeline.io.pyramid.n_levels`).
    name : str
        Name of the multiscale image.
    omero : Omero or dict, optional
        Rendering settings (see :func:`image_omero`), written beside the multiscales so viewers
        show the channels in their colours.
    attributes : dict, optional
        Further attributes of the group (kmseg's own).
    update, overwrite : bool
        As :class:`Node`, for the group.

    Returns
    -------
    list of Node
        The group first, then one array per level with its lazy pixels.
    """
    spatial_ndim = len(spatial.axes)
    with_channel = image.ndim > spatial_ndim
    space = slice(image.ndim - spatial_ndim, None)
    axes = _axes(spatial, with_channel)
    if isinstance(omero, dict):
        omero = Omero.model_validate(omero)
    ome = ImageAttrs(
        version=NGFF_VERSION,
        multiscales=[multiscale(name, spatial, n_levels, with_channel, IMAGE_DOWNSAMPLING)],
        **({"omero": omero} if omero else {}),
    )
    nodes = [Node(path, {**(attributes or {}), "ome": _attrs(ome)}, update=update or not path,
                  overwrite=overwrite)]
    level_image = image
    for level in range(n_levels):
        if level:
            level_image = downsample_image(level_image)
        chunks = level_chunks(
            tuple(c[0] for c in image.chunks[space]),
            level_image.shape[space],
            level,
            spatial_ndim,
        )
        chunks = ((image.shape[0],) if with_channel else ()) + chunks
        nodes.append(Node(_join(path, str(level)), {}, _array_arguments(
            level_image.shape, level_image.dtype, chunks, [a.name for a in axes]
        ), level_image))
    return nodes


def _array_arguments(
    shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...], dimension_names: list[str]
) -> dict[str, Any]:
    return {
        "shape": shape,
        "dtype": dtype,
        "chunks": chunks,
        "fill_value": 0,
        "compressors": output_compressors(),
        "config": _ARRAY_CONFIG,
        "dimension_names": dimension_names,
    }


def labels_group_node(path: str, names: Sequence[str], *, update: bool = False) -> Node:
    """The ``labels`` group of the image at ``path``, listing the label images ``names``."""
    return Node(_join(path, "labels"),
                {"ome": _attrs(LabelsAttrs(version=NGFF_VERSION, labels=list(names)))},
                update=update)


def label_pyramid_nodes(
    path: str,
    labels: da.Array,
    spatial: SpatialMeta,
    n_levels: int,
    colours: Sequence[Color | dict[str, Any]],
    *,
    name: str = LABEL_NAME,
) -> list[Node]:
    """The label image ``labels/<name>`` of the image at ``path`` and its level arrays.

    The ``labels`` group that lists it is :func:`labels_group_node`. All label images share
    the image's levels and chunks.

    Parameters
    ----------
    path : str
        The image group the labels belong to (their ``source``), below the root.
    labels : dask.array.Array
        ``([z,] y, x)`` integer labels, 0 = no data, 1..k = clusters.
    spatial : SpatialMeta
        Spatial axes, spacing and unit (the image's).
    n_levels : int
        Pyramid levels, the image's number.
    colours : sequence of Color or dict
        ``image-label`` colours (see :func:`label_colours`).
    name : str
        Name of the label image (default ``clusters``).

    Returns
    -------
    list of Node
        The label image's group, then one array per level with its lazy labels.

    Raises
    ------
    TypeError
        If ``labels`` is not of an integer dtype (NGFF label images are integers).
    """
    if labels.dtype.kind not in "iu":
        raise TypeError(f"label images hold integers, not {labels.dtype}")
    ome = ImageLabelAttrs(
        version=NGFF_VERSION,
        image_label=Label(
            colors=tuple(Color.model_validate(c) for c in colours),
            source=Source(image="../../"),
        ),
        multiscales=[
            multiscale(name, spatial, n_levels, False, LABEL_DOWNSAMPLING)
        ],
    )
    group = _join(path, "labels", name)
    # The label omero is a plain dict: its channel has no window, which the Omero model
    # requires (see LABEL_OMERO).
    nodes = [Node(group, {"ome": _attrs(ome) | {"omero": LABEL_OMERO}})]
    level_labels = labels
    full_chunks = tuple(c[0] for c in labels.chunks)
    for level in range(n_levels):
        if level:
            level_labels = downsample_labels(level_labels)
        nodes.append(Node(_join(group, str(level)), {}, _array_arguments(
            level_labels.shape, level_labels.dtype,
            level_chunks(full_chunks, level_labels.shape, level, labels.ndim),
            list(spatial.axes),
        ), level_labels))
    return nodes


@functools.lru_cache(maxsize=64)  # bounded: a batch may hold images of many sizes
def _array_metadata(shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...],
                    dimension_names: tuple[str, ...]) -> Any:
    """Zarr v3 metadata of an output array (made once per distinct layout, in memory)."""
    from zarr.storage import MemoryStore

    return zarr.create_array(
        MemoryStore(), **_array_arguments(shape, np.dtype(dtype), chunks, list(dimension_names))
    ).metadata


def _metadata(node: Node) -> Any:
    from zarr.core.group import GroupMetadata

    if node.array is None:
        return GroupMetadata(attributes=node.attributes, zarr_format=3)
    args = node.array
    meta = _array_metadata(tuple(args["shape"]), np.dtype(args["dtype"]).str,
                           tuple(args["chunks"]), tuple(args["dimension_names"]))
    return meta.update_attributes(node.attributes) if node.attributes else meta


def hold_back_ome(nodes: Sequence[Node]) -> tuple[list[Node], list[Node]]:
    """``nodes`` without their NGFF ``ome`` attributes, and the group updates that add them.

    Written after every pixel, those updates make the groups OME-Zarr images and label images
    only once complete: a viewer (napari-ome-zarr, OMERO, vizarr) finds no image in an output
    that a killed job left unfinished, rather than showing its unwritten chunks as data.

    Returns
    -------
    created : list of Node
        ``nodes``, each group's attributes without ``ome``.
    ome : list of Node
        One ``update`` node per group that had ``ome``, with only that key.
    """
    created, ome = [], []
    for node in nodes:
        if "ome" not in node.attributes:
            created.append(node)
            continue
        rest = {key: value for key, value in node.attributes.items() if key != "ome"}
        created.append(dataclasses.replace(node, attributes=rest))
        ome.append(Node(node.path, {"ome": node.attributes["ome"]}, update=True))
    return created, ome


def create_nodes(root: zarr.Group, nodes: Sequence[Node]) -> list[Any]:
    """Create ``nodes`` below ``root`` and return the lazy store task of each array node.

    The new groups and arrays are created by one :func:`zarr.create_hierarchy` (their
    documents written concurrently: a folder of small images spends most of its writing on
    them); groups marked ``overwrite`` are removed first, and the attributes of ``update``
    nodes are merged into the existing groups' afterwards.

    Returns
    -------
    list
        Lazy ``dask.array.store`` results, one per node with an ``array``, in order.
    """
    import asyncio

    from zarr.core.sync import sync

    base = root.path
    store = root.store
    new = {_join(base, n.path): n for n in nodes if not n.update}
    replaced = [key for key, n in new.items() if n.overwrite and key]
    if replaced:
        async def remove_all() -> None:
            await asyncio.gather(*[store.delete_dir(key) for key in replaced])

        sync(remove_all())
    made = dict(zarr.create_hierarchy(
        store=store, nodes={key: _metadata(n) for key, n in new.items()}
    ))
    updates = [n for n in nodes if n.update]
    if updates:
        async def update_all() -> None:
            group = root._async_group
            targets = [group if not n.path else await group.getitem(n.path) for n in updates]
            await asyncio.gather(*[
                t.update_attributes(n.attributes) for t, n in zip(targets, updates, strict=True)
            ])

        sync(update_all())
    return [
        _store(node.source, made[_join(base, node.path)].with_config(_ARRAY_CONFIG))
        for node in nodes
        if node.array is not None
    ]


def write_image_pyramid(
    group: zarr.Group,
    image: da.Array,
    spatial: SpatialMeta,
    n_levels: int,
    *,
    name: str,
    channel_first: bool = True,
    omero: Omero | dict[str, Any] | None = None,
) -> list[Any]:
    """Create the multiscale image arrays in ``group`` and return lazy store tasks.

    :func:`image_pyramid_nodes` for ``group`` itself, created at once (see its parameters);
    ``channel_first`` must be true (the channel axis, if any, is first).

    Raises
    ------
    ValueError
        If ``channel_first`` is false.
    """
    if not channel_first:
        raise ValueError("write_image_pyramid takes the channel axis first")
    return create_nodes(group, image_pyramid_nodes("", image, spatial, n_levels, name=name,
                                                   omero=omero))


def write_label_pyramid(
    image_group: zarr.Group,
    labels: da.Array,
    spatial: SpatialMeta,
    n_levels: int,
    colours: Sequence[Color | dict[str, Any]],
    *,
    name: str = LABEL_NAME,
) -> list[Any]:
    """Create ``labels/<name>`` in ``image_group`` and return lazy store tasks.

    Each call adds its label image to the ``labels`` group's list, so one image may carry
    several (the clusters, a mask); see :func:`label_pyramid_nodes` for the parameters.

    Raises
    ------
    TypeError
        If ``labels`` is not of an integer dtype (NGFF label images are integers).
    """
    nodes = label_pyramid_nodes("", labels, spatial, n_levels, colours, name=name)
    exists = "labels" in image_group
    listed = (image_group["labels"].attrs.get("ome", {}).get("labels", []) if exists else [])
    listed = [n for n in listed if n != name]
    return create_nodes(image_group, [labels_group_node("", [*listed, name], update=exists),
                                      *nodes])


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
) -> Omero:
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
    ome_zarr_models.common.omero.Omero
        OME-NGFF's transitional ``omero`` metadata: per channel ``color`` (hex RGB), ``window``
        (``min``, ``max``, ``start``, ``end``), ``label`` and ``active``; ``rdefs``.
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
        colour_hex, active = "FFFFFF", False
        window = full
        if c in features:
            position = features.index(c)
            if colour and position < 3:
                colour_hex, active = RGB_COLOURS[position], True
            elif not colour and position == 0:
                active = True
                values = centres[:, position] if centres.size else np.array(full)
                low, high = float(values.min()), float(values.max())
                if dtype.kind in "iu":  # the recoloured image holds the rounded centres
                    low, high = float(np.rint(low)), float(np.rint(high))
                window = (low, high if high > low else low + 1.0)
        channels.append(
            Channel(
                color=colour_hex,
                window=Window(
                    min=min(full[0], window[0]),
                    max=max(full[1], window[1]),
                    start=window[0],
                    end=window[1],
                ),
                label=label,
                active=active,
            )
        )
    rdefs: dict[str, Any] = {"model": "color" if colour else "greyscale", "defaultT": 0}
    if depth:
        rdefs["defaultZ"] = int(depth) // 2
    return Omero(channels=channels, rdefs=rdefs)


def label_colours(display_rgb: np.ndarray) -> list[Color]:
    """``image-label`` colours: label 0 transparent, labels 1..k visibly distinct.

    ``display_rgb`` holds the centres' colours in [0, 1], ``(k, 3)``, or is ``(k, 0)`` when
    the centres have no colour; see :func:`pipeline.io.colours.label_rgb` for when the
    centres' colours are kept and when a qualitative palette replaces them.
    """
    from pipeline.io.colours import label_rgb

    rgb, _ = label_rgb(display_rgb)
    colours = [Color(label_value=0, rgba=(0, 0, 0, 0))]
    for i, (r, g, b) in enumerate(rgb.tolist(), start=1):
        colours.append(Color(label_value=i, rgba=(int(r), int(g), int(b), 255)))
    return colours


def omero_for(source: ImageSource, spec: FeatureSpec, centres: np.ndarray) -> Omero:
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
