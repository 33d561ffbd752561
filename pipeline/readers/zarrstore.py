"""Zarr v2/v3 arrays and OME-Zarr (NGFF 0.4 and 0.5) images.

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


@dataclass
class _Multiscale:
    """The parts of an OME multiscales entry that the reader uses."""

    axes: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    transforms: list[dict[str, Any]]
    channel_labels: tuple[str, ...]
    version: str | None


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
    dataset: dict[str, Any] | None = None
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
            dataset = next(
                (d for d in (multiscale.datasets if multiscale else []) if d["path"] == inner),
                None,
            )
        elif multiscale is not None:
            if not 0 <= level < len(multiscale.datasets):
                raise InputError(
                    path,
                    f"pyramid level {level} out of range (the image has "
                    f"{len(multiscale.datasets)})",
                )
            dataset = multiscale.datasets[level]
            inner = str(dataset["path"])
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
            "level": multiscale.datasets.index(dataset) if multiscale and dataset else level,
            "zarr_format": int(array.metadata.zarr_format),
            **({"ome_version": multiscale.version} if multiscale and multiscale.version else {}),
        },
    )


def _multiscale(path: str, attrs: dict[str, Any]) -> _Multiscale | None:
    """The first OME multiscales entry of group attributes (0.4: top level, 0.5: ``ome``)."""
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
    entries = ome.get("multiscales")
    if not entries:
        return None
    try:
        entry = entries[0]
        axes = [a if isinstance(a, dict) else {"name": a} for a in entry.get("axes", [])]
        datasets = [dict(d) for d in entry["datasets"]]
        for d in datasets:
            d["path"] = str(d["path"]).strip("/")
        channels = (ome.get("omero") or {}).get("channels") or []
        labels = tuple(str(c.get("label", "")) for c in channels)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise InputError(path, f"malformed OME multiscales metadata ({exc})") from None
    return _Multiscale(
        axes=axes,
        datasets=datasets,
        transforms=list(entry.get("coordinateTransformations") or []),
        channel_labels=labels if all(labels) else (),
        version=ome.get("version") or entry.get("version"),
    )


def _parent_multiscale(path: str) -> tuple[_Multiscale | None, dict[str, Any] | None]:
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
    dataset = next((d for d in multiscale.datasets if d["path"] == name), None)
    return (multiscale, dataset) if dataset is not None else (None, None)


def _axis_names(
    path: str, array: zarr.Array, multiscale: _Multiscale | None, shape: tuple[int, ...]
) -> list[str] | None:
    """Lower-case axis names from OME metadata or v3 dimension names; None when unknown."""
    if multiscale is not None:
        names = [str(a.get("name", "")).lower() for a in multiscale.axes]
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
    dataset: dict[str, Any] | None,
    spatial: list[int],
    ndim: int,
) -> tuple[tuple[float, ...], str | None]:
    if multiscale is None or dataset is None:
        return (1.0,) * len(spatial), None
    scale = np.ones(ndim)
    for transforms in (dataset.get("coordinateTransformations"), multiscale.transforms):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                scale = scale * np.asarray(t["scale"], dtype=float)
    units = [
        normalize_unit(multiscale.axes[a].get("unit")) if multiscale.axes else None
        for a in spatial
    ]
    return common_unit([float(scale[a]) for a in spatial], units)
