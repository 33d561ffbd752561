"""The binned engine: exact bin summaries, fit quality, no data, pickling, determinism."""

from __future__ import annotations

import pickle

import dask
import dask.array as da
import numpy as np
import pytest

from pipeline.engines import binned, select_engine
from pipeline.engines.base import FitParams, TooFewValues
from pipeline.engines.binned import BinnedEngine
from pipeline.engines.bins import BinGrid, bin_features, finer_grid, grid_for, summarise_bins
from pipeline.engines.dp1d import optimal_kmeans_1d
from pipeline.errors import ConfigError
from pipeline.features import make_feature_spec
from pipeline.labels import NearestCentreLabeller, label_image

from .helpers import pixel_objective, run_engine, sklearn_objective


def _photo16(size: int = 96, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A 16-bit crop of a real photo (x257) with noise; a 4th channel is a smoothed grey."""
    from scipy.ndimage import gaussian_filter
    from skimage.data import astronaut

    rng = np.random.default_rng(seed)
    rgb = astronaut()[100 : 100 + 2 * size : 2, 150 : 150 + 2 * size : 2].astype(np.float64)
    image = rgb * 257.0
    if channels == 4:
        grey = gaussian_filter(rgb.mean(axis=2), 3) * 200.0
        image = np.concatenate([image, grey[..., None]], axis=2)
    image += rng.normal(0, 300, image.shape)
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def _multichannel(n_channels: int, size: int = 120, seed: int = 0) -> np.ndarray:
    """Five smooth regions with a random uint16 level per channel, with noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(size, size)), 6)
    regions = np.digitize(field, np.quantile(field, [0.2, 0.4, 0.6, 0.8]))
    levels = rng.uniform(5000, 60000, (5, n_channels))
    image = levels[regions] + rng.normal(0, 2500, (size, size, n_channels))
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def _ihc4() -> np.ndarray:
    """256x256x4 uint16: haematoxylin, eosin, DAB (``rgb2hed``) and luminance of scikit-image's
    immunohistochemistry photo at half resolution, stretched to 0..60000, with noise. Its values
    crowd into a few hundred of the coarse grid's 2^20 cells."""
    from skimage.color import rgb2gray, rgb2hed
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()
    stacked = np.concatenate([rgb2hed(ihc), rgb2gray(ihc)[..., None]], axis=-1)
    low, high = np.percentile(stacked, [0.5, 99.5], axis=(0, 1))
    span = np.where(high > low, high - low, 1.0)  # the eosin channel is almost all zero
    values = np.clip((stacked[::2, ::2] - low) / span, 0, 1) * 60000.0
    values += np.random.default_rng(4).normal(0.0, 120.0, size=values.shape)
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


