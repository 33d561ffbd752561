"""Shared fixtures: real bundled photos and small synthetic images."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photos bundled with scikit-image (no network)."""
    from skimage import data

    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def sklearn_mse(features: np.ndarray, k: int, seed: int = 0) -> float:
    """Best mean squared distance per row of scikit-learn KMeans with n_init=10."""
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)
    return float(model.inertia_) / len(features)
