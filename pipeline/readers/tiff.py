"""TIFF, BigTIFF, OME-TIFF, ImageJ TIFF and Aperio SVS files, read by tile through tifffile.

A series (``series``) and pyramid level (``level``) of the file is exposed through tifffile's
Zarr store, so each task decodes only the tiles or strips its region touches. Each block is
shown as a viewer shows it: colour models are applied (palette, MinIsWhite, CMYK, YCbCr; see
:mod:`pipeline.readers.colour`) and the Orientation tag too (see
:mod:`pipeline.readers.orientation`); ``metadata["photometric"]`` records the stored
interpretation, ``metadata["transform"]`` what was applied.
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
from pipeline.readers.colour import ColourModel, miniswhite_model, palette_model
from pipeline.readers.common import (
    RegionReader,
    check_size,
    color_names,
    common_unit,
    file_stamp,
    length_unit,
    local_path,
    mapped_key,
    pixel_dtype,
    present_chunks,
    to_presented,
)
from pipeline.readers.orientation import (
    AS_STORED,
    DESCRIPTIONS,
    Orientation,
    orientation_code,
)

#: tifffile axis letters shown as the channel axis, and as the depth (z) axis.
_CHANNEL_AXES = "CS"
_DEPTH_AXES = "ZQIP"
#: Micrometers per TIFF ResolutionUnit (2 inch, 3 centimeter, 4 millimeter, 5 micrometer).
_RESUNIT_UM = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}
#: Microns per pixel in an Aperio ImageDescription ("...|MPP = 0.4990|...").
_SVS_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.]+(?:[eE][-+]?\d+)?)")
#: Compression schemes whose codec turns YCbCr into RGB (JPEG, old-style JPEG, JPEG XL, ...).
_JPEG_CODECS = {6, 7, 33007, 34892, 50002}
#: Photometric interpretations kmseg cannot show as a viewer does: refused.
_UNSUPPORTED_PHOTOMETRIC = {8: "CIELAB", 9: "ICCLAB", 10: "ITULAB", 32844: "LOGL",
                            32845: "LOGLUV"}


@functools.lru_cache(maxsize=16)
def _open_level(path: str, series: int, level: int, stamp: tuple[int, int]) -> zarr.Array:
    # The store keeps the TiffFile (and its file handle) alive for as long as it is cached;
    # ``stamp`` only keys the cache.
    tif = tifffile.TiffFile(path)
    store = tif.series[series].aszarr(level=level, squeeze=False, maxworkers=os.cpu_count() or 2)
    return zarr.open(store, mode="r")


@dataclass(frozen=True)
class TiffBlockReader(RegionReader):
    """Reads a region of one series and level of a TIFF file, as a viewer shows it.

    ``order[i]`` is the axis of the unsqueezed tifffile array shown as stored presented axis
    ``i``; ``shape`` and ``dtype`` are those of the displayed image, after ``colour`` (which
    may add or change the channel axis) and ``orientation``.
    """

    path: str
    series: int
    level: int
    shape: tuple[int, ...]
    dtype: np.dtype
    order: tuple[int, ...]
    native_ndim: int
    colour: ColourModel | None = None
    stored_channels: bool = False
    orientation: Orientation = AS_STORED

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        array = _open_level(self.path, self.series, self.level, file_stamp(self.path))
        if self.colour is None:
            block = array[mapped_key(box, self.order, self.native_ndim)]
            return to_presented(np.asarray(block), self.order)
        # A colour model needs every stored sample; the displayed channels are cut after.
        out_channels = self.colour.n_out > 0
        spatial = box[:-1] if out_channels else box
        stored = spatial + ((slice(None),) if self.stored_channels else ())
        block = to_presented(
            np.asarray(array[mapped_key(stored, self.order, self.native_ndim)]), self.order
        )
        shown = self.colour.apply(block)
        return shown[..., box[-1]] if out_channels else shown


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
    options : ReadOptions, optional
        ``max_pixels`` is checked against the chosen level's declared shape.

    Returns
    -------
    ImageSource
        Axes ``yx``, ``yxc``, ``zyx`` or ``zyxc`` as displayed (after the colour model and the
        Orientation tag); ``metadata`` records ``photometric``, ``orientation`` and
        ``transform``.

    Raises
    ------
    InputError
        For a damaged or truncated file, an unsupported colour model, axis layout or dtype, an
        empty image or one larger than ``max_pixels``.
    """
    # tifffile logs each series parser that fails on a damaged file; the InputError says it all.
    logger = logging.getLogger("tifffile")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            return _open(path, tif, level, series, options or ReadOptions())
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from None
    finally:
        logger.setLevel(previous)


