"""Weighted tables of distinct pixel values, built per block and merged by addition.

A :class:`ValueTable` holds the sorted distinct keys of some pixels and how many pixels hold each.
Tables of blocks are merged in a tree of small tasks, so no task holds more than a few tables and
memory is bounded by the table size, not the image size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed

from pipeline.blocks import spatial_block_keys
from pipeline.engines.counting import count_dense, count_sorted, merge_counts
from pipeline.engines.keys import ValueCodec

#: Key widths up to this are counted with a dense histogram instead of a radix sort (2^24 bins
#: of int32 = 64 MiB per task, several times faster than sorting 24-bit keys).
DENSE_KEY_BITS = 24

#: Tables merged by one task of the reduction tree.
SPLIT_EVERY = 8


@dataclass
class ValueTable:
    """Distinct keys (sorted, unique) and the number of pixels holding each.

    Attributes
    ----------
    keys : ndarray of unsigned int
    counts : ndarray of int64
    seconds : float
        Time spent building and merging the table, summed over tasks.
    """

    keys: np.ndarray
    counts: np.ndarray
    seconds: float = 0.0

    @property
    def n_pixels(self) -> int:
        return int(self.counts.sum())

    def __len__(self) -> int:
        return len(self.keys)


def block_table(block: np.ndarray, codec: ValueCodec) -> ValueTable:
    """Table of the values of one block."""
    start = time.perf_counter()
    keys = codec.pack(block)
    bits = codec.key_bits
    # Dense only where the histogram is not much larger than the block (small blocks sort).
    dense = bits <= 16 or (bits <= DENSE_KEY_BITS and len(keys) >= (1 << bits) >> 4)
    count = count_dense if dense else count_sorted
    uniq, counts = count(keys, codec.key_bits)
    return ValueTable(uniq, counts, time.perf_counter() - start)


def merge_tables(*tables: ValueTable) -> ValueTable:
    """Table of the union of the pixels of ``tables``."""
    if len(tables) == 1:
        return tables[0]
    start = time.perf_counter()
    keys, counts = merge_counts([(t.keys, t.counts) for t in tables])
    seconds = sum(t.seconds for t in tables) + time.perf_counter() - start
    return ValueTable(keys, counts, seconds)


def summarise_values(
    image: da.Array, codec: ValueCodec, split_every: int = SPLIT_EVERY
) -> Delayed:
    """Lazy :class:`ValueTable` of every pixel of ``image``, merged in a tree."""
    spatial_ndim = len(codec.spec.spatial_shape)
    build = dask.delayed(block_table, pure=True)
    merge = dask.delayed(merge_tables, pure=True)
    parts = [build(block, codec) for block in spatial_block_keys(image, spatial_ndim)]
    while len(parts) > 1:
        parts = [merge(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]
