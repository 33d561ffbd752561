"""Compiled fast paths against the plain NumPy ones they replace."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

from pipeline.chunking import MIN_PARALLEL_CHUNK_BYTES, parallel_chunk_bytes
from pipeline.engines.counting import count_dense, count_sorted
from pipeline.engines.keys import ValueCodec
from pipeline.features import make_feature_spec
from pipeline.io.ngff import _store
from pipeline.io.pyramid import mean_2x2
from pipeline.labels import (
    NearestCentreLabeller,
    label_image,
    palette,
    recolour,
)


@pytest.mark.parametrize(("dtype", "n_channels", "alpha"), [
    (np.uint8, 3, False), (np.uint8, 4, True), (np.uint16, 1, False), (np.float32, 1, False),
])
def test_recolour_against_numpy_reference(rng, dtype, n_channels, alpha):
    shape = (23, 31) + ((n_channels,) if n_channels > 1 else ())
    if np.dtype(dtype).kind == "f":
        image = rng.random(shape).astype(dtype)
        image[3:5, 2:9] = np.nan
        spec = make_feature_spec(dtype, n_channels, shape[:2], data_range=(0.0, 1.0))
    else:
        image = rng.integers(0, 200, size=shape).astype(dtype)
        spec = make_feature_spec(dtype, n_channels, shape[:2], has_alpha=alpha)
    centres = rng.random((4, spec.n_value_features))
    dimage = da.from_array(image, chunks=(8, 10, *shape[2:]))
    labels = label_image(dimage, spec, NearestCentreLabeller(spec, centres), 4)
    table = palette(spec, centres, image.dtype)
    got, flat_labels = da.compute(recolour(labels, dimage, spec, table), labels)
    if image.ndim == 2:
        expected = table[flat_labels, 0]
    else:
        expected = image.copy()
        expected[..., list(spec.channels)] = table[flat_labels]
        expected = np.moveaxis(expected, -1, 0)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_mean_2x2_against_rounded_numpy_mean(rng, dtype):
    """The compiled loop (uint8, uint16) and the strided sums (int16) round half up."""
    info = np.iinfo(dtype)
    block = rng.integers(info.min, info.max, size=(3, 12, 18), endpoint=True).astype(dtype)
    block[0, :2, :2] = [[1, 2], [2, 2]]  # mean 1.75 -> 2
    block[1, :2, :2] = [[1, 1], [2, 2]]  # mean 1.5 -> 2 (half up)
    mean = block.astype(np.float64).reshape(3, 6, 2, 9, 2).mean(axis=(2, 4))
    got = mean_2x2(block)
    np.testing.assert_array_equal(got, np.floor(mean + 0.5).astype(dtype))
    assert got[0, 0, 0] == 2 and got[1, 0, 0] == 2


@pytest.mark.parametrize("n_channels", [1, 2, 3])
def test_pack_paths_agree(rng, n_channels):
    spec = make_feature_spec(np.uint8, n_channels, (40, 50))
    codec = ValueCodec(spec)
    shape = (40, 50) + ((n_channels,) if n_channels > 1 else ())
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    keys = codec.pack(image)
    values = image.reshape(len(keys), -1).astype(np.uint64)
    ref = np.zeros(len(keys), dtype=np.uint64)
    for c in range(values.shape[1]):
        ref = (ref << np.uint64(8)) | values[:, c]
    np.testing.assert_array_equal(keys.astype(np.uint64), ref)
    dense, sorted_ = count_dense(keys, codec.key_bits), count_sorted(keys, codec.key_bits)
    for a, b in zip(dense, sorted_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_parallel_chunk_bytes():
    assert parallel_chunk_bytes(64 * 2**20, 3 * 2**30, 2) == 64 * 2**20
    assert parallel_chunk_bytes(64 * 2**20, 48 * 2**20, 2) == 6 * 2**20
    assert parallel_chunk_bytes(64 * 2**20, 2**20, 2) == MIN_PARALLEL_CHUNK_BYTES


def test_all_zero_chunks_are_not_written(tmp_path):
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="w")
    target = group.create_array("a", shape=(8, 8), chunks=(4, 4), dtype=np.uint8, fill_value=0,
                                config={"write_empty_chunks": True})
    data = np.zeros((8, 8), dtype=np.uint8)
    data[5, 6] = 7
    da.compute(_store(da.from_array(data, chunks=4), target))
    np.testing.assert_array_equal(target[...], data)
    assert target.nchunks_initialized == 1
