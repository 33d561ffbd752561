"""Small generated files for the reader tests: palette TIFFs, EXIF-oriented images, PNG headers."""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def random_pixels(dtype: str, rng: np.random.Generator, shape: tuple[int, ...] = (70, 90)
                  ) -> np.ndarray:
    """Random pixels of ``dtype`` over its whole range, the dtype's minimum and maximum in the
    first two pixels (floats: standard normal; bool: coin flips)."""
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    data.flat[:2] = info.min, info.max
    return data


@contextlib.contextmanager
def peak_allocation() -> Iterator[list[int]]:
    """Measure the peak bytes Python allocates inside the block (``[peak]`` after it)."""
    result = [0]
    tracemalloc.start()
    try:
        yield result
        result[0] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


#: Palette of the issue's example: indices 0 and 2 red, 1 and 3 blue (16-bit TIFF colormap).
RED_BLUE = np.array([[255, 0, 0], [0, 0, 255], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)


def palette_tiff(path: Path, index: np.ndarray, colours: np.ndarray, **kwargs: object) -> Path:
    """Write ``index`` (uint8) as a palette TIFF whose colormap holds ``colours`` ((n, 3) uint16).

    The colormap is padded with zeros to 256 entries, as TIFF requires.
    """
    cmap = np.zeros((3, 256), dtype=np.uint16)
    cmap[:, : len(colours)] = np.asarray(colours, dtype=np.uint16).T
    tifffile.imwrite(path, index, photometric="palette", colormap=cmap, **kwargs)
    return path


def red_blue_index(shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    """Indices 0..3: the left half uses 0 and 2 (red), the right half 1 and 3 (blue)."""
    index = np.zeros(shape, dtype=np.uint8)
    index[:, : shape[1] // 2] = np.where(np.arange(shape[0])[:, None] % 2, 2, 0)
    index[:, shape[1] // 2 :] = np.where(np.arange(shape[0])[:, None] % 3, 3, 1)
    return index


def exif_bytes(orientation: int) -> bytes:
    """Raw EXIF data holding only an Orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def png_header(width: int, height: int, colour_type: int = 2, depth: int = 8) -> bytes:
    """A syntactically valid PNG declaring a size, with a tiny IDAT (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def displayed(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for ``stored`` (rows, columns first) with an EXIF Orientation.

    Written out from the EXIF 2.3 table (where the stored first row and column are shown),
    independently of the reader.
    """
    rotate_cw = np.rot90(stored, k=-1)  # 90 degrees clockwise
    return {
        1: stored,
        2: stored[:, ::-1],
        3: stored[::-1, ::-1],
        4: stored[::-1],
        5: np.swapaxes(stored, 0, 1),
        6: rotate_cw,
        7: np.swapaxes(stored, 0, 1)[::-1, ::-1],
        8: np.rot90(stored, k=1),
    }[orientation]
