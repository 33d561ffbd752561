"""TIFF, BigTIFF, OME-TIFF, ImageJ and SVS files."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile

from pipeline.errors import InputError
from pipeline.readers import open_image

from .conftest import CHUNKS_2D, assert_reads


def test_tiled_pyramid_levels(tiff_pyramid: tuple[Path, np.ndarray]) -> None:
    path, data = tiff_pyramid
    for level in range(3):
        source = open_image(str(path), level=level)
        step = 2**level
        assert source.axes == "yx"
        assert source.format == "tiff"
        assert source.native_chunks == (64, 64)
        # 40000 pixels per cm = 0.25 µm, times the downsampling of the level
        assert source.spacing == pytest.approx((0.25 * step, 0.25 * step), rel=0.02)
        assert source.unit == "micrometer"
        assert_reads(source, data[::step, ::step])


def test_level_out_of_range(tiff_pyramid: tuple[Path, np.ndarray]) -> None:
    path, _ = tiff_pyramid
    with pytest.raises(InputError, match="level 3 out of range") as info:
        open_image(str(path), level=3)
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match="series 1 out of range"):
        open_image(str(path), series=1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
def test_dtypes_bigtiff_and_byte_order(
    tmp_path: Path, rng: np.random.Generator, dtype: str
) -> None:
    data = (rng.random((120, 130)) * 1000 - 100 * (dtype[0] != "u")).astype(dtype)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, data, bigtiff=True, tile=(32, 48), byteorder=">")
    source = open_image(str(path))
    assert source.dtype == np.dtype(dtype)
    assert source.native_chunks == (32, 48)
    assert_reads(source, data)


def test_striped_uncompressed(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(150, 170), dtype=np.uint8)
    path = tmp_path / "striped.tiff"
    tifffile.imwrite(path, data, rowsperstrip=16, metadata=None)
    source = open_image(str(path))
    assert source.native_chunks == (16, 170)
    assert source.spacing == (1.0, 1.0)
    assert source.unit is None
    assert_reads(source, data)


def test_page_stack_is_zyx(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(7, 80, 90), dtype=np.uint8)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, metadata=None)
    source = open_image(str(path))
    assert source.axes == "zyx"
    assert source.native_chunks == (1, 80, 90)
    assert_reads(source, data)


def test_imagej_hyperstack(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 4000, size=(6, 2, 60, 70), dtype=np.uint16)
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(5.0, 5.0),
                     metadata={"spacing": 2.5, "unit": "um", "axes": "ZCYX"})
    source = open_image(str(path))
    assert source.axes == "zyxc"
    assert source.spacing == pytest.approx((2.5, 0.2, 0.2))
    assert source.unit == "micrometer"
    assert_reads(source, np.moveaxis(data, 1, -1))


def test_ome_tiff_channels_and_pyramid(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 4000, size=(3, 100, 110), dtype=np.uint16)
    path = tmp_path / "image.ome.tif"
    meta = {
        "axes": "CYX",
        "PhysicalSizeX": 0.25,
        "PhysicalSizeY": 0.3,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeYUnit": "nm",
        "Channel": {"Name": ["DAPI", "GFP", "RFP"]},
    }
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(32, 32), subifds=1, metadata=meta)
        tw.write(data[:, ::2, ::2], tile=(32, 32), subfiletype=1)
    source = open_image(str(path))
    assert source.axes == "yxc"
    assert source.channel_names == ("DAPI", "GFP", "RFP")
    # Y is given in nanometers: converted to the unit of X
    assert source.spacing == pytest.approx((0.0003, 0.25))
    assert source.unit == "micrometer"
    assert source.native_chunks == (32, 32, 3)
    assert_reads(source, np.moveaxis(data, 0, -1))
    level1 = open_image(str(path), level=1)
    assert level1.spacing == pytest.approx((0.0006, 0.5))
    assert_reads(level1, np.moveaxis(data[:, ::2, ::2], 0, -1))


def test_ome_tiff_volume(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.random((5, 40, 50)).astype(np.float32)
    path = tmp_path / "vol.ome.tiff"
    tifffile.imwrite(path, data, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5,
                                           "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0})
    source = open_image(str(path))
    assert source.axes == "zyx"
    assert source.spacing == pytest.approx((2.0, 0.5, 0.5))
    assert source.unit == "micrometer"
    assert_reads(source, data)


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_rgb(tmp_path: Path, rng: np.random.Generator, planar: str) -> None:
    data = rng.integers(0, 255, size=(90, 100, 3), dtype=np.uint8)
    path = tmp_path / f"rgb_{planar}.tif"
    stored = data if planar == "contig" else np.moveaxis(data, -1, 0)
    tifffile.imwrite(path, stored, photometric="rgb", planarconfig=planar, tile=(32, 32))
    source = open_image(str(path))
    assert source.axes == "yxc"
    assert source.channel_names == ("R", "G", "B")
    assert_reads(source, data)


def test_grey_alpha(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(50, 60, 2), dtype=np.uint8)
    path = tmp_path / "la.tif"
    tifffile.imwrite(path, data, photometric="minisblack", extrasamples=["unassalpha"])
    source = open_image(str(path))
    assert source.channel_names == ("L", "A")
    assert source.has_alpha
    assert_reads(source, data)


def test_svs_like_pyramid(tmp_path: Path, rng: np.random.Generator) -> None:
    base = rng.integers(0, 255, size=(300, 350, 3), dtype=np.uint8)
    path = tmp_path / "slide.svs"
    header = "Aperio Image Library v12.0.15 \r\n"
    kw = {"photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, tile=(64, 64), compression="zlib",
                 description=header + "350x300 (64x64) RGB|AppMag = 40|MPP = 0.2500", **kw)
        tw.write(base[::8, ::8], description=header + "350x300 -> 44x38 - |", **kw)
        for step in (2, 4):
            tw.write(base[::step, ::step], tile=(64, 64), compression="zlib",
                     description=header + f"reduced by {step}", **kw)
        tw.write(base[:20, :30], subfiletype=1, description=header + "label 30x20", **kw)
    source = open_image(str(path))
    assert source.channel_names == ("R", "G", "B")
    assert source.spacing == (0.25, 0.25)
    assert source.unit == "micrometer"
    assert source.metadata["n_levels"] == 3
    assert_reads(source, base)
    level1 = open_image(str(path), level=1)
    assert level1.spacing == (0.5, 0.5)
    assert_reads(level1, base[::2, ::2])
    thumbnail = open_image(str(path), series=1)
    assert thumbnail.unit is None
    assert_reads(thumbnail, base[::8, ::8])


def test_process_scheduler(tiff_pyramid: tuple[Path, np.ndarray]) -> None:
    path, data = tiff_pyramid
    array = open_image(str(path)).to_dask(CHUNKS_2D)
    (got,) = dask.compute(array, scheduler="processes", num_workers=2)
    np.testing.assert_array_equal(got, data)


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "fake.tif"
    path.write_bytes(b"this is not a TIFF file at all" * 10)
    with pytest.raises(InputError, match="not a readable TIFF") as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_truncated(tiff_pyramid: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = tiff_pyramid
    cut = tmp_path / "cut.tif"
    data = path.read_bytes()
    # tifffile writes the image data before the IFDs: keep the header and the first IFD
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        open_image(str(cut))
    assert str(cut) in str(info.value)


def test_truncated_after_ifd(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(100, 100), dtype=np.uint8)
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, data, metadata=None)
    raw = path.read_bytes()
    ifd_first = int.from_bytes(raw[4:8], "little") < 1000
    assert ifd_first  # the tags come before the pixels, so the IFD survives the cut
    path.write_bytes(raw[: len(raw) - 2000])
    with pytest.raises(InputError, match="truncated"):
        open_image(str(path))
