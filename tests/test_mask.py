"""Masks: exact edges, statistics inside only, automatic tissue and CT body detection."""

from __future__ import annotations

import pickle

import dask
import numpy as np
import pytest
import zarr
from PIL import Image

from pipeline import mask as masks
from pipeline.config import JobConfig
from pipeline.engines import FitParams, select_engine
from pipeline.errors import InputError
from pipeline.execution import open_executor
from pipeline.features import make_feature_spec
from pipeline.labels import NearestCentreLabeller, cluster_stats, label_image, palette, recolour
from pipeline.plan import build_plan
from pipeline.readers.memory import from_array

COLOURS = np.array([[200, 30, 40], [30, 180, 60], [40, 50, 210]], dtype=np.uint8)


def _rgb(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Three separated colours in vertical bands, with a little noise."""
    band = (np.arange(shape[1]) * 3 // shape[1])[None, :].repeat(shape[0], 0)
    noise = rng.integers(-3, 4, (*shape, 3))
    return np.clip(COLOURS[band].astype(int) + noise, 0, 255).astype(np.uint8)


def _blobs(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A bool mask of a few random discs."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, dtype=bool)
    for _ in range(4):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(2, max(3, min(shape) // 3))
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out


def _segment(image: np.ndarray, mask: masks.Mask | None, engine: str, k: int,
             chunks: tuple[int, ...] = (16, 24)):
    """Fit and label as the plan does, with the mask applied; returns labels, stats, fit."""
    source = from_array(image, name="img")
    arr = source.to_dask(chunks)
    spec = make_feature_spec(source.dtype, source.n_channels, source.spatial_shape,
                             has_alpha=source.has_alpha,
                             data_range=(float(image.min()), float(image.max()))
                             if image.dtype.kind == "f" else None)
    if mask is not None:
        arr, spec = masks.apply_mask(arr, spec, mask)
    params = FitParams(k=k, sample=2000 if engine != "exact" else None, n_init=2)
    eng = select_engine(engine, arr, spec, params)
    (summary,) = dask.compute(eng.summarise(arr, spec, params))
    fit = eng.fit(summary, arr, spec, params)
    labeller = fit.labeller or NearestCentreLabeller(spec, fit.centres)
    labels = label_image(arr, spec, labeller, k)
    stats = cluster_stats(arr, labels, spec, fit.centres)
    return labels, stats, fit, spec, arr


def _file_mask(tmp_path, low: np.ndarray, image: np.ndarray, chunks=(16, 24)) -> masks.Mask:
    path = tmp_path / "mask.png"
    Image.fromarray(low.astype(np.uint8) * 255).save(path)
    source = from_array(image, name="img")
    return masks.file_mask(str(path), source, source.to_dask(chunks).chunks[:2])


@pytest.mark.parametrize("engine", ["exact", "binned", "dask-ml", "sample"])
def test_full_resolution_mask_edges_and_statistics(tmp_path, rng, engine):
    image = _rgb((48, 72), rng)
    truth = _blobs((48, 72), rng)
    mask = _file_mask(tmp_path, truth, image)
    labels, stats, _, _, _ = _segment(image, mask, engine, 3)
    labels, stats = dask.compute(labels, stats)
    assert (labels[~truth] == 0).all()
    assert (labels[truth] > 0).all()
    assert stats[0, 1:].sum() == truth.sum()
    assert stats[0, 0] == (~truth).sum()
    # inside the mask, the three colour bands are the three clusters
    band = (np.arange(72) * 3 // 72)[None, :].repeat(48, 0)
    for b in range(3):
        assert len(np.unique(labels[truth & (band == b)])) <= 1


def test_exact_engine_statistics_without_a_pass(tmp_path, rng):
    image = _rgb((48, 72), rng)
    truth = _blobs((48, 72), rng)
    _, _, fit, _, _ = _segment(image, _file_mask(tmp_path, truth, image), "exact", 3)
    assert fit.stats[0, 1:].sum() == truth.sum() and fit.stats[0, 0] == (~truth).sum()


def test_quarter_resolution_mask_upsampled_at_predicted_pixels(tmp_path, rng):
    image = _rgb((64, 80), rng)
    low = _blobs((16, 20), rng)
    labels, stats, _, _, _ = _segment(image, _file_mask(tmp_path, low, image), "exact", 3)
    labels = labels.compute()
    expected = np.repeat(np.repeat(low, 4, axis=0), 4, axis=1)
    assert ((labels > 0) == expected).all()
    assert stats.compute()[0, 1:].sum() == expected.sum()


def test_non_integer_ratio_uses_pixel_centres(tmp_path, rng):
    image = _rgb((50, 70), rng)
    low = _blobs((20, 28), rng)  # 2.5 image pixels per mask pixel
    mask = _file_mask(tmp_path, low, image, chunks=(13, 17))
    iy = np.floor((np.arange(50) + 0.5) * 20 / 50).astype(int)
    ix = np.floor((np.arange(70) + 0.5) * 28 / 70).astype(int)
    assert (mask.array.compute() == low[np.ix_(iy, ix)]).all()


def test_pyramid_level_shape_maps_by_integer_factor(rng):
    # a level of a 101-pixel axis halved with rounding up has 51 pixels: pixel i takes i // 2
    low = rng.random((51, 26)) > 0.5
    up = masks.upsampled(low, low.shape, ((40, 40, 21), (51,)), False, token="t").compute()
    assert (up == low[np.arange(101) // 2][:, np.arange(51) // 2]).all()


class _Recording:
    """A mask reader that records every region read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, 2
        self.regions: list[tuple[int, int]] = []

    def __getitem__(self, key):
        out = self.array[key]
        self.regions.append(out.shape)
        return out


def test_each_block_reads_only_its_mask_region(rng):
    low = rng.random((25, 25)) > 0.5
    reader = _Recording(low)
    up = masks.upsampled(reader, low.shape, ((20,) * 5, (20,) * 5), False, token="rec")
    up.compute(scheduler="synchronous")
    assert len(reader.regions) == 25
    assert max(max(r) for r in reader.regions) <= 5  # a 20-pixel block needs 5 mask pixels


def test_mask_of_another_aspect_ratio_is_one_error_naming_both(tmp_path, rng):
    image = _rgb((64, 80), rng)
    path = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((16, 40), np.uint8)).save(path)
    source = from_array(image, name="slide.png")
    with pytest.raises(InputError) as err:
        masks.file_mask(str(path), source, ((64,), (80,)))
    message = str(err.value)
    assert "wrong.png" in message and "slide.png" in message and "\n" not in message


