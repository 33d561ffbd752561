"""Optimal weighted 1-D K-Means by dynamic programming."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans

from pipeline.engines.dp1d import optimal_kmeans_1d


def _cost(x: np.ndarray, w: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for c in np.unique(labels):
        m = labels == c
        total += np.sum(w[m] * (x[m] - np.average(x[m], weights=w[m])) ** 2)
    return total


def _brute_force(x: np.ndarray, w: np.ndarray, k: int) -> float:
    """Minimum over every assignment of the values to exactly k non-empty clusters."""
    best = np.inf
    for labels in itertools.product(range(k), repeat=len(x)):
        labels = np.array(labels)
        if len(np.unique(labels)) == k:
            best = min(best, _cost(x, w, labels))
    return best


histograms = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1000), min_size=n, max_size=n, unique=True),
        st.lists(st.integers(1, 10_000), min_size=n, max_size=n),
    )
)


@settings(max_examples=40, deadline=None)
@given(hist=histograms, k=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_no_kmeans_run_beats_the_optimum(hist, k, seed):
    values, weights = hist
    x = np.sort(np.array(values, dtype=np.float64)) / 1000
    w = np.array(weights, dtype=np.float64)
    k = min(k, len(x))
    result = optimal_kmeans_1d(x, w, k)
    model = KMeans(k, n_init=1, random_state=seed).fit(x[:, None], sample_weight=w)
    sk_cost = _cost(x, w, model.labels_)
    assert result.cost <= sk_cost * (1 + 1e-9) + 1e-12
    assert np.all(np.diff(result.centres) > 0)


@pytest.mark.parametrize("seed", range(12))
def test_equals_brute_force_on_tiny_cases(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    k = int(rng.integers(1, min(n, 3) + 1))
    x = np.sort(rng.choice(50, n, replace=False)).astype(np.float64)
    w = rng.integers(1, 20, n).astype(np.float64)
    result = optimal_kmeans_1d(x, w, k)
    assert result.cost == pytest.approx(_brute_force(x, w, k), rel=1e-9, abs=1e-9)


def test_centres_are_weighted_means_of_intervals():
    x = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 30.0])
    w = np.array([1.0, 2.0, 1.0, 5.0, 5.0, 3.0])
    result = optimal_kmeans_1d(x, w, 3)
    np.testing.assert_array_equal(result.starts, [0, 3, 5])
    np.testing.assert_allclose(result.centres, [1.0, 10.5, 30.0])
    assert result.cost == pytest.approx(2.0 + 2.5)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="between 1"):
        optimal_kmeans_1d(np.arange(3.0), np.ones(3), 4)
    with pytest.raises(ValueError, match="sorted"):
        optimal_kmeans_1d(np.array([2.0, 1.0]), np.ones(2), 1)