def _open(
    path: str, tif: tifffile.TiffFile, level: int, series: int, options: ReadOptions
) -> ImageSource:
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
    if keyframe.is_subsampled and int(keyframe.compression) not in _JPEG_CODECS:
        raise InputError(path, "chroma-subsampled YCbCr without JPEG compression is not "
                               "supported; convert the file to RGB")
    try:
        keyframe.decode  # noqa: B018 - raises if the compression codec is not available
    except Exception as exc:
        raise InputError(path, f"cannot decode this TIFF ({exc})") from None
    stored_dtype = pixel_dtype(path, chosen.dtype)

    native_axes = chosen.get_axes(False)
    native_shape = tuple(int(n) for n in chosen.get_shape(False))
    if 0 in native_shape:
        raise InputError(path, f"the image is empty (shape {native_shape}, axes {native_axes})")
    stored_axes, order = _map_axes(path, native_axes, native_shape)
    stored_shape = tuple(native_shape[a] for a in order)
    check_size(path, stored_shape, stored_axes, options.max_pixels)
    _check_extent(path, chosen)
    chunks = present_chunks(
        _native_chunks(keyframe, native_axes, native_shape), order, stored_shape, stored_axes
    )
    n_stored = stored_shape[-1] if stored_axes.endswith("c") else 1
    colour, photometric, applied = _colour_model(path, keyframe, stored_dtype, n_stored)

    axes, shape, dtype = stored_axes, stored_shape, stored_dtype
    if colour is not None:
        dtype = colour.dtype
        if colour.n_out and not stored_axes.endswith("c"):
            axes, shape, chunks = axes + "c", (*shape, colour.n_out), (*chunks, colour.n_out)
        elif colour.n_out:
            shape, chunks = (*shape[:-1], colour.n_out), (*chunks[:-1], colour.n_out)
    code = orientation_code(keyframe.tags.valueof(274)) if 274 in keyframe.tags else 1
    orientation = Orientation(code, axes.index("y"))
    shape = orientation.displayed_shape(shape)
    chunks = orientation.displayed_shape(chunks)

    base_shape = dict(zip(base.get_axes(False), base.get_shape(False), strict=True))
    spatial = [native_axes[a] for a in order if native_axes[a] not in _CHANNEL_AXES]
    spacing, unit, ome_names = _physical(tif, series, base.keyframe, spatial)
    # Spacing is stated for level 0; coarser levels scale it by the size ratio.
    spacing = tuple(
        s * base_shape[ax] / native_shape[native_axes.index(ax)]
        for s, ax in zip(spacing, spatial, strict=True)
    )
    spacing = orientation.displayed_shape(spacing)
    n_channels = shape[-1] if axes.endswith("c") else 1
    if colour is not None and colour.n_out:
        names = color_names(n_channels, rgb=True)
    elif ome_names and len(ome_names) == n_channels and n_channels > 1:
        names = ome_names
    elif axes.endswith("c"):
        names = _sample_names(keyframe, n_channels)
    else:
        names = ()
    if code != 1:
        applied.append(f"Orientation {code}: {DESCRIPTIONS[code]}")
    return ImageSource(
        path=path,
        axes=axes,
        reader=TiffBlockReader(
            local_path(path), series, level, shape, dtype, order, len(native_shape),
            colour, stored_axes.endswith("c"), orientation,
        ),
        spacing=spacing,
        unit=unit,
        native_chunks=chunks,
        channel_names=names,
        format="tiff",
        metadata={
            "series": series,
            "level": level,
            "n_series": len(all_series),
            "n_levels": len(levels),
            "kind": str(base.kind),
            "compression": str(keyframe.compression.name),
            "photometric": photometric,
            "orientation": code,
            "transform": "; ".join(applied) if applied else "none",
        },
    )


