"""Automatic k on curves from scikit-learn fits of data with a known number of classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from pipeline.autok import choose_k


def _curve(X: np.ndarray, k_max: int = 12) -> dict[int, float]:
    return {
        k: KMeans(n_clusters=k, n_init=4, random_state=0).fit(X).inertia_ / len(X)
        for k in range(1, k_max + 1)
    }


@pytest.mark.parametrize("n_classes", [3, 4, 6])
def test_separated_colours(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    colours = rng.permutation(np.array(
        [[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9], [0.95, 0.95, 0.9],
         [0.05, 0.05, 0.05], [0.9, 0.8, 0.1]]
    ))[:n_classes]
    X = colours[rng.integers(0, n_classes, 3000)] + rng.normal(0, 0.02, (3000, 3))
    k, info = choose_k(_curve(X, 13), 2, 12)
    assert k == n_classes
    assert len(info["curve"]) == 13


def test_ct_phantom_air_fat_soft_tissue_bone() -> None:
    rng = np.random.default_rng(1)
    hu = np.array([-1000.0, -100.0, 40.0, 1000.0])
    share = np.array([0.4, 0.2, 0.3, 0.1])
    X = (hu[rng.choice(4, 5000, p=share)] + rng.normal(0, 20, 5000))[:, None] / 4096
    assert choose_k(_curve(X, 13), 2, 12)[0] == 4


def test_known_curves() -> None:
    # d(2..5) = ln 2, ln 10, ln 1.25, ln 1.1: the ratio peaks at 3.
    assert choose_k({1: 2.0, 2: 1.0, 3: 0.1, 4: 0.08, 5: 0.08 / 1.1}, 2, 4)[0] == 3
    assert choose_k({1: 1.0, 2: 0.5, 3: 0.0, 4: 0.0, 5: 0.0}, 2, 4)[0] == 3  # exact at 3
    with pytest.raises(ValueError, match="lacks"):
        choose_k({2: 1.0, 3: 0.5}, 2, 3)
