"""TIFF colour models (photometric interpretations) turned into the values a viewer shows.

Each model is a per-pixel map, so it is applied to every block a task reads:

- palette (colormap): indices looked up in the colormap, giving RGB. TIFF colormaps hold
  16-bit values; when every value is a multiple of 257 (8-bit colours scaled as the TIFF 6.0
  specification says) or every value is below 256 (files written by software that stores
  8-bit values unscaled), the result is uint8, otherwise uint16.
- MinIsWhite: inverted so white stays white: ``2**BitsPerSample - 1 - v`` for unsigned
  integers, ``not v`` for 1-bit images, ``-1 - v`` (bitwise not, which keeps the dtype's
  range) for signed integers, and ``SMinSampleValue + SMaxSampleValue - v`` for floats
  (0 and 1 when the tags are absent).
- CMYK (separated, InkSet CMYK): ``R = (1 - C)(1 - K)``, ``G = (1 - M)(1 - K)``,
  ``B = (1 - Y)(1 - K)`` on the dtype's full scale, as Pillow converts CMYK; an alpha extra
  sample passes through as A.
- YCbCr not compressed with JPEG: ITU-R BT.601 full-range conversion (the JFIF equations) with
  the file's YCbCrCoefficients. JPEG-compressed YCbCr is decoded to RGB by the codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import InputError


@dataclass(frozen=True, eq=False)
class ColourModel:
    """A per-pixel map from stored samples to displayed values.

    Attributes
    ----------
    kind : {"palette", "miniswhite", "cmyk", "ycbcr"}
    dtype : numpy.dtype
        dtype of the result.
    n_out : int
        Channels of the result (0 for a single-channel result).
    lut : numpy.ndarray or None
        ``(n_colours, 3)`` colormap in the result dtype (palette).
    white : float
        The value that MinIsWhite inverts around (see the module docstring).
    coefficients : tuple of float
        Luma coefficients (YCbCr).
    """

    kind: str
    dtype: np.dtype
    n_out: int
    lut: np.ndarray | None = field(default=None, repr=False)
    white: float = 0.0
    coefficients: tuple[float, float, float] = (0.299, 0.587, 0.114)

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Map a block of stored samples (channels last, if any) to displayed values."""
        if self.kind == "palette" and self.lut is not None:
            return self.lut[np.minimum(block, len(self.lut) - 1)]
        if self.kind == "miniswhite":
            return _invert(block, self.white)
        if self.kind == "cmyk":
            return _cmyk_to_rgb(block, self.dtype)
        return _ycbcr_to_rgb(block, self.coefficients)


def palette_model(path: str, colormap: np.ndarray | None) -> ColourModel:
    """The palette model of a TIFF ``ColorMap`` (shape ``(3, 2**BitsPerSample)``, uint16)."""
    if colormap is None or np.ndim(colormap) != 2 or np.shape(colormap)[0] != 3:
        raise InputError(path, "palette TIFF without a valid ColorMap")
    cmap = np.asarray(colormap, dtype=np.uint16).T
    if int(cmap.max(initial=0)) < 256:
        lut = cmap.astype(np.uint8)
    elif not np.any(cmap % 257):
        lut = (cmap // 257).astype(np.uint8)
    else:
        lut = cmap
    return ColourModel("palette", lut.dtype, 3, lut=np.ascontiguousarray(lut))


def miniswhite_model(dtype: np.dtype, bits: int, smin: float | None, smax: float | None
                     ) -> ColourModel:
    """The inversion of a MinIsWhite image of ``dtype`` with ``bits`` bits per sample."""
    if dtype.kind == "u":
        white = float(2 ** min(bits, dtype.itemsize * 8) - 1)
    elif dtype.kind == "f":
        white = float(0.0 if smin is None else smin) + float(1.0 if smax is None else smax)
    else:
        white = 0.0
    return ColourModel("miniswhite", dtype, 0, white=white)


def _invert(block: np.ndarray, white: float) -> np.ndarray:
    if block.dtype == bool or block.dtype.kind == "i":
        return ~block
    return (block.dtype.type(white) - block).astype(block.dtype)


def _full_scale(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def _cmyk_to_rgb(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    full = _full_scale(dtype)
    samples = block.astype(np.float64)
    c, m, y, k = (samples[..., i] for i in range(4))
    rest = full - k
    rgb = np.stack([(full - c) * rest, (full - m) * rest, (full - y) * rest], axis=-1) / full
    if block.shape[-1] > 4:  # alpha
        rgb = np.concatenate([rgb, samples[..., 4:5]], axis=-1)
    return _to_dtype(rgb, dtype)


def _ycbcr_to_rgb(block: np.ndarray, coefficients: tuple[float, float, float]) -> np.ndarray:
    kr, kg, kb = coefficients
    samples = block.astype(np.float64)
    luma, cb, cr = samples[..., 0], samples[..., 1] - 128.0, samples[..., 2] - 128.0
    red = luma + (2 - 2 * kr) * cr
    blue = luma + (2 - 2 * kb) * cb
    green = (luma - kr * red - kb * blue) / kg
    rgb = np.stack([red, green, blue], axis=-1)
    if block.shape[-1] > 3:
        rgb = np.concatenate([rgb, samples[..., 3:4]], axis=-1)
    return _to_dtype(rgb, np.dtype(np.uint8))


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)