def test_existing_alpha_is_combined_and_passes_through(tmp_path, rng):
    image = np.concatenate([_rgb((32, 48), rng), np.full((32, 48, 1), 255, np.uint8)], -1)
    image[:8, :, 3] = 0  # transparent top rows
    truth = _blobs((32, 48), rng)
    mask = _file_mask(tmp_path, truth, image, chunks=(16, 16))
    labels, _, fit, spec, _ = _segment(image, mask, "exact", 3, chunks=(16, 16))
    inside = truth & (image[..., 3] != 0)
    assert ((labels.compute() > 0) == inside).all()
    plain = from_array(image, name="img").to_dask((16, 16))
    out = recolour(labels, plain, spec, palette(spec, fit.centres, image.dtype, fit.values))
    out = out.compute()
    assert out.shape == (4, 32, 48)  # the appended mask channel is not written
    assert (out[3] == image[..., 3]).all()  # the input's alpha passes through
    assert (out[:3][:, ~inside] == 0).all()


def test_single_channel_float_image_outside_is_nan(tmp_path, rng):
    image = rng.normal(size=(40, 40)).astype(np.float32) + (np.arange(40) >= 20) * 10
    truth = _blobs((40, 40), rng)
    labels, _, fit, spec, arr = _segment(image, _file_mask(tmp_path, truth, image), "sample",
                                             2, chunks=(16, 16))
    assert spec.channels == (0,) and spec.alpha == 1 and arr.shape == (40, 40, 2)
    assert (labels.compute() > 0).sum() == truth.sum()
    plain = from_array(image, name="img").to_dask((16, 16))
    out = recolour(labels, plain, spec, palette(spec, fit.centres, image.dtype)).compute()
    assert np.isnan(out[~truth]).all() and np.isfinite(out[truth]).all()


def test_masked_graph_pickles_and_runs_on_processes(tmp_path, rng):
    image = _rgb((32, 32), rng)
    truth = _blobs((32, 32), rng)
    labels, _, _, _, _ = _segment(image, _file_mask(tmp_path, truth, image), "exact", 3,
                                  chunks=(16, 16))
    restored = pickle.loads(pickle.dumps(labels))
    out = restored.compute(scheduler="processes", num_workers=2)
    assert ((out > 0) == truth).all()


