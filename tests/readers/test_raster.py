"""PNG, JPEG and BMP files."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.readers import open_image, raster
from pipeline.readers.common import ReadError

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
