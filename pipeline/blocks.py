"""Helpers to walk the blocks of a chunked image as delayed objects."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import dask
import dask.array as da


def block_origins(
    image: da.Array, spatial_ndim: int
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Yield ``(block_index, origin, shape)`` for each spatial block of ``image``.

    The channel axis (if any) is never split, so only spatial axes are walked.
    """
    chunks = image.chunks[:spatial_ndim]
    starts = [[sum(c[:i]) for i in range(len(c))] for c in chunks]
    for index in itertools.product(*[range(len(c)) for c in chunks]):
        origin = tuple(starts[d][i] for d, i in enumerate(index))
        shape = tuple(chunks[d][i] for d, i in enumerate(index))
        yield index, origin, shape


def spatial_block_keys(image: da.Array, spatial_ndim: int) -> list:
    """Delayed objects of each block, in the order of :func:`block_origins`."""
    # The graph is optimised once, when the results are computed; optimising it here for each
    # caller costs more than the rest of building a small image's graph.
    delayed = image.to_delayed(optimize_graph=False)
    out = []
    for index, _, _ in block_origins(image, spatial_ndim):
        full = index + (0,) * (image.ndim - spatial_ndim)
        out.append(delayed[full])
    return out


def tree_merge(parts: list[Any], merge: Callable[..., Any], split_every: int = 16) -> Any:
    """One delayed value merging the delayed ``parts`` by ``merge(*some)``, ``split_every``
    at a time (a tree, so no task takes more than ``split_every`` inputs); a single part is
    returned as it is.

    Cheaper to build than stacking the parts into a Dask array and reducing it: a folder of
    small images builds one such graph per image.
    """
    step = dask.delayed(merge, pure=True)
    while len(parts) > 1:
        parts = [step(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]
