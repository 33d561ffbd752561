"""PNG, JPEG and BMP files: mostly formats that can only be decoded whole.

Opening reads the header alone. A task decodes the whole file (once per process, through a
small cache shared by the tasks of that process) and returns its region; ``native_chunks`` is
the full image so the pipeline prefers a single chunk. Uncompressed 8-bit (grey, palette) and
24-bit BMPs are the exception: they are read by rows through a memory map. PNG is decoded by
imagecodecs (libpng), which keeps 16-bit colour; JPEG and other BMPs by Pillow.

Images are shown as a viewer shows them: palette images become RGB, or RGBA when they carry
transparency; CMYK and YCbCr JPEGs become RGB; 1-bit images are bool; the EXIF Orientation
(JPEG, PNG ``eXIf``) is applied region by region. ``metadata["photometric"]`` records the
stored colour model, ``metadata["transform"]`` what was applied.

Nothing is decoded before the header's size is checked against ``max_pixels`` and, for what
must be decoded whole in one process, against the memory available.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
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
    check_decoded_size,
    check_size,
    color_names,
    file_stamp,
    local_path,
)
from pipeline.readers.orientation import (
    AS_STORED,
    DESCRIPTIONS,
    Orientation,
    orientation_code,
)

# Pillow's decompression-bomb guard (a fixed 89 Mpixel warning, 179 Mpixel error) is replaced
# by kmseg's own checks, made from the header before anything is decoded: the ``max_pixels``
# key and the memory available (see open_raster).
Image.MAX_IMAGE_PIXELS = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
#: Channels of each PNG colour type (grey, RGB, palette, grey+alpha, RGBA), before tRNS.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
#: Samples per pixel stored in the PNG data of each colour type.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: deflate cannot compress more than 1032:1; a PNG declaring more filtered image bytes than
#: this many times its file size is corrupt or a decompression bomb.
_DEFLATE_MAX_RATIO = 1100
_PNG_COLOUR_NAMES = {0: "grey", 2: "rgb", 3: "palette", 4: "grey+alpha", 6: "rgba"}
_EXIF_ORIENTATION = 0x0112

#: Pillow mode -> (mode to convert to, or "" to keep).
_PIL_CONVERT = {
    "1": "",
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
    orientation: Orientation = AS_STORED

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        key = (self.path, file_stamp(self.path), self.codec, self.mode)
        image = _CACHE.get(key, self._decode)
        return image[box].copy()

    def _decode(self) -> np.ndarray:
        if self.codec == "png":
            with open(self.path, "rb") as fh:
                image = imagecodecs.png_decode(fh.read())
            if self.dtype == bool:  # 1-bit grey, which libpng expands to 0 and 255
                image = image > 0
        else:
            with Image.open(self.path) as im:
                image = np.asarray(im.convert(self.mode) if self.mode else im)
        stored = self.orientation.stored_shape(self.shape)
        if image.shape != stored:
            raise ReadError(self.path, f"decoded shape {image.shape}, header said {stored}")
        image = np.asarray(image, dtype=self.dtype)
        image.flags.writeable = False
        return image


def open_raster(path: str, *, options: ReadOptions | None = None) -> ImageSource:
    """Open a PNG, JPEG or BMP file; only its header is read here.

    Parameters
    ----------
    path : str
        The file.
    options : ReadOptions, optional
        ``max_pixels`` is checked against the header's size.

    Returns
    -------
    ImageSource
        ``yx`` (grey, bool for 1-bit) or ``yxc`` (grey+alpha, RGB, RGBA), in the orientation a
        viewer shows; ``metadata`` records ``photometric``, ``orientation`` and ``transform``.

    Raises
    ------
    InputError
        For a damaged, truncated or unsupported file, a size beyond ``max_pixels``, a decoded
        image that would not fit in memory, or a PNG that is a decompression bomb.
    """
    try:
        with open(path, "rb") as fh:
            signature = fh.read(8)
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    options = options or ReadOptions()
    if signature == PNG_SIGNATURE:
        return _open_png(path, options)
    return _open_pillow(path, options)


def _check_sizes(path: str, shape: tuple[int, ...], dtype: np.dtype, options: ReadOptions,
                 copies: int) -> None:
    """Refuse, from the header, images too large to be decoded whole."""
    axes = "yxc" if len(shape) == 3 else "yx"
    check_size(path, shape, axes, options.max_pixels)
    check_decoded_size(path, copies * int(np.prod(shape, dtype=np.float64)) * dtype.itemsize)


def _orientation(code: int, applied: list[str]) -> Orientation:
    if code != 1:
        applied.append(f"EXIF Orientation {code}: {DESCRIPTIONS[code]}")
    return Orientation(code, 0)


def _open_png(path: str, options: ReadOptions) -> ImageSource:
    header = _png_header(path)
    width, height, depth, colour = header["IHDR"]
    trns = "tRNS" in header and colour in (0, 2, 3)
    n_channels = _PNG_CHANNELS[colour] + (1 if trns else 0)
    stored = (height, width) + ((n_channels,) if n_channels > 1 else ())
    dtype = np.dtype(bool if (depth, n_channels) == (1, 1) else np.uint16 if depth == 16
                     else np.uint8)
    _check_sizes(path, stored, dtype, options, copies=1)
    filtered = height * (1 + (width * _PNG_SAMPLES[colour] * depth + 7) // 8)
    if filtered > _DEFLATE_MAX_RATIO * os.path.getsize(path):
        raise InputError(path, f"the PNG header declares {width}x{height} pixels, more than its "
                               f"{os.path.getsize(path)} bytes can hold (corrupt or a "
                               "decompression bomb)")
    applied = []
    if colour == 3:
        applied.append("palette expanded to RGB" + ("A (tRNS transparency)" if trns else ""))
    elif trns:
        applied.append("tRNS transparency expanded to an alpha channel")
    if depth < 8 and colour == 0 and dtype.kind != "b":
        applied.append(f"{depth}-bit grey scaled to 8 bits")
    orientation = _orientation(header.get("orientation", 1), applied)
    shape = orientation.displayed_shape(stored)
    # pHYs is the resolution to print or show the picture at (72 or 300 dpi), not the size of
    # what a pixel saw: it is recorded, and the pixel size stays unknown (sizes in pixels).
    extra: dict[str, Any] = {}
    if "pHYs" in header:
        ppm_x, ppm_y, phys_unit = header["pHYs"]
        if phys_unit == 1 and ppm_x > 0 and ppm_y > 0:  # pixels per meter
            dpi = orientation.displayed_shape((ppm_y * 0.0254, ppm_x * 0.0254))
            extra["print_dpi"] = [round(float(d), 2) for d in dpi]
    return ImageSource(
        path=path,
        axes="yxc" if n_channels > 1 else "yx",
        reader=RasterBlockReader(local_path(path), shape, dtype, "png", "", orientation),
        spacing=(1.0, 1.0),
        unit=None,
        native_chunks=shape,
        channel_names=color_names(n_channels, rgb=colour in (2, 3, 6)),
        format="png",
        metadata={
            "bit_depth": depth,
            "color_type": colour,
            "photometric": _PNG_COLOUR_NAMES[colour],
            "orientation": orientation.code,
            "transform": "; ".join(applied) if applied else "none",
            **extra,
        },
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
            elif kind == b"eXIf" and length < 2**20:
                out["orientation"] = _exif_orientation(fh.read(length))
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


def _exif_orientation(raw: bytes) -> int:
    """The Orientation value of raw EXIF data (1 when absent or unreadable)."""
    exif = Image.Exif()
    try:
        exif.load(raw)
    except Exception:  # a damaged EXIF block does not hide the image
        return 1
    return orientation_code(exif.get(_EXIF_ORIENTATION))


def _open_pillow(path: str, options: ReadOptions) -> ImageSource:
    try:
        with Image.open(path) as im:
            fmt, mode, (width, height), info = im.format, im.mode, im.size, dict(im.info)
            code = orientation_code(im.getexif().get(_EXIF_ORIENTATION))
            palette = im.getpalette() if mode == "P" else None
    except Exception as exc:
        raise InputError(path, f"not a readable image ({type(exc).__name__}: {exc})") from None
    if fmt not in _PIL_FORMATS:
        raise InputError(path, f"unsupported image format {fmt}")
    if fmt in ("BMP", "DIB"):
        _check_bmp_size(path, info, width, height)
        lazy = _open_bmp_lazily(path, options, mode, width, height, info, palette)
        if lazy is not None:
            return lazy
    if mode == "P":
        target = "RGBA" if "transparency" in info else "RGB"
    elif mode in _PIL_CONVERT:
        target = _PIL_CONVERT[mode]
    else:
        raise InputError(path, f"unsupported {fmt} pixel mode {mode!r}")
    out_mode = target or mode
    n_channels = Image.getmodebands(out_mode)
    dtype = _mode_dtype(out_mode)
    stored = (height, width) + ((n_channels,) if n_channels > 1 else ())
    _check_sizes(path, stored, dtype, options, copies=2)  # Pillow's image and the array
    applied = [f"{mode} converted to {target}"] if target else []
    orientation = _orientation(code, applied)
    shape = orientation.displayed_shape(stored)
    return ImageSource(
        path=path,
        axes="yxc" if n_channels > 1 else "yx",
        reader=RasterBlockReader(local_path(path), shape, dtype, "pillow", target, orientation),
        spacing=(1.0, 1.0),
        native_chunks=shape,
        channel_names=color_names(n_channels, rgb=out_mode.startswith("RGB")),
        format=fmt.lower().replace("mpo", "jpeg").replace("dib", "bmp"),
        metadata={
            "mode": mode,
            "photometric": mode,
            "orientation": code,
            "transform": "; ".join(applied) if applied else "none",
        },
    )


def _mode_dtype(mode: str) -> np.dtype:
    if mode == "1":
        return np.dtype(bool)
    if mode.startswith("I;16"):
        return np.dtype(np.uint16)
    return np.dtype({"I": np.int32, "F": np.float32}.get(mode, np.uint8))


def _check_bmp_size(path: str, info: dict[str, Any], width: int, height: int) -> None:
    """A BMP shorter than its header's file size, or than its uncompressed rows, is truncated."""
    with open(path, "rb") as fh:
        head = fh.read(30)
    size = os.path.getsize(path)
    stated = struct.unpack("<I", head[2:6])[0] if len(head) >= 6 else 0
    if stated and size < stated:
        raise InputError(path, "truncated BMP file")
    if info.get("compression", 0) in (0, 3) and len(head) == 30:  # BI_RGB, BI_BITFIELDS
        offset, dib = struct.unpack("<II", head[10:18])
        bits = struct.unpack("<H", head[24:26] if dib == 12 else head[28:30])[0]
        if size < offset + height * ((width * bits + 31) // 32 * 4):
            raise InputError(path, "truncated BMP file (shorter than its rows)")


@dataclass(frozen=True)
class BmpBlockReader(RegionReader):
    """Reads a region of an uncompressed 8- or 24-bit BMP through a memory map (no decode).

    Rows are stored bottom-up unless ``top_down``; 24-bit pixels are BGR; 8-bit pixels are
    palette indices, looked up in ``lut`` (``(256, 3)`` uint8) unless it is None (grey).
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    stride: int
    bits: int
    top_down: bool
    lut: np.ndarray | None = field(default=None, compare=False, repr=False)

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        height = self.shape[0]
        rows, cols = box[0], box[1]
        data = np.memmap(self.path, np.uint8, "r", self.offset, (height, self.stride))
        # bottom-up files hold the last displayed row first
        flipped = slice(height - rows.stop, height - rows.start)
        block = data[rows] if self.top_down else data[flipped][::-1]
        if self.bits == 24:
            pixels = block[:, cols.start * 3 : cols.stop * 3].reshape(block.shape[0], -1, 3)
            out = np.array(pixels[..., ::-1])
            return out[..., box[2]] if len(box) > 2 else out
        index = np.array(block[:, cols])
        if self.lut is None:
            return index
        return self.lut[index][..., box[2]]


def _open_bmp_lazily(
    path: str, options: ReadOptions, mode: str, width: int, height: int, info: dict[str, Any],
    palette: list[int] | None,
) -> ImageSource | None:
    """A lazily read source for uncompressed 8-bit (grey, palette) and 24-bit BMPs, else None."""
    with open(path, "rb") as fh:
        head = fh.read(34)
    if len(head) < 34 or info.get("compression", 0) != 0:
        return None
    offset, dib = struct.unpack("<II", head[10:18])
    if dib < 40:
        return None
    stored_height = struct.unpack("<i", head[22:26])[0]
    bits = struct.unpack("<H", head[28:30])[0]
    if (bits, mode) not in ((24, "RGB"), (8, "L"), (8, "P")) or "transparency" in info:
        return None
    lut = None
    if mode == "P":
        lut = np.zeros((256, 3), np.uint8)
        values = np.asarray(palette or [], np.uint8)[: 256 * 3].reshape(-1, 3)
        lut[: len(values)] = values
    n_channels = 1 if mode == "L" else 3
    shape = (height, width) + ((3,) if n_channels == 3 else ())
    check_size(path, shape, "yxc" if n_channels == 3 else "yx", options.max_pixels)
    stride = (width * bits + 31) // 32 * 4
    rows = max(1, min(height, 2**24 // max(stride, 1)))  # about 16 MiB of rows per chunk
    return ImageSource(
        path=path,
        axes="yxc" if n_channels == 3 else "yx",
        reader=BmpBlockReader(local_path(path), shape, np.dtype(np.uint8), offset, stride, bits,
                              stored_height < 0, lut),
        spacing=(1.0, 1.0),
        native_chunks=(rows, width) + ((3,) if n_channels == 3 else ()),
        channel_names=color_names(n_channels, rgb=n_channels == 3),
        format="bmp",
        metadata={
            "mode": mode,
            "photometric": mode,
            "orientation": 1,
            "transform": "palette expanded to RGB" if mode == "P" else "none",
            "lazy": True,
        },
    )
