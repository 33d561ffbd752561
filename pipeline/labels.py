"""Blockwise labelling, recolouring and per-cluster statistics.

All functions build lazy Dask arrays; labels never leave the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numba
import numpy as np

from pipeline.blocks import block_origins, spatial_block_keys, tree_merge
from pipeline.features import FeatureSpec, dtype_range

#: Rows per batch in nearest-centre search, bounding the (rows, k) distance matrix.
_BATCH_ROWS = 1 << 18


def label_dtype(k: int) -> np.dtype:
    """uint8 for k ≤ 255, else uint16 (label 0 is reserved for pixels without data)."""
    return np.dtype(np.uint8 if k <= 255 else np.uint16)


def nearest_centre(feats: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and the squared distance to it, for each row of ``feats``."""
    feats = np.asarray(feats, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    c_sq = (centres**2).sum(axis=1)
    index = np.empty(len(feats), dtype=np.intp)
    dist = np.empty(len(feats), dtype=np.float64)
    for start in range(0, len(feats), _BATCH_ROWS):
        chunk = feats[start : start + _BATCH_ROWS]
        d = (chunk**2).sum(axis=1)[:, None] - 2.0 * chunk @ centres.T + c_sq[None, :]
        idx = d.argmin(axis=1)
        index[start : start + len(chunk)] = idx
        dist[start : start + len(chunk)] = np.maximum(d[np.arange(len(chunk)), idx], 0.0)
    return index, dist


@dataclass(frozen=True, eq=False)
class NearestCentreLabeller:
    """Labels each pixel with its nearest centre: 1..k, 0 where there is no data."""

    spec: FeatureSpec
    centres: np.ndarray

    def __call__(self, block: np.ndarray, origin: tuple[int, ...]) -> np.ndarray:
        feats, valid = self.spec.block_features(block, origin)
        index, _ = nearest_centre(feats, self.centres)
        labels = (index + 1).astype(label_dtype(len(self.centres)))
        labels[~valid] = 0
        return labels.reshape(block.shape[: len(self.spec.spatial_shape)])


def _label_block(block: np.ndarray, labeller, spatial_ndim: int, block_info=None) -> np.ndarray:
    origin = tuple(loc[0] for loc in block_info[0]["array-location"][:spatial_ndim])
    return labeller(block, origin)


def label_image(image: da.Array, spec: FeatureSpec, labeller, k: int) -> da.Array:
    """Lazy label image (spatial shape of ``image``)."""
    spatial_ndim = len(spec.spatial_shape)
    drop = list(range(spatial_ndim, image.ndim))
    token = dask.base.tokenize(image.name, labeller, k)
    # One graph key holds the labeller (it may carry a lookup table of many MiB); every block
    # task depends on that key instead of embedding its own copy.
    shared = dask.delayed(labeller, name="labeller-" + token, traverse=False)
    return da.map_blocks(
        _label_block,
        image,
        labeller=shared,
        spatial_ndim=spatial_ndim,
        drop_axis=drop,
        dtype=label_dtype(k),
        meta=np.empty((0,) * spatial_ndim, dtype=label_dtype(k)),
        name="labels-" + token,
    )


def palette(
    spec: FeatureSpec,
    centres: np.ndarray,
    dtype: np.dtype,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Colours for labels 0..k in the input's dtype: row 0 (no data) is NaN or 0.

    Parameters
    ----------
    spec : FeatureSpec
    centres : ndarray, shape (k, n_features)
        Centres in feature units.
    dtype : dtype
        The input's dtype.
    values : ndarray or None
        Exact centres in input units and dtype (:attr:`FitResult.values`), used as they are;
        otherwise the centres are converted (rounded and clipped for integer dtypes).

    Returns
    -------
    ndarray, shape (k + 1, n_value_features), ``dtype``
    """
    dtype = np.dtype(dtype)
    if values is not None:
        table = np.zeros((len(centres) + 1, values.shape[1]), dtype=dtype)
        table[1:] = values
        return table
    converted = spec.to_input_units(centres)
    if dtype.kind in "iub":
        converted = np.clip(np.rint(converted), *dtype_range(dtype))
    table = np.zeros((len(centres) + 1, converted.shape[1]), dtype=np.float64)
    table[0] = np.nan if dtype.kind == "f" else 0
    table[1:] = converted
    return table.astype(dtype)


def _recolour_block_channels_first(
    block: np.ndarray, labels: np.ndarray, table: np.ndarray, spec: FeatureSpec
) -> np.ndarray:
    spatial_ndim = len(spec.spatial_shape)
    if block.ndim == spatial_ndim:  # no channel axis
        return np.take(table[:, 0], labels)
    out = np.empty((block.shape[-1], *labels.shape), dtype=table.dtype)
    if spec.channels:
        columns = dict(zip(spec.channels, range(table.shape[1]), strict=False))
    else:
        columns = dict.fromkeys(range(block.shape[-1]), 0)
    painted = [c for c in range(block.shape[-1]) if c in columns]
    flat = np.ascontiguousarray(labels).reshape(-1)
    planes = out.reshape(len(out), -1)
    if table.dtype.kind in "iuf" and flat.dtype.kind == "u":
        rows = np.ascontiguousarray(table[:, [columns[c] for c in painted]].T)
        _paint(flat, rows, np.asarray(painted, dtype=np.intp), planes)
    else:
        for c in painted:
            np.take(np.ascontiguousarray(table[:, columns[c]]), flat, out=planes[c])
    for c in range(block.shape[-1]):
        if c not in columns:  # not a feature (alpha): passes through
            out[c] = block[..., c]
    return out


@numba.njit(nogil=True, cache=True)
def _paint(labels, rows, channels, out):  # pragma: no cover - compiled
    # out[channels[j], i] = rows[j, labels[i]], one channel at a time (vectorised gathers).
    for j in range(channels.shape[0]):
        row = rows[j]
        plane = out[channels[j]]
        for i in range(labels.shape[0]):
            plane[i] = row[labels[i]]


def recolour(labels: da.Array, image: da.Array, spec: FeatureSpec, table: np.ndarray) -> da.Array:
    """Lazy recoloured image, channel axis (if any) first as NGFF stores it.

    Each pixel is replaced by its label's row of ``table`` (see :func:`palette`); channels that
    are not features (alpha) pass through unchanged. Each block is written channel by channel
    straight from the palette, several times faster than recolouring channel-last and
    transposing.
    """
    spatial_ndim = len(spec.spatial_shape)
    # One canonical dtype object: tifffile's 64-bit arrays are ``ulonglong``/``longlong``,
    # equal to uint64/int64 in NumPy but unknown to Zarr's data-type registry.
    dtype = np.dtype(image.dtype.str)
    table = table.astype(dtype)
    spatial = "".join(chr(ord("a") + i) for i in range(spatial_ndim))
    if image.ndim == spatial_ndim:
        out_ind, image_ind = spatial, spatial
    else:
        out_ind, image_ind = "z" + spatial, spatial + "z"
    return da.blockwise(
        _recolour_block_channels_first,
        out_ind,
        image,
        image_ind,
        labels,
        spatial,
        table=table,
        spec=spec,
        dtype=dtype,
        meta=np.empty((0,) * image.ndim, dtype),
        name="recolour-cf-" + dask.base.tokenize(image.name, labels.name, table, spec),
    )


def _block_stats(
    block: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    centres: np.ndarray,
    origin: tuple[int, ...],
) -> np.ndarray:
    feats, valid = spec.block_features(block, origin)
    flat = labels.reshape(-1).astype(np.intp)
    k = len(centres)
    ext = np.vstack([np.zeros((1, centres.shape[1])), centres]).astype(feats.dtype)
    diff = feats - ext[flat]
    sq = np.einsum("ij,ij->i", diff, diff)
    sq[~valid] = 0
    out = np.zeros((2, k + 1), dtype=np.float64)
    out[0] = np.bincount(flat, minlength=k + 1)
    out[1] = np.bincount(flat, weights=sq, minlength=k + 1)
    return out


def cluster_stats(
    image: da.Array, labels: da.Array, spec: FeatureSpec, centres: np.ndarray
) -> da.Array:
    """Lazy ``(2, k+1)`` array: pixel count and sum of squared feature distances per label.

    Column 0 counts pixels without data. Shares the reading and labelling tasks with the
    writers when computed together.
    """
    spatial_ndim = len(spec.spatial_shape)
    k = len(centres)
    img_blocks = spatial_block_keys(image, spatial_ndim)
    lab_blocks = spatial_block_keys(labels, spatial_ndim)
    stat = dask.delayed(_block_stats, pure=True)
    parts = [
        stat(b, lb, spec, centres, origin)
        for b, lb, (_, origin, _) in zip(
            img_blocks, lab_blocks, block_origins(image, spatial_ndim), strict=True
        )
    ]
    return da.from_delayed(tree_merge(parts, _sum_tables), shape=(2, k + 1), dtype=np.float64)


def _sum_tables(*tables: np.ndarray) -> np.ndarray:
    return np.sum(tables, axis=0)
