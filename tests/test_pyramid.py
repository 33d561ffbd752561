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
    [((32768, 32768), 8), ((127, 4000), 1), ((128, 128), 1), ((256, 256), 1), ((257, 256), 2),
     ((512, 512), 2), ((40, 1000, 1000), 3), ((128, 20000), 2), ((64, 20000), 1)],
)
def test_levels_stop_at_one_tile_or_64_pixels(shape: tuple[int, ...], levels: int) -> None:
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


_ACCEPTED = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
             np.uint64, np.float16, np.float32, np.float64]


def _reference_mean_2x2(image: np.ndarray) -> np.ndarray:
    """Exact 2x2 mean with Python integers (round half up) or float64 (NaN ignored)."""
    t = image[..., : image.shape[-2] // 2 * 2, : image.shape[-1] // 2 * 2]
    groups = [t[..., i::2, j::2] for i in (0, 1) for j in (0, 1)]
    if image.dtype.kind == "f":
        with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning) if np.isnan(
            image
        ).any() else _nothing():
            return np.nanmean(np.stack(groups).astype(np.float64), axis=0).astype(image.dtype)
    total = sum(g.astype(object) if image.dtype != np.bool_ else g.astype(int) for g in groups)
    return ((total + 2) // 4).astype(image.dtype)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _random_image(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        image = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
        image.flat[:4] = info.max  # a group at the top of the range (overflow if summed narrow)
        image.flat[4:8] = info.min
        return image
    image = (rng.standard_normal(shape) * 1000).astype(dt)
    image[..., 0:2, 0:2] = np.nan  # an all-NaN group stays NaN
    image[..., 2, 2] = np.nan  # a group with one NaN averages the other three
    return image


@pytest.mark.parametrize("dtype", _ACCEPTED)
def test_downsample_every_accepted_dtype_matches_reference(dtype: type) -> None:
    image = _random_image(dtype, (2, 37, 30))
    got = downsample_image(da.from_array(image, chunks=(1, 9, 11))).compute()
    expected = _reference_mean_2x2(image)
    assert got.dtype == image.dtype
    np.testing.assert_array_equal(got, expected)


def test_bool_mean_is_a_majority_with_ties_to_true() -> None:
    groups = np.array(
        [[[0, 0], [0, 1]], [[1, 0], [0, 1]], [[1, 1], [0, 1]], [[1, 1], [1, 1]], [[0, 0], [0, 0]]],
        dtype=bool,
    )  # 1, 2, 3, 4, 0 of 4 True
    image = np.concatenate(list(groups), axis=1)[np.newaxis]  # (1, 2, 10)
    got = downsample_image(da.from_array(image, chunks=(1, 2, 4))).compute()
    np.testing.assert_array_equal(got[0, 0], [False, True, True, True, False])


@pytest.mark.parametrize(
    ("shape", "requested", "levels"),
    [((32, 40), 7, 6), ((32, 40), 6, 6), ((33, 40), 64, 6), ((1, 500), 3, 1),
     ((40, 512, 512), 64, 10), ((2, 3), 2, 2), ((2, 3), 0, 1)],
)
def test_requested_levels_are_clamped_to_one_pixel(
    shape: tuple[int, ...], requested: int, levels: int
) -> None:
    # the smallest level, min(y, x) // 2**(levels - 1), keeps at least 1 pixel
    assert n_levels(shape, requested) == levels
    assert min(shape[-2:]) // 2 ** (levels - 1) >= 1


@pytest.mark.parametrize("shape", [(32, 40), (5, 12, 9)])
def test_too_many_requested_levels_write_down_to_one_pixel(tmp_path, shape) -> None:
    import zarr

    from pipeline.cli import main

    data = (np.arange(np.prod(shape)) % 7).astype(np.uint8).reshape(shape)
    source = tmp_path / "in.npy"
    np.save(source, data)
    out = tmp_path / "out.zarr"
    argv = ["segment", str(source), "-k", "2", "-q", "-o", str(out), "--pyramid-levels", "8"]
    assert main(argv) == 0
    root = zarr.open_group(str(out), mode="r")
    expected = min(shape[-2:]).bit_length()  # 32 -> 6 levels (32..1), 9 -> 4 (9, 4, 2, 1)
    paths = [d["path"] for d in root.attrs["ome"]["multiscales"][0]["datasets"]]
    assert paths == [str(i) for i in range(expected)]
    smallest = root[paths[-1]].shape
    assert min(smallest[-2:]) == 1
    assert smallest[-2:] == tuple(s // 2 ** (expected - 1) for s in shape[-2:])
