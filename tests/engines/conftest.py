"""Shared fixtures of the engine tests."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features import FeatureSpec, make_feature_spec


def rgb_spec(shape: tuple[int, int], **kwargs) -> FeatureSpec:
    """Feature spec of an 8-bit RGB image of spatial ``shape``."""
    return make_feature_spec(np.uint8, 3, shape, **kwargs)


@pytest.fixture(scope="session")
def astronaut_small() -> np.ndarray:
    """A 128x128 crop of scikit-image's astronaut (8-bit RGB)."""
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[200:328, 160:288])


@pytest.fixture(scope="session")
def noisy_rgb() -> np.ndarray:
    """An 8-bit RGB photo with light noise: many distinct values (the binned path)."""
    from skimage.data import astronaut

    rng = np.random.default_rng(0)
    image = astronaut()[::2, ::2].astype(np.float32)
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
