"""Lookup labelling agrees with nearest-centre labelling."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest

from pipeline.engines.keys import ValueCodec
from pipeline.engines.lloyd import assign
from pipeline.engines.lookup import LookupLabeller, _search, bucket_starts
from pipeline.engines.table import block_table
from pipeline.features import make_feature_spec
from pipeline.labels import NearestCentreLabeller, label_image


def _labeller(image: np.ndarray, spec, centres: np.ndarray) -> LookupLabeller:
    codec = ValueCodec(spec)
    table = block_table(image, codec)
    F = spec.value_features(codec.unpack(table.keys)).astype(np.float64)
    labels = assign(F, np.ones(len(F)), centres)[0]
    return LookupLabeller.build(spec, codec, centres, table.keys, labels)


def _cases():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    yield rgb, make_feature_spec(np.uint8, 3, (20, 30))
    yield rgb, make_feature_spec(np.uint8, 3, (20, 30), colour_space="lab")
    grey = rng.normal(0, 1000, (6, 20, 30)).astype(np.int16)
    yield grey, make_feature_spec(np.int16, 1, grey.shape)
    two = rng.integers(0, 65536, (20, 30, 2), dtype=np.uint16)
    yield two, make_feature_spec(np.uint16, 2, (20, 30))


@pytest.mark.parametrize("case", range(4))
def test_lookup_equals_nearest_centre(case):
    image, spec = list(_cases())[case]
    rng = np.random.default_rng(case)
    feats, _ = spec.block_features(image)
    centres = feats[rng.choice(len(feats), 5, replace=False)].astype(np.float64)
    centres += rng.normal(0, 1e-3, centres.shape)
    lookup = _labeller(image, spec, centres)
    assert (lookup.table is not None) == (lookup.codec.key_bits <= 24)
    origin = (0,) * image.ndim
    expected = NearestCentreLabeller(spec, centres)(image, origin)
    np.testing.assert_array_equal(lookup(image, origin), expected)


def test_unseen_values_fall_back_to_nearest_centre():
    spec = make_feature_spec(np.uint8, 3, (8, 8))
    rng = np.random.default_rng(3)
    seen = rng.integers(0, 128, (8, 8, 3), dtype=np.uint8)
    centres = np.array([[0.1, 0.1, 0.1], [0.9, 0.9, 0.9], [0.2, 0.8, 0.5]])
    lookup = _labeller(seen, spec, centres)
    other = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    expected = NearestCentreLabeller(spec, centres)(other, (0, 0))
    np.testing.assert_array_equal(lookup(other, (0, 0)), expected)


def test_label_image_holds_the_labeller_once():
    spec = make_feature_spec(np.uint8, 3, (64, 64))
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    centres = np.array([[0.2, 0.2, 0.2], [0.7, 0.7, 0.7]])
    lookup = _labeller(image, spec, centres)
    labels = label_image(da.from_array(image, chunks=(16, 16, 3)), spec, lookup, 2)
    graph = dict(labels.__dask_graph__())
    assert sum(len(pickle.dumps(v)) for v in graph.values()) < lookup.table.nbytes // 100
    np.testing.assert_array_equal(labels.compute(), lookup(image, (0, 0)))


def test_pickles_without_the_dense_table(astronaut_small):
    spec = make_feature_spec(np.uint8, 3, astronaut_small.shape[:2])
    centres = np.array([[0.2, 0.2, 0.2], [0.7, 0.7, 0.7], [0.9, 0.1, 0.3]])
    lookup = _labeller(astronaut_small, spec, centres)
    data = pickle.dumps(lookup)
    assert len(data) < 10 * len(lookup.keys) + 10_000
    copy = pickle.loads(data)
    np.testing.assert_array_equal(copy.table, lookup.table)
    np.testing.assert_array_equal(copy(astronaut_small, (0, 0)), lookup(astronaut_small, (0, 0)))


@pytest.mark.parametrize("key_bits", [8, 24, 48, 64])
def test_bucketed_search_finds_exactly_the_keys_present(key_bits):
    # Keys at both ends of the key space, on bucket boundaries and in one crowded bucket;
    # queries of every present key and of absent ones between, below and above them.
    rng = np.random.default_rng(key_bits)
    top = (1 << key_bits) - 1
    low = rng.integers(0, min(top, 2**40), 300, dtype=np.uint64)
    edges = np.array([0, 1, top - 1, top, 1 << (key_bits - 1)], dtype=np.uint64)
    crowd = np.uint64(top >> 1) + np.arange(20, dtype=np.uint64)
    keys = np.unique(np.concatenate([low % np.uint64(top), edges, crowd]))
    labels = (np.arange(len(keys)) % 7 + 1).astype(np.uint8)
    starts, shift = bucket_starts(keys, key_bits)
    queries = np.concatenate([keys, keys - np.uint64(1), keys + np.uint64(1)])
    queries = queries[queries <= np.uint64(top)]  # pixel keys have key_bits bits
    reference = dict(zip(keys.tolist(), labels.tolist(), strict=True))
    expected = np.array([reference.get(q, 0) for q in queries.tolist()], dtype=np.uint8)
    got = np.zeros(len(queries), dtype=np.uint8)
    _search(queries, keys, labels, starts, shift, got)
    np.testing.assert_array_equal(got, expected)
    assert (got[: len(keys)] == labels).all()


def test_sorted_search_of_a_24_bit_image_equals_nearest_centre():
    # A small 8-bit RGB image: no dense table; values absent from the fitted table (the second
    # image) go to their nearest centre, alpha 0 (no data) gets label 0.
    rng = np.random.default_rng(5)
    seen = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
    spec = make_feature_spec(np.uint8, 4, (40, 40), has_alpha=True)
    centres = np.array([[0.1, 0.2, 0.3], [0.8, 0.7, 0.6], [0.4, 0.9, 0.1]])
    codec = ValueCodec(spec)
    table = block_table(seen, codec)
    F = spec.value_features(codec.unpack(table.keys)).astype(np.float64)
    lookup = LookupLabeller.build(spec, codec, centres, table.keys,
                                  assign(F, np.ones(len(F)), centres)[0], n_pixels=1600)
    assert lookup.table is None
    other = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
    other[:20] = seen[:20]
    other[..., 3][::3] = 0
    expected = NearestCentreLabeller(spec, centres)(other, (0, 0))
    assert (expected == 0).sum() == (other[..., 3] == 0).sum()
    np.testing.assert_array_equal(lookup(other, (0, 0)), expected)
