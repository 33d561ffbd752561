"""Helpers shared by the readers: region keys, axis mapping, errors, caches and units."""

from __future__ import annotations

import math
import operator
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from pipeline.errors import InputError, KmsegWarning
from pipeline.paths import is_url
from pipeline.readers.orientation import AS_STORED, Orientation

#: OME-NGFF space unit for each spelling found in TIFF, OME-XML, ImageJ, NIfTI and Zarr metadata.
_UNIT_ALIASES = {
    "angstrom": "angstrom",
    "å": "angstrom",
    "nanometer": "nanometer",
    "nm": "nanometer",
    "micrometer": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "\\u00b5m": "micrometer",
    "millimeter": "millimeter",
    "mm": "millimeter",
    "centimeter": "centimeter",
    "cm": "centimeter",
    "meter": "meter",
    "m": "meter",
    "kilometer": "kilometer",
    "km": "kilometer",
    "inch": "inch",
    "in": "inch",
}

#: Size of each OME-NGFF unit in meters, to bring axes with different units to one unit.
_UNIT_METERS = {
    "angstrom": 1e-10,
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
    "kilometer": 1e3,
    "inch": 0.0254,
}

#: Spellings of "no physical unit": the spacing is in pixels.
_PIXEL_UNITS = frozenset({"", "pixel", "pixels", "px", "none"})


class ReadError(InputError):
    """An :class:`InputError` raised inside a task (it pickles back from worker processes)."""


#: NumPy dtype kinds that readers return: bool, signed and unsigned integers, floats.
_READABLE_KINDS = "biuf"


