"""Exact passes over the pixels: one Lloyd step per pass, and nearest-centre labels.

Each block's pixels are assigned to their nearest centre by a compiled kernel that also
accumulates per-cluster counts, fixed-point feature sums and squared distances; block results are
added (integers, so the sums do not depend on the chunking), giving the exact objective of the
centres and the centres of the next Lloyd step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import dask
import dask.array as da
import numba
import numpy as np

from pipeline.blocks import block_origins, spatial_block_keys, tree_merge
from pipeline.engines.lloyd import BLOCK_ROWS, block_buffers, nearest_rows
from pipeline.features import FeatureSpec
from pipeline.labels import label_dtype

#: Fixed-point scale of the per-cluster sums (features are O(1); a block holds < 2^32 pixels).
SUM_BITS = 30


@numba.njit(nogil=True, fastmath=True, cache=True)
def _lloyd_block(feats, valid, Ct, counts, sums, sse):  # pragma: no cover - compiled
    n, d = feats.shape
    one = float(1 << 30)  # SUM_BITS
    xb, dj, best, bj = block_buffers(d)
    for start in range(0, n, BLOCK_ROWS):
        m = min(n, start + BLOCK_ROWS) - start
        nearest_rows(feats, start, m, Ct, xb, dj, best, bj)
        for b in range(m):
            if not valid[start + b]:
                continue
            a = bj[b]
            counts[a] += 1
            sse[a] += best[b]
            for f in range(d):
                sums[a, f] += np.int64(np.rint(xb[f, b] * one))


@numba.njit(nogil=True, fastmath=True, cache=True)
def _nearest_labels(feats, valid, Ct, out):  # pragma: no cover - compiled
    n, d = feats.shape
    xb, dj, best, bj = block_buffers(d)
    for start in range(0, n, BLOCK_ROWS):
        m = min(n, start + BLOCK_ROWS) - start
        nearest_rows(feats, start, m, Ct, xb, dj, best, bj)
        for b in range(m):
            out[start + b] = bj[b] + 1 if valid[start + b] else 0


def block_lloyd(block: np.ndarray, spec: FeatureSpec, centres: np.ndarray, origin) -> tuple:
    """``(counts, sums, sse)`` of one block's pixels with data, each assigned to its nearest
    centre: pixel counts (int64, ``(k,)``), fixed-point feature sums (int64, ``(k, d)``, units
    of ``2**-SUM_BITS``) and sums of squared distances (float64, ``(k,)``)."""
    feats, valid = spec.block_features(block, origin)
    k, d = centres.shape
    counts = np.zeros(k, dtype=np.int64)
    sums = np.zeros((k, d), dtype=np.int64)
    sse = np.zeros(k)
    _lloyd_block(np.ascontiguousarray(feats), np.ascontiguousarray(valid),
                 np.ascontiguousarray(centres.T, dtype=np.float64), counts, sums, sse)
    return counts, sums, sse


def _add(*parts: tuple) -> tuple:
    counts = sum(p[0] for p in parts)
    # Python integers: no overflow whatever the number of pixels.
    sums = np.array(sum(p[1].astype(object) for p in parts), dtype=object)
    sse = np.sum([p[2] for p in parts], axis=0)
    return counts, sums, sse


def _block_distinct(block: np.ndarray, spec: FeatureSpec, origin, cap: int) -> np.ndarray:
    feats, valid = spec.block_features(block, origin)
    return np.unique(feats[valid], axis=0)[:cap]


def _union(*parts: np.ndarray, cap: int) -> np.ndarray:
    return np.unique(np.concatenate(parts), axis=0)[:cap]


def count_distinct(image: da.Array, spec: FeatureSpec, cap: int) -> int:
    """Number of distinct feature vectors among the pixels with data, counted up to ``cap``
    (a pass over the pixels; for images with very few values)."""
    spatial_ndim = len(spec.spatial_shape)
    step = dask.delayed(_block_distinct, pure=True)
    parts = [
        step(block, spec, origin, cap)
        for block, (_, origin, _) in zip(
            spatial_block_keys(image, spatial_ndim), block_origins(image, spatial_ndim),
            strict=True,
        )
    ]
    (rows,) = dask.compute(tree_merge(parts, functools.partial(_union, cap=cap)))
    return len(rows)


@dataclass
class PassResult:
    """Outcome of :func:`lloyd_pass` for centres ``C``.

    Attributes
    ----------
    counts : ndarray of int64, shape (k,)
        Pixels whose nearest centre is each centre.
    sse : ndarray, shape (k,)
        Their summed squared distances to it (the objective of ``C`` is ``sse.sum()``).
    means : ndarray, shape (k, d)
        Mean feature vector of each cluster (the next Lloyd centres; ``C``'s row if empty).
    """

    counts: np.ndarray
    sse: np.ndarray
    means: np.ndarray


def lloyd_pass(image: da.Array, spec: FeatureSpec, centres: np.ndarray,
               split_every: int = 16) -> PassResult:
    """One exact Lloyd step over every pixel of ``image``, computed blockwise."""
    centres = np.asarray(centres, dtype=np.float64)
    spatial_ndim = len(spec.spatial_shape)
    step = dask.delayed(block_lloyd, pure=True)
    parts = [
        step(block, spec, centres, origin)
        for block, (_, origin, _) in zip(
            spatial_block_keys(image, spatial_ndim), block_origins(image, spatial_ndim),
            strict=True,
        )
    ]
    (total,) = dask.compute(tree_merge(parts, _add, split_every))
    counts, sums, sse = _add(total)
    means = centres.copy()
    held = counts > 0
    scale = float(1 << SUM_BITS)
    for j in np.flatnonzero(held):
        means[j] = [float(s) / scale / int(counts[j]) for s in sums[j]]
    return PassResult(np.asarray(counts, dtype=np.int64), np.asarray(sse, dtype=np.float64),
                      means)


@dataclass(frozen=True, eq=False)
class FastNearestLabeller:
    """Labels each pixel with its nearest centre (1..k, 0 where there is no data); compiled.

    Same labels as :class:`pipeline.labels.NearestCentreLabeller` (distances in float64).
    """

    spec: FeatureSpec
    centres: np.ndarray

    def __call__(self, block: np.ndarray, origin: tuple[int, ...]) -> np.ndarray:
        feats, valid = self.spec.block_features(block, origin)
        out = np.empty(len(feats), dtype=label_dtype(len(self.centres)))
        _nearest_labels(np.ascontiguousarray(feats), np.ascontiguousarray(valid),
                        np.ascontiguousarray(np.asarray(self.centres, dtype=np.float64).T), out)
        return out.reshape(block.shape[: len(self.spec.spatial_shape)])

    def __dask_tokenize__(self) -> tuple:
        from dask.base import tokenize

        return (type(self).__name__, tokenize(self.spec, self.centres))
