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
    assert config.k >= 1


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
