"""Label order: known orders on hand-made centres, and renumbering of labels."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engines.base import FitResult
from pipeline.order import class_order, relabel_table, reorder_fit


def test_luminance_order_of_rgb_centres_uses_rec709():
    # Pure green is brighter than pure red, which is brighter than pure blue (0.7152 > 0.2126
    # > 0.0722); black is darkest and white brightest.
    centres = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    assert class_order(centres, "luminance").tolist() == [2, 4, 3, 1, 0]


def test_luminance_order_of_one_channel_and_lab():
    assert class_order(np.array([[0.7], [0.1], [0.4]]), "luminance").tolist() == [1, 2, 0]
    lab = np.array([[0.9, -0.5, 0.2], [0.2, 0.4, 0.4], [0.5, 0.0, 0.0]])
    assert class_order(lab, "luminance", colour_space="lab").tolist() == [1, 2, 0]


def test_many_channels_use_the_mean_and_spatial_features_are_ignored():
    centres = np.array([[0.9, 0.9, 0.0, 0.0, 0.0], [0.1, 0.1, 0.5, 1.0, 1.0]])
    # Two value channels: means 0.9 and 0.1 (the coordinates in columns 2-4 do not count).
    assert class_order(centres, "luminance", n_value_features=2).tolist() == [1, 0]


def test_size_order_is_largest_first():
    centres = np.array([[0.1], [0.5], [0.9]])
    assert class_order(centres, "size", counts=np.array([5, 50, 20])).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="pixel counts"):
        class_order(centres, "size")


def test_none_keeps_the_fit_order():
    assert class_order(np.array([[0.9], [0.1]]), "none").tolist() == [0, 1]


def test_relabel_table_and_reorder_fit():
    order = np.array([2, 0, 1])  # old class 3 becomes label 1, old 1 becomes 2, old 2 becomes 3
    table = relabel_table(order, np.dtype(np.uint8))
    assert table.tolist() == [0, 2, 3, 1]

    def labeller(block, origin):
        return np.array([0, 1, 2, 3], dtype=np.uint8)

    stats = np.array([[7.0, 10, 20, 30], [0.0, 1, 2, 3]])
    fit = FitResult(centres=np.array([[0.5], [0.9], [0.1]]), engine="test", labeller=labeller,
                    stats=stats)
    new = reorder_fit(fit, order)
    assert new.centres[:, 0].tolist() == [0.1, 0.5, 0.9]
    assert new.stats.tolist() == [[7.0, 30, 10, 20], [0.0, 3, 1, 2]]
    assert new.labeller(None, ()).tolist() == [0, 2, 3, 1]
