"""Masks: which pixels of an input are inside the region to segment.

A mask reaches the engines through the existing no-data rule (:class:`FeatureSpec` ``alpha``):
:func:`apply_mask` appends one channel to the image, the mask in the image's dtype (1 inside,
0 outside; with an existing alpha channel, ``mask AND alpha != 0``), and points the spec's
``alpha`` at it. Every engine, the labeller and the statistics then leave the pixels outside
the mask out (label 0) with no change of their own. The recoloured image is made from the
*unmasked* image and spec: outside the mask it holds the palette's no-data row (0, or NaN for
floating-point inputs) and an input alpha channel passes through unchanged; the appended
channel is never written. The mask itself is written as a second label image ``labels/mask``
(0 outside, 1 inside) by :func:`mask_pyramid_nodes`.

Sources of a mask (the ``mask`` config key):

``FILE``
    Any image kmseg reads (:func:`pipeline.readers.open_image`); nonzero (in any channel) is
    inside. Its spatial shape is the image's or a lower resolution of it (a pyramid level, a
    thumbnail mask); it is upsampled by nearest neighbour (:func:`nearest_index`), lazily, one
    task per image chunk reading only the mask region that chunk needs. ``{name}`` in the
    value is replaced by the input's file name without its suffixes (``masks/{name}.png``); a
    folder that is not itself an image holds one mask per input, matched the same way
    (``masks/`` finds ``masks/slide1.png`` for ``data/slide1.svs``); a plain file applies to
    every input.
``auto``
    Foreground detected on a low-resolution copy (:func:`auto_method` tells the two apart):
    ``tissue`` for slides and photos (Otsu's threshold on the saturation of an RGB thumbnail,
    or below Otsu's threshold of a grey one, holes filled, small bits removed) and ``ct-body``
    for CT (above -500 HU, the largest connected component, holes filled slice by slice and
    in 3-D).

Everything here pickles (process-based clusters): readers are small objects and low-resolution
masks are single graph keys.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from pipeline.errors import InputError
from pipeline.features import FeatureSpec, dtype_range
from pipeline.readers.base import ImageSource, ReadOptions, input_stamp

#: The value of the ``mask`` key that detects the foreground.
AUTO = "auto"
#: A 2-D thumbnail for ``auto`` has at most this many pixels along its longest side.
THUMB_SIDE = 2048
#: A 3-D thumbnail for ``auto`` has at most this many voxels.
THUMB_VOXELS = 1 << 24
#: CT body: voxels above this many Hounsfield units are candidates.
BODY_HU = -500.0
#: Connected pieces smaller than this fraction of the thumbnail are removed (tissue).
SMALL_FRACTION = 5e-4
#: Name of the mask's label image in ``labels/``.
MASK_LABEL = "mask"

Compute = Callable[..., tuple]


@dataclass(frozen=True)
class Mask:
    """A mask for one input at the image's resolution, lazily.

    Attributes
    ----------
    array : dask.array.Array of bool
        The image's spatial shape and spatial chunks; True inside.
    method : str
        ``"file"``, ``"tissue"`` or ``"ct-body"``.
    source : str
        The mask file, or ``"auto"``.
    shape : tuple of int
        The mask's own spatial shape before upsampling.
    fraction : float or None
        Fraction of the image's pixels inside, when known without a pass over the pixels
        (``auto``: exact, from the thumbnail and the upsampling); otherwise count
        :func:`mask_count` with the writing.
    info : dict
        How it was made (threshold, level, strides), for the metadata.
    """

    array: da.Array
    method: str
    source: str
    shape: tuple[int, ...]
    fraction: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def metadata(self, fraction: float | None = None) -> dict[str, Any]:
        """JSON-able record for the output metadata (``mask`` key)."""
        value = self.fraction if fraction is None else fraction
        return {
            "method": self.method,
            "source": self.source,
            "shape": list(self.shape),
            "fraction": None if value is None else float(value),
            **self.info,
        }


# --- nearest-neighbour upsampling -------------------------------------------------------------


def integer_ratio(n_out: int, n_in: int) -> int | None:
    """The integer factor ``r`` with ``n_in`` equal to ``ceil(n_out / r)`` or
    ``floor(n_out / r)`` (a pyramid level or strided copy), or ``None``."""
    r = max(1, round(n_out / n_in))
    if n_in in (-(-n_out // r), n_out // r):
        return r
    return None


def nearest_index(start: int, stop: int, n_out: int, n_in: int) -> np.ndarray:
    """Mask pixel of each image pixel ``start..stop-1`` along one axis (int64).

    With an integer factor ``r`` (:func:`integer_ratio`: pyramid levels, strided thumbnails)
    image pixel ``i`` takes mask pixel ``i // r`` (clipped to the last). Otherwise the centre
    of image pixel ``i``, at ``i + 1/2`` image pixels, lies at ``(i + 1/2) n_in / n_out`` mask
    pixels, and the mask pixel containing it is ``floor((2 i + 1) n_in / (2 n_out))``
    (integer arithmetic: exact, no rounding ties).
    """
    i = np.arange(start, stop, dtype=np.int64)
    r = integer_ratio(n_out, n_in)
    if r is not None:
        return np.minimum(i // r, n_in - 1)
    return ((2 * i + 1) * n_in) // (2 * n_out)


class UpsampledMask:
    """Picklable block reader: a mask read region by region, upsampled to ``shape``.

    Parameters
    ----------
    reader : array-like
        The mask at its own resolution (a :class:`BlockReader` or a NumPy array), spatial axes
        first, optional trailing channel axis (``channels=True``).
    mask_shape : tuple of int
        Spatial shape of ``reader``.
    shape : tuple of int
        Spatial shape of the image.
    channels : bool
        Whether ``reader`` has a trailing channel axis (nonzero in any channel is inside).
    """

    def __init__(
        self, reader: Any, mask_shape: tuple[int, ...], shape: tuple[int, ...], channels: bool
    ) -> None:
        self.reader = reader
        self.mask_shape = tuple(int(s) for s in mask_shape)
        self.shape = tuple(int(s) for s in shape)
        self.channels = channels
        self.dtype = np.dtype(bool)
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        bounds = [k.indices(n)[:2] for k, n in zip(key, self.shape, strict=True)]
        index = [
            nearest_index(lo, hi, n, m)
            for (lo, hi), n, m in zip(bounds, self.shape, self.mask_shape, strict=True)
        ]
        if any(len(i) == 0 for i in index):
            return np.zeros([len(i) for i in index], dtype=bool)
        region = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in index)
        if self.channels:
            region += (slice(None),)
        values = np.asarray(self.reader[region])
        inside = (values != 0).any(axis=-1) if self.channels else values != 0
        return inside[np.ix_(*[i - i[0] for i in index])]


def upsampled(
    reader: Any,
    mask_shape: tuple[int, ...],
    chunks: tuple[tuple[int, ...], ...],
    channels: bool,
    token: str,
) -> da.Array:
    """Lazy bool mask with the image's spatial ``chunks`` (Dask's chunk tuples)."""
    shape = tuple(sum(c) for c in chunks)
    up = UpsampledMask(reader, mask_shape, shape, channels)
    return da.from_array(
        up,
        chunks=chunks,
        asarray=False,
        fancy=False,
        lock=False,
        inline_array=False,  # a low-resolution mask in memory is one graph key, not a copy per task
        meta=np.empty((0,) * len(shape), dtype=bool),
        name="mask-" + dask.base.tokenize(token, mask_shape, chunks),
    )


def check_shapes(mask_path: str, image_path: str, mask: tuple[int, ...],
                 image: tuple[int, ...]) -> None:
    """Refuse a mask that cannot be upsampled to the image.

    The mask needs the image's number of spatial axes, no axis larger than the image's, and
    the image's aspect ratio in y and x to within one mask pixel (z may be reduced by any
    factor).

    Raises
    ------
    InputError
        Naming the mask file and the image.
    """
    if len(mask) != len(image):
        raise InputError(mask_path, f"the mask has {len(mask)} spatial axes, the image "
                         f"{image_path} has {len(image)}")
    if any(m > n for m, n in zip(mask, image, strict=True)) or min(mask) < 1:
        raise InputError(mask_path, f"mask shape {list(mask)} is larger than the image "
                         f"{image_path} {list(image)} (or empty)")
    (my, mx), (ny, nx) = mask[-2:], image[-2:]
    ry, rx = ny / my, nx / mx
    if abs(my * rx - ny) > rx or abs(mx * ry - nx) > ry:
        raise InputError(mask_path, f"mask shape {list(mask)} does not match the aspect ratio "
                         f"of {image_path} {list(image)}")


# --- masks from files ---------------------------------------------------------------------------


def input_stem(path: str) -> str:
    """An input's file name without its suffixes (``a/slide1.ome.tif`` -> ``slide1``)."""
    from pipeline.readers.dispatch import SUFFIXES

    name = os.path.basename(os.path.normpath(path))
    lowered = name.lower()
    for suffix, _ in SUFFIXES:
        if lowered.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[:-4] if name.lower().endswith(".ome") else name


