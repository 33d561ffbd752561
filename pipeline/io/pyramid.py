"""Downsampled levels of an image and its labels (pure, lazy array arithmetic)."""

from __future__ import annotations

import warnings

import dask.array as da
import numba
import numpy as np

#: Stop adding levels once the smaller of y and x would fall below this many pixels.
MIN_LEVEL_SIZE = 64
#: Stop adding levels once a level fits in one tile of this many pixels a side: viewers show
#: such a level whole, so smaller ones only cost writes (a folder of small photos gets one).
TILE_SIZE = 256


def n_levels(spatial_shape: tuple[int, ...], requested: int | None) -> int:
    """Number of pyramid levels (including full resolution) for an image.

    Parameters
    ----------
    spatial_shape : tuple of int
        ``(y, x)`` or ``(z, y, x)``.
    requested : int or None
        The ``pyramid_levels`` key; ``None`` halves y and x until the level fits in one
        :data:`TILE_SIZE` tile (larger of y and x at most 256) or the smaller of them would fall
        below :data:`MIN_LEVEL_SIZE` pixels (a 32768² image gets 8 levels, down to 256²; a
        256² photo keeps one). A
        request for more levels than the image can halve to is clamped so that every level
        keeps at least 1 pixel in y and x (a 32x40 image has at most 6: 32, 16, 8, 4, 2, 1).
    """
    size = min(spatial_shape[-2:])
    largest = max(spatial_shape[-2:])
    if requested is not None:
        # Each level halves y and x rounding down: level i has size // 2**i pixels.
        return max(1, min(int(requested), int(size).bit_length()))
    levels = 1
    while size // 2 >= MIN_LEVEL_SIZE and largest > TILE_SIZE:
        size //= 2
        largest //= 2
        levels += 1
    return levels


_WIDER = {
    "u": {1: np.uint16, 2: np.uint32, 4: np.uint64},
    "i": {1: np.int16, 2: np.int32, 4: np.int64},
}


@numba.njit(nogil=True, cache=True)
def _mean_2x2_planes(block, out):  # pragma: no cover - compiled
    # block (n, 2h, 2w) unsigned integers, out (n, h, w): (a + b + c + d + 2) // 4.
    for p in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                total = (
                    np.uint32(block[p, 2 * i, 2 * j]) + np.uint32(block[p, 2 * i, 2 * j + 1])
                    + np.uint32(block[p, 2 * i + 1, 2 * j])
                    + np.uint32(block[p, 2 * i + 1, 2 * j + 1])
                )
                out[p, i, j] = (total + np.uint32(2)) // np.uint32(4)


def mean_2x2(block: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 group of pixels in the last two axes (y, x; even sizes), same dtype.

    Integers round half up (``(a + b + c + d + 2) // 4``, exactly, also for 64-bit integers);
    bool is the same rule on 0/1, a majority vote with ties to True (at least 2 of 4 True);
    floats are the correctly rounded mean (float16 and float32 summed in float64) and ignore NaN
    (a group of only NaN stays NaN). uint8 and uint16 take a compiled loop; other dtypes
    strided sums, about ten times faster than a float mean.
    """
    if block.dtype == np.bool_:
        return mean_2x2(block.view(np.uint8)).astype(np.bool_)
    if block.dtype in (np.uint8, np.uint16) and block.size:
        planes = np.ascontiguousarray(block).reshape((-1, *block.shape[-2:]))
        out = np.empty(
            (planes.shape[0], planes.shape[1] // 2, planes.shape[2] // 2), dtype=block.dtype
        )
        _mean_2x2_planes(planes, out)
        return out.reshape(block.shape[:-2] + out.shape[1:])
    y, x = block.ndim - 2, block.ndim - 1

    def take(a: np.ndarray, axis: int, start: int) -> np.ndarray:
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, None, 2)
        return a[tuple(index)]

    views = [take(take(block, y, i), x, j) for i in (0, 1) for j in (0, 1)]
    if block.dtype.kind == "f":
        stacked = np.stack(views).astype(np.promote_types(block.dtype, np.float64))
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(stacked, axis=0).astype(block.dtype)
    wide = _WIDER[block.dtype.kind].get(block.dtype.itemsize)
    if wide is None:
        # 64-bit: a + b + c + d may overflow and float64 loses digits, so split each value as
        # 4q + r (floor division, r in 0..3): (sum + 2) // 4 == sum(q) + (sum(r) + 2) // 4.
        quotients = sum(v // 4 for v in views)
        remainders = sum(v % 4 for v in views)  # 0..12, same dtype: no float promotion
        return (quotients + (remainders + 2) // 4).astype(block.dtype)
    rows = take(block, y, 0).astype(wide)
    rows += take(block, y, 1)
    total = take(rows, x, 0) + take(rows, x, 1)
    return ((total + 2) // 4).astype(block.dtype)


def even_chunks(chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk sizes along one axis made even, moving one pixel forward where a chunk is odd.

    The total (even, after trimming) is unchanged; each chunk then holds whole 2x2 groups. A
    chunk emptied by the move is dropped.
    """
    out: list[int] = []
    carry = 0
    for size in chunks:
        size += carry
        carry = size % 2
        if size - carry:
            out.append(size - carry)
    if carry:  # only possible for an odd total, which callers trim first
        raise ValueError(f"odd total {sum(chunks)}")
    return tuple(out)


def downsample_image(image: da.Array) -> da.Array:
    """Halve the last two axes (y, x) by 2x2 mean (odd edges trimmed), keeping the dtype.

    Parameters
    ----------
    image : dask.array.Array
        ``([c,] [z,] y, x)``: channels, if any, first (as stored in NGFF).

    Returns
    -------
    dask.array.Array
        y and x halved (rounded down), chunks halved with them; see :func:`mean_2x2`.
    """
    axes = (image.ndim - 2, image.ndim - 1)
    trimmed = image[
        tuple(slice(0, s - s % 2) if a in axes else slice(None) for a, s in enumerate(image.shape))
    ]
    even = trimmed.rechunk(
        tuple(
            even_chunks(c) if a in axes else c for a, c in enumerate(trimmed.chunks)
        )
    )
    halved = tuple(tuple(n // 2 for n in c) if a in axes else c for a, c in enumerate(even.chunks))
    return da.map_blocks(
        mean_2x2,
        even,
        chunks=halved,
        dtype=image.dtype,
        meta=np.empty((0,) * image.ndim, image.dtype),
    )


def downsample_labels(labels: da.Array) -> da.Array:
    """Halve y and x of a label image by taking every second pixel (labels never blend)."""
    index = (slice(None),) * (labels.ndim - 2) + (slice(None, None, 2), slice(None, None, 2))
    y, x = labels.shape[-2:]
    return labels[..., : (y // 2) * 2, : (x // 2) * 2][index]
