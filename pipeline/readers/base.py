"""The reader interface: metadata eagerly, pixels lazily inside tasks.

A reader turns a path into an :class:`ImageSource`. Opening reads only metadata. Pixels are read
by a :class:`BlockReader`, a small picklable object whose ``__getitem__`` opens the file and
reads one region; ``dask.array.from_array`` maps it over chunks, so every task reads its own
region and the graph pickles for a process-based cluster.

Axis convention for every source: spatial axes first (``yx`` or ``zyx``), then an optional
trailing channel axis ``c``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import dask.array as da
import numpy as np

from pipeline.config import DEFAULT_MAX_PIXELS


@runtime_checkable
class BlockReader(Protocol):
    """Picklable array-like that reads a region of an image from storage.

    Must define ``shape``, ``dtype`` and ``ndim`` and support ``reader[tuple_of_slices]``,
    returning a NumPy array in the source's axis order.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    ndim: int

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray: ...




@dataclass(frozen=True)
class ReadOptions:
    """How to open an input: the config keys that readers use.

    Attributes
    ----------
    level : int
        Pyramid level of pyramidal TIFF/SVS and OME-Zarr inputs (0 = full resolution).
    series : int
        TIFF series; for a folder of several DICOM series, which series.
    array_path : str or None
        Array inside a Zarr group.
    max_pixels : int
        Refuse inputs whose header declares more pixels than this, before allocating anything.
    missing_slices : {"warn", "error"}
        What a DICOM series with missing slices (irregular positions) gives.
    reorient : bool
        Reorient NIfTI volumes to the closest canonical (RAS+) orientation.
    """

    level: int = 0
    series: int = 0
    array_path: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    missing_slices: str = "warn"
    reorient: bool = False


@dataclass(frozen=True)
class ImageSource:
    """An opened image: metadata plus a lazy pixel reader.

    Attributes
    ----------
    path : str
        The path or URL the user gave.
    axes : str
        ``"yx"``, ``"yxc"``, ``"zyx"`` or ``"zyxc"``.
    reader : BlockReader
        Reads regions of pixels; pickled into the Dask graph.
    spacing : tuple of float
        Physical size of a pixel along each spatial axis (same order as ``axes``).
    unit : str or None
        Unit of ``spacing`` (an OME-NGFF space unit such as ``"micrometer"``), if known.
    native_chunks : tuple of int or None
        The storage tile / chunk shape, used to align Dask chunks with storage.
    channel_names : tuple of str
        One name per channel (``("R", "G", "B", "A")``); empty for single-channel images.
    format : str
        Short format name (``"tiff"``, ``"zarr"``, ``"png"``, ``"dicom"``, ...).
    metadata : dict
        Format-specific facts worth recording (level, series, modality, rescale, photometric
        interpretation, orientation transforms applied, ...).
    no_data : tuple of (float, float)
        Closed intervals of values (as read, after any rescale) that mean "no data", such as
        DICOM pixel padding; those pixels get label 0 and are left out of fits and statistics.
    """

    path: str
    axes: str
    reader: BlockReader
    spacing: tuple[float, ...]
    unit: str | None = None
    native_chunks: tuple[int, ...] | None = None
    channel_names: tuple[str, ...] = ()
    format: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    no_data: tuple[tuple[float, float], ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.reader.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.reader.dtype)

    @property
    def spatial_ndim(self) -> int:
        return len(self.axes.replace("c", ""))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.shape[: self.spatial_ndim]

    @property
    def n_channels(self) -> int:
        return self.shape[-1] if self.axes.endswith("c") else 1

    @property
    def has_alpha(self) -> bool:
        return self.n_channels in (2, 4) and bool(self.channel_names) and (
            self.channel_names[-1].upper() == "A"
        )

    def to_dask(self, chunks: tuple[int, ...]) -> da.Array:
        """Return the image as a lazy Dask array.

        Parameters
        ----------
        chunks : tuple of int
            Chunk size along each spatial axis; the channel axis is never split.
        """
        full = tuple(chunks[: self.spatial_ndim]) + (
            (self.n_channels,) if self.axes.endswith("c") else ()
        )
        return da.from_array(
            self.reader,
            chunks=full,
            asarray=False,
            fancy=False,
            lock=False,
            inline_array=True,
            meta=np.empty((0,) * len(self.shape), dtype=self.dtype),
            name=f"read-{_token(self)}",
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able summary recorded in output metadata."""
        return {
            "path": self.path,
            "format": self.format,
            "axes": self.axes,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "spacing": list(self.spacing),
            "unit": self.unit,
            "channel_names": list(self.channel_names),
            **({"no_data": [list(r) for r in self.no_data]} if self.no_data else {}),
            **({"metadata": self.metadata} if self.metadata else {}),
            **({"stamp": stamp} if (stamp := input_stamp(self.path)) else {}),
        }


def input_stamp(path: str | None) -> dict[str, int] | None:
    """What identifies the input on disk now, cheaply, to tell later whether it was replaced.

    A file: its size and modification time (ns). A folder (DICOM series, Zarr store, folder of
    images): the number, total size and latest modification time of its direct entries (not
    recursive: a chunk rewritten deep inside a Zarr store goes unnoticed). None for URLs,
    arrays and anything that cannot be stat'ed.
    """
    if not path or "://" in str(path):
        return None
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode):
            return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
        if not stat.S_ISDIR(info.st_mode):
            return None
        entries = [entry.stat() for entry in os.scandir(path)]
    except OSError:
        return None
    return {
        "entries": len(entries),
        "size": sum(e.st_size for e in entries if stat.S_ISREG(e.st_mode)),
        "mtime_ns": max([info.st_mtime_ns, *(e.st_mtime_ns for e in entries)]),
    }


def _token(source: ImageSource) -> str:
    from dask.base import tokenize

    return tokenize(source.path, source.axes, source.shape, str(source.dtype), source.metadata)