def mask_path(value: str, input_path: str) -> str:
    """The mask file for one input (see the module's docstring for the matching rules).

    Raises
    ------
    InputError
        A folder with no or several files matching the input's name, or a missing file.
    """
    from pipeline.readers.dispatch import folder_format

    stem = input_stem(input_path)
    if "{name}" in value:
        path = value.replace("{name}", stem)
    elif os.path.isdir(value) and folder_format(value) is None:
        found = [
            p for p in sorted(glob.glob(os.path.join(glob.escape(value), glob.escape(stem) + "*")))
            if input_stem(p) == stem
        ]
        if len(found) != 1:
            problem = "no mask" if not found else f"{len(found)} masks"
            raise InputError(value, f"{problem} named {stem!r} for the input {input_path}")
        path = found[0]
    else:
        path = value
    if not os.path.exists(path) and "://" not in path:
        raise InputError(path, f"mask file not found (for the input {input_path})")
    return path


def file_mask(path: str, source: ImageSource, chunks: tuple[tuple[int, ...], ...],
              options: ReadOptions | None = None) -> Mask:
    """Open a mask file (metadata only) and upsample it lazily to the image's chunks.

    Parameters
    ----------
    path : str
        The mask, any format :func:`pipeline.readers.open_image` reads.
    source : ImageSource
        The image.
    chunks : tuple of tuple of int
        The image's spatial chunks (``image.chunks[:spatial_ndim]``).
    options : ReadOptions, optional
        Only ``max_pixels`` is used (the mask is read at its level 0, series 0).

    Raises
    ------
    InputError
        Unreadable mask, or a shape that does not fit the image (:func:`check_shapes`).
    """
    from pipeline.readers.dispatch import open_image

    limit = ReadOptions(max_pixels=options.max_pixels) if options else ReadOptions()
    mask = open_image(path, limit)
    check_shapes(path, source.path, mask.spatial_shape, source.spatial_shape)
    array = upsampled(
        mask.reader, mask.spatial_shape, chunks, mask.axes.endswith("c"),
        token=f"{path}:{os.path.getmtime(path) if os.path.exists(path) else ''}",
    )
    # The file's size and modification time: a resumed batch refuses a mask replaced since.
    return Mask(array, "file", path, mask.spatial_shape, info={"stamp": input_stamp(path)})


