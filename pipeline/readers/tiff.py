"""TIFF, BigTIFF, OME-TIFF, ImageJ TIFF and Aperio SVS files, read by tile through tifffile.

A series (``series``) and pyramid level (``level``) of the file is exposed through tifffile's
Zarr store, so each task decodes only the tiles or strips its region touches. Values are
returned as stored: palette images give their indices, MinIsWhite images are not inverted.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile
import zarr

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import (
    RegionReader,
    color_names,
    common_unit,
    file_stamp,
    local_path,
    mapped_key,
    normalize_unit,
    present_chunks,
    to_presented,
)

#: tifffile axis letters shown as the channel axis, and as the depth (z) axis.
_CHANNEL_AXES = "CS"
_DEPTH_AXES = "ZQIP"
#: Micrometers per TIFF ResolutionUnit (2 inch, 3 centimeter, 4 millimeter, 5 micrometer).
_RESUNIT_UM = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}
#: Microns per pixel in an Aperio ImageDescription ("...|MPP = 0.4990|...").
_SVS_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.]+(?:[eE][-+]?\d+)?)")


@functools.lru_cache(maxsize=16)
def _open_level(path: str, series: int, level: int, stamp: tuple[int, int]) -> zarr.Array:
    # The store keeps the TiffFile (and its file handle) alive for as long as it is cached;
    # ``stamp`` only keys the cache.
    tif = tifffile.TiffFile(path)
    store = tif.series[series].aszarr(level=level, squeeze=False, maxworkers=os.cpu_count() or 2)
    return zarr.open(store, mode="r")


@dataclass(frozen=True)
class TiffBlockReader(RegionReader):
    """Reads a region of one series and level of a TIFF file.

    ``order[i]`` is the axis of the unsqueezed tifffile array shown as presented axis ``i``.
    """

    path: str
    series: int
    level: int
    shape: tuple[int, ...]
    dtype: np.dtype
    order: tuple[int, ...]
    native_ndim: int

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        array = _open_level(self.path, self.series, self.level, file_stamp(self.path))
        block = array[mapped_key(box, self.order, self.native_ndim)]
        return to_presented(np.asarray(block), self.order)


def open_tiff(
    path: str, *, level: int = 0, series: int = 0, options: ReadOptions | None = None
) -> ImageSource:
    """Open a TIFF-family file; only tags and metadata are read here.

    Parameters
    ----------
    path : str
        The file.
    level : int
        Pyramid level (0 = full resolution).
    series : int
        Image series in the file (e.g. 0 = baseline image of an SVS file).
    """
    # tifffile logs each series parser that fails on a damaged file; the InputError says it all.
    logger = logging.getLogger("tifffile")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            return _open(path, tif, level, series)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from None
    finally:
        logger.setLevel(previous)


def _open(path: str, tif: tifffile.TiffFile, level: int, series: int) -> ImageSource:
    all_series = tif.series
    if not all_series:
        raise InputError(path, "the TIFF file holds no image")
    if not 0 <= series < len(all_series):
        raise InputError(path, f"series {series} out of range (the file has {len(all_series)})")
    base = all_series[series]
    levels = base.levels
    if not 0 <= level < len(levels):
        raise InputError(path, f"pyramid level {level} out of range (the file has {len(levels)})")
    chosen = levels[level]
    keyframe = chosen.keyframe
    try:
        keyframe.decode  # noqa: B018 - raises if the compression codec is not available
    except Exception as exc:
        raise InputError(path, f"cannot decode this TIFF ({exc})") from None
    _check_extent(path, chosen)

    native_axes = chosen.get_axes(False)
    native_shape = tuple(int(n) for n in chosen.get_shape(False))
    axes, order = _map_axes(path, native_axes, native_shape)
    shape = tuple(native_shape[a] for a in order)
    chunks = _native_chunks(keyframe, native_axes, native_shape)

    base_shape = dict(zip(base.get_axes(False), base.get_shape(False), strict=True))
    spatial = [native_axes[a] for a in order if native_axes[a] not in _CHANNEL_AXES]
    spacing, unit, ome_names = _physical(tif, series, base.keyframe, spatial)
    # Spacing is stated for level 0; coarser levels scale it by the size ratio.
    spacing = tuple(
        s * base_shape[ax] / native_shape[native_axes.index(ax)]
        for s, ax in zip(spacing, spatial, strict=True)
    )
    n_channels = shape[-1] if axes.endswith("c") else 1
    if ome_names and len(ome_names) == n_channels and n_channels > 1:
        names = ome_names
    elif axes.endswith("c"):
        names = _sample_names(keyframe, n_channels)
    else:
        names = ()
    return ImageSource(
        path=path,
        axes=axes,
        reader=TiffBlockReader(
            local_path(path), series, level, shape, np.dtype(chosen.dtype).newbyteorder("="),
            order, len(native_shape),
        ),
        spacing=spacing,
        unit=unit,
        native_chunks=present_chunks(chunks, order, shape, axes),
        channel_names=names,
        format="tiff",
        metadata={
            "series": series,
            "level": level,
            "n_series": len(all_series),
            "n_levels": len(levels),
            "kind": str(base.kind),
            "compression": str(keyframe.compression.name),
        },
    )


def _map_axes(path: str, axes: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Presented axes and, for each, the index of the tifffile axis it comes from."""
    depth: list[int] = []
    channel: list[int] = []
    for i, (ax, n) in enumerate(zip(axes, shape, strict=True)):
        if n == 1 or ax in "YX":
            continue
        if ax in _CHANNEL_AXES:
            channel.append(i)
        elif ax in _DEPTH_AXES:
            depth.append(i)
        else:
            raise InputError(path, f"unsupported TIFF axis {ax!r} of size {n} (axes {axes})")
    if len(depth) > 1 or len(channel) > 1:
        raise InputError(path, f"cannot present TIFF axes {axes} {shape} as zyx plus channels")
    if "Y" not in axes or "X" not in axes:
        raise InputError(path, f"TIFF series without Y and X axes ({axes})")
    order = (*depth, axes.index("Y"), axes.index("X"), *channel)
    return ("z" if depth else "") + "yx" + ("c" if channel else ""), order