def test_mask_path_pattern_and_folder(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    for name in ("slide1.png", "slide2.png"):
        Image.fromarray(np.ones((4, 4), np.uint8)).save(folder / name)
    assert masks.mask_path(str(folder), "data/slide2.ome.tif") == str(folder / "slide2.png")
    assert masks.mask_path(str(folder / "{name}.png"), "x/slide1.svs") == str(
        folder / "slide1.png")
    with pytest.raises(InputError, match="no mask named 'slide3'"):
        masks.mask_path(str(folder), "slide3.svs")


# --- automatic masks ---------------------------------------------------------------------------


def _slide(rng: np.random.Generator, shape=(384, 512)) -> tuple[np.ndarray, np.ndarray]:
    """Pink and purple blobs (stained tissue) on white/grey glass with noise, and the truth."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, dtype=bool)
    for cy, cx, ry, rx in [(100, 120, 60, 80), (260, 330, 80, 110), (300, 90, 40, 40)]:
        truth |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    glass = np.where(xx[..., None] < shape[1] // 2, [238, 238, 240], [215, 215, 218])
    tissue = np.where((yy[..., None] // 20 + xx[..., None] // 20) % 2 == 0,
                      [225, 140, 190], [150, 90, 170])
    img = np.where(truth[..., None], tissue, glass) + rng.normal(0, 6, (*shape, 3))
    return np.clip(img, 0, 255).astype(np.uint8), truth


def test_auto_tissue_mask_on_a_generated_slide(rng):
    image, truth = _slide(rng)
    source = from_array(image, name="slide")
    arr = source.to_dask((128, 128))
    mask = masks.auto_mask(source, arr)
    assert mask.method == "tissue"
    assert abs(mask.fraction - truth.mean()) < 0.01
    got = mask.array.compute()
    assert abs(got.mean() - mask.fraction) < 1e-12  # the recorded fraction is exact
    assert (got & truth).sum() / (got | truth).sum() > 0.97
    meta = mask.metadata()
    assert meta["method"] == "tissue" and meta["feature"] == "saturation"


def test_auto_tissue_mask_from_a_strided_thumbnail(rng, monkeypatch):
    monkeypatch.setattr(masks, "THUMB_SIDE", 128)
    image, truth = _slide(rng)
    source = from_array(image, name="slide")
    mask = masks.auto_mask(source, source.to_dask((100, 100)))
    assert mask.info["steps"] == [3, 4] and mask.shape == (128, 128)
    assert abs(mask.fraction - truth.mean()) < 0.02
    assert abs(mask.array.compute().mean() - mask.fraction) < 1e-12


def test_auto_tissue_mask_reads_a_small_pyramid_level(tmp_path, rng, monkeypatch):
    import tifffile

    from pipeline.readers.dispatch import open_image

    monkeypatch.setattr(masks, "THUMB_SIDE", 200)
    image, truth = _slide(rng)
    path = str(tmp_path / "slide.tif")
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=2, tile=(64, 64), photometric="rgb")
        tif.write(image[::2, ::2], subfiletype=1, tile=(64, 64), photometric="rgb")
        tif.write(image[::4, ::4], subfiletype=1, tile=(64, 64), photometric="rgb")
    source = open_image(path)
    read = []
    original = type(source.reader).__getitem__

    def spy(self, key):
        read.append(self.shape)
        return original(self, key)

    monkeypatch.setattr(type(source.reader), "__getitem__", spy)
    mask = masks.auto_mask(source, source.to_dask((128, 128)))
    assert mask.info["level"] == 2 and mask.shape == (96, 128)
    assert read and all(shape[:2] == (96, 128) for shape in read)  # level 0 never read
    assert abs(mask.fraction - truth.mean()) < 0.02


def _phantom(rng: np.random.Generator, shape=(12, 96, 112)) -> dict[str, np.ndarray]:
    """CT phantom (HU): air, an elliptic body of soft tissue in a fat ring, a bone disc and an
    air-filled lung inside, and a separate couch below the body."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - 44) / 36) ** 2 + ((x - 56) / 48) ** 2 <= 1
    inner = ((y - 44) / 30) ** 2 + ((x - 56) / 42) ** 2 <= 1
    lung = (((y - 40) / 12) ** 2 + ((x - 36) / 12) ** 2 <= 1) & (z > 0) & (z < shape[0] - 1)
    bone = ((y - 48) / 8) ** 2 + ((x - 78) / 8) ** 2 <= 1
    couch = (y >= 86) & (y <= 89)
    hu = np.full(shape, -1000.0)
    hu[body] = -100
    hu[inner] = 40
    hu[bone] = 1000
    hu[lung] = -850
    hu[couch] = 300
    hu += rng.normal(0, 10, shape)
    return {"hu": hu.astype(np.int16), "body": body, "lung": lung, "couch": couch}


def test_auto_ct_body_keeps_the_lung_and_drops_the_couch(rng):
    ph = _phantom(rng)
    source = from_array(ph["hu"], name="ct")
    mask = masks.auto_mask(source, source.to_dask((6, 48, 48)))
    assert mask.method == "ct-body"
    got = mask.array.compute()
    assert (got == ph["body"]).all()
    assert got[ph["lung"]].all() and not got[ph["couch"]].any()
    assert mask.fraction == pytest.approx(ph["body"].mean(), abs=1e-12)


def test_auto_ct_body_of_a_nifti_volume(tmp_path, rng):
    import nibabel as nib

    from pipeline.readers.dispatch import open_image

    ph = _phantom(rng)
    path = str(tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(ph["hu"], np.eye(4)), path)
    source = open_image(path)
    assert masks.auto_method(source) == "ct-body"
    mask = masks.auto_mask(source, source.to_dask(tuple(min(n, 48) for n in source.shape)))
    assert mask.fraction == pytest.approx(ph["body"].mean(), abs=1e-12)
    restored = pickle.loads(pickle.dumps(mask.array))
    assert restored.sum().compute() == ph["body"].sum()


def test_auto_refuses_what_it_cannot_tell(rng):
    source = from_array(rng.integers(0, 255, (8, 16, 16)).astype(np.uint8), name="stack")
    with pytest.raises(InputError, match=r"stack.*give a mask file"):
        masks.auto_method(source)


# --- through the plan (the trial wiring) -------------------------------------------------------


def test_plan_writes_the_mask_label_and_records_it(tmp_path, rng):
    image = _rgb((48, 72), rng)
    truth = _blobs((48, 72), rng)
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "img.png")
    out = tmp_path / "out.zarr"
    config = JobConfig(inputs=["img"], output=str(out), k=3, quiet=True, chunks=[16, 24],
                        mask=str(tmp_path / "img.png"))
    plan = build_plan(config, [from_array(image, name="img")])
    with open_executor(plan.config) as executor:
        [result] = plan.execute(executor)
    group = zarr.open_group(str(out), mode="r")
    labels = group["labels/clusters/0"][...]
    written = group["labels/mask/0"][...]
    assert (written == truth).all() and written.dtype == np.uint8
    assert list(group["labels"].attrs["ome"]["labels"]) == ["clusters", "mask"]
    assert (labels[~truth] == 0).all() and (labels[truth] > 0).all()
    assert group["0"].shape == (3, 48, 72)
    assert (group["0"][...][:, ~truth] == 0).all()
    assert result.metadata["mask"]["fraction"] == pytest.approx(truth.mean())
    assert result.metadata["mask"]["method"] == "file"
    assert sum(result.metadata["pixels_per_cluster"]) == truth.sum()
    assert sum(c["pixels"] for c in result.metadata["classes"]) == truth.sum()
    assert result.metadata["no_data_rules"] == ["outside the mask"]
    assert result.metadata["features"]["channels"] == [0, 1, 2]
    assert len(group["labels/mask"].attrs["ome"]["multiscales"][0]["datasets"]) == len(
        group["labels/clusters"].attrs["ome"]["multiscales"][0]["datasets"])


