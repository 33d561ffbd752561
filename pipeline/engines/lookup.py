"""Labelling by table lookup: from a pixel's packed value straight to its label."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from pipeline.engines.keys import ValueCodec
from pipeline.features import FeatureSpec
from pipeline.labels import label_dtype, nearest_centre

#: Key spaces up to this many bits may get a dense lookup table (2^24 uint8 labels = 16 MiB).
DENSE_LUT_BITS = 24
#: A dense table is built only for images of at least ``2^bits / DENSE_LUT_PIXEL_RATIO``
#: pixels: smaller images use the sorted-key search, so that a batch of many small 8-bit RGB
#: images does not hold a 16 MiB table per image (1,000 of them would hold 16 GiB).
DENSE_LUT_PIXEL_RATIO = 16


def use_dense_table(key_bits: int, n_pixels: int | None) -> bool:
    """Whether a labeller over ``key_bits``-bit keys gets a dense table: always up to 16 bits
    (64 KiB at most), up to :data:`DENSE_LUT_BITS` bits when the image has at least
    ``2^key_bits / DENSE_LUT_PIXEL_RATIO`` pixels (unknown size: yes), never beyond."""
    if key_bits <= 16:
        return True
    if key_bits > DENSE_LUT_BITS:
        return False
    return n_pixels is None or n_pixels * DENSE_LUT_PIXEL_RATIO >= (1 << key_bits)


@numba.njit(nogil=True, cache=True)
def _lookup(values, channels, flip, bits, table, out):  # pragma: no cover - compiled
    # Packing and table lookup in one pass (no key array).
    shift = np.uint64(bits)
    for i in range(values.shape[0]):
        key = np.uint64(0)
        for c in channels:
            key = (key << shift) | np.uint64(values[i, c] ^ flip)
        out[i] = table[key]


@numba.njit(nogil=True, cache=True)
def _lookup3(values, c0, c1, c2, flip, bits, table, out):  # pragma: no cover - compiled
    s1 = np.uint32(bits)
    s2 = np.uint32(2 * bits)
    for i in range(values.shape[0]):
        key = (
            (np.uint32(values[i, c0] ^ flip) << s2)
            | (np.uint32(values[i, c1] ^ flip) << s1)
            | np.uint32(values[i, c2] ^ flip)
        )
        out[i] = table[key]


@numba.njit(nogil=True, cache=True)
def _search(pixel_keys, keys, labels, starts, shift, out):  # pragma: no cover - compiled
    # The label of each pixel key among the sorted keys, 0 where absent: starts[b] is the
    # first key whose top bits are b, so a search covers one bucket of a key or two.
    drop = np.uint64(shift)
    for i in range(len(pixel_keys)):
        key = np.uint64(pixel_keys[i])
        b = key >> drop
        lo = starts[b]
        end = starts[b + 1]
        hi = end
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < end and keys[lo] == key:
            out[i] = labels[lo]


@numba.njit(nogil=True, cache=True)
def _bucket_starts(keys, shift, starts):  # pragma: no cover - compiled
    # starts[:-1] = np.searchsorted(keys, np.arange(n_buckets) << shift), in one pass.
    drop = np.uint64(shift)
    n_buckets = len(starts) - 1
    b = 0
    for i in range(len(keys)):
        top = np.uint64(keys[i]) >> drop
        while b <= top:
            starts[b] = i
            b += 1
    while b <= n_buckets:
        starts[b] = len(keys)
        b += 1


def bucket_starts(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, int]:
    """Where each bucket of sorted unsigned ``keys`` starts, buckets being the keys' top bits.

    Returns ``(starts, shift)``: keys with ``key >> shift == b`` are ``keys[starts[b]:
    starts[b + 1]]``. One to two buckets per key (at least 1 bit, at most ``key_bits``), so a
    search takes a step or two, and ``starts`` (int32 up to 2^31 keys) takes at most 8 bytes
    per key.
    """
    bucket_bits = int(min(key_bits, max(1, len(keys).bit_length())))
    shift = key_bits - bucket_bits
    starts = np.empty((1 << bucket_bits) + 1, dtype=np.int32 if len(keys) < 2**31 else np.intp)
    _bucket_starts(keys, shift, starts)
    return starts, shift


def lookup_sorted(
    codec: ValueCodec, block: np.ndarray, keys: np.ndarray, labels: np.ndarray,
    starts: np.ndarray, shift: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the pixels of ``block`` and their labels: the label of the same key among the
    sorted unsigned ``keys``, 0 where absent, as ``np.searchsorted`` finds it (compiled, GIL
    released); ``starts, shift`` from :func:`bucket_starts`."""
    pixel_keys = codec.pack(block)
    out = np.zeros(len(pixel_keys), dtype=labels.dtype)
    if len(keys):
        _search(pixel_keys, keys, labels, starts, shift, out)
    return pixel_keys, out