def pixel_dtype(path: str, dtype: Any) -> np.dtype:
    """The native-byte-order, canonical form of a stored pixel dtype.

    ``np.dtype("q")`` (C ``long long``, as tifffile reports 64-bit integers) and
    ``np.dtype("l")`` compare equal but are distinct types that Zarr's dtype registry does not
    match; the canonical form is the one ``np.dtype("<i8")`` gives.

    Raises
    ------
    InputError
        For dtypes kmseg cannot segment (complex, object, structured, strings, datetimes,
        sub-arrays), naming the file and the dtype.
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise InputError(path, f"unsupported pixel data type {dtype!r}") from None
    if dtype.kind not in _READABLE_KINDS or dtype.fields is not None or dtype.subdtype:
        raise InputError(
            path,
            f"unsupported pixel data type {dtype.str} ({dtype.name}): kmseg reads bool, "
            "integer and floating-point images",
        )
    return np.dtype(dtype.newbyteorder("=").str).newbyteorder("=")


def rescaled_int_dtype(ends: Sequence[float]) -> np.dtype | None:
    """The narrowest of int16 and int32 holding every value in ``ends`` (the ends of an
    integer-rescaled stored range), or None when neither does.

    Integer rescales (DICOM RescaleSlope/Intercept, NIfTI scl_slope/scl_inter) keep exact
    integer values this way, so the exact engine applies.
    """
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if min(ends) >= info.min and max(ends) <= info.max:
            return np.dtype(dtype)
    return None


def check_size(path: str, shape: Sequence[int], axes: str, max_pixels: int) -> None:
    """Refuse an image with an empty axis or more pixels than ``max_pixels``, from its header.

    Parameters
    ----------
    shape : sequence of int
        Declared shape, in the order of ``axes``.
    axes : str
        ``"yx"``, ``"yxc"``, ``"zyx"`` or ``"zyxc"``; the channel axis does not count as pixels.
    max_pixels : int
        The ``max_pixels`` config key.

    Raises
    ------
    InputError
        Naming the file, the declared shape and how to proceed.
    """
    shape = tuple(int(n) for n in shape)
    if any(n <= 0 for n in shape):
        raise InputError(path, f"the image is empty (shape {shape}, axes {axes})")
    pixels = math.prod(n for n, ax in zip(shape, axes, strict=False) if ax != "c")
    if pixels > max_pixels:
        raise InputError(
            path,
            f"the header declares {pixels:,} pixels (shape {shape}), more than max_pixels = "
            f"{max_pixels:,}; raise max_pixels (--max-pixels) if the image is genuine",
        )


def check_decoded_size(path: str, nbytes: int, *, fraction: float = 0.5) -> None:
    """Refuse an image that must be decoded whole when it would not fit in memory.

    The limit is ``fraction`` of the memory available now
    (:func:`pipeline.chunking.local_memory_bytes`); each process that reads the image holds
    one decoded copy.

    Raises
    ------
    InputError
        Saying the size and to convert the file to a tiled TIFF or Zarr, read lazily.
    """
    from pipeline.chunking import local_memory_bytes

    available = local_memory_bytes()
    if nbytes > fraction * available:
        raise InputError(
            path,
            f"this format is decoded whole and needs {nbytes / 2**30:.1f} GiB, more than "
            f"{fraction:.0%} of the {available / 2**30:.1f} GiB of memory available; convert it "
            "to a tiled TIFF or a Zarr array (read tile by tile), e.g. with tifffile or vips",
        )


def local_path(path: str) -> str:
    """Absolute form of a local path, as tasks may run in another working directory.

    URLs are returned as given.
    """
    return path if is_url(path) else os.path.abspath(path)


def file_stamp(path: str) -> tuple[int, int]:
    """Modification time and size: part of per-process cache keys, so a replaced file is
    opened afresh by long-lived workers."""
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


def normalize_unit(unit: object) -> str | None:
    """Return the OME-NGFF name of a length unit, or ``None`` if it is unknown or a pixel."""
    if unit is None:
        return None
    return _UNIT_ALIASES.get(str(unit).strip().lower())


def length_unit(unit: object, path: str, what: str) -> str | None:
    """:func:`normalize_unit`, with a :class:`~pipeline.errors.KmsegWarning` naming ``path``
    when ``unit`` is given but is no length unit kmseg knows (its physical size is then not
    used: ImageJ's ``A``, a typo), rather than dropping it without a word.

    ``what`` names where the unit was found (``"ImageJ unit"``, ``"OME PhysicalSizeXUnit"``).
    """
    name = normalize_unit(unit)
    if name is None and unit is not None and str(unit).strip().lower() not in _PIXEL_UNITS:
        warnings.warn(f"{path}: {what} {str(unit)!r} is no length unit kmseg knows; that "
                      "physical size is not used", KmsegWarning, stacklevel=2)
    return name


def common_unit(
    spacing: Sequence[float], units: Sequence[str | None]
) -> tuple[tuple[float, ...], str | None]:
    """Express per-axis spacings in one unit (that of the last, x, axis when they differ).

    Axes without a unit keep their value and take the common unit.
    """
    known = [u for u in units if u is not None]
    if not known:
        return tuple(float(s) for s in spacing), None
    target = units[-1] or known[0]
    out = []
    for value, unit in zip(spacing, units, strict=True):
        if unit is None or unit == target:
            out.append(float(value))
        else:
            converted = float(value) * _UNIT_METERS[unit] / _UNIT_METERS[target]
            out.append(float(f"{converted:.12g}"))  # 0.1, not 0.10000000000000002
    return tuple(out), target


def color_names(n_channels: int, *, rgb: bool) -> tuple[str, ...]:
    """Channel names for grey+alpha (``L, A``) and RGB(A) data; empty otherwise."""
    if rgb and n_channels in (3, 4):
        return ("R", "G", "B", "A")[:n_channels]
    if not rgb and n_channels == 2:
        return ("L", "A")
    return ()


def split_key(
    key: Any, shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[Any, ...] | None]:
    """Split an index into a bounding box of step-1 slices and an index into that box.

    The second item is ``None`` when the box is the answer (plain step-1 slices, the case
    Dask produces).
    """
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = (slice(None),) * (len(shape) - len(key) + 1)
        key = key[:i] + fill + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices ({len(key)}) for an array of {len(shape)} dimensions")
    key = key + (slice(None),) * (len(shape) - len(key))
    box: list[slice] = []
    post: list[Any] = []
    plain = True
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step == 1:
                box.append(slice(start, max(start, stop)))
                post.append(slice(None))
                continue
            plain = False
            picked = range(start, stop, step)
            if not picked:
                box.append(slice(0, 0))
                post.append(slice(None))
                continue
            lo, hi = min(picked), max(picked) + 1
            rel_stop = stop - lo
            box.append(slice(lo, hi))
            post.append(slice(start - lo, rel_stop if rel_stop >= 0 else None, step))
        else:
            i = operator.index(k)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of bounds for an axis of size {n}")
            plain = False
            box.append(slice(i, i + 1))
            post.append(0)
    return tuple(box), (None if plain else tuple(post))


class RegionReader:
    """Mixin for frozen-dataclass block readers.

    Subclasses define the fields ``path``, ``shape`` and ``dtype`` and a method
    ``_read(box)`` that returns the pixels in a box of step-1 slices. This class handles other
    keys, checks the result and turns library errors into :class:`ReadError` naming the file.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    #: How stored rows and columns are shown; ``shape`` is the displayed shape and ``_read``
    #: receives stored boxes (a class default of "as stored"; readers may make it a field).
    orientation: Orientation = AS_STORED

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        raise NotImplementedError

    def _read_displayed(self, box: tuple[slice, ...]) -> np.ndarray:
        orientation = self.orientation
        if orientation.code == 1:
            return self._read(box)
        return orientation.apply(self._read(orientation.stored_box(box, self.shape)))

    def __getitem__(self, key: Any) -> np.ndarray:
        box, post = split_key(key, self.shape)
        expected = tuple(s.stop - s.start for s in box)
        if 0 in expected:
            out = np.empty(expected, dtype=self.dtype)
        else:
            try:
                out = self._read_displayed(box)
            except InputError:
                raise
            except Exception as exc:
                raise ReadError(
                    self.path, f"cannot read pixels: {type(exc).__name__}: {exc}"
                ) from exc
            if out.shape != expected:
                raise ReadError(
                    self.path, f"read a region of shape {out.shape}, expected {expected}"
                )
            out = np.ascontiguousarray(out, dtype=self.dtype)
        return out if post is None else out[post]


def mapped_key(box: tuple[slice, ...], order: tuple[int, ...], native_ndim: int) -> tuple:
    """Index into a stored array for a box in presented axis order.

    ``order[i]`` is the stored axis shown as presented axis ``i``; stored axes not shown are
    singletons and get index 0.
    """
    key: list[Any] = [0] * native_ndim
    for sl, axis in zip(box, order, strict=True):
        key[axis] = sl
    return tuple(key)


def to_presented(block: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """Transpose a block read with :func:`mapped_key` into presented axis order."""
    kept = sorted(order)
    perm = [kept.index(axis) for axis in order]
    return block if perm == list(range(len(perm))) else np.transpose(block, perm)


def present_chunks(
    native_chunks: Sequence[int], order: tuple[int, ...], shape: tuple[int, ...], axes: str
) -> tuple[int, ...]:
    """Storage chunk shape in presented order, the channel axis whole."""
    chunks = [min(int(native_chunks[a]), n) for a, n in zip(order, shape, strict=True)]
    if axes.endswith("c"):
        chunks[-1] = shape[-1]
    return tuple(chunks)


class LoadOnceCache:
    """A small thread-safe LRU cache whose values are loaded once per key.

    Concurrent tasks asking for a missing key wait for one ``load`` instead of each loading it.
    Used for images that can only be decoded whole (:class:`DecodeCache`) and for local copies
    of remote files (:class:`pipeline.readers.urls.LocalCopies`).

    Parameters
    ----------
    maxsize : int
        Entries kept; the least recently used is dropped (and given to ``evict``) beyond it.
    valid : callable, optional
        ``valid(value)``: False makes a cached value count as missing (a deleted copy).
    evict : callable, optional
        Called with each value dropped from the cache.
    """

    def __init__(
        self,
        maxsize: int,
        *,
        valid: Callable[[Any], bool] | None = None,
        evict: Callable[[Any], None] | None = None,
    ) -> None:
        self.maxsize = maxsize
        self._valid = valid or (lambda value: True)
        self._evict = evict or (lambda value: None)
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def _cached(self, key: Hashable) -> tuple[bool, Any]:
        if key in self._data and self._valid(self._data[key]):
            self._data.move_to_end(key)
            return True, self._data[key]
        return False, None

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """Return the cached value for ``key``, calling ``load`` once if it is missing."""
        with self._lock:
            found, value = self._cached(key)
            if found:
                return value
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                found, value = self._cached(key)
                if found:
                    return value
            try:
                value = load()
                with self._lock:
                    self._data[key] = value
                    while len(self._data) > self.maxsize:
                        self._evict(self._data.popitem(last=False)[1])
            finally:
                with self._lock:
                    self._pending.pop(key, None)
        return value

    def clear(self) -> None:
        """Drop every cached value."""
        with self._lock:
            for value in self._data.values():
                self._evict(value)
            self._data.clear()


class DecodeCache(LoadOnceCache):
    """A :class:`LoadOnceCache` of decoded whole images (formats that cannot be read by
    region)."""


def is_dicom_file(path: str) -> bool:
    """Whether ``path`` starts with a DICOM preamble (``DICM`` at byte 128).

    Here rather than in :mod:`pipeline.readers.dicom` so that telling files apart does not
    import pydicom (0.13 s of every start).
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False