def test_plan_ct_mask_auto_and_k_auto(tmp_path, rng):
    ph = _phantom(rng)
    out = tmp_path / "ct.zarr"
    config = JobConfig(inputs=["ct"], output=str(out), k="auto", quiet=True,
                        chunks=[6, 48, 48], mask="auto")
    plan = build_plan(config, [from_array(ph["hu"], name="ct")])
    with open_executor(plan.config) as executor:
        [result] = plan.execute(executor)
    labels = zarr.open_group(str(out), mode="r")["labels/clusters/0"][...]
    assert ((labels > 0) == ph["body"]).all()
    # inside the body: lung air, fat, soft tissue and bone
    assert result.k == 4 and result.metadata["k_auto"]["k"] == 4
    assert set(result.metadata["k_auto"]["curve"]) == {str(k) for k in range(1, 14)}
    assert result.metadata["mask"]["method"] == "ct-body"
    assert result.metadata["mask"]["fraction"] == pytest.approx(ph["body"].mean())
    centres = sorted(c[0] for c in result.metadata["centres"])
    assert np.allclose(centres, [-850, -100, 40, 1000], atol=5)


def test_all_engines_agree_through_dask_arrays(rng):
    """Many inputs, one mask each: every engine leaves each input's outside at label 0."""
    images = [_rgb((32, 40), rng) for _ in range(2)]
    truths = [_blobs((32, 40), rng) for _ in range(2)]
    for image, truth in zip(images, truths, strict=True):
        source = from_array(image, name="img")
        mask = masks.Mask(masks.upsampled(truth, truth.shape, source.to_dask((16, 16)).chunks[:2],
                                          False, token=str(truth.sum())),
                          "file", "mem", truth.shape)
        for engine in ("exact", "binned", "dask-ml", "sample"):
            labels, *_ = _segment(image, mask, engine, 3, chunks=(16, 16))
            assert ((labels.compute() > 0) == truth).all()


