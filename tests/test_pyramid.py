"""Pyramid planning and 2x2 downsampling against NumPy, on chunks that do not divide evenly."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.io.pyramid import downsample_image, even_chunks, n_levels


@pytest.mark.parametrize(
    ("shape", "levels"),
    [((32768, 32768), 10), ((127, 4000), 1), ((128, 128), 2), ((40, 1000, 1000), 4)],
)
def test_levels_go_down_to_64_pixels(shape: tuple[int, ...], levels: int) -> None:
    assert n_levels(shape, None) == levels


def test_requested_levels_win() -> None:
    assert n_levels((32768, 32768), 3) == 3


@given(st.lists(st.integers(1, 9), min_size=1, max_size=12))
def test_even_chunks_keep_the_total_in_even_pieces(sizes: list[int]) -> None:
    if sum(sizes) % 2:
        sizes = [*sizes, 1]
    out = even_chunks(tuple(sizes))
    assert sum(out) == sum(sizes)
    assert all(c > 0 and c % 2 == 0 for c in out)


def test_even_chunks_known_value() -> None:
    assert even_chunks((3, 3, 5, 1)) == (2, 4, 4, 2)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_downsample_matches_numpy_on_odd_chunks(dtype: type) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, size=(3, 37, 29)).astype(dtype)
    lazy = da.from_array(image, chunks=(3, 5, 7))
    got = downsample_image(lazy).compute()
    t = image[:, :36, :28].astype(np.float64)
    mean = (t[:, 0::2, 0::2] + t[:, 1::2, 0::2] + t[:, 0::2, 1::2] + t[:, 1::2, 1::2]) / 4
    expected = mean if np.dtype(dtype).kind == "f" else np.floor(mean + 0.5)
    np.testing.assert_array_equal(got, expected.astype(dtype))
