"""What the report shows of an output: metadata, per-class records and small previews.

Previews come from the output pyramid's coarsest level that is still at least
:data:`PREVIEW_MIN` pixels on its shorter side, read with a stride so that no side exceeds
:data:`PREVIEW_MAX`; volumes give three orthogonal mid-planes. The input is read through the
path recorded in the metadata when it can still be opened (a coarser pyramid level where the
file has one, else a strided read chunk by chunk), on the same pixel grid as the labels, so
that its values can be paired with the labels pixel by pixel.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from pipeline.info import class_records, image_name, open_output

#: The preview level is the coarsest whose shorter side has at least this many pixels.
PREVIEW_MIN = 512
#: No preview side exceeds this many pixels (larger levels are read with a stride).
PREVIEW_MAX = 1024
#: Largest input level (pixels) read for a preview; larger inputs without a smaller pyramid
#: level are not shown.
INPUT_READ_LIMIT = 2**28
#: Target bytes per chunk when reading the input for a preview.
_READ_CHUNK_BYTES = 16 * 2**20
#: A batch's page shows this many images in full (pictures, plots, class table); the others
#: get their row of the summary table only (a thumbnail from the coarsest level, the class
#: fractions), so that the page, and the memory that builds it, stay bounded for a folder of
#: many images (300 photos made a 330 MB page).
DETAILED_MAX = 32
#: Longest side of the plane read for an image shown in the summary table only.
THUMBNAIL_READ_MAX = 256


@dataclass
class Plane:
    """One 2-D view of an image: the whole image, or a mid-plane of a volume.

    Attributes
    ----------
    title : str
        ``"image"``, ``"axial (z = 40)"``, ...
    recoloured : ndarray, shape (h, w) or (h, w, c)
        Recoloured values (input units) from the output pyramid.
    labels : ndarray, shape (h, w)
        Labels on the same grid (0 = no data).
    input : ndarray or None
        Input values on the same grid, or None when the input cannot be read.
    spacing : (float, float)
        Physical size of a preview pixel along rows and columns (for the aspect ratio).
    """

    title: str
    recoloured: np.ndarray
    labels: np.ndarray
    input: np.ndarray | None
    spacing: tuple[float, float]


@dataclass
class ImageData:
    """Everything the report shows of one image of an output."""

    name: str
    meta: dict[str, Any]
    classes: list[dict[str, Any]]
    planes: list[Plane] = field(default_factory=list)
    level: int = 0
    level_shape: tuple[int, ...] = ()
    input_note: str | None = None
    #: False for an image beyond :data:`DETAILED_MAX` of a batch: one small plane, no input.
    full: bool = True
    #: Colours of labels 1..k, ``(k, 3)`` uint8, from the labels' ``image-label`` metadata (what
    #: napari and other NGFF viewers show); None when the metadata has none.
    label_rgb: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.meta.get("k", len(self.classes)))

    @property
    def channels(self) -> list[int]:
        """Feature channels (input channel indices; ``[]`` for one channel)."""
        return [int(c) for c in self.meta.get("features", {}).get("channels", [])]

    @property
    def colour(self) -> bool:
        """True for colour images (three or more feature channels)."""
        return len(self.channels) >= 3


def load_output(path: str) -> tuple[dict[str, Any], list[ImageData]]:
    """Open an output store and load every image's metadata and previews.

    Returns
    -------
    root_meta : dict
        The root ``kmseg`` attributes.
    images : list of ImageData

    Raises
    ------
    InputError
        If the store is not a complete (or partial) kmseg output.
    """
    from pipeline.errors import InputError

    _, meta, groups = open_output(path)
    # A partial batch (on_error: continue) holds its finished images; the failed are listed.
    if meta.get("status") not in ("complete", "partial"):
        raise InputError(path, f"the job did not finish (status {meta.get('status')}); "
                         "nothing to report")
    images = []
    for index, (name, group) in enumerate(groups):
        image_meta = dict(group.attrs.get("kmseg", {}))
        if image_meta.get("status") != "complete":
            raise InputError(f"{path}/{name}", "the job did not finish for this image")
        images.append(load_image(image_name(name, image_meta), group, image_meta,
                                 full=index < DETAILED_MAX))
    return meta, images


def _level_paths(group: zarr.Group) -> tuple[list[str], list[list[float]]]:
    multiscale = group.attrs["ome"]["multiscales"][0]
    paths = [d["path"] for d in multiscale["datasets"]]
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    return paths, scales


def choose_level(shapes: list[tuple[int, ...]]) -> int:
    """Index of the coarsest level whose y and x both have at least :data:`PREVIEW_MIN` px.

    ``shapes`` are the levels' spatial shapes, finest first; level 0 when none is that big.
    """
    chosen = 0
    for i, shape in enumerate(shapes):
        if min(shape[-2:]) >= PREVIEW_MIN:
            chosen = i
    return chosen


def image_label_rgb(ome: dict[str, Any], k: int) -> np.ndarray | None:
    """RGB of labels 1..k from NGFF ``image-label`` ``colors``, ``(k, 3)`` uint8, or None
    when a label of 1..k has no colour there."""
    found = {}
    for entry in ome.get("image-label", {}).get("colors", []):
        try:
            found[int(entry["label-value"])] = [int(v) for v in entry["rgba"][:3]]
        except (KeyError, TypeError, ValueError):
            continue
    if not all(label in found for label in range(1, k + 1)):
        return None
    return np.asarray([found[label] for label in range(1, k + 1)], dtype=np.uint8)


def stride(size: int, limit: int = PREVIEW_MAX) -> int:
    """Step that brings ``size`` pixels to at most ``limit``."""
    return max(1, math.ceil(size / limit))


def load_image(name: str, group: zarr.Group, meta: dict[str, Any], *, full: bool = True
               ) -> ImageData:
    """Metadata, class records and previews of one image group of an output.

    ``full=False``: only the first plane (the image, or a volume's axial mid-plane) of the
    coarsest level, at most :data:`THUMBNAIL_READ_MAX` pixels a side, and no input.
    """
    data = ImageData(name=name, meta=meta, classes=class_records(meta), full=full)
    paths, scales = _level_paths(group)
    label_group = group["labels/clusters"]
    data.label_rgb = image_label_rgb(label_group.attrs.get("ome", {}), data.k)
    label_paths, _ = _level_paths(label_group)
    label_arrays = [label_group[p] for p in label_paths]
    spatial_ndim = label_arrays[0].ndim
    level = choose_level([a.shape for a in label_arrays]) if full else len(label_arrays) - 1
    limit = PREVIEW_MAX if full else THUMBNAIL_READ_MAX
    image = group[paths[level]]
    labels = label_arrays[level]
    data.level, data.level_shape = level, tuple(labels.shape)
    spacing = [float(s) for s in scales[level][-spatial_ndim:]]
    factor = 2**level  # y and x of level ``level`` are level 0's taken every factor-th pixel
    source, options = None, None
    if full:
        source, options, data.input_note = open_recorded_input(meta)
    with_channel = image.ndim > spatial_ndim

    def read(array: zarr.Array, key: tuple[Any, ...], channel: bool) -> np.ndarray:
        values = array[((slice(None),) if channel else ()) + key]
        return np.moveaxis(values, 0, -1) if channel else values

    if spatial_ndim == 2:
        step = stride(max(labels.shape), limit)
        key = (slice(None, None, step), slice(None, None, step))
        lab = read(labels, key, False)
        rec = read(image, key, with_channel)
        inp = None
        if source is not None:
            inp, note = read_input_2d(source, options, lab.shape, step * factor)
            data.input_note = note
        data.planes.append(
            Plane("image", rec, lab, inp, (spacing[0] * step, spacing[1] * step))
        )
        return data
    depth, height, width = labels.shape
    sz, sy = stride(depth, limit), stride(max(height, width), limit)
    mid = (depth // 2, height // 2, width // 2)
    views = [
        (f"axial (z = {mid[0]})", (mid[0], slice(None, None, sy), slice(None, None, sy)),
         (spacing[1] * sy, spacing[2] * sy)),
        (f"coronal (y = {mid[1] * factor})", (slice(None, None, sz), mid[1],
                                              slice(None, None, sy)),
         (spacing[0] * sz, spacing[2] * sy)),
        (f"sagittal (x = {mid[2] * factor})", (slice(None, None, sz), slice(None, None, sy),
                                               mid[2]),
         (spacing[0] * sz, spacing[1] * sy)),
    ]
    for title, key, plane_spacing in views if full else views[:1]:
        lab = read(labels, key, False)
        rec = read(image, key, with_channel)
        inp = None
        if source is not None and data.input_note is None:
            # The same pixels of the input: z as in the output, y and x times the level factor.
            full_key = (
                _scale(key[0], 1),
                _scale(key[1], factor),
                _scale(key[2], factor),
            )
            inp, data.input_note = read_input_plane(source, full_key, lab.shape)
        if isinstance(key[0], slice):  # coronal and sagittal planes: slice z upwards
            rec, lab = rec[::-1], lab[::-1]
            inp = None if inp is None else inp[::-1]
            title += ", z upwards"
        data.planes.append(Plane(title, rec, lab, inp, plane_spacing))
    return data


def _scale(index: int | slice, factor: int) -> int | slice:
    if isinstance(index, slice):
        return slice(None, None, (index.step or 1) * factor)
    return index * factor


def open_recorded_input(meta: dict[str, Any]) -> tuple[Any, Any, str | None]:
    """Open the input recorded in an image's metadata, if it is still there and unchanged.

    Returns
    -------
    source : ImageSource or None
    options : ReadOptions
        The read options of the job (level, series, ...).
    note : str or None
        Why the input is not shown (None when it opened).
    """
    from pipeline.readers.base import ReadOptions
    from pipeline.readers.urls import open_input

    inp = meta.get("input", {})
    path = inp.get("path")
    config = meta.get("config", {})
    names = {f.name for f in dataclasses.fields(ReadOptions)}
    options = ReadOptions(**{k: v for k, v in config.items() if k in names and v is not None})
    if not path or inp.get("format") == "array":
        return None, options, "the input was an in-memory array"
    try:
        source = open_input(path, options)
    except Exception as exc:  # any reader error: the page still shows the output
        return None, options, f"the input {path} cannot be read now ({_reason(exc)})"
    if list(source.shape) != list(inp.get("shape", [])):
        return None, options, (
            f"the input {path} has changed since the job (shape {list(source.shape)}, "
            f"was {inp.get('shape')})"
        )
    recorded, now = inp.get("stamp"), source.describe().get("stamp")
    if recorded and recorded != now:
        return None, options, (
            f"the input {path} has changed since the job (the file's size or modification "
            "time differs from what the job recorded)"
        )
    return source, options, None


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _coarser_input(source: Any, options: Any, need: int) -> Any:
    """The coarsest pyramid level of the input whose y and x keep at least ``need`` pixels.

    Tries the levels after the one the job used until one does not open or is too small.
    """
    from pipeline.readers.urls import open_input

    best = source
    if source.format not in ("tiff", "zarr") or options.array_path:
        return best
    for level in range(options.level + 1, options.level + 12):
        try:
            candidate = open_input(source.path, dataclasses.replace(options, level=level))
        except Exception:
            break
        if min(candidate.spatial_shape[-2:]) < need:
            break
        best = candidate
    return best


def read_input_2d(
    source: Any, options: Any, shape: tuple[int, int], step: int
) -> tuple[Any, str | None]:
    """The input on the preview's grid: pixel (i, j) is level-0 pixel (i*step, j*step).

    Reads a coarser pyramid level when the file has one, chunk by chunk with a stride, and
    never an input level of more than :data:`INPUT_READ_LIMIT` pixels.
    """
    from pipeline.chunking import choose_chunks
    from pipeline.report.render import resample_nearest

    full = source.spatial_shape
    chosen = _coarser_input(source, options, min(shape))
    ratio = full[0] / chosen.spatial_shape[0]
    if math.prod(chosen.spatial_shape) > INPUT_READ_LIMIT:
        return None, (
            f"the input {source.path} is not shown: {chosen.spatial_shape[1]} x "
            f"{chosen.spatial_shape[0]} px without a smaller pyramid level"
        )
    native = chosen.native_chunks[:2] if chosen.native_chunks else None
    chunks = choose_chunks(
        chosen.spatial_shape, chosen.dtype.itemsize, chosen.n_channels, _READ_CHUNK_BYTES,
        native,
    )
    sub = max(1, int(step / ratio))
    try:
        values = np.asarray(
            chosen.to_dask(chunks)[::sub, ::sub].compute(scheduler="threads")
        )
    except Exception as exc:
        return None, f"the input {source.path} cannot be read now ({_reason(exc)})"
    # Crop to the field the labels cover (odd edges are trimmed by the pyramid), then match.
    covered = (
        min(values.shape[0], math.ceil(shape[0] * step / ratio / sub)),
        min(values.shape[1], math.ceil(shape[1] * step / ratio / sub)),
    )
    return resample_nearest(values[: covered[0], : covered[1]], shape), None


def read_input_plane(
    source: Any, key: tuple[int | slice, ...], shape: tuple[int, int]
) -> tuple[Any, str | None]:
    """One plane of a volume input, picked like the labels (``key`` in input pixels)."""
    from pipeline.report.render import resample_nearest

    box = []
    post: list[Any] = []
    for index, size in zip(key, source.spatial_shape, strict=True):
        if isinstance(index, slice):
            box.append(slice(0, size))
            post.append(slice(None, None, index.step))
        else:
            i = min(index, size - 1)
            box.append(slice(i, i + 1))
            post.append(0)
    if math.prod(b.stop - b.start for b in box) > INPUT_READ_LIMIT // 4:
        return None, f"the input {source.path} is not shown: its planes are too large"
    if source.axes.endswith("c"):
        box.append(slice(0, source.n_channels))
    try:
        values = np.asarray(source.reader[tuple(box)])[tuple(post)]
    except Exception as exc:
        return None, f"the input {source.path} cannot be read now ({_reason(exc)})"
    return resample_nearest(values[: shape[0], : shape[1]], shape), None