def test_batch_with_a_mask_folder_and_a_model(tmp_path, rng):
    """Many inputs, one mask each from a folder; a model fitted without masks applied with
    them; label 0 exactly outside each mask."""
    from pipeline.cli import main

    images, masks_dir = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks_dir.mkdir()
    truths = {}
    for i in range(3):
        Image.fromarray(_rgb((30, 45), rng)).save(images / f"im{i}.png")
        truth = _blobs((30, 45), rng)
        truth[0, 0] = True  # never empty
        truths[f"im{i}"] = truth
        Image.fromarray(truth.astype(np.uint8) * 255).save(masks_dir / f"im{i}.png")
    out = tmp_path / "masked.zarr"
    assert main(["segment", str(images), "-k", "3", "-o", str(out), "-q",
                 "--mask", str(masks_dir)]) == 0
    model = tmp_path / "model.json"
    assert main(["fit", str(images), "-k", "3", "-o", str(model), "-q"]) == 0
    applied = tmp_path / "applied.zarr"
    assert main(["segment", str(images), "--model", str(model), "-o", str(applied), "-q",
                 "--mask", str(masks_dir)]) == 0
    for store in (out, applied):
        for name, truth in truths.items():
            labels = zarr.open_group(str(store / name / "labels" / "clusters"))["0"][:]
            assert (labels[~truth] == 0).all() and (labels[truth] > 0).all()
            meta = zarr.open_group(str(store / name)).attrs["kmseg"]
            assert meta["pixels_without_data"] == int((~truth).sum())
            assert meta["mask"]["fraction"] == pytest.approx(truth.mean())


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_mask_leaving_too_few_values_is_named(tmp_path, capsys, dtype):
    """A mask that leaves no pixel, or fewer distinct values than k, is one line naming the
    mask (it blamed k and 'the image')."""
    import tifffile

    from pipeline.cli import main

    image = tmp_path / "img.tif"
    tifffile.imwrite(image, (np.arange(64 * 64) % 250).astype(dtype).reshape(64, 64))
    empty, corner = tmp_path / "empty.tif", tmp_path / "corner.tif"
    tifffile.imwrite(empty, np.zeros((64, 64), np.uint8))
    inside = np.zeros((64, 64), np.uint8)
    inside[:2, :2] = 1  # four pixels, four distinct values
    tifffile.imwrite(corner, inside)
    nothing = f"no pixel inside the mask {empty} has data" + (
        " (no data: NaN or infinite value)" if dtype == np.float32 else "")
    for mask, k, problem in ((empty, 3, nothing),
                             (corner, 5, f"k=5 is larger than the 4 distinct value(s) inside "
                                         f"the mask {corner}")):
        status = main(["segment", str(image), "-k", str(k), "--mask", str(mask),
                       "-o", str(tmp_path / f"{mask.stem}.zarr"), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2
        assert err == [f"kmseg: error: {image}: {problem}"]
