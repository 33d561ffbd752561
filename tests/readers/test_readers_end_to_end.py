"""Files read as a viewer shows them, through the whole pipeline (``main([...])``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipeline.cli import main
from tests.helpers import read_output

from ._make import RED_BLUE, exif_bytes, palette_tiff, png_header, red_blue_index


def test_palette_tiff_k2_gives_red_and_blue_regions(tmp_path: Path) -> None:
    index = red_blue_index((60, 80))
    path = palette_tiff(tmp_path / "palette.tif", index, RED_BLUE.astype(np.uint16) * 257,
                        tile=(16, 16))
    out = tmp_path / "out.zarr"
    assert main(["segment", str(path), "-k", "2", "-o", str(out), "-q"]) == 0
    labels, recoloured, meta = read_output(str(out))
    red = np.isin(index, (0, 2))
    # two regions, one label each, different from each other
    assert len(np.unique(labels[red])) == 1 and len(np.unique(labels[~red])) == 1
    assert labels[red][0] != labels[~red][0]
    # recoloured with the colormap colours, not the index numbers
    np.testing.assert_array_equal(recoloured[red], np.tile([255, 0, 0], (red.sum(), 1)))
    np.testing.assert_array_equal(recoloured[~red], np.tile([0, 0, 255], ((~red).sum(), 1)))
    assert sorted(map(tuple, np.rint(meta["centres"]).astype(int).tolist())) == [
        (0, 0, 255), (255, 0, 0)]
    assert meta["input"]["metadata"]["photometric"] == "palette"


def test_exif_jpeg_is_segmented_as_shown(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:, :32] = (230, 30, 30)
    stored[:, 32:] = (30, 30, 230)
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif_bytes(6), quality=95)
    out = tmp_path / "out.zarr"
    assert main(["segment", str(path), "-k", "2", "-o", str(out), "-q"]) == 0
    labels, recoloured, meta = read_output(str(out))
    assert labels.shape == (64, 48) and recoloured.shape == (64, 48, 3)
    # rotated 90 degrees clockwise: the stored left (red) half is shown at the top
    assert recoloured[5, 24, 0] > 200 and recoloured[58, 24, 2] > 200
    assert meta["input"]["shape"] == [64, 48, 3]
    assert "EXIF Orientation 6" in meta["input"]["metadata"]["transform"]


def test_int64_tiff_writes(tmp_path: Path) -> None:
    # issue 7 item 10: exit 1 with a raw Zarr ValueError (tifffile's C long long dtype)
    data = np.repeat(np.array([0, 50, 1000], np.int64), 400).reshape(40, 30)
    path = tmp_path / "int64.tif"
    tifffile.imwrite(path, data)
    out = tmp_path / "out.zarr"
    assert main(["segment", str(path), "-k", "3", "-o", str(out), "-q"]) == 0
    _, recoloured, _ = read_output(str(out))
    assert recoloured.dtype == np.int64


@pytest.mark.parametrize("kind", ["fifo", "bomb", "complex", "empty"])
def test_hostile_inputs_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             kind: str) -> None:
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        path = tmp_path / "pipe.png"
        os.mkfifo(path)
    elif kind == "bomb":
        path = tmp_path / "bomb.png"
        path.write_bytes(png_header(100_000, 100_000))
    elif kind == "complex":
        path = tmp_path / "complex.npy"
        np.save(path, np.zeros((10, 10), np.complex64))
    else:
        path = tmp_path / "empty.npy"
        np.save(path, np.zeros((0, 10), np.uint8))
    before = None if kind == "fifo" else path.read_bytes()
    out = tmp_path / "out.zarr"
    assert main(["segment", str(path), "-k", "2", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0]
    assert not out.exists()
    if before is not None:
        assert path.read_bytes() == before
