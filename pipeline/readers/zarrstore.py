"""Zarr v2/v3 arrays and OME-Zarr (NGFF 0.4 and 0.5) images.

OME metadata of 0.4 and 0.5 images is parsed and validated with the spec's pydantic models
(``ome-zarr-models``); the older 0.1-0.3 layouts, which it has no models for, are read by hand.
A group without OME metadata holding one array, or a bare array, is read as plain Zarr (axes from
v3 dimension names or inferred from the shape).

The store is opened from a path string, so any URL that zarr understands (``s3://...`` with
fsspec) goes through the same code. Each task opens the array (cached per process) and reads
its region.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from pydantic import ValidationError

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import (
    RegionReader,
    check_size,
    common_unit,
    local_path,
    mapped_key,
    normalize_unit,
    pixel_dtype,
    present_chunks,
    to_presented,
)
from pipeline.readers.layout import infer_axes

_SPATIAL = "zyx"


@functools.lru_cache(maxsize=32)
def _open_array(path: str, array_path: str) -> zarr.Array:
    return zarr.open_array(path, path=array_path or None, mode="r")


@dataclass(frozen=True)
class ZarrBlockReader(RegionReader):
    """Reads a region of the array ``array_path`` in the store at ``path``."""

    path: str
    array_path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    order: tuple[int, ...]
    native_ndim: int

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        array = _open_array(self.path, self.array_path)
        block = np.asarray(array[mapped_key(box, self.order, self.native_ndim)])
        return to_presented(block, self.order)


@dataclass(frozen=True)
class _Multiscale:
    """The parts of an OME multiscales entry that the reader uses."""

    axis_names: tuple[str, ...]  # lower-case; empty for 0.1-0.2 (always tczyx)
    units: tuple[str | None, ...]
    paths: tuple[str, ...]  # of the datasets, full resolution first
    scales: tuple[tuple[float, ...] | None, ...]  # per dataset, the whole-image scale applied
    channel_labels: tuple[str, ...]
    version: str | None

    def level_of(self, array_path: str) -> int | None:
        return self.paths.index(array_path) if array_path in self.paths else None


def open_zarr(
    path: str,
    *,
    level: int = 0,
    array_path: str | None = None,
    options: ReadOptions | None = None,
) -> ImageSource:
    """Open a Zarr array, or an image in a Zarr group; only metadata is read here.

    Parameters
    ----------
    path : str
        Path or URL of a Zarr array or group.
    level : int
        OME-Zarr multiscale level (0 = full resolution).
    array_path : str, optional
        Array inside the group; wins over ``level``.
    """
    path = path.rstrip("/")
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:
        raise InputError(path, f"not a readable Zarr store ({type(exc).__name__}: {exc})") from None
    try:
        return _open_node(path, node, level, array_path, options or ReadOptions())
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"cannot read Zarr metadata ({type(exc).__name__}: {exc})") from None


def _open_node(
    path: str, node: Any, level: int, array_path: str | None, options: ReadOptions
) -> ImageSource:
    multiscale: _Multiscale | None = None
    dataset: int | None = None  # the level read, an index into the multiscale's datasets
    root, inner = path, ""
    if isinstance(node, zarr.Array):
        if array_path:
            raise InputError(path, "array_path given but the path is an array")
        if level != 0:
            raise InputError(path, f"pyramid level {level} out of range (a single array)")
        array = node
        multiscale, dataset = _parent_multiscale(path)
    else:
        multiscale = _multiscale(path, dict(node.attrs))
        if array_path:
            inner = array_path.strip("/")
            dataset = multiscale.level_of(inner) if multiscale else None
        elif multiscale is not None:
            if not 0 <= level < len(multiscale.paths):
                raise InputError(
                    path,
                    f"pyramid level {level} out of range (the image has "
                    f"{len(multiscale.paths)})",
                )
            dataset = level
            inner = multiscale.paths[level]
        else:
            names = sorted(name for name, _ in node.arrays())
            if len(names) != 1:
                raise InputError(
                    path,
                    f"a Zarr group without OME multiscales holding {len(names)} arrays "
                    f"({', '.join(names[:5])}); choose one with array_path",
                )
            inner = names[0]
        try:
            array = node[inner]
        except KeyError:
            raise InputError(path, f"no array {inner!r} in the Zarr group") from None
        if not isinstance(array, zarr.Array):
            raise InputError(path, f"{inner!r} is a group, not an array")
        if dataset is None:
            multiscale = None

    shape = tuple(int(n) for n in array.shape)
    names = _axis_names(path, array, multiscale, shape)
    if names is None:
        axes = infer_axes(path, shape)
        order = tuple(range(len(shape)))
    else:
        axes, order = _map_axes(path, names, shape)
    presented = tuple(shape[a] for a in order)
    dtype = pixel_dtype(path, array.dtype)
    check_size(path, presented, axes, options.max_pixels)
    spatial = [a for a, ax in zip(order, axes, strict=True) if ax != "c"]
    spacing, unit = _spacing(multiscale, dataset, spatial, len(shape))
    n_channels = presented[-1] if axes.endswith("c") else 1
    labels = multiscale.channel_labels if multiscale else ()
    channel_names = labels if axes.endswith("c") and len(labels) == n_channels else ()
    chunks = array.shards or array.chunks
    return ImageSource(
        path=path,
        axes=axes,
        reader=ZarrBlockReader(
            local_path(root),
            inner,
            presented,
            dtype,
            order,
            len(shape),
        ),
        spacing=spacing,
        unit=unit,
        native_chunks=present_chunks(chunks, order, presented, axes),
        channel_names=channel_names,
        format="ome-zarr" if multiscale else "zarr",
        metadata={
            "array_path": inner,
            "level": dataset if multiscale and dataset is not None else level,
            "zarr_format": int(array.metadata.zarr_format),
            **({"ome_version": multiscale.version} if multiscale and multiscale.version else {}),
        },
    )


def _multiscale_model(version: Any) -> Any:
    """The ``ome-zarr-models`` model of one multiscales entry of an NGFF ``version``, if any."""
    if version == "0.5":
        from ome_zarr_models.v05.multiscales import Multiscale

        return Multiscale
    if version == "0.4":
        from ome_zarr_models.v04.multiscales import Multiscale as MultiscaleV04

        return MultiscaleV04
    return None


def _vector_scale(transforms: Any) -> tuple[float, ...] | None:
    """The scale vector of a model's coordinate transformations (None for a path or none)."""
    for transform in transforms or ():
        scale = getattr(transform, "scale", None)
        if getattr(transform, "type", None) == "scale" and isinstance(scale, list):
            return tuple(float(v) for v in scale)
    return None