def _colour_model(
    path: str, keyframe: Any, dtype: np.dtype, n_stored: int
) -> tuple[ColourModel | None, str, list[str]]:
    """The colour model to apply, the stored photometric name and what is applied."""
    code = int(keyframe.photometric)
    try:
        name = tifffile.PHOTOMETRIC(code).name.lower()
    except ValueError:
        name = str(code)
    if code in _UNSUPPORTED_PHOTOMETRIC:
        raise InputError(path, f"{_UNSUPPORTED_PHOTOMETRIC[code]} TIFF colour model is not "
                               "supported; convert the file to RGB")
    extra = len(keyframe.extrasamples)
    alpha = extra == 1 and int(keyframe.extrasamples[0]) in (1, 2)
    if code == 3:  # palette
        if n_stored != 1:
            raise InputError(path, f"palette TIFF with {n_stored} samples per pixel is not "
                                   "supported")
        model = palette_model(path, keyframe.colormap)
        bits = "16-bit" if model.dtype == np.uint16 else "8-bit"
        return model, name, [f"palette indices expanded to RGB through the colormap ({bits})"]
    if code == 0:  # MinIsWhite
        tags = keyframe.tags
        smin = tags.valueof(340) if 340 in tags else None
        smax = tags.valueof(341) if 341 in tags else None
        smin = float(np.min(smin)) if smin is not None else None
        smax = float(np.max(smax)) if smax is not None else None
        model = miniswhite_model(dtype, int(keyframe.bitspersample), smin, smax)
        how = ("logical not" if dtype.kind == "b" else "-1 - v" if dtype.kind == "i"
               else f"{model.white:g} - v")
        return model, name, [f"MinIsWhite inverted ({how}) so that white stays white"]
    if code == 5:  # separated
        inkset = keyframe.tags.valueof(332) if 332 in keyframe.tags else 1
        inks = n_stored - extra
        if int(inkset or 1) != 1 or inks != 4:
            raise InputError(path, f"separated TIFF with {inks} inks (InkSet {inkset}) cannot "
                                   "be shown as RGB; only CMYK (4 inks, optional alpha) is "
                                   "supported")
        if extra and not alpha:
            raise InputError(path, f"CMYK TIFF with {extra} extra ink or sample channel(s): "
                                   "only an alpha extra sample is supported")
        model = ColourModel("cmyk", dtype, 4 if alpha else 3)
        return model, name, ["CMYK converted to RGB (R = (1 - C)(1 - K), ...)"]
    if code == 6:  # YCbCr
        if int(keyframe.compression) in _JPEG_CODECS:
            return None, name, ["YCbCr decoded to RGB by the JPEG codec"]
        if dtype != np.uint8 or n_stored - extra != 3:
            raise InputError(path, "YCbCr TIFF other than 8-bit, 3 samples is not supported")
        coeffs = keyframe.tags.valueof(529) if 529 in keyframe.tags else None
        coefficients = tuple(float(c) for c in coeffs) if coeffs else (0.299, 0.587, 0.114)
        model = ColourModel("ycbcr", np.dtype(np.uint8), 4 if alpha else 3,
                            coefficients=coefficients)  # type: ignore[arg-type]
        return model, name, ["YCbCr converted to RGB (ITU-R BT.601 full range)"]
    return None, name, []


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
        sizes, units, names = _ome_physical(tif.ome_metadata, series, tif.filehandle.path)
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
        unit = length_unit(meta.get("unit"), tif.filehandle.path, "ImageJ unit")
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
    xml: str, series: int, path: str
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
        unit = length_unit(pixels.get(f"PhysicalSize{ax}Unit", "µm"), path,
                           f"OME PhysicalSize{ax}Unit")
        if size > 0 and unit is not None:
            sizes[ax] = size
            units[ax] = unit
    channels = [el for el in pixels if el.tag.endswith("Channel")]
    labels = tuple(el.get("Name") or "" for el in channels)
    names = labels if labels and all(labels) else ()
    return sizes, units, names
