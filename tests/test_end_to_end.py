"""Every input kind through the CLI, and every ready job in configs/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.cli import main
from pipeline.config import build_config, load_yaml
from tests.helpers import read_output

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))


def _slide(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    """A tiled, pyramidal RGB TIFF with a pixel size, as whole-slide scanners write."""
    import tifffile

    base = np.zeros((300, 420, 3), dtype=np.uint8)
    base[:, :140] = (230, 200, 210)  # background
    base[:, 140:280] = (150, 60, 120)  # tissue
    base[:, 280:] = (60, 40, 110)  # nuclei
    image = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "slide.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(image, tile=(128, 128), photometric="rgb", subifds=1,
                 resolution=(40000, 40000), resolutionunit="CENTIMETER", compression="zlib")
        tw.write(image[::2, ::2], tile=(128, 128), photometric="rgb", subfiletype=1,
                 compression="zlib")
    return path, image


def _ct_series(folder: Path, rng: np.random.Generator) -> np.ndarray:
    """A DICOM CT series (air, soft tissue, bone) under shuffled names; returns the HU volume."""
    from pydicom.uid import generate_uid

    from tests.readers.conftest import ct_slice, save_dicom

    folder.mkdir()
    hu = np.full((6, 40, 50), -1000, dtype=np.int16)
    hu[:, 10:30, 10:40] = 40
    hu[:, 15:25, 20:30] = 1200
    hu = np.clip(hu + rng.normal(0, 10, hu.shape), -1024, 3071).astype(np.int16)
    series = generate_uid()
    for z in rng.permutation(len(hu)):
        ds = ct_slice(
            (hu[z].astype(np.int32) + 1024).astype(np.uint16),
            position=(0.0, 0.0, 2.5 * float(z)),
            series_uid=series,
            instance=int(z) + 1,
            PixelSpacing=[0.7, 0.7],
        )
        save_dicom(ds, folder / f"slice{rng.integers(1e9)}.dcm")
    return hu


def _write(kind: str, tmp_path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    if kind == "png16":
        from PIL import Image

        image = rng.integers(0, 65536, size=(60, 70), dtype=np.uint16)
        path = tmp_path / "grey16.png"
        Image.fromarray(image).save(path)
        return path, image
    if kind == "jpeg":
        from PIL import Image
        from skimage import data

        image = data.coffee()[:120, :160]
        path = tmp_path / "coffee.jpg"
        Image.fromarray(image).save(path, quality=95)
        return path, np.asarray(Image.open(path))
    if kind == "nifti":
        import nibabel

        volume = rng.normal(0, 1, size=(12, 10, 8)).astype(np.float32)  # x, y, z
        path = tmp_path / "mr.nii.gz"
        nibabel.save(nibabel.Nifti1Image(volume, np.diag([0.9, 0.9, 3.0, 1])), path)
        return path, np.transpose(volume, (2, 1, 0))
    if kind == "ome-zarr":
        image = rng.integers(0, 4096, size=(2, 50, 60), dtype=np.uint16)  # c, y, x
        path = tmp_path / "cells.ome.zarr"
        from ome_zarr.io import parse_url
        from ome_zarr.writer import write_image

        write_image(image, zarr.group(parse_url(path, mode="w").store), axes="cyx")
        return path, np.moveaxis(image, 0, -1)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["png16", "jpeg", "nifti", "ome-zarr"])
def test_input_kinds_end_to_end(kind, tmp_path, rng, capsys):
    path, expected = _write(kind, tmp_path, rng)
    out = tmp_path / "out.zarr"
    assert main(["segment", str(path), "-k", "3", "-o", str(out), "-q"]) == 0
    labels, recoloured, meta = read_output(str(out))
    assert labels.shape == expected.shape[: labels.ndim]
    assert recoloured.shape == expected.shape and recoloured.dtype == expected.dtype
    assert sum(meta["pixels_per_cluster"]) == labels.size
    assert meta["input"]["dtype"] == str(expected.dtype)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_is_valid(path):
    layer = load_yaml(path)
    config = build_config(layer, {"inputs": layer.get("inputs") or ["x"], "output": "o.zarr"},
                          environ={})
    # Every key of the file reaches the configuration unchanged (the output is overridden).
    for key, value in layer.items():
        assert getattr(config, key) == (value if key != "output" else "o.zarr"), key


def test_photo_config_runs_as_shipped(tmp_path):
    out = tmp_path / "photo.zarr"
    assert main(["run", "configs/photo.yaml", "-o", str(out), "-q"]) == 0
    labels, _, meta = read_output(str(out))
    assert labels.shape == (512, 512) and meta["k"] == 4 and meta["engine"] == "exact"


def test_slide_config_on_a_tiled_pyramidal_tiff(tmp_path, rng):
    path, image = _slide(tmp_path, rng)
    out = tmp_path / "slide.zarr"
    assert main(["run", "configs/slide.yaml", "--inputs", str(path), "-o", str(out), "-q",
                 "-k", "3"]) == 0
    labels, _, meta = read_output(str(out))
    assert labels.shape == image.shape[:2]
    assert meta["input"]["spacing"] == pytest.approx([0.25, 0.25])
    assert meta["input"]["unit"] == "micrometer"
    # The three stained regions are three clusters.
    for region in (slice(0, 140), slice(140, 280), slice(280, 420)):
        assert len(np.unique(labels[:, region])) == 1
    scale = zarr.open_group(str(out), mode="r").attrs["ome"]["multiscales"][0]["datasets"][0]
    assert scale["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, 0.25, 0.25])
    level1 = tmp_path / "level1.zarr"
    assert main(["run", "configs/slide.yaml", "--inputs", str(path), "-o", str(level1), "-q",
                 "-k", "3", "--level", "1"]) == 0
    assert read_output(str(level1))[0].shape == (150, 210)


def test_ct_config_on_a_dicom_series(tmp_path, rng):
    hu = _ct_series(tmp_path / "ct_series", rng)
    out = tmp_path / "ct.zarr"
    assert main(["run", "configs/ct.yaml", "--inputs", str(tmp_path / "ct_series"),
                 "-o", str(out), "-q", "-k", "3"]) == 0
    labels, recoloured, meta = read_output(str(out))
    assert labels.shape == hu.shape and recoloured.dtype == np.int16
    assert meta["optimal"] is True
    assert meta["input"]["spacing"] == pytest.approx([2.5, 0.7, 0.7])
    centres = sorted(c[0] for c in meta["centres"])
    assert centres == pytest.approx([-1000, 40, 1200], abs=5)


# --- Issue 7: no data, dtypes, errors that name their input, label colours -----------------


def _run(path: Path, out: Path, *args: str) -> int:
    return main(["segment", str(path), "-o", str(out), "-q", *args])


def test_rgba_png_transparent_background_is_no_data(tmp_path):
    """Item 3: alpha 0 is no data; the three opaque colours are the three clusters."""
    from PIL import Image

    rgba = np.zeros((40, 60, 4), dtype=np.uint8)  # fully transparent black background
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i, colour in enumerate(colours):
        rgba[5:35, 5 + 18 * i : 20 + 18 * i] = (*colour, 255)
    path = tmp_path / "shapes.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = tmp_path / "out.zarr"
    assert _run(path, out, "-k", "3") == 0
    labels, recoloured, meta = read_output(str(out))
    opaque = rgba[..., 3] > 0
    assert (labels[~opaque] == 0).all()
    assert meta["pixels_without_data"] == int((~opaque).sum())
    assert "alpha = 0" in meta["no_data_rules"]
    for colour in colours:
        where = (rgba[..., :3] == colour).all(-1) & opaque
        assert len(np.unique(labels[where])) == 1 and labels[where][0] > 0
    assert sorted(meta["pixels_per_cluster"]) == [30 * 15] * 3
    assert meta["mse"] == pytest.approx(0, abs=1e-20)
    np.testing.assert_array_equal(recoloured[opaque], rgba[opaque])
    np.testing.assert_array_equal(recoloured[..., 3], rgba[..., 3])


def test_rgba_alpha_as_a_channel(tmp_path):
    from PIL import Image

    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[:, 15:] = (90, 90, 90, 255)
    path = tmp_path / "two.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = tmp_path / "out.zarr"
    assert _run(path, out, "-k", "2", "--alpha", "channel") == 0
    labels, _, meta = read_output(str(out))
    assert meta["pixels_without_data"] == 0 and meta["features"]["channels"] == [0, 1, 2, 3]
    assert len(set(np.unique(labels[:, :15])) | set(np.unique(labels[:, 15:]))) == 2


def test_float_tiff_with_infinities_counts_them_as_no_data(tmp_path, rng):
    """Item 4: ±inf are no data like NaN, not 'no finite values'."""
    import tifffile

    image = rng.normal(100, 5, (48, 64)).astype(np.float32)
    image[:, 32:] += 300
    image[3, 4], image[40, 50] = np.inf, -np.inf
    path = tmp_path / "inf.tif"
    tifffile.imwrite(path, image)
    out = tmp_path / "out.zarr"
    assert _run(path, out, "-k", "2") == 0
    labels, recoloured, meta = read_output(str(out))
    assert meta["pixels_without_data"] == 2
    assert labels[3, 4] == 0 and labels[40, 50] == 0
    assert (labels[np.isfinite(image)] > 0).all()
    assert np.isnan(recoloured[3, 4]) and np.isnan(recoloured[40, 50])
    finite = image[np.isfinite(image)]
    assert meta["features"]["scaled_from"] == pytest.approx([finite.min(), finite.max()])


def test_float_image_with_fewer_values_than_k_is_refused(tmp_path, capsys):
    """Item 5: the same one-line error as integer images, naming the file."""
    image = np.repeat(np.array([0.5, 1.5, 7.25], dtype=np.float32), 100).reshape(15, 20)
    path = tmp_path / "three.npy"
    np.save(path, image)
    assert _run(path, tmp_path / "out.zarr", "-k", "4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"kmseg: error: {path}: k=4 is larger than the 3 distinct value(s) in the image"]
    assert not (tmp_path / "out.zarr").exists() or "complete" not in str(
        zarr.open_group(str(tmp_path / "out.zarr")).attrs.get("kmseg", {}).get("status")
    )


def test_uniform_png_error_names_the_file(tmp_path, capsys):
    """Item 6: every error line names its input."""
    from PIL import Image

    path = tmp_path / "uniform.png"
    Image.fromarray(np.full((10, 12), 77, dtype=np.uint8)).save(path)
    assert _run(path, tmp_path / "out.zarr", "-k", "2") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"kmseg: error: {path}: k=2 is larger than the 1 distinct value(s) in the image"


def test_ct_label_colours_are_distinct(tmp_path):
    """Item 7: int16 CT, k=5: label colours visibly distinct; recoloured keeps the centres."""
    import tifffile

    from pipeline.io.colours import MIN_DELTA_E, min_delta_e

    hu = np.array([-1000, -100, 0, 50, 700], dtype=np.int16)
    image = np.repeat(hu, 120).reshape(20, 30)
    path = tmp_path / "ct.tif"
    tifffile.imwrite(path, image)
    out = tmp_path / "out.zarr"
    assert _run(path, out, "-k", "5") == 0
    _, recoloured, meta = read_output(str(out))
    np.testing.assert_array_equal(recoloured, image)
    colours = zarr.open_group(str(out), mode="r")["labels/clusters"].attrs["ome"]["image-label"]
    rgb = np.array([c["rgba"][:3] for c in colours["colors"] if c["label-value"] > 0])
    assert len(rgb) == 5 and len({tuple(c) for c in rgb}) == 5
    assert min_delta_e(rgb / 255.0) >= MIN_DELTA_E
    assert meta["label_colours"] == "palette"


@pytest.mark.parametrize(
    ("dtype", "suffix"),
    [(np.int32, ".tif"), (np.uint32, ".tif"), (np.int64, ".npy"), (np.uint64, ".tif"),
     (np.int64, ".tif"), (np.uint64, ".npy")],
)
def test_wide_integers_keep_exact_values(tmp_path, dtype, suffix):
    """Item 10: 32- and 64-bit integers: recoloured equals the input's distinct values."""
    import tifffile

    info = np.iinfo(dtype)
    # 0 and 50 and 51 apart; the extremes beyond 2^53 for 64-bit types
    top = int(info.max) - 3 if info.max > 2**53 else int(info.max)
    low = int(info.min) + 1 if info.min < 0 else 0
    values = np.array([low, 50, 51, 10**6, top], dtype=dtype)
    rng = np.random.default_rng(5)
    image = values[rng.integers(0, 5, (24, 30))]
    image[0, :5] = values
    path = tmp_path / f"wide{suffix}"
    if suffix == ".npy":
        np.save(path, image)
    else:
        tifffile.imwrite(path, image)
    out = tmp_path / "out.zarr"
    assert _run(path, out, "-k", "5") == 0
    labels, recoloured, meta = read_output(str(out))
    assert recoloured.dtype == dtype
    np.testing.assert_array_equal(recoloured, image)
    assert meta["engine"] == "exact" and meta["mse"] == pytest.approx(0, abs=1e-20)
    assert sorted(meta["centre_values"]) == sorted([[int(v)] for v in values])
    # 0 and 50 (and 50 and 51) are different clusters
    assert len(np.unique(labels)) == 5