def lookup_dense(codec: ValueCodec, block: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[codec.pack(block)]`` without materialising the keys (compiled, GIL released)."""
    values, channels, flip = codec.pack_args(block)
    out = np.empty(len(values), dtype=table.dtype)
    if len(channels) == 3 and codec.key_bits <= 32:
        _lookup3(values, int(channels[0]), int(channels[1]), int(channels[2]), flip,
                 codec.channel_bits, table, out)
    else:
        _lookup(values, channels, flip, codec.channel_bits, table, out)
    return out


class LookupLabeller:
    """Labels pixels 1..k through a table built from the distinct values of the image.

    Parameters
    ----------
    spec : FeatureSpec
    codec : ValueCodec
    centres : ndarray, shape (k, n_features)
    keys : ndarray
        Sorted distinct keys seen when fitting.
    labels : ndarray
        Label (1..k) of each key.
    n_pixels : int or None
        Pixels of the image (chooses the dense table or the search, :func:`use_dense_table`).

    Key spaces of up to :data:`DENSE_LUT_BITS` bits are looked up in a dense table indexed by
    key when the image is large enough (:func:`use_dense_table`), others by binary search in
    ``keys``. Pickles hold only ``keys`` and ``labels`` (the
    dense table is rebuilt on unpickling), so a graph carries a few bytes per distinct value.
    Values not seen when fitting are labelled by nearest-centre search; pixels without data
    (:meth:`FeatureSpec.valid_mask`) get label 0.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        codec: ValueCodec,
        centres: np.ndarray,
        keys: np.ndarray,
        labels: np.ndarray,
        n_pixels: int | None = None,
    ) -> None:
        self.spec = spec
        self.n_pixels = n_pixels
        self.codec = codec
        self.centres = np.asarray(centres, dtype=np.float64)
        self.keys = np.asarray(keys)
        self.labels = np.asarray(labels, dtype=label_dtype(len(self.centres)))
        self.table: np.ndarray | None = None
        self.starts: np.ndarray | None = None
        if use_dense_table(codec.key_bits, n_pixels):
            self.table = np.zeros(1 << codec.key_bits, dtype=self.labels.dtype)
            self.table[self.keys.astype(np.intp)] = self.labels
        else:
            if self.keys.dtype.kind != "u":  # compared with uint64 keys: no signed/unsigned mix
                self.keys = self.keys.astype(np.uint64)
            self.starts, self.shift = bucket_starts(self.keys, codec.key_bits)

    @classmethod
    def build(
        cls, spec: FeatureSpec, codec: ValueCodec, centres: np.ndarray, keys: np.ndarray,
        index: np.ndarray,
        n_pixels: int | None = None,
    ) -> LookupLabeller:
        """Labeller mapping sorted distinct ``keys`` to clusters ``index`` (0-based)."""
        return cls(spec, codec, centres, keys, np.asarray(index) + 1, n_pixels)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "codec": self.codec, "centres": self.centres,
            "keys": self.keys, "labels": self.labels, "n_pixels": self.n_pixels,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __dask_tokenize__(self) -> tuple:
        from dask.base import tokenize

        return (type(self).__name__, tokenize(self.spec, self.centres, self.keys, self.labels))

    def __call__(self, block: np.ndarray, origin: tuple[int, ...]) -> np.ndarray:
        keys = None
        if self.table is not None:
            labels = lookup_dense(self.codec, block, self.table)
        else:
            keys, labels = lookup_sorted(self.codec, block, self.keys, self.labels,
                                         self.starts, self.shift)
        valid = self.spec.valid_mask(block)  # None (no pass) for images without no-data rules
        if valid is not None:
            labels[~valid] = 0
            unseen = np.flatnonzero((labels == 0) & valid)
        else:
            unseen = np.flatnonzero(labels == 0)
        if len(unseen):
            if keys is None:
                keys = self.codec.pack(block)
            values = self.codec.unpack(keys[unseen])
            feats = self.spec.value_features(values)
            labels[unseen] = nearest_centre(feats, self.centres)[0] + 1
        return labels.reshape(block.shape[: len(self.spec.spatial_shape)])