# --- automatic masks -------------------------------------------------------------------------


def auto_method(source: ImageSource) -> str:
    """``"ct-body"`` or ``"tissue"``: how ``auto`` detects this input's foreground.

    CT body: one channel and either DICOM with modality CT, or NIfTI, or any 3-D volume, with a
    signed integer or floating-point dtype (values in Hounsfield units). Tissue: 2-D RGB(A)
    (slides, photos) or 2-D grey images.

    Raises
    ------
    InputError
        Anything else (an unsigned 3-D stack, a multi-channel volume): give a mask file.
    """
    modality = str(source.metadata.get("modality", "")).upper()
    signed = source.dtype.kind in "if"
    if source.n_channels == 1 and signed and (
        modality == "CT" or source.format == "nifti" or source.spatial_ndim == 3
    ):
        return "ct-body"
    if source.spatial_ndim == 2 and source.n_channels in (1, 2, 3, 4):
        return "tissue"
    raise InputError(source.path, "mask auto detects tissue in 2-D images and the body in CT "
                     f"(signed values, one channel); this is {source.spatial_ndim}-D "
                     f"{source.dtype} with {source.n_channels} channel(s): give a mask file")


def _thumb_source(source: ImageSource, options: ReadOptions | None) -> tuple[ImageSource, int]:
    """The finest pyramid level of ``source`` small enough for a thumbnail (or the coarsest
    level), and its level number; ``source`` itself when it has no pyramid."""
    from pipeline.readers.dispatch import open_image

    # OME-Zarr records no level count: try levels until one does not open.
    n_levels = int(source.metadata.get("n_levels", 0) or (32 if source.format == "zarr" else 1))
    level = int(source.metadata.get("level", 0) or 0)
    best, best_level = source, level
    if source.format not in ("tiff", "zarr") or n_levels <= level + 1:
        return best, best_level
    options = options or ReadOptions()
    for lv in range(level + 1, n_levels):
        if max(best.spatial_shape[-2:]) <= THUMB_SIDE:
            break
        try:
            candidate = open_image(source.path, dataclasses.replace(options, level=lv))
        except InputError:
            break
        if candidate.spatial_ndim != source.spatial_ndim or candidate.n_channels != \
                source.n_channels:
            break
        best, best_level = candidate, lv
    return best, best_level


