"""Labelling and statistics on tiny, oddly chunked arrays against in-memory references."""

from __future__ import annotations

import dask.array as da
import numpy as np

from pipeline.features import make_feature_spec
from pipeline.labels import (
    NearestCentreLabeller,
    cluster_stats,
    label_image,
    nearest_centre,
    palette,
    recolour,
)


def _brute_labels(feats, centres):
    d = ((feats[:, None, :] - centres[None]) ** 2).sum(-1)
    return d.argmin(1), d.min(1)


def test_nearest_centre_matches_brute_force(rng):
    feats = rng.random((1000, 3))
    centres = rng.random((5, 3))
    index, dist = nearest_centre(feats, centres)
    ref_index, ref_dist = _brute_labels(feats, centres)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-12)


def test_blockwise_labels_recolour_and_stats(rng):
    image = rng.integers(0, 256, size=(37, 41, 3), dtype=np.uint8)
    spec = make_feature_spec(np.uint8, 3, image.shape[:2])
    centres = rng.random((4, 3))
    dimage = da.from_array(image, chunks=(10, 13, 3))
    labels = label_image(dimage, spec, NearestCentreLabeller(spec, centres), 4)
    table = palette(spec, centres, image.dtype)
    recoloured = recolour(labels, dimage, spec, table)
    stats = cluster_stats(dimage, labels, spec, centres)
    got_labels, got_rec, got_stats = da.compute(labels, recoloured, stats)

    feats = image.reshape(-1, 3) / 255.0
    ref, dist = _brute_labels(feats, centres)
    np.testing.assert_array_equal(got_labels.ravel(), ref + 1)
    np.testing.assert_array_equal(np.moveaxis(got_rec, 0, -1), table[got_labels])
    np.testing.assert_array_equal(got_stats[0, 1:], np.bincount(ref, minlength=4))
    np.testing.assert_allclose(got_stats[1].sum(), dist.sum(), rtol=1e-5)


def test_nan_pixels_get_label_zero(rng):
    image = rng.random((9, 11)).astype(np.float32)
    image[2:4, 5:7] = np.nan
    spec = make_feature_spec(np.float32, 1, image.shape, data_range=(0.0, 1.0))
    centres = np.array([[0.25], [0.75]])
    dimage = da.from_array(image, chunks=(4, 5))
    labels = label_image(dimage, spec, NearestCentreLabeller(spec, centres), 2)
    table = palette(spec, centres, image.dtype)
    got, rec, stats = da.compute(
        labels, recolour(labels, dimage, spec, table), cluster_stats(dimage, labels, spec, centres)
    )
    assert (got[2:4, 5:7] == 0).all()
    assert np.isnan(rec[2:4, 5:7]).all()
    assert (got[np.isfinite(image)] > 0).all()
    assert stats[0, 0] == 4


def test_alpha_passes_through_recolour(rng):
    image = rng.integers(0, 256, size=(6, 7, 4), dtype=np.uint8)
    spec = make_feature_spec(np.uint8, 4, image.shape[:2], has_alpha=True)
    centres = rng.random((3, 3))
    dimage = da.from_array(image, chunks=(4, 4, 4))
    labels = label_image(dimage, spec, NearestCentreLabeller(spec, centres), 3)
    rec = recolour(labels, dimage, spec, palette(spec, centres, image.dtype)).compute()
    np.testing.assert_array_equal(rec[3], image[..., 3])


def test_label_dtype_grows_past_255(rng):
    spec = make_feature_spec(np.uint16, 1, (20, 20))
    # 300 centres 218 grey levels apart; no pixel lies on a midpoint (a multiple of 218), so
    # the nearest centre is unambiguous at any float precision.
    centres = (218.0 * np.arange(300) + 109.0)[:, None] / 65535
    values = rng.integers(0, 65536, size=(20, 20), dtype=np.uint16)
    values[values % 218 == 0] += 1
    values[0, 0], values[0, 1] = 0, 65535  # the first and the last centre's labels occur
    labeller = NearestCentreLabeller(spec, centres)
    labels = label_image(da.from_array(values, chunks=7), spec, labeller, 300)
    assert labels.dtype == np.uint16
    distance = np.abs(values[..., None] / 65535 - centres[:, 0])
    expected = np.argmin(distance, axis=-1) + 1  # 0 is kept for no data
    np.testing.assert_array_equal(labels.compute(), expected)
    assert expected.max() == 300


def test_palette_uses_exact_values():
    spec = make_feature_spec(np.int64, 1, (2, 2), data_range=(0, 2**62))
    values = np.array([[2**62 - 1], [3]], dtype=np.int64)
    table = palette(spec, np.array([[1.0], [0.0]]), np.int64, values)
    assert table.dtype == np.int64 and table[1:, 0].tolist() == [2**62 - 1, 3] and table[0, 0] == 0


def test_label_colours_distinct_for_every_k():
    from pipeline.io.colours import MIN_DELTA_E, label_rgb, min_delta_e, qualitative_palette

    for k in (2, 5, 10, 20, 21, 64, 256):
        rgb, source = label_rgb(np.full((k, 1), 0.5)[:, :0])
        assert source == "palette" and rgb.shape == (k, 3)
        assert min_delta_e(rgb / 255.0) >= MIN_DELTA_E
    assert len({tuple(c) for c in qualitative_palette(65535)}) == 65535
    # Distinct centre colours are kept; two close ones fall back to the palette.
    centres = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.9]])
    rgb, source = label_rgb(centres)
    assert source == "centres" and rgb.tolist() == np.rint(centres * 255).tolist()
    close = np.array([[0.5, 0.5, 0.5], [0.51, 0.5, 0.5], [0.1, 0.1, 0.9]])
    assert label_rgb(close)[1] == "palette"
