"""Lookup labelling agrees with nearest-centre labelling."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest

from pipeline.engines.keys import ValueCodec
from pipeline.engines.lloyd import assign
from pipeline.engines.lookup import LookupLabeller
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
