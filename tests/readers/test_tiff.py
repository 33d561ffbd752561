"""TIFF, BigTIFF, OME-TIFF, ImageJ and SVS files."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from pipeline.errors import InputError
from pipeline.readers import open_image

from ._make import (
    RED_BLUE,
    displayed,
    palette_tiff,
    peak_allocation,
    random_pixels,
    red_blue_index,
)
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


# --- colour models, orientation, dtypes and hostile files (issues 7 and 11) ---------------


def test_palette_tiff_shows_the_colormap_colours(tmp_path: Path) -> None:
    index = red_blue_index()
    path = palette_tiff(tmp_path / "palette.tif", index, RED_BLUE.astype(np.uint16) * 257,
                        tile=(16, 16))
    source = open_image(str(path))
    assert (source.axes, source.dtype, source.channel_names) == ("yxc", np.uint8,
                                                                ("R", "G", "B"))
    assert source.metadata["photometric"] == "palette"
    assert "colormap" in source.metadata["transform"]
    assert source.native_chunks == (16, 16, 3)
    assert_reads(source, RED_BLUE[index])


def test_palette_tiff_16bit_colormap_stays_uint16(tmp_path: Path, rng: np.random.Generator
                                                  ) -> None:
    colours = rng.integers(256, 65535, size=(256, 3), dtype=np.uint16)
    colours[colours % 257 == 0] += 1  # not 8-bit colours scaled by 257
    index = rng.integers(0, 256, size=(70, 90), dtype=np.uint8)
    source = open_image(str(palette_tiff(tmp_path / "p16.tif", index, colours)))
    assert_reads(source, colours[index])


def test_palette_tiff_unscaled_8bit_colormap(tmp_path: Path, rng: np.random.Generator) -> None:
    colours = rng.integers(0, 256, size=(16, 3)).astype(np.uint16)  # written unscaled
    index = rng.integers(0, 16, size=(70, 90), dtype=np.uint8)
    source = open_image(str(palette_tiff(tmp_path / "p8.tif", index, colours)))
    assert_reads(source, colours[index].astype(np.uint8))


@pytest.mark.parametrize(
    ("dtype", "invert"),
    [("uint8", lambda v: 255 - v), ("uint16", lambda v: 65535 - v), ("bool", np.logical_not),
     ("int16", lambda v: -1 - v), ("float32", lambda v: np.float32(1) - v)],
)
def test_miniswhite_is_inverted(tmp_path: Path, rng: np.random.Generator, dtype: str,
                                invert: object) -> None:
    data = (rng.random((70, 90)).astype(np.float32) if dtype == "float32"
            else random_pixels(dtype, rng))
    path = tmp_path / "miniswhite.tif"
    tifffile.imwrite(path, data, photometric="miniswhite", tile=(32, 32) if dtype != "bool"
                     else None)
    source = open_image(str(path))
    assert source.metadata["photometric"] == "miniswhite"
    assert "MinIsWhite inverted" in source.metadata["transform"]
    expected = invert(data).astype(dtype)  # type: ignore[operator]
    assert_reads(source, expected)


def _true_rgb(rng: np.random.Generator, shape: tuple[int, int] = (70, 90)) -> np.ndarray:
    return rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_cmyk_becomes_rgb(tmp_path: Path, rng: np.random.Generator, planar: str) -> None:
    rgb = _true_rgb(rng)
    black = rng.random(rgb.shape[:2]) < 0.2
    cmyk = np.concatenate([255 - rgb, np.zeros((*rgb.shape[:2], 1), np.uint8)], axis=-1)
    cmyk[black, 3] = 255  # full black ink: black whatever the other inks
    expected = np.where(black[..., None], 0, rgb).astype(np.uint8)
    path = tmp_path / "cmyk.tif"
    stored = cmyk if planar == "contig" else np.moveaxis(cmyk, -1, 0)
    tifffile.imwrite(path, stored, photometric="separated", planarconfig=planar, tile=(32, 32))
    source = open_image(str(path))
    assert source.channel_names == ("R", "G", "B")
    assert source.metadata["photometric"] == "separated"
    assert "CMYK converted to RGB" in source.metadata["transform"]
    assert_reads(source, expected)


def test_cmyk_alpha_becomes_rgba_and_extra_inks_are_refused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    rgb = _true_rgb(rng)
    alpha = rng.integers(0, 256, size=rgb.shape[:2], dtype=np.uint8)
    cmyka = np.dstack([255 - rgb, np.zeros(rgb.shape[:2], np.uint8), alpha])
    path = tmp_path / "cmyka.tif"
    tifffile.imwrite(path, cmyka, photometric="separated", extrasamples=["unassalpha"])
    source = open_image(str(path))
    assert source.channel_names == ("R", "G", "B", "A") and source.has_alpha
    assert_reads(source, np.dstack([rgb, alpha]))

    spot = tmp_path / "spot.tif"
    tifffile.imwrite(spot, cmyka, photometric="separated", extrasamples=["unspecified"])
    with pytest.raises(InputError, match="extra ink") as info:
        open_image(str(spot))
    assert str(info.value).startswith(str(spot)) and "\n" not in str(info.value)


def _smooth_rgb(shape: tuple[int, int] = (64, 96)) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.stack([yy * 255 // shape[0], xx * 255 // shape[1], np.full_like(yy, 200)],
                    axis=-1).astype(np.uint8)


def test_ycbcr_uncompressed_becomes_rgb(tmp_path: Path) -> None:
    rgb = _smooth_rgb()
    ycbcr = np.asarray(Image.fromarray(rgb).convert("YCbCr"))  # BT.601 full range, as JFIF
    path = tmp_path / "ycbcr.tif"
    tifffile.imwrite(path, ycbcr, photometric="ycbcr", subsampling=(1, 1), tile=(32, 32))
    source = open_image(str(path))
    assert source.metadata["photometric"] == "ycbcr"
    assert "YCbCr converted to RGB" in source.metadata["transform"]
    got = source.to_dask((17, 23)).compute()
    assert got.dtype == np.uint8
    # within the quantisation of an 8-bit YCbCr round trip; as Pillow converts the same bytes
    np.testing.assert_allclose(got.astype(int), rgb.astype(int), atol=3)
    pillow = np.asarray(Image.fromarray(ycbcr, mode="YCbCr").convert("RGB"))
    np.testing.assert_allclose(got.astype(int), pillow.astype(int), atol=1)


def test_ycbcr_jpeg_is_decoded_to_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :48] = (220, 20, 20)  # red
    rgb[:, 48:] = (20, 20, 220)  # blue
    path = tmp_path / "jpeg.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", compression="jpeg", tile=(32, 32))
    source = open_image(str(path))
    assert source.metadata["photometric"] == "ycbcr"
    assert source.channel_names == ("R", "G", "B")
    got = source.to_dask((17, 23)).compute().astype(int)
    # lossy, and chroma is subsampled: compare away from the red/blue edge
    np.testing.assert_allclose(got[:, :40], rgb[:, :40].astype(int), atol=12)
    np.testing.assert_allclose(got[:, 56:], rgb[:, 56:].astype(int), atol=12)


def test_cielab_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "lab.tif"
    tifffile.imwrite(path, _true_rgb(rng), photometric="cielab")
    with pytest.raises(InputError, match="CIELAB") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_tag_is_applied_by_region(tmp_path: Path, rng: np.random.Generator,
                                              orientation: int) -> None:
    stored = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    path = tmp_path / "oriented.tif"
    tifffile.imwrite(path, stored, photometric="rgb", tile=(16, 16),
                     extratags=[(274, "H", 1, orientation, True)])
    source = open_image(str(path))
    assert source.metadata["orientation"] == orientation
    if orientation != 1:
        assert f"Orientation {orientation}" in source.metadata["transform"]
    assert_reads(source, displayed(stored, orientation).copy())


def test_orientation_6_swaps_the_shape_and_spacing(tmp_path: Path, rng: np.random.Generator
                                                   ) -> None:
    stored = rng.integers(0, 255, size=(48, 64), dtype=np.uint8)
    path = tmp_path / "o6.tif"
    tifffile.imwrite(path, stored, resolution=(10000, 5000), resolutionunit="CENTIMETER",
                     extratags=[(274, "H", 1, 6, True)], metadata=None)
    source = open_image(str(path))
    assert source.shape == (64, 48)
    # stored: 2 µm rows, 1 µm columns; displayed rows are stored columns
    assert source.spacing == pytest.approx((1.0, 2.0))
    assert source.reader[0, 0] == stored[-1, 0]  # the stored bottom-left is shown top-left


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint32", "int32", "uint64", "int64",
                                   "float16"])
def test_exact_dtypes(tmp_path: Path, rng: np.random.Generator, dtype: str) -> None:
    data = random_pixels(dtype, rng)
    path = tmp_path / f"{dtype}.tif"
    # (tifffile writes bool images as MinIsWhite unless told otherwise)
    tifffile.imwrite(path, data, photometric="minisblack",
                     tile=(32, 32) if dtype != "bool" else None)
    source = open_image(str(path))
    assert_reads(source, data)
    # The canonical dtype (tifffile reports 64-bit integers as C long long, which Zarr's dtype
    # registry did not match: issue 7 item 10) can be written to Zarr.
    zarr.create_array(tmp_path / f"{dtype}.zarr", shape=(2, 2), dtype=source.dtype)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_empty_tiff(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = tmp_path / "empty.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tifffile: "writing zero-size array"
        tifffile.imwrite(path, np.zeros(shape, np.uint8))
    with pytest.raises(InputError, match="empty") as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path))


def test_declared_size_beyond_max_pixels(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(40, 50), dtype=np.uint8)
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, data)
    with pytest.raises(InputError, match="max_pixels") as info:
        open_image(str(path), max_pixels=1999)
    assert str(info.value).startswith(str(path))
    assert open_image(str(path), max_pixels=2000).shape == (40, 50)


def test_hostile_header_declaring_a_huge_image(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), tile=(16, 16), metadata=None)
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        offsets = [tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
        kinds = [tags[name].dtype for name in ("ImageWidth", "ImageLength")]
    for offset, kind in zip(offsets, kinds, strict=True):
        fmt = "<H" if kind == 3 else "<I"
        raw[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, 65535 if kind == 3
                                                                  else 2_000_000)
    path.write_bytes(bytes(raw))
    with peak_allocation() as peak, pytest.raises(InputError) as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert peak[0] < 50 * 2**20  # refused from the header, nothing the size of the image


def test_palette_with_orientation(tmp_path: Path, rng: np.random.Generator) -> None:
    index = rng.integers(0, 4, size=(48, 64), dtype=np.uint8)
    path = palette_tiff(tmp_path / "both.tif", index, RED_BLUE.astype(np.uint16) * 257,
                        tile=(16, 16), extratags=[(274, "H", 1, 8, True)])
    source = open_image(str(path))
    assert source.shape == (64, 48, 3)
    assert_reads(source, displayed(RED_BLUE[index], 8).copy())


def test_orientation_of_a_page_stack(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 255, size=(5, 30, 40), dtype=np.uint8)
    path = tmp_path / "stack.tif"
    with tifffile.TiffWriter(path) as tw:
        for plane in stored:
            tw.write(plane, extratags=[(274, "H", 1, 6, True)], metadata=None)
    source = open_image(str(path))
    assert source.axes == "zyx" and source.shape == (5, 40, 30)
    expected = np.stack([displayed(plane, 6) for plane in stored])
    assert_reads(source, expected)


def test_imagej_units_kilometre_pixel_and_unknown(tmp_path: Path) -> None:
    """ImageJ units: ``km`` is kilometre, ``pixel`` means no unit, and a unit kmseg does not
    know is one warning naming the file (it was dropped without a word)."""
    from pipeline.errors import KmsegWarning

    data = np.zeros((20, 30), np.uint8)
    for unit, expected in (("km", ("kilometer", (0.5, 0.25))), ("pixel", (None, (1.0, 1.0)))):
        path = tmp_path / f"{unit}.tif"
        tifffile.imwrite(path, data, imagej=True, resolution=(4.0, 2.0),
                         metadata={"unit": unit})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            source = open_image(str(path))
        assert (source.unit, source.spacing) == (expected[0], pytest.approx(expected[1]))
    path = tmp_path / "furlong.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(4.0, 2.0), metadata={"unit": "furlong"})
    with pytest.warns(KmsegWarning, match=f"{path}: ImageJ unit 'furlong' is no length unit"):
        source = open_image(str(path))
    assert (source.unit, source.spacing) == (None, (1.0, 1.0))
