"""Weighted assignment, seeding and Lloyd iterations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from pipeline.engines import lloyd
from pipeline.engines.lloyd import assign, kmeans_plusplus, weighted_lloyd


def _blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.random((5, 3))
    X = centres[rng.integers(0, 5, n)] + rng.normal(0, 0.05, (n, 3))
    return X, rng.integers(1, 20, n).astype(np.float64)


@pytest.mark.parametrize("n", [100, 70_000])
def test_assign_matches_brute_force(n):
    X, w = _blobs(n)
    C = X[:7]
    labels, dist, sums, wsum, cost = assign(X, w, C)
    d = ((X[:, None, :] - C[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, d.argmin(axis=1))
    np.testing.assert_allclose(dist, d.min(axis=1), atol=1e-12)
    assert cost == pytest.approx(float(w @ d.min(axis=1)), rel=1e-12)
    np.testing.assert_allclose(wsum, np.bincount(labels, weights=w, minlength=7))
    np.testing.assert_allclose(sums[:, 0], np.bincount(labels, weights=w * X[:, 0], minlength=7))


def test_weights_equal_repeated_rows():
    X, w = _blobs(300, seed=1)
    init = X[:4]
    weighted = weighted_lloyd(X, w, init, rtol=0)
    repeated = weighted_lloyd(np.repeat(X, w.astype(int), axis=0), np.ones(int(w.sum())), init,
                              rtol=0)
    np.testing.assert_allclose(weighted.centres, repeated.centres, atol=1e-10)
    assert weighted.cost == pytest.approx(repeated.cost, rel=1e-10)


@pytest.mark.parametrize("n", [500, 70_000])
def test_lloyd_reaches_a_fixed_point_with_exact_cost(n):
    X, w = _blobs(n, seed=2)
    result = weighted_lloyd(X, w, X[:6], rtol=0)
    assert result.converged
    _, _, sums, wsum, cost = assign(X, w, result.centres)
    assert result.cost == pytest.approx(cost, rel=1e-12)
    held = wsum > 0
    np.testing.assert_allclose(result.centres[held], sums[held] / wsum[held, None], atol=1e-9)


def test_lloyd_matches_scikit_learn_from_the_same_start():
    X, w = _blobs(2000, seed=3)
    init = X[:5]
    ours = weighted_lloyd(X, w, init, rtol=0)
    theirs = KMeans(5, init=init, n_init=1, tol=0, max_iter=500).fit(X, sample_weight=w)
    np.testing.assert_allclose(ours.centres, theirs.cluster_centers_, atol=1e-9)


def test_empty_clusters_are_moved():
    X = np.array([[0.0], [0.1], [1.0], [1.1]])
    result = weighted_lloyd(X, np.ones(4), np.array([[0.5], [50.0]]))
    assert sorted(result.centres[:, 0]) == pytest.approx([0.05, 1.05])


def test_kmeans_plusplus_picks_distinct_rows_reproducibly():
    X, w = _blobs(1000, seed=4)
    a = kmeans_plusplus(X, w, 8, 7)
    assert len({tuple(r) for r in a}) == 8
    assert all((r == X).all(axis=1).any() for r in a)
    np.testing.assert_array_equal(a, kmeans_plusplus(X, w, 8, 7))


def test_single_thread_and_pool_agree(monkeypatch):
    X, w = _blobs(70_000, seed=5)
    pooled = assign(X, w, X[:5])
    monkeypatch.setattr(lloyd, "_PARALLEL_ROWS", 10**9)
    single = assign(X, w, X[:5])
    np.testing.assert_array_equal(pooled[0], single[0])
    assert pooled[-1] == pytest.approx(single[-1], rel=1e-12)


@pytest.mark.parametrize(("n", "k", "enough"), [(700, 4, 10), (3000, 8, None), (20_000, 4, 3)])
def test_compiled_restarts_equal_the_python_loop(monkeypatch, n, k, enough):
    # restarts() runs small tables in one compiled call; each restart must be the same
    # kmeans_plusplus + weighted_lloyd as the Python loop, early stop included.
    from pipeline.engines import tablefit

    X, w = _blobs(n, seed=6)
    compiled = tablefit.restarts(X, w, k, 12, 0, enough=enough)
    monkeypatch.setattr(tablefit, "runs_compiled", lambda rows, k: False)
    loop = tablefit.restarts(X, w, k, 12, 0, enough=enough)
    assert len(compiled) == len(loop) >= 1
    for a, b in zip(compiled, loop, strict=True):
        np.testing.assert_allclose(a.centres, b.centres, rtol=1e-12, atol=1e-12)
        assert a.cost == pytest.approx(b.cost, rel=1e-12)
        assert a.n_iter == b.n_iter


def test_compiled_and_bounded_lloyd_reach_the_same_optimum(monkeypatch):
    X, w = _blobs(30_000, seed=7)
    init = X[:4]
    compiled = weighted_lloyd(X, w, init, rtol=0)
    monkeypatch.setattr(lloyd, "runs_compiled", lambda rows, k: False)
    bounded = weighted_lloyd(X, w, init, rtol=0)
    np.testing.assert_allclose(compiled.centres, bounded.centres, atol=1e-9)
    assert compiled.cost == pytest.approx(bounded.cost, rel=1e-10)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_weighted_mean_is_numpy_average_bit_for_bit(d):
    # Lloyd centres tables on this mean; results are reproducible only if it is exactly
    # np.average's (NumPy adds the weighted rows in order for two or more columns).
    from pipeline.engines.lloyd import weighted_mean

    rng = np.random.default_rng(d)
    for n in [1, 2, 7, 8, 9, 129, 1000, 65_537]:
        X = rng.normal(size=(n, d)) * 1e3
        w = rng.random(n) * 100
        assert weighted_mean(X, w).tobytes() == np.average(X, axis=0, weights=w).tobytes()