def _float_volume(shape=(24, 40, 36), seed: int = 0) -> np.ndarray:
    """Four tissue-like levels in smooth regions, with noise (float32)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), 4)
    levels = np.digitize(field, np.quantile(field, [0.3, 0.6, 0.85]))
    values = np.array([-3.0, 1.0, 2.5, 7.0])[levels] + rng.normal(0, 0.4, shape)
    return values.astype(np.float32)


def _spec(image: np.ndarray, channels: bool):
    if channels:
        return make_feature_spec(image.dtype, image.shape[-1], image.shape[:-1],
                                 data_range=_range(image))
    return make_feature_spec(image.dtype, 1, image.shape, data_range=_range(image))


def _range(image: np.ndarray):
    if image.dtype.kind != "f":
        return None
    return float(np.nanmin(image)), float(np.nanmax(image))


def _summary(image: np.ndarray, spec, grid: BinGrid, chunks):
    (table,) = dask.compute(summarise_bins(da.from_array(image, chunks=chunks), spec, grid))
    return table


@pytest.mark.parametrize(
    ("image", "channels", "chunks"),
    [
        (_photo16(40), True, (13, 17, 3)),
        (_photo16(30, channels=4), True, (7, 30, 4)),
        (_float_volume((9, 11, 13)), False, (4, 5, 6)),
    ],
)
def test_bin_objective_equals_brute_force(image, channels, chunks):
    spec = _spec(image, channels)
    grid = grid_for(spec)
    table = _summary(image, spec, grid, chunks)
    feats, valid = spec.block_features(image)
    X = feats[valid].astype(np.float64)
    # Each pixel's bin, computed here from the grid's definition.
    index = np.clip(np.floor((X - np.asarray(grid.low)) / np.asarray(grid.width)), 0,
                    (1 << grid.bits) - 1).astype(np.uint64)
    keys = np.zeros(len(X), dtype=np.uint64)
    for f in range(X.shape[1]):
        keys = (keys << np.uint64(grid.bits)) | index[:, f]
    uniq, counts = np.unique(keys, return_counts=True)
    np.testing.assert_array_equal(table.keys, uniq)
    np.testing.assert_array_equal(table.counts, counts)
    rng = np.random.default_rng(1)
    means, within = table.means(grid), table.within_ss(grid).sum()
    for _ in range(3):
        C = X[rng.choice(len(X), 4, replace=False)] + rng.normal(0, 0.01, (4, X.shape[1]))
        # Bins assigned whole to the centre nearest their mean.
        bin_label = ((means[:, None] - C[None]) ** 2).sum(axis=2).argmin(axis=1)
        binned = float(table.counts @ ((means - C[bin_label]) ** 2).sum(axis=1)) + within
        pixel_label = bin_label[np.searchsorted(table.keys, keys)]
        brute = float(((X - C[pixel_label]) ** 2).sum())
        assert binned == pytest.approx(brute, rel=1e-9)


def test_bin_summary_does_not_depend_on_chunking():
    image = _photo16(48, channels=4)
    spec = _spec(image, True)
    grid = grid_for(spec)
    a = _summary(image, spec, grid, image.shape)
    b = _summary(image, spec, grid, (11, 7, 4))
    for name in ("keys", "counts", "sums", "sumsq"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize(
    ("name", "k"),
    [("rgb16", 8), ("rgb16", 4), ("uint16x4", 6), ("uint16x8", 6), ("float2d", 5),
     ("float3d", 4), ("float2d-1ch", 3)],
)
def test_mse_matches_scikit_learn(name, k):
    if name == "rgb16":
        image, channels, chunks = _photo16(96), True, (40, 50, 3)
    elif name == "uint16x4":
        image, channels, chunks = _photo16(80, channels=4), True, (33, 80, 4)
    elif name == "uint16x8":  # a coarse grid (2 bits per channel): the pixel passes refine
        image, channels, chunks = _multichannel(8), True, (50, 60, 8)
    elif name == "float2d":
        image = _photo16(80).astype(np.float32) / 7.0 - 1000.0
        channels, chunks = True, (80, 30, 3)
    elif name == "float3d":
        image, channels, chunks = _float_volume(), False, (10, 20, 36)
    else:
        image = _photo16(90)[..., 1].astype(np.float32) * 1e-3
        channels, chunks = False, (45, 31)
    spec = _spec(image, channels)
    result = run_engine(BinnedEngine(), image, spec, FitParams(k=k), chunks)
    assert result.engine == "binned"
    mse = pixel_objective(image, spec, result.centres)
    assert mse <= sklearn_objective(image, spec, k) * 1.001
    # The first pass measured the objective exactly; Lloyd steps never raise it.
    assert mse <= result.info["objective_before_refine"] * (1 + 1e-9)


def _optimum_1d(image: np.ndarray, spec, k: int) -> float:
    """The pixel optimum: dynamic programming on every distinct feature value."""
    feats, valid = spec.block_features(image)
    values, counts = np.unique(feats[valid, 0].astype(np.float64), return_counts=True)
    result = optimal_kmeans_1d(values, counts.astype(np.float64), k)
    return result.cost / counts.sum()


@pytest.mark.parametrize("k", [3, 4, 6])
def test_one_feature_is_optimal_up_to_the_proven_bound(k):
    image = _float_volume((20, 30, 30))
    spec = _spec(image, False)
    result = run_engine(BinnedEngine(), image, spec, FitParams(k=k), (7, 30, 11))
    info = result.info
    assert info["method"] == "dp-1d-binned"
    optimum = _optimum_1d(image, spec, k)
    mse = pixel_objective(image, spec, result.centres)
    assert info["lower_bound_mse"] <= optimum * (1 + 1e-12)
    assert optimum * (1 - 1e-9) <= mse <= optimum * (1 + info["proven_within"]) * (1 + 1e-9)
    assert info["proven_within"] < 1e-3
    assert mse <= optimum * 1.0001


def test_nan_pixels_are_no_data():
    image = _float_volume((12, 20, 20))
    holed = image.copy()
    holed[2:5, 3:9, :] = np.nan
    holed[7, :, 4] = np.nan
    n_nan = int(np.isnan(holed).sum())
    spec = _spec(holed, False)
    result = run_engine(BinnedEngine(), holed, spec, FitParams(k=3), (5, 7, 20))
    assert result.info["n_pixels"] == holed.size - n_nan
    # Same centres as fitting the pixels with data alone (in the same feature units).
    flat = holed[~np.isnan(holed)].reshape(1, -1)
    alone = run_engine(BinnedEngine(), flat, make_feature_spec(
        flat.dtype, 1, flat.shape, data_range=_range(holed)), FitParams(k=3), (1, 1000))
    np.testing.assert_allclose(result.centres, alone.centres, rtol=1e-12)
    labels = result.labeller(holed, (0, 0, 0))
    assert (labels[np.isnan(holed)] == 0).all()
    assert (labels[~np.isnan(holed)] >= 1).all()


def test_all_nan_or_too_few_pixels():
    image = np.full((6, 6), np.nan, dtype=np.float32)
    image[0, :2] = [1.0, 2.0]
    spec = _spec(image, False)
    with pytest.raises(TooFewValues, match="k=3 is larger than the 2 distinct value"):
        run_engine(BinnedEngine(), image, spec, FitParams(k=3))
    image[1, :] = 2.0  # three pixels, two values
    with pytest.raises(TooFewValues, match="k=3 is larger than the 2 distinct value"):
        run_engine(BinnedEngine(), image, spec, FitParams(k=3), (2, 3))
    image[:] = np.nan
    with pytest.raises(TooFewValues, match="no pixel has data"):
        run_engine(BinnedEngine(), image, spec, FitParams(k=3))


def test_deterministic_and_independent_of_chunking():
    image = _photo16(64, channels=4)
    spec = _spec(image, True)
    params = FitParams(k=5, random_state=7)
    a = run_engine(BinnedEngine(), image, spec, params, (64, 64, 4))
    b = run_engine(BinnedEngine(), image, spec, params, (13, 29, 4))
    c = run_engine(BinnedEngine(), image, spec, params, (13, 29, 4))
    np.testing.assert_array_equal(a.centres, b.centres)
    np.testing.assert_array_equal(b.centres, c.centres)


def test_picklable_and_labels_are_nearest_centre():
    image = _photo16(48)
    spec = _spec(image, True)
    engine = pickle.loads(pickle.dumps(BinnedEngine()))
    result = run_engine(engine, image, spec, FitParams(k=4), (20, 48, 3))
    labeller = pickle.loads(pickle.dumps(result.labeller))
    lazy = da.from_array(image, chunks=(17, 23, 3))
    ours = label_image(lazy, spec, labeller, 4).compute()
    reference = label_image(lazy, spec, NearestCentreLabeller(spec, result.centres), 4)
    np.testing.assert_array_equal(ours, reference.compute())
    assert set(np.unique(ours)) <= {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("dtype", "n_channels", "expected"),
    [
        (np.uint16, 3, "binned"),
        (np.uint16, 4, "binned"),
        (np.uint16, 8, "binned"),
        (np.float32, 1, "binned"),
        (np.float64, 3, "binned"),
        (np.int32, 3, "binned"),
        (np.int32, 1, "exact"),
        (np.uint8, 3, "exact"),
        (np.uint16, 1, "exact"),
    ],
)
def test_auto_picks_binned_beyond_the_exact_engine(dtype, n_channels, expected):
    spec = make_feature_spec(dtype, n_channels, (8, 8), data_range=(0.0, 1.0))
    image = da.zeros((8, 8, n_channels), dtype=dtype, chunks=4)
    assert select_engine("auto", image, spec, FitParams(k=3)).name == expected


def test_binned_does_not_take_spatial_features():
    spec = make_feature_spec(np.uint16, 3, (8, 8), spatial_weight=0.5)
    image = da.zeros((8, 8, 3), dtype=np.uint16, chunks=4)
    assert select_engine("auto", image, spec, FitParams(k=3)).name == "dask-ml"
    with pytest.raises(ConfigError, match="spatial"):
        select_engine("binned", image, spec, FitParams(k=3))


def test_end_to_end_metadata(tmp_path):
    import pipeline

    image = _float_volume((16, 24, 24))
    image[0, 0, :5] = np.nan
    result = pipeline.segment(image, str(tmp_path / "out.zarr"), k=4, quiet=True)[0]
    assert result.engine == "binned"
    assert result.no_data == 5
    spec = _spec(image, False)
    assert result.mse == pytest.approx(pixel_objective(image, spec, result.centres_features),
                                       rel=1e-5)
    info = result.metadata["engine_info"]
    assert info["n_bins"] > 0 and info["grid_bits_per_feature"] == grid_for(spec).bits


def test_stats_are_those_of_the_returned_centres():
    from pipeline.labels import nearest_centre

    image = _photo16(56, channels=4).astype(np.float32)
    image[3:9, 5:20, 2] = np.nan
    spec = _spec(image, True)
    result = run_engine(BinnedEngine(), image, spec, FitParams(k=5), (20, 23, 4))
    feats, valid = spec.block_features(image)
    index, dist = nearest_centre(feats[valid], result.centres)
    np.testing.assert_array_equal(result.stats[0, 1:], np.bincount(index, minlength=5))
    np.testing.assert_allclose(result.stats[1, 1:], np.bincount(index, dist, minlength=5),
                               rtol=1e-6)
    assert result.stats[0, 0] == 6 * 15
    assert len(result.info["pixel_passes"]) >= 1


@pytest.mark.parametrize(("n_features", "bits"), [(1, 18), (3, 7)])
def test_dense_and_hashed_binning_give_the_same_table(monkeypatch, n_features, bits):
    """A block is binned densely (small grids) or through a hash table; both give the same
    keys, counts and integer sums."""
    from pipeline.engines import bins

    rng = np.random.default_rng(11)
    feats = rng.random((600_000, n_features)).astype(np.float32)
    feats[::7] = feats[1::7][: len(feats[::7])]  # repeated values share bins
    valid = rng.random(len(feats)) > 0.05
    grid = BinGrid(bits, np.zeros(n_features), np.full(n_features, 1.0 / (1 << bits)))
    monkeypatch.setattr(bins, "DENSE_CELLS", 1 << 22)
    dense = bins.bin_features(feats, valid, grid)
    monkeypatch.setattr(bins, "DENSE_CELLS", 0)
    hashed = bins.bin_features(feats, valid, grid)
    for name in ("keys", "counts", "sums", "sumsq"):
        np.testing.assert_array_equal(getattr(dense, name), getattr(hashed, name))
    assert dense.counts.sum() == valid.sum()


def test_crowded_values_are_refit_on_a_finer_grid(monkeypatch):
    """Values crowded into few coarse bins: the first pixel pass predicts many more, so the
    engine bins the pixels again on a finer grid (proven small) and fits there; fewer passes,
    no worse objective, still independent of the chunking."""
    image = _ihc4()
    spec = _spec(image, True)
    params = FitParams(k=5)
    result = run_engine(BinnedEngine(), image, spec, params, (100, 128, 4))
    info = result.info
    regrid = info["regrid"]
    assert info["grid_bits_per_feature"] == 5
    assert regrid["grid_bits_per_feature"] > 5 and 4 * regrid["grid_bits_per_feature"] <= 63
    assert info["fit_bits"] == regrid["grid_bits_per_feature"]
    assert info["coarse_fit"]["fit_bits"] == 5
    assert regrid["n_bins"] <= binned.REGRID_ROWS
    passes = info["pixel_passes"]
    assert passes[0]["next_step_gain"] > binned.REGRID_GAIN * passes[0]["objective"]
    mse = pixel_objective(image, spec, result.centres)
    assert mse == pytest.approx(passes[-1]["objective"], rel=1e-9)
    assert mse <= sklearn_objective(image, spec, 5) * 1.001
    assert mse <= passes[0]["objective"] * (1 + 1e-9)

    other = run_engine(BinnedEngine(), image, spec, params, (64, 37, 4))
    np.testing.assert_array_equal(other.centres, result.centres)

    monkeypatch.setattr(binned, "REGRID_GAIN", float("inf"))
    coarse = run_engine(BinnedEngine(), image, spec, params, (100, 128, 4))
    assert "regrid" not in coarse.info
    assert len(passes) < len(coarse.info["pixel_passes"])
    assert mse <= pixel_objective(image, spec, coarse.centres) * (1 + 1e-9)


def test_finer_grid_is_proven_small_enough():
    """finer_grid's grid never holds more bins than allowed, on features binned here."""
    rng = np.random.default_rng(2)
    d, bits = 3, 4
    centres = rng.uniform(0.1, 0.9, (5, d))
    feats = (centres[rng.integers(0, 5, 20000)] + rng.normal(0, 0.01, (20000, d)))
    feats = feats.astype(np.float32)
    valid = np.ones(len(feats), dtype=bool)
    grid = BinGrid(bits, (0.0,) * d, (1.0 / (1 << bits),) * d)
    coarse = bin_features(feats, valid, grid)
    assert 8 * len(coarse) < 1000
    for max_rows in (8 * len(coarse), 1000, 5000, 19999):
        finer = finer_grid(grid, coarse.counts, max_rows)
        assert finer is not None and finer.bits > bits and finer.low == grid.low
        assert finer.width == pytest.approx([w / (1 << (finer.bits - bits)) for w in grid.width])
        assert len(bin_features(feats, valid, finer)) <= max_rows
    # Every pixel may get its own bin: the finest grid whose keys fit 63 bits.
    assert finer_grid(grid, coarse.counts, len(feats)).bits == 63 // d
    # No room for a single split: no finer grid.
    assert finer_grid(grid, coarse.counts, len(coarse)) is None