def _multiscale(path: str, attrs: dict[str, Any]) -> _Multiscale | None:
    """The first OME multiscales entry of group attributes (0.4: top level, 0.5: ``ome``).

    Raises
    ------
    InputError
        If the entry does not validate against its version's model (0.4, 0.5) or is malformed.
    """
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
    entries = ome.get("multiscales")
    if not entries:
        return None
    try:
        entry = entries[0]
        version = ome.get("version") or entry.get("version")
        channels = (ome.get("omero") or {}).get("channels") or []
        labels = tuple(str(c.get("label", "")) for c in channels)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise InputError(path, f"malformed OME multiscales metadata ({exc})") from None
    model = _multiscale_model(version)
    if model is None:
        parsed = _legacy_multiscale(path, entry)
    else:
        try:
            multiscale = model.model_validate(entry)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise InputError(
                path,
                f"invalid OME-Zarr {version} multiscales metadata "
                f"({where + ': ' if where else ''}{error['msg']})",
            ) from None
        whole = _vector_scale(multiscale.coordinateTransformations)
        scales = []
        for dataset in multiscale.datasets:
            scale = _vector_scale(dataset.coordinateTransformations)
            if scale is not None and whole is not None and len(whole) == len(scale):
                scale = tuple(a * b for a, b in zip(scale, whole, strict=True))
            scales.append(scale)
        parsed = (
            tuple(str(a.name).lower() for a in multiscale.axes),
            tuple(a.unit if isinstance(a.unit, str) else None for a in multiscale.axes),
            tuple(d.path.strip("/") for d in multiscale.datasets),
            tuple(scales),
        )
    names, units, paths, scales = parsed
    return _Multiscale(
        axis_names=names,
        units=units,
        paths=paths,
        scales=scales,
        channel_labels=labels if all(labels) else (),
        version=version,
    )