def _native_chunks(keyframe: Any, axes: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Storage chunk (tile, or strip) of each tifffile axis: one plane in depth."""
    if keyframe.is_tiled:
        rows, cols = keyframe.tilelength, keyframe.tilewidth
    else:
        rows, cols = keyframe.rowsperstrip or shape[axes.index("Y")], shape[axes.index("X")]
    return tuple(
        rows if ax == "Y" else cols if ax == "X" else n if ax in _CHANNEL_AXES else 1
        for ax, n in zip(axes, shape, strict=True)
    )


def _check_extent(path: str, series: Any) -> None:
    """Raise if the image data of the first or last page lie past the end of the file."""
    size = os.path.getsize(path)
    if series.dataoffset is not None:
        if series.dataoffset + series.size * np.dtype(series.dtype).itemsize > size:
            raise InputError(path, "the TIFF file is truncated")
        return
    pages = series.pages
    for page in (pages[0], pages[-1]):
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if o]
        if ends and max(ends) > size:
            raise InputError(path, "the TIFF file is truncated")


def _sample_names(keyframe: Any, n_channels: int) -> tuple[str, ...]:
    """RGB(A) or L,A names from the photometric interpretation and extra samples."""
    alpha = any(int(e) in (1, 2) for e in keyframe.extrasamples)  # associated / unassociated
    photometric = int(keyframe.photometric)
    if photometric in (2, 6) and (n_channels == 3 or (n_channels == 4 and alpha)):
        return color_names(n_channels, rgb=True)  # RGB, or YCbCr that tifffile decodes to RGB
    if photometric in (0, 1) and n_channels == 2 and alpha:
        return color_names(2, rgb=False)
    return ()


def _physical(
    tif: tifffile.TiffFile, series: int, page: Any, spatial: list[str]
) -> tuple[tuple[float, ...], str | None, tuple[str, ...]]:
    """Level-0 spacing along the presented spatial axes, its unit and OME channel names.

    ``page`` is the first page of the series' level 0.
    """
    sizes: dict[str, float] = {}
    units: dict[str, str | None] = {}
    names: tuple[str, ...] = ()
    if tif.is_ome and tif.ome_metadata:
        sizes, units, names = _ome_physical(tif.ome_metadata, series)
    elif tif.is_svs:
        if series != 0:  # MPP describes the baseline image, not thumbnail, label or macro
            return (1.0,) * len(spatial), None, ()
        match = _SVS_MPP.search(page.description)
        if match and float(match.group(1)) > 0:
            mpp = float(match.group(1))
            sizes = {"Y": mpp, "X": mpp}
            units = {"Y": "micrometer", "X": "micrometer"}
    elif tif.is_imagej:
        meta = tif.imagej_metadata or {}
        unit = normalize_unit(meta.get("unit"))
        if unit is not None:
            xres, yres = page.resolution
            if xres > 0 and yres > 0:
                sizes.update(Y=1.0 / yres, X=1.0 / xres)
            if isinstance(meta.get("spacing"), int | float):
                sizes["Z"] = float(meta["spacing"])
            units = dict.fromkeys(sizes, unit)
    if not sizes and 282 in page.tags and page.resolutionunit in _RESUNIT_UM:
        xres, yres = page.resolution
        if xres > 0 and yres > 0:
            factor = _RESUNIT_UM[page.resolutionunit]
            sizes = {"Y": factor / yres, "X": factor / xres}
            units = {"Y": "micrometer", "X": "micrometer"}
    keys = ["Z" if ax in _DEPTH_AXES else ax for ax in spatial]
    spacing, unit = common_unit(
        [sizes.get(k, 1.0) for k in keys], [units.get(k) if k in sizes else None for k in keys]
    )
    return spacing, unit, names


def _ome_physical(
    xml: str, series: int
) -> tuple[dict[str, float], dict[str, str | None], tuple[str, ...]]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}, {}, ()
    images = [el for el in root if el.tag.endswith("}Image") or el.tag == "Image"]
    if series >= len(images):
        return {}, {}, ()
    pixels = next((el for el in images[series] if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return {}, {}, ()
    sizes: dict[str, float] = {}
    units: dict[str, str | None] = {}
    for ax in "XYZ":
        value = pixels.get(f"PhysicalSize{ax}")
        try:
            size = float(value) if value is not None else 0.0
        except ValueError:
            size = 0.0
        if size > 0:
            sizes[ax] = size
            units[ax] = normalize_unit(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
    channels = [el for el in pixels if el.tag.endswith("Channel")]
    labels = tuple(el.get("Name") or "" for el in channels)
    names = labels if labels and all(labels) else ()
    return sizes, units, names