def thumb_steps(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Stride per spatial axis so a thumbnail stays under :data:`THUMB_SIDE` /
    :data:`THUMB_VOXELS`."""
    if len(shape) == 2:
        return tuple(max(1, -(-n // THUMB_SIDE)) for n in shape)
    step = max(1, math.ceil((math.prod(shape) / THUMB_VOXELS) ** (1 / len(shape))))
    return tuple(min(step, n) for n in shape)


def _take_strided(block: np.ndarray, steps: tuple[int, ...], block_info=None) -> np.ndarray:
    location = block_info[0]["array-location"]
    index = tuple(slice((-lo) % s, None, s) for (lo, _), s in zip(location, steps, strict=False))
    return block[index]


def strided(image: da.Array, steps: tuple[int, ...]) -> da.Array:
    """Lazy ``image[::s0, ::s1, ...]`` computed block by block (each task reads one chunk and
    keeps every ``s``-th pixel of the global grid), so no task holds more than a chunk."""
    chunks = []
    for axis, step in enumerate(steps):
        sizes, start = [], 0
        for c in image.chunks[axis]:
            sizes.append(len(range((-start) % step, c, step)))
            start += c
        chunks.append(tuple(sizes))
    chunks += list(image.chunks[len(steps):])
    return image.map_blocks(_take_strided, steps=steps, chunks=tuple(chunks), dtype=image.dtype)


def tissue_mask(thumb: np.ndarray, dtype: np.dtype, n_channels: int,
                has_alpha: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Tissue on a slide or photo thumbnail: Otsu, holes filled, small pieces removed.

    RGB(A): foreground is saturation (HSV) above Otsu's threshold (glass is white or grey,
    stained tissue coloured). Grey: foreground is darker than Otsu's threshold. Pixels with
    alpha 0 are outside. Pieces smaller than :data:`SMALL_FRACTION` of the thumbnail are
    removed (``skimage.morphology.remove_small_objects``), then holes filled
    (``scipy.ndimage.binary_fill_holes``). Otsu: N. Otsu, IEEE Trans. SMC 9(1), 1979.

    Returns
    -------
    mask : ndarray of bool, the thumbnail's spatial shape
    info : dict
        ``feature`` and ``threshold``.
    """
    from scipy import ndimage
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects

    values = thumb.astype(np.float64)
    if dtype.kind in "iub":
        lo, hi = dtype_range(dtype)
        values = (values - lo) / max(hi - lo, 1)
    else:
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        values = np.nan_to_num((values - lo) / (hi - lo if hi > lo else 1.0))
    if values.ndim == 2:
        values = values[..., None]
    valid = values[..., -1] != 0 if has_alpha else np.ones(values.shape[:2], dtype=bool)
    colours = values[..., : n_channels - 1] if has_alpha else values
    if colours.shape[-1] >= 3:
        feature, name = rgb2hsv(np.clip(colours[..., :3], 0, 1))[..., 1], "saturation"
        sign = 1.0
    else:
        feature, name = colours[..., 0], "grey (dark is tissue)"
        sign = -1.0
    if not valid.any() or np.ptp(feature[valid]) == 0:
        return np.zeros(valid.shape, dtype=bool), {"feature": name, "threshold": None}
    threshold = float(threshold_otsu(feature[valid]))
    fg = (sign * feature > sign * threshold) & valid
    fg = remove_small_objects(fg, max_size=max(16, int(SMALL_FRACTION * fg.size)))
    fg = ndimage.binary_fill_holes(fg) & valid
    return fg, {"feature": name, "threshold": round(threshold, 6)}


def body_mask(thumb: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The body on a CT thumbnail in Hounsfield units.

    Voxels above :data:`BODY_HU`, the largest connected component (``scipy.ndimage.label``,
    faces connected), then holes filled in every axial slice (lungs and airways, enclosed in
    a slice even where the airway opens in 3-D) and in 3-D.

    Returns
    -------
    mask : ndarray of bool, the thumbnail's shape
    info : dict
        ``threshold_hu``.
    """
    from scipy import ndimage

    body = np.nan_to_num(thumb.astype(np.float64), nan=-np.inf) > BODY_HU
    labelled, n = ndimage.label(body)
    if n > 1:
        sizes = np.bincount(labelled.ravel())
        sizes[0] = 0
        body = labelled == int(sizes.argmax())
    if body.ndim == 3:
        for z in range(body.shape[0]):
            body[z] = ndimage.binary_fill_holes(body[z])
    return ndimage.binary_fill_holes(body), {"threshold_hu": BODY_HU}


def exact_fraction(low: np.ndarray, shape: tuple[int, ...]) -> float:
    """Fraction of the image's pixels inside a low-resolution mask once upsampled (exact:
    each mask pixel weighs the number of image pixels that take it)."""
    counts = [
        np.bincount(nearest_index(0, n, n, m), minlength=m).astype(np.float64)
        for n, m in zip(shape, low.shape, strict=True)
    ]
    weights = functools.reduce(np.multiply.outer, counts)
    return float((weights * low).sum() / math.prod(shape))


def auto_mask(
    source: ImageSource,
    image: da.Array,
    options: ReadOptions | None = None,
    compute: Compute = dask.compute,
) -> Mask:
    """Detect the foreground of an input on a low-resolution copy (one compute).

    The copy is the finest pyramid level with at most :data:`THUMB_SIDE` pixels a side (TIFF,
    OME-Zarr) or the image read chunk by chunk keeping every ``s``-th pixel
    (:func:`strided`); it is never read whole at full resolution.

    Parameters
    ----------
    source : ImageSource
    image : dask.array.Array
        ``source`` as the job reads it (spatial axes first, channels last).
    options : ReadOptions, optional
        To open a pyramid level of the same file.
    compute : callable
        ``compute(*lazy) -> values`` (the plan passes its executor's).

    Raises
    ------
    InputError
        No way to detect this input (:func:`auto_method`).
    """
    method = auto_method(source)
    low_source, level = _thumb_source(source, options)
    low = image if low_source is source else low_source.to_dask(
        tuple(min(n, 1024) for n in low_source.spatial_shape)
    )
    steps = thumb_steps(low_source.spatial_shape)
    (thumb,) = compute(strided(low, steps))
    thumb = np.asarray(thumb)
    if method == "ct-body":
        low_mask, info = body_mask(thumb)
    else:
        low_mask, info = tissue_mask(thumb, source.dtype, source.n_channels, source.has_alpha)
    info = {"level": level, "steps": list(steps), **info}
    chunks = image.chunks[: source.spatial_ndim]
    array = upsampled(low_mask, low_mask.shape, chunks, False, token=f"auto:{source.path}")
    return Mask(array, method, AUTO, tuple(low_mask.shape),
                exact_fraction(low_mask, source.spatial_shape), info)


def open_mask(
    value: str,
    source: ImageSource,
    image: da.Array,
    options: ReadOptions | None = None,
    compute: Compute = dask.compute,
) -> Mask:
    """The mask for one input from the ``mask`` key's value (a file, pattern, folder or
    ``auto``); see the module's docstring."""
    if value == AUTO:
        return auto_mask(source, image, options, compute)
    path = mask_path(value, source.path)
    return file_mask(path, source, image.chunks[: source.spatial_ndim], options)


# --- the mask as no data ----------------------------------------------------------------------


def _append_mask(block: np.ndarray, mask: np.ndarray, alpha: int | None,
                 spatial_ndim: int) -> np.ndarray:
    if block.ndim == spatial_ndim:
        block = block[..., None]
    keep = mask if alpha is None else mask & (block[..., alpha] != 0)
    return np.concatenate([block, keep[..., None].astype(block.dtype)], axis=-1)


def apply_mask(image: da.Array, spec: FeatureSpec, mask: Mask) -> tuple[da.Array, FeatureSpec]:
    """The image with the mask as a trailing no-data channel, and the spec that reads it.

    Parameters
    ----------
    image : dask.array.Array
        Spatial axes first, optional trailing channel axis (never split).
    spec : FeatureSpec
        The image's spec.
    mask : Mask
        ``mask.array`` has the image's spatial shape and chunks.

    Returns
    -------
    image : dask.array.Array
        One more channel (a channel axis is added to single-channel images): 1 inside the mask
        (and, where ``spec.alpha`` is set, where that alpha is nonzero), 0 elsewhere, in the
        image's dtype. One task per block.
    spec : FeatureSpec
        Same features; ``alpha`` is the appended channel (the input's alpha, if any, is neither
        a feature nor the alpha any more: its zeros are in the appended channel).
    """
    spatial_ndim = len(spec.spatial_shape)
    if mask.array.shape != image.shape[:spatial_ndim]:
        raise ValueError(f"mask shape {mask.array.shape} is not the image's "
                         f"{image.shape[:spatial_ndim]}")
    spatial = "".join(chr(ord("a") + i) for i in range(spatial_ndim))
    n_channels = image.shape[-1] if image.ndim > spatial_ndim else 1
    arr = mask.array.rechunk(image.chunks[:spatial_ndim])
    common = dict(alpha=spec.alpha, spatial_ndim=spatial_ndim, dtype=image.dtype,
                  meta=np.empty((0,) * (spatial_ndim + 1), dtype=image.dtype),
                  name="masked-" + dask.base.tokenize(image.name, arr.name, spec.alpha))
    if image.ndim > spatial_ndim:
        out = da.blockwise(_append_mask, spatial + "z", image, spatial + "z", arr, spatial,
                           adjust_chunks={"z": n_channels + 1}, **common)
    else:
        out = da.blockwise(_append_mask, spatial + "z", image, spatial, arr, spatial,
                           new_axes={"z": 2}, **common)
    masked = dataclasses.replace(spec, channels=spec.channels or (0,), alpha=n_channels)
    return out, masked


# --- writing ----------------------------------------------------------------------------------


def mask_labels(mask: Mask) -> da.Array:
    """The mask as a uint8 label image: 1 inside, 0 outside."""
    return mask.array.astype(np.uint8)


def mask_count(mask: Mask) -> da.Array:
    """Lazy number of image pixels inside the mask (compute it with the writers: the mask's
    reading tasks are shared)."""
    return mask.array.sum(dtype=np.int64)


#: Colours of the mask label image: 1 (inside) white and half transparent, 0 transparent.
MASK_COLOURS = [{"label-value": 0, "rgba": [0, 0, 0, 0]},
                {"label-value": 1, "rgba": [255, 255, 255, 128]}]


def mask_pyramid_nodes(path: str, mask: Mask, spatial: Any, n_levels: int) -> list[Any]:
    """The label image ``labels/mask`` of the image at ``path``, next to ``labels/clusters``
    (nodes for :func:`pipeline.io.ngff.create_nodes`; the ``labels`` group must list it).

    Same pyramid as the cluster labels (:func:`pipeline.io.ngff.label_pyramid_nodes`).
    """
    from pipeline.io.ngff import label_pyramid_nodes

    return label_pyramid_nodes(path, mask_labels(mask), spatial, n_levels, MASK_COLOURS,
                               name=MASK_LABEL)


__all__ = [
    "AUTO",
    "Mask",
    "apply_mask",
    "auto_mask",
    "auto_method",
    "body_mask",
    "check_shapes",
    "exact_fraction",
    "file_mask",
    "mask_count",
    "mask_labels",
    "mask_path",
    "mask_pyramid_nodes",
    "nearest_index",
    "open_mask",
    "strided",
    "tissue_mask",
    "upsampled",
]
