"""PNG, JPEG and BMP files."""

from __future__ import annotations

import struct
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.readers import open_image, raster
from pipeline.readers.common import ReadError

from ._make import displayed, exif_bytes, peak_allocation, png_header
from .conftest import assert_reads

SHAPE = (150, 170)


@pytest.mark.parametrize(
    ("mode", "channels", "names"),
    [("L", 0, ()), ("LA", 2, ("L", "A")), ("RGB", 3, ("R", "G", "B")),
     ("RGBA", 4, ("R", "G", "B", "A"))],
)
def test_png_8bit(tmp_path: Path, rng: np.random.Generator, mode: str, channels: int,
                  names: tuple[str, ...]) -> None:
    data = rng.integers(0, 255, size=SHAPE + ((channels,) if channels else ()), dtype=np.uint8)
    path = tmp_path / f"{mode}.png"
    Image.fromarray(data, mode=mode).save(path)
    source = open_image(str(path))
    assert source.axes == ("yxc" if channels else "yx")
    assert source.channel_names == names
    assert source.native_chunks == data.shape  # decoded whole: one chunk preferred
    assert source.format == "png"
    assert_reads(source, data)


def test_png_16bit_grey_stays_uint16(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 65535, size=SHAPE, dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(data).save(path)
    source = open_image(str(path))
    assert source.dtype == np.uint16
    assert_reads(source, data)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_png_16bit_colour(tmp_path: Path, rng: np.random.Generator, channels: int) -> None:
    # Pillow cannot write (or read) 16-bit colour PNG: write it with libpng through imagecodecs
    data = rng.integers(0, 65535, size=(*SHAPE, channels), dtype=np.uint16)
    path = tmp_path / "colour16.png"
    path.write_bytes(imagecodecs.png_encode(data))
    source = open_image(str(path))
    assert source.dtype == np.uint16
    assert len(source.channel_names) == channels
    assert_reads(source, data)


def test_png_palette(tmp_path: Path, rng: np.random.Generator) -> None:
    index = rng.integers(0, 4, size=SHAPE, dtype=np.uint8)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], dtype=np.uint8)
    image = Image.fromarray(index, mode="L").convert("P")
    image.putpalette(colours.ravel().tolist())
    path = tmp_path / "palette.png"
    image.save(path)
    source = open_image(str(path))
    assert source.channel_names == ("R", "G", "B")
    assert_reads(source, colours[index])

    transparent = tmp_path / "palette_t.png"
    image.save(transparent, transparency=1)
    source = open_image(str(transparent))
    assert source.channel_names == ("R", "G", "B", "A")
    alpha = np.where(index == 1, 0, 255).astype(np.uint8)
    assert_reads(source, np.dstack([colours[index], alpha]))


def test_png_print_resolution_is_not_a_pixel_size(tmp_path: Path, rng: np.random.Generator) -> None:
    # A photo's dpi says how large to print it, not what a pixel saw: sizes stay in pixels.
    data = rng.integers(0, 255, size=SHAPE, dtype=np.uint8)
    path = tmp_path / "dpi.png"
    Image.fromarray(data).save(path, dpi=(254, 254))  # 10000 pixels per meter
    source = open_image(str(path))
    assert source.spacing == (1.0, 1.0)
    assert source.unit is None
    assert source.metadata["print_dpi"] == pytest.approx([254, 254], abs=0.1)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg(tmp_path: Path, rng: np.random.Generator, mode: str) -> None:
    data = rng.integers(0, 255, size=SHAPE + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
    path = tmp_path / f"{mode}.jpg"
    Image.fromarray(data, mode=mode).save(path, quality=90)
    source = open_image(str(path))
    assert source.format == "jpeg"
    with Image.open(path) as im:
        expected = np.asarray(im)  # lossy: compare with the decoded file
    assert_reads(source, expected)


@pytest.mark.parametrize("mode", ["L", "RGB", "P"])
def test_bmp(tmp_path: Path, rng: np.random.Generator, mode: str) -> None:
    if mode == "P":
        index = rng.integers(0, 3, size=SHAPE, dtype=np.uint8)
        image = Image.fromarray(index, mode="L").convert("P")
        image.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
        expected = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)[index]
    else:
        expected = rng.integers(0, 255, size=SHAPE + ((3,) if mode == "RGB" else ()),
                                dtype=np.uint8)
        image = Image.fromarray(expected, mode=mode)
    path = tmp_path / f"{mode}.bmp"
    image.save(path)
    source = open_image(str(path))
    assert source.format == "bmp"
    assert_reads(source, expected)


