"""Packing integer pixel values into one integer key per pixel.

The exact engine counts distinct pixel values. A :class:`ValueCodec` maps the feature channels of
an integer pixel to one unsigned key (channel 0 in the most significant bits), maps keys back to
values, and coarsens keys by dropping low bits of every channel (for binned summaries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from pipeline.features import FeatureSpec

#: Widest key of several channels the exact engine accepts when forced (one channel of any
#: integer dtype always packs, into at most 64 bits).
MAX_KEY_BITS = 48

#: Widest key of several channels ``engine: auto`` sends to the exact engine: tables then hold
#: at most 2^24 rows whatever the image size (8-bit RGB, 16-bit grey, ...). One channel of any
#: integer dtype goes to the exact engine too, with a cap on the distinct values found
#: (:data:`pipeline.engines.table.AUTO_MAX_DISTINCT`) beyond which it falls back to dask-ml.
AUTO_MAX_KEY_BITS = 24


@numba.njit(nogil=True, cache=True)
def _pack(values, channels, flip, bits, out):  # pragma: no cover - compiled
    shift = np.uint64(bits)
    for i in range(values.shape[0]):
        key = np.uint64(0)
        for c in channels:
            key = (key << shift) | np.uint64(values[i, c] ^ flip)
        out[i] = key


@numba.njit(nogil=True, cache=True)
def _pack3(values, c0, c1, c2, flip, bits, out):  # pragma: no cover - compiled
    # Three channels (RGB) unrolled, in the key's own width: several times faster than _pack.
    dt = out.dtype.type
    s1 = dt(bits)
    s2 = dt(2 * bits)
    for i in range(values.shape[0]):
        out[i] = (
            (dt(values[i, c0] ^ flip) << s2)
            | (dt(values[i, c1] ^ flip) << s1)
            | dt(values[i, c2] ^ flip)
        )


def pack_into(
    values: np.ndarray, channels: np.ndarray, flip: Any, bits: int, out: np.ndarray
) -> None:
    """Pack rows of ``values`` (``(n, c)`` unsigned) into ``out`` (compiled, GIL released)."""
    if len(channels) == 3 and 3 * bits <= out.dtype.itemsize * 8:
        _pack3(values, int(channels[0]), int(channels[1]), int(channels[2]), flip, bits, out)
    else:
        _pack(values, channels, flip, bits, out)


def _channel_bits(dtype: np.dtype) -> int:
    return 1 if dtype == np.bool_ else dtype.itemsize * 8


def exact_obstacle(spec: FeatureSpec, max_key_bits: int = MAX_KEY_BITS) -> str | None:
    """Why the exact engine cannot summarise images of ``spec``, or ``None`` when it can.

    One feature channel of any integer dtype (up to 64 bits) always packs: the table then
    depends on the distinct values present, not on the dtype's width. Several channels need
    keys of at most ``max_key_bits`` bits.
    """
    dtype = np.dtype(spec.dtype)
    if dtype.kind not in "iub":
        return f"its values are {dtype} (the exact engine needs integer values)"
    if not spec.is_value_only:
        return "its features include spatial coordinates"
    bits = spec.n_value_features * _channel_bits(dtype)
    if spec.n_value_features > 1 and bits > max_key_bits:
        return (
            f"{spec.n_value_features} channel(s) of {dtype} need {bits}-bit keys "
            f"(at most {max_key_bits})"
        )
    return None


@dataclass(frozen=True)
class ValueCodec:
    """Packs the feature channels of integer pixels into unsigned integer keys.

    Attributes
    ----------
    spec : FeatureSpec
        Selects the channels and the input dtype.
    """

    spec: FeatureSpec

    @classmethod
    def for_spec(cls, spec: FeatureSpec, max_key_bits: int = MAX_KEY_BITS) -> ValueCodec | None:
        """The codec for ``spec``, or ``None`` when values cannot be packed."""
        return None if exact_obstacle(spec, max_key_bits) else cls(spec)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.dtype)

    @property
    def n_channels(self) -> int:
        return self.spec.n_value_features

    @property
    def channel_bits(self) -> int:
        return _channel_bits(self.dtype)

    @property
    def key_bits(self) -> int:
        return self.n_channels * self.channel_bits

    @property
    def key_dtype(self) -> np.dtype:
        return key_dtype(self.key_bits)

    def pack_args(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        """``(values, channels, flip)`` for the compiled packers: ``values`` is ``(n, c)``
        unsigned (a view of ``block`` where possible)."""
        dtype = self.dtype
        udtype = np.dtype(np.uint8) if dtype == np.bool_ else np.dtype(f"u{dtype.itemsize}")
        block = np.ascontiguousarray(block, dtype=dtype).view(udtype)
        if self.spec.channels:
            values = block.reshape(-1, block.shape[-1])
            channels = np.asarray(self.spec.channels, dtype=np.intp)
        else:
            values = block.reshape(-1, 1)
            channels = np.zeros(1, dtype=np.intp)
        flip = 1 << (dtype.itemsize * 8 - 1) if dtype.kind == "i" else 0
        return values, channels, udtype.type(flip)

    def pack(self, block: np.ndarray) -> np.ndarray:
        """Keys of every pixel of ``block``, in raster order (1-D)."""
        values, channels, flip = self.pack_args(block)
        keys = np.empty(len(values), dtype=self.key_dtype)
        pack_into(values, channels, flip, self.channel_bits, keys)
        return keys

    def unpack(self, keys: np.ndarray) -> np.ndarray:
        """Pixel values ``(n, n_channels)`` in the input dtype for sorted or unsorted keys."""
        keys = np.asarray(keys, dtype=np.uint64)
        bits = self.channel_bits
        mask = np.uint64((1 << bits) - 1)
        fields = [
            (keys >> np.uint64(bits * (self.n_channels - 1 - c))) & mask
            for c in range(self.n_channels)
        ]
        dtype = self.dtype
        out = np.stack(fields, axis=1)
        if dtype == np.bool_:
            return out.astype(np.bool_)
        if dtype.kind == "i":
            udtype = np.dtype(f"u{dtype.itemsize}")
            flipped = out.astype(udtype) ^ udtype.type(1 << (dtype.itemsize * 8 - 1))
            return flipped.view(dtype)
        return out.astype(dtype)

    def coarsen(self, keys: np.ndarray, bits: int) -> np.ndarray:
        """Keys of the bins that keep the top ``bits`` bits of every channel."""
        return coarsen(keys, self.n_channels, self.channel_bits, bits)


def coarsen(keys: np.ndarray, n_channels: int, from_bits: int, to_bits: int) -> np.ndarray:
    """Keys of ``n_channels`` fields of ``from_bits`` bits cut to their top ``to_bits`` bits."""
    keys = np.asarray(keys, dtype=np.uint64)
    drop = from_bits - to_bits
    if drop <= 0:
        return keys
    if n_channels == 1:
        return keys >> np.uint64(drop)
    mask = np.uint64((1 << to_bits) - 1)
    out = np.zeros(len(keys), dtype=np.uint64)
    for c in range(n_channels):
        out <<= np.uint64(to_bits)
        out |= (keys >> np.uint64(from_bits * (n_channels - 1 - c) + drop)) & mask
    return out


def key_dtype(bits: int) -> np.dtype:
    """Smallest unsigned dtype holding ``bits``-bit keys."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if bits <= np.dtype(dtype).itemsize * 8:
            return np.dtype(dtype)
    raise ValueError(f"keys of {bits} bits do not fit in 64 bits")