def _legacy_multiscale(
    path: str, entry: dict[str, Any]
) -> tuple[tuple[str, ...], tuple[None, ...], tuple[str, ...], tuple[None, ...]]:
    """Axis names and dataset paths of an OME-Zarr 0.1-0.3 entry (no units, no scales)."""
    try:
        names = tuple(
            str(a.get("name", "") if isinstance(a, dict) else a).lower()
            for a in entry.get("axes", [])
        )
        paths = tuple(str(d["path"]).strip("/") for d in entry["datasets"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"malformed OME multiscales metadata ({exc})") from None
    return names, (None,) * len(names), paths, (None,) * len(paths)


def _parent_multiscale(path: str) -> tuple[_Multiscale | None, int | None]:
    """OME metadata of the group above an array path (``image.zarr/0``), if there is one."""
    if "/" not in path:
        return None, None
    parent, name = path.rsplit("/", 1)
    try:
        group = zarr.open_group(parent, mode="r")
    except Exception:
        return None, None
    multiscale = _multiscale(path, dict(group.attrs))
    if multiscale is None:
        return None, None
    level = multiscale.level_of(name)
    return (multiscale, level) if level is not None else (None, None)


def _axis_names(
    path: str, array: zarr.Array, multiscale: _Multiscale | None, shape: tuple[int, ...]
) -> list[str] | None:
    """Lower-case axis names from OME metadata or v3 dimension names; None when unknown."""
    if multiscale is not None:
        names = list(multiscale.axis_names)
        if not names and len(shape) == 5:
            names = list("tczyx")  # OME-Zarr 0.1-0.3 images are always 5-D tczyx
        if names:
            if len(names) != len(shape):
                raise InputError(path, f"OME axes {names} do not match array shape {shape}")
            return names
    dims = getattr(array.metadata, "dimension_names", None)
    if dims and all(isinstance(d, str) and d.lower() in "tczyx" for d in dims):
        return [d.lower() for d in dims]
    return None


def _map_axes(path: str, names: list[str], shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Presented axes and the stored axis of each; singleton t, c and z are dropped."""
    found: dict[str, int] = {}
    for i, (name, n) in enumerate(zip(names, shape, strict=True)):
        if name in ("y", "x"):
            found[name] = i
        elif n == 1:
            continue
        elif name in ("z", "c"):
            found[name] = i
        elif name == "t":
            raise InputError(path, f"time series (t = {n}) are not supported")
        else:
            raise InputError(path, f"unsupported axis {name!r} of size {n}")
    if "y" not in found or "x" not in found:
        raise InputError(path, f"the array has no y and x axes ({''.join(names)})")
    axes = "".join(a for a in "zyxc" if a in found)
    return axes, tuple(found[a] for a in axes)


def _spacing(
    multiscale: _Multiscale | None,
    dataset: int | None,
    spatial: list[int],
    ndim: int,
) -> tuple[tuple[float, ...], str | None]:
    """Spacing and common unit of the spatial axes (stored indices ``spatial``) of a level."""
    if multiscale is None or dataset is None:
        return (1.0,) * len(spatial), None
    scale = multiscale.scales[dataset]
    if scale is None or len(scale) != ndim:
        scale = (1.0,) * ndim
    units = [normalize_unit(multiscale.units[a]) if multiscale.units else None for a in spatial]
    return common_unit([float(scale[a]) for a in spatial], units)