def test_decoded_once_per_process(tmp_path: Path, rng: np.random.Generator,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = rng.integers(0, 255, size=SHAPE, dtype=np.uint8)
    path = tmp_path / "once.png"
    Image.fromarray(data).save(path)
    calls = []
    decode = imagecodecs.png_decode

    def counting(raw: bytes) -> np.ndarray:
        calls.append(1)
        return decode(raw)

    monkeypatch.setattr(raster.imagecodecs, "png_decode", counting)
    raster._CACHE.clear()
    array = open_image(str(path)).to_dask((20, 20))  # 8 x 9 chunks
    np.testing.assert_array_equal(array.compute(scheduler="threads", num_workers=4), data)
    assert len(calls) == 1


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_not_an_image(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"fake{suffix}"
    path.write_bytes(b"GIF89a definitely not what the suffix says" * 3)
    with pytest.raises(InputError) as info:
        open_image(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".png", ".bmp"])
def test_truncated(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(rng.integers(0, 255, size=(*SHAPE, 3), dtype=np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_jpeg_truncated_header(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(rng.integers(0, 255, size=SHAPE, dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError) as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_jpeg_truncated_data_fails_in_task(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "cut_data.jpg"
    Image.fromarray(rng.integers(0, 255, size=SHAPE, dtype=np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    source = open_image(str(path))  # the header is intact
    with pytest.raises(ReadError) as info:
        source.to_dask((64, 64)).compute()
    assert str(path) in str(info.value)


# --- orientation, colour models, 1-bit and hostile files (issues 7 and 11) ----------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_exif_orientation(tmp_path: Path, rng: np.random.Generator, orientation: int
                              ) -> None:
    stored = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    path = tmp_path / "oriented.png"
    Image.fromarray(stored).save(path, exif=exif_bytes(orientation))
    source = open_image(str(path))
    assert source.metadata["orientation"] == orientation
    assert_reads(source, displayed(stored, orientation).copy())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation(tmp_path: Path, rng: np.random.Generator, orientation: int
                               ) -> None:
    stored = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    path = tmp_path / "oriented.jpg"
    Image.fromarray(stored).save(path, exif=exif_bytes(orientation), quality=95)
    with Image.open(path) as im:
        decoded = np.asarray(im)  # lossy: the stored pixels are the decoded file's
    source = open_image(str(path))
    assert source.shape == ((64, 48, 3) if orientation >= 5 else (48, 64, 3))
    if orientation != 1:
        assert f"EXIF Orientation {orientation}" in source.metadata["transform"]
    assert_reads(source, displayed(decoded, orientation).copy())


def test_issue_example_jpeg_orientation_6(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 255, size=(48, 64), dtype=np.uint8)
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif_bytes(6))
    source = open_image(str(path))
    assert source.shape == (64, 48)
    assert source.metadata["transform"] == "EXIF Orientation 6: rotated 90 degrees clockwise"


def test_one_bit_images_are_bool(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.random(SHAPE) > 0.5
    for suffix in (".png", ".bmp"):
        path = tmp_path / f"bits{suffix}"
        Image.fromarray(data).save(path)
        source = open_image(str(path))
        assert source.dtype == bool
        assert_reads(source, data)


def test_palette_metadata(tmp_path: Path, rng: np.random.Generator) -> None:
    index = rng.integers(0, 4, size=SHAPE, dtype=np.uint8)
    image = Image.fromarray(index, mode="L").convert("P")
    image.putpalette([255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255])
    path = tmp_path / "palette.png"
    image.save(path)
    source = open_image(str(path))
    assert source.metadata["photometric"] == "palette"
    assert source.metadata["transform"] == "palette expanded to RGB"


def test_palette_png_with_per_entry_alpha(tmp_path: Path, rng: np.random.Generator) -> None:
    # a palette whose tRNS gives each entry its own alpha (what Pillow opens as P/PA)
    index = rng.integers(0, 3, size=SHAPE, dtype=np.uint8)
    colours = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    alphas = np.array([0, 128, 255], np.uint8)
    image = Image.fromarray(index, mode="L").convert("P")
    image.putpalette(colours.ravel().tolist())
    path = tmp_path / "pa.png"
    image.save(path, transparency=alphas.tobytes())
    source = open_image(str(path))
    assert source.has_alpha
    assert_reads(source, np.dstack([colours[index], alphas[index]]))


def test_decompression_bomb_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(100_000, 100_000))
    with peak_allocation() as peak, pytest.raises(InputError) as info:
        open_image(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert peak[0] < 10 * 2**20


def test_png_larger_than_its_compressed_data_can_hold(tmp_path: Path) -> None:
    path = tmp_path / "small_bomb.png"
    path.write_bytes(png_header(3000, 2000, colour_type=0))
    with pytest.raises(InputError, match="decompression bomb") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_whole_file_decoders_refuse_what_memory_cannot_hold(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 255, size=SHAPE, dtype=np.uint8)).save(path)
    monkeypatch.setattr("pipeline.chunking.local_memory_bytes", lambda: 10_000)
    with pytest.raises(InputError, match="tiled TIFF or a Zarr") as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_max_pixels(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    path = tmp_path / f"small{suffix}"
    Image.fromarray(rng.integers(0, 255, size=SHAPE, dtype=np.uint8)).save(path)
    with pytest.raises(InputError, match="max_pixels") as info:
        open_image(str(path), max_pixels=SHAPE[0] * SHAPE[1] - 1)
    assert str(info.value).startswith(str(path))


def test_bmp_shorter_than_its_rows(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "cut.bmp"
    Image.fromarray(rng.integers(0, 255, size=(*SHAPE, 3), dtype=np.uint8)).save(path)
    raw = bytearray(path.read_bytes()[:5000])
    raw[2:6] = struct.pack("<I", len(raw))  # the stated file size agrees with the cut
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="truncated") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :48] = (220, 30, 30)
    rgb[:, 48:] = (30, 30, 220)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    source = open_image(str(path))
    assert source.metadata["photometric"] == "CMYK"
    assert source.channel_names == ("R", "G", "B")
    got = source.to_dask((17, 23)).compute().astype(int)
    np.testing.assert_allclose(got[:, :40], rgb[:, :40].astype(int), atol=12)  # lossy
    np.testing.assert_allclose(got[:, 56:], rgb[:, 56:].astype(int), atol=12)


@pytest.mark.parametrize("mode", ["L", "RGB", "P"])
@pytest.mark.parametrize("top_down", [False, True])
def test_uncompressed_bmp_is_read_lazily(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, mode: str,
    top_down: bool,
) -> None:
    shape = (97, 151)  # rows padded to 4 bytes
    colours = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
    if mode == "P":
        index = rng.integers(0, 256, size=shape, dtype=np.uint8)
        image = Image.fromarray(index, mode="L").convert("P")
        image.putpalette(colours.ravel().tolist())
        expected = colours[index]
    else:
        expected = rng.integers(0, 256, size=shape + ((3,) if mode == "RGB" else ()),
                                dtype=np.uint8)
        image = Image.fromarray(expected, mode=mode)
    path = tmp_path / f"{mode}.bmp"
    image.save(path)
    if top_down:  # same pixels, rows stored first-to-last, negative height
        raw = bytearray(path.read_bytes())
        offset = struct.unpack("<I", raw[10:14])[0]
        rows = np.frombuffer(bytes(raw[offset:]), np.uint8).reshape(shape[0], -1)
        raw[offset:] = rows[::-1].tobytes()
        raw[22:26] = struct.pack("<i", -shape[0])
        path.write_bytes(bytes(raw))
    # nothing is decoded whole, so the memory check does not apply
    monkeypatch.setattr("pipeline.chunking.local_memory_bytes", lambda: 10_000)
    monkeypatch.setattr(raster.RasterBlockReader, "_decode", None)
    source = open_image(str(path))
    assert source.metadata["lazy"] is True and source.format == "bmp"
    assert_reads(source, expected)
