"""PNG, JPEG and BMP files: formats that can only be decoded whole.

Opening reads the header alone. A task decodes the whole file (once per process, through a
small cache shared by the tasks of that process) and returns its region; ``native_chunks`` is
the full image so the pipeline prefers a single chunk. PNG is decoded by imagecodecs (libpng),
which keeps 16-bit colour; JPEG and BMP by Pillow. Palette images become RGB, or RGBA when
they carry transparency.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np
from PIL import Image

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import (
    DecodeCache,
    ReadError,
    RegionReader,
    color_names,
    file_stamp,
    local_path,
)

# Inputs are the user's own images, not untrusted uploads: allow any size.
Image.MAX_IMAGE_PIXELS = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
#: Channels of each PNG colour type (grey, RGB, palette, grey+alpha, RGBA), before tRNS.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}

#: Pillow mode -> (mode to convert to, or "" to keep).
_PIL_CONVERT = {
    "1": "L",
    "L": "",
    "LA": "",
    "La": "LA",
    "PA": "RGBA",
    "RGB": "",
    "RGBA": "",
    "RGBX": "RGB",
    "RGBa": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
    "I;16": "",
    "I;16L": "",
    "I;16B": "",
    "I;16N": "",
    "I": "",
    "F": "",
}
_PIL_FORMATS = ("JPEG", "MPO", "BMP", "DIB")

_CACHE = DecodeCache(maxsize=2)


@dataclass(frozen=True)
class RasterBlockReader(RegionReader):
    """Reads a region of a PNG/JPEG/BMP file by decoding it whole (cached per process).

    ``codec`` is ``"png"`` (imagecodecs) or ``"pillow"``; ``mode`` is the Pillow mode to
    convert to (``""`` to keep the file's).
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    codec: str
    mode: str = ""

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        key = (self.path, file_stamp(self.path), self.codec, self.mode)
        image = _CACHE.get(key, self._decode)
        return image[box].copy()

    def _decode(self) -> np.ndarray:
        if self.codec == "png":
            with open(self.path, "rb") as fh:
                image = imagecodecs.png_decode(fh.read())
        else:
            with Image.open(self.path) as im:
                image = np.asarray(im.convert(self.mode) if self.mode else im)
        if image.shape != self.shape:
            raise ReadError(self.path, f"decoded shape {image.shape}, header said {self.shape}")
        image = np.asarray(image, dtype=self.dtype)
        image.flags.writeable = False
        return image


def open_raster(path: str, *, options: ReadOptions | None = None) -> ImageSource:
    """Open a PNG, JPEG or BMP file; only its header is read here."""
    try:
        with open(path, "rb") as fh:
            signature = fh.read(8)
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if signature == PNG_SIGNATURE:
        return _open_png(path)
    return _open_pillow(path)


def _open_png(path: str) -> ImageSource:
    header = _png_header(path)
    width, height, depth, colour = header["IHDR"]
    n_channels = _PNG_CHANNELS[colour] + (1 if "tRNS" in header and colour in (0, 2, 3) else 0)
    shape = (height, width) + ((n_channels,) if n_channels > 1 else ())
    # pHYs is the resolution to print or show the picture at (72 or 300 dpi), not the size of
    # what a pixel saw: it is recorded, and the pixel size stays unknown (sizes in pixels).
    extra: dict[str, Any] = {}
    if "pHYs" in header:
        ppm_x, ppm_y, phys_unit = header["pHYs"]
        if phys_unit == 1 and ppm_x > 0 and ppm_y > 0:  # pixels per meter
            extra["print_dpi"] = [round(ppm_y * 0.0254, 2), round(ppm_x * 0.0254, 2)]
    return ImageSource(
        path=path,
        axes="yxc" if n_channels > 1 else "yx",
        reader=RasterBlockReader(
            local_path(path), shape, np.dtype(np.uint16 if depth == 16 else np.uint8), "png"
        ),
        spacing=(1.0, 1.0),
        unit=None,
        native_chunks=shape,
        channel_names=color_names(n_channels, rgb=colour in (2, 3, 6)),
        format="png",
        metadata={"bit_depth": depth, "color_type": colour, **extra},
    )


def _png_header(path: str) -> dict[str, Any]:
    """IHDR, tRNS and pHYs facts from the chunks before the image data."""
    size = os.path.getsize(path)
    out: dict[str, Any] = {}
    with open(path, "rb") as fh:
        fh.seek(8)
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise InputError(path, "truncated PNG file (no image data)")
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IHDR":
                data = fh.read(13)
                if len(data) < 13:
                    raise InputError(path, "truncated PNG header")
                width, height, depth, colour = struct.unpack(">IIBB", data[:10])
                if colour not in _PNG_DEPTHS or depth not in _PNG_DEPTHS[colour]:
                    raise InputError(path, f"invalid PNG (bit depth {depth}, colour {colour})")
                if width == 0 or height == 0:
                    raise InputError(path, "PNG image of size zero")
                out["IHDR"] = (width, height, depth, colour)
                fh.seek(length - 13 + 4, os.SEEK_CUR)
            elif kind == b"pHYs" and length == 9:
                out["pHYs"] = struct.unpack(">IIB", fh.read(9))
                fh.seek(4, os.SEEK_CUR)
            elif kind == b"IDAT":
                break
            else:
                if kind == b"tRNS":
                    out["tRNS"] = True
                fh.seek(length + 4, os.SEEK_CUR)
            if "IHDR" not in out:
                raise InputError(path, "invalid PNG (no IHDR chunk first)")
        fh.seek(max(0, size - len(_PNG_IEND)))
        if fh.read() != _PNG_IEND:
            raise InputError(path, "truncated or corrupt PNG file (no IEND chunk at the end)")
    return out


def _open_pillow(path: str) -> ImageSource:
    try:
        with Image.open(path) as im:
            fmt, mode, (width, height), info = im.format, im.mode, im.size, dict(im.info)
    except Exception as exc:
        raise InputError(path, f"not a readable image ({type(exc).__name__}: {exc})") from None
    if fmt not in _PIL_FORMATS:
        raise InputError(path, f"unsupported image format {fmt}")
    if fmt in ("BMP", "DIB"):
        _check_bmp_size(path)
    if mode == "P":
        target = "RGBA" if "transparency" in info else "RGB"
    elif mode in _PIL_CONVERT:
        target = _PIL_CONVERT[mode]
    else:
        raise InputError(path, f"unsupported {fmt} pixel mode {mode!r}")
    out_mode = target or mode
    n_channels = Image.getmodebands(out_mode)
    dtype = _mode_dtype(out_mode)
    shape = (height, width) + ((n_channels,) if n_channels > 1 else ())
    return ImageSource(
        path=path,
        axes="yxc" if n_channels > 1 else "yx",
        reader=RasterBlockReader(local_path(path), shape, dtype, "pillow", target),
        spacing=(1.0, 1.0),
        native_chunks=shape,
        channel_names=color_names(n_channels, rgb=out_mode.startswith("RGB")),
        format=fmt.lower().replace("mpo", "jpeg").replace("dib", "bmp"),
        metadata={"mode": mode},
    )


def _mode_dtype(mode: str) -> np.dtype:
    if mode.startswith("I;16"):
        return np.dtype(np.uint16)
    return np.dtype({"I": np.int32, "F": np.float32}.get(mode, np.uint8))


def _check_bmp_size(path: str) -> None:
    """BMP headers state the file size: a shorter file is truncated."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    stated = struct.unpack("<I", head[2:6])[0] if len(head) == 6 else 0
    if stated and os.path.getsize(path) < stated:
        raise InputError(path, "truncated BMP file")
