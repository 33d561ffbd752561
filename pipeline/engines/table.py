"""Weighted tables of distinct pixel values, built per block and merged by addition.

A :class:`ValueTable` holds the sorted distinct keys of some pixels and how many pixels hold each.
Tables of blocks are merged in a tree of small tasks, so no task holds more than a few tables and
memory is bounded by the table size, not the image size.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed

from pipeline.blocks import spatial_block_keys, tree_merge
from pipeline.engines.counting import count_dense, count_sorted, merge_counts
from pipeline.engines.keys import ValueCodec

#: Key widths up to this are counted with a dense histogram instead of a radix sort (2^24 bins
#: of int32 = 64 MiB per task, several times faster than sorting 24-bit keys).
DENSE_KEY_BITS = 24

#: Tables merged by one task of the reduction tree.
SPLIT_EVERY = 8

#: Most distinct values ``engine: auto`` keeps in a table whose keys are wider than
#: :data:`DENSE_KEY_BITS` (one channel of 32- or 64-bit integers): 2^22 keys and counts are
#: 64 MiB. A summary that finds more stops growing (it is marked overflowed) and the fit falls
#: back to dask-ml.
AUTO_MAX_DISTINCT = 1 << 22


@dataclass
class ValueTable:
    """Distinct keys (sorted, unique) and the number of pixels holding each.

    Attributes
    ----------
    keys : ndarray of unsigned int
    counts : ndarray of int64
        Pixels with data holding each key (pixels without data are not in the table).
    seconds : float
        Time spent building and merging the table, summed over tasks.
    no_data : int
        Pixels without data (see :meth:`FeatureSpec.valid_mask`).
    overflowed : bool
        True when more than the allowed number of distinct values were found; ``keys`` and
        ``counts`` are then empty.
    """

    keys: np.ndarray
    counts: np.ndarray
    seconds: float = 0.0
    no_data: int = 0
    overflowed: bool = False

    @property
    def n_pixels(self) -> int:
        return int(self.counts.sum())

    def __len__(self) -> int:
        return len(self.keys)


def block_table(
    block: np.ndarray, codec: ValueCodec, max_distinct: int | None = None
) -> ValueTable:
    """Table of the values of the pixels with data of one block.

    Images without a no-data rule are packed straight from the block (no mask is computed).
    """
    start = time.perf_counter()
    keys = codec.pack(block)
    mask = codec.spec.valid_mask(block)
    no_data = 0
    if mask is not None:
        no_data = int(len(mask) - np.count_nonzero(mask))
        if no_data:
            keys = keys[mask]
    bits = codec.key_bits
    # Dense only where the histogram is not much larger than the block (small blocks sort).
    dense = bits <= 16 or (bits <= DENSE_KEY_BITS and len(keys) >= (1 << bits) >> 4)
    count = count_dense if dense else count_sorted
    uniq, counts = count(keys, codec.key_bits)
    return _capped(ValueTable(uniq, counts, time.perf_counter() - start, no_data), max_distinct)


def _capped(table: ValueTable, max_distinct: int | None) -> ValueTable:
    if max_distinct is None or len(table) <= max_distinct:
        return table
    return ValueTable(table.keys[:0], table.counts[:0], table.seconds, table.no_data, True)


def merge_tables(*tables: ValueTable, max_distinct: int | None = None) -> ValueTable:
    """Table of the union of the pixels of ``tables`` (overflowed if any of them is)."""
    if len(tables) == 1:
        return tables[0]
    start = time.perf_counter()
    no_data = sum(t.no_data for t in tables)
    seconds = sum(t.seconds for t in tables)
    if any(t.overflowed for t in tables):
        return ValueTable(tables[0].keys[:0], tables[0].counts[:0], seconds, no_data, True)
    keys, counts = merge_counts([(t.keys, t.counts) for t in tables])
    seconds += time.perf_counter() - start
    return _capped(ValueTable(keys, counts, seconds, no_data), max_distinct)


def summarise_values(
    image: da.Array,
    codec: ValueCodec,
    split_every: int = SPLIT_EVERY,
    max_distinct: int | None = None,
) -> Delayed:
    """Lazy :class:`ValueTable` of every pixel of ``image``, merged in a tree.

    With ``max_distinct``, a table that would hold more distinct values is returned empty and
    marked overflowed (memory stays bounded by the cap).
    """
    spatial_ndim = len(codec.spec.spatial_shape)
    build = dask.delayed(block_table, pure=True)
    parts = [
        build(block, codec, max_distinct) for block in spatial_block_keys(image, spatial_ndim)
    ]
    merge = functools.partial(merge_tables, max_distinct=max_distinct)
    return tree_merge(parts, merge, split_every)
