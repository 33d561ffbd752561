"""Per-pixel feature vectors: scaling, colour space and spatial coordinates.

A :class:`FeatureSpec` is a small, picklable description of how a block of pixels becomes rows
of features. It is pure arithmetic (no I/O, no Dask) so every engine and the labeller share it,
and it can be tested on tiny arrays.

Features follow the original method: each value is scaled to [0, 1] by the dtype's range
(``uint8 / 255``) or, for floating-point data and integers wider than 16 bits, by the data's
range (over pixels with data). Optionally RGB is converted to
CIELAB (L*, a*, b* divided by 100), and spatial coordinates scaled to [0, 1] and multiplied by a
weight are appended.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

ColourSpace = Literal["rgb", "lab"]


def dtype_range(dtype: np.dtype) -> tuple[int, int]:
    """Return ``(min, max)`` of an integer dtype, or ``(0, 1)`` for bool (Python ints)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 0, 1
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


#: Integer dtypes wider than this many bits are scaled by the data's range (in float64): the
#: dtype's range would leave too little precision between neighbouring values.
DTYPE_RANGE_BITS = 16


def needs_data_range(dtype: np.dtype) -> bool:
    """True for dtypes whose features are scaled by the data's range (floats, >16-bit ints)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or (dtype.kind in "iu" and dtype.itemsize * 8 > DTYPE_RANGE_BITS)


def span_problem(low: float, high: float) -> str | None:
    """Why a data range cannot scale features, or ``None`` when it can.

    Features are ``(value - low) / (high - low)`` in float64; float64 values whose span
    ``high - low`` exceeds the largest float64 (about 1.8e308, e.g. -1e308 to 1e308) would make
    that span infinite and every feature 0 or NaN.
    """
    if math.isfinite(float(high) - float(low)):  # Python floats: inf, no overflow warning
        return None
    return (f"the values span {low:g} to {high:g}, a difference beyond the float64 range; "
            "rescale the data, or leave the extremes out with valid_range")


@dataclass(frozen=True)
class FeatureSpec:
    """How pixels of one image become feature rows, and which pixels have no data.

    Attributes
    ----------
    dtype : str
        Input dtype.
    channels : tuple of int
        Input channels used as features (alpha is excluded in mask mode); ``()`` for
        single-channel images.
    low, high : float or int
        Value range mapped to [0, 1] (Python ints for integer dtypes, so 64-bit ranges stay
        exact).
    colour_space : {"rgb", "lab"}
        ``"lab"`` only for three feature channels.
    spatial_weight : float
        Weight of the appended spatial coordinates (0 appends none).
    spatial_shape : tuple of int
        Full spatial shape, to scale coordinates to [0, 1].
    no_data : tuple of (float, float)
        Closed intervals of input values that mean no data (DICOM pixel padding, say).
    valid_range : (float, float) or None
        Values outside this closed interval are no data (the ``valid_range`` config key).
    alpha : int or None
        Channel whose value 0 means no data (alpha in ``mask`` mode); not a feature.

    Notes
    -----
    The one rule of no data, shared by every engine, the labeller and the statistics: a pixel
    has no data when any feature value is NaN or ±inf, lies in one of ``no_data``, or lies
    outside ``valid_range``, or when its ``alpha`` value is 0.
    """

    dtype: str
    channels: tuple[int, ...]
    low: float
    high: float
    colour_space: ColourSpace = "rgb"
    spatial_weight: float = 0.0
    spatial_shape: tuple[int, ...] = ()
    no_data: tuple[tuple[float, float], ...] = ()
    valid_range: tuple[float, float] | None = None
    alpha: int | None = None

    @property
    def n_value_features(self) -> int:
        return max(1, len(self.channels))

    @property
    def n_features(self) -> int:
        spatial = len(self.spatial_shape) if self.spatial_weight > 0 else 0
        return self.n_value_features + spatial

    @property
    def scale(self) -> float:
        span = float(self.high - self.low)
        return span if span > 0 else 1.0

    @property
    def is_value_only(self) -> bool:
        """True when features depend only on the pixel value (no coordinates)."""
        return self.spatial_weight == 0

    @property
    def feature_dtype(self) -> np.dtype:
        """float32 for inputs of at most 16 bits per value (exact there), else float64."""
        return np.dtype(np.float32 if np.dtype(self.dtype).itemsize <= 2 else np.float64)

    @property
    def no_data_rules(self) -> tuple[str, ...]:
        """The rules that can mark a pixel of this image as no data (empty: none can)."""
        rules = []
        if np.dtype(self.dtype).kind == "f":
            rules.append("NaN or infinite value")
        if self.alpha is not None:
            rules.append("alpha = 0")
        if self.no_data:
            ranges = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in self.no_data)
            rules.append(f"no-data value in {ranges}")
        if self.valid_range is not None:
            rules.append(f"value outside valid_range [{self.valid_range[0]:g}, "
                         f"{self.valid_range[1]:g}]")
        return tuple(rules)

    def values(self, block: np.ndarray) -> np.ndarray:
        """Select feature channels of a block: shape ``(n_pixels, n_value_features)``."""
        if self.channels:
            block = block[..., list(self.channels)]
            return block.reshape(-1, len(self.channels))
        return block.reshape(-1, 1)

    def valid_mask(self, block: np.ndarray) -> np.ndarray | None:
        """Which pixels of a block have data: bool ``(n_pixels,)``, or ``None`` when this
        image has no no-data rule (every pixel has data; nothing is computed)."""
        if not self.no_data_rules:
            return None
        values = self.values(block)
        if np.dtype(self.dtype).kind == "f":
            valid = np.isfinite(values).all(axis=1)
        else:
            valid = np.ones(len(values), dtype=bool)
        for lo, hi in self.no_data:
            valid &= ~((values >= lo) & (values <= hi)).any(axis=1)
        if self.valid_range is not None:
            lo, hi = self.valid_range
            valid &= ((values >= lo) & (values <= hi)).all(axis=1)
        if self.alpha is not None:
            valid &= block[..., self.alpha].reshape(-1) != 0
        return valid

    def value_features(self, values: np.ndarray) -> np.ndarray:
        """Map raw values ``(n, n_value_features)`` to features (:attr:`feature_dtype`).

        Integers wider than 16 bits are offset by ``low`` in exact integer arithmetic (modulo
        2^64, exact for every value ``>= low``) before the conversion to float64, so values 1
        apart stay apart whatever their magnitude.
        """
        dtype = self.feature_dtype
        values = np.asarray(values)
        if values.dtype.kind in "iu" and values.dtype.itemsize > 2:
            offset = np.uint64(int(self.low) % 2**64)
            wide = values.astype(np.int64 if values.dtype.kind == "i" else np.uint64, copy=False)
            feats = (wide.view(np.uint64) - offset).astype(np.float64) / self.scale
        else:
            feats = (values.astype(dtype) - dtype.type(self.low)) / dtype.type(self.scale)
        if self.colour_space == "lab":
            from skimage.color import rgb2lab

            feats = (rgb2lab(np.clip(feats, 0, 1)[None], channel_axis=-1)[0] / 100.0).astype(
                dtype
            )
        return feats

    def block_features(
        self, block: np.ndarray, origin: tuple[int, ...] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features of every pixel of a block, in raster order.

        Parameters
        ----------
        block : ndarray
            Pixels with spatial axes first and an optional trailing channel axis.
        origin : tuple of int
            Index of the block's first pixel in the full image (for spatial features).

        Returns
        -------
        features : ndarray, shape (n_pixels, n_features), :attr:`feature_dtype`
        valid : ndarray of bool, shape (n_pixels,)
            False for pixels without data (see :meth:`valid_mask`); those rows are set to 0.
        """
        feats = self.value_features(self.values(block))
        mask = self.valid_mask(block)
        valid = np.ones(len(feats), dtype=bool) if mask is None else mask
        if mask is not None and not mask.all():
            feats[~mask] = 0
        if self.spatial_weight > 0:
            spatial_ndim = len(self.spatial_shape)
            shape = block.shape[:spatial_ndim]
            origin = tuple(origin) or (0,) * spatial_ndim
            grids = np.meshgrid(
                *[
                    (np.arange(o, o + s, dtype=feats.dtype) / max(full - 1, 1))
                    for o, s, full in zip(origin, shape, self.spatial_shape, strict=True)
                ],
                indexing="ij",
            )
            coords = np.stack([g.ravel() for g in grids], axis=1) * feats.dtype.type(
                self.spatial_weight
            )
            feats = np.concatenate([feats, coords], axis=1)
        return feats, valid

    def value_range(self, block: np.ndarray) -> tuple[float, float] | None:
        """``(min, max)`` of the feature values of the pixels with data, or ``None`` if none.

        Integers come back as Python ints (exact), floats as Python floats.
        """
        values = self.values(block)
        mask = self.valid_mask(block)
        if mask is not None and not mask.all():
            values = values[mask]
        if values.size == 0:
            return None
        return values.min().item(), values.max().item()

    def with_range(self, low: float, high: float) -> FeatureSpec:
        """This spec scaled by ``[low, high]`` instead."""
        return dataclasses.replace(self, low=low, high=high)

    def to_input_units(self, centres: np.ndarray) -> np.ndarray:
        """Convert centres in feature units to input values (float64, value features only)."""
        values = np.asarray(centres, dtype=np.float64)[:, : self.n_value_features]
        if self.colour_space == "lab":
            from skimage.color import lab2rgb

            values = lab2rgb(values[None] * 100.0, channel_axis=-1)[0]
        return values * self.scale + float(self.low)


def make_feature_spec(
    dtype: np.dtype,
    n_channels: int,
    spatial_shape: tuple[int, ...],
    *,
    has_alpha: bool = False,
    data_range: tuple[float, float] | None = None,
    colour_space: ColourSpace = "rgb",
    spatial_weight: float = 0.0,
    alpha: Literal["mask", "channel"] = "mask",
    no_data: tuple[tuple[float, float], ...] = (),
    valid_range: tuple[float, float] | None = None,
) -> FeatureSpec:
    """Build the :class:`FeatureSpec` for an image.

    Parameters
    ----------
    dtype : dtype
        Input dtype.
    n_channels : int
        Channels of the input (1 without a channel axis).
    spatial_shape : tuple of int
    has_alpha : bool
        Whether the last channel is alpha.
    data_range : (low, high) or None
        The data's min and max over pixels with data; required for floating-point dtypes,
        used instead of the dtype's range for integers wider than 16 bits when given.
    colour_space, spatial_weight
        See :class:`FeatureSpec`.
    alpha : {"mask", "channel"}
        ``mask``: alpha is not a feature and alpha 0 is no data; ``channel``: alpha is an
        ordinary feature channel.
    no_data, valid_range
        See :class:`FeatureSpec`.

    Raises
    ------
    ValueError
        A floating-point dtype without ``data_range``.
    ConfigError
        ``colour_space="lab"`` without three colour channels.
    """
    dtype = np.dtype(dtype)
    mask_alpha = has_alpha and alpha == "mask"
    if n_channels == 1:
        channels: tuple[int, ...] = ()
    else:
        channels = tuple(range(n_channels - 1 if mask_alpha else n_channels))
        if len(channels) == 1:
            channels = (0,)
    if dtype.kind == "f":
        if data_range is None:
            raise ValueError("floating-point images need data_range")
        low, high = float(data_range[0]), float(data_range[1])
    elif data_range is not None and needs_data_range(dtype):
        low, high = int(data_range[0]), int(data_range[1])
    else:
        low, high = dtype_range(dtype)
    if colour_space == "lab" and len(channels) != 3:
        from pipeline.errors import ConfigError

        raise ConfigError("colour_space 'lab' needs an RGB image (three colour channels)")
    return FeatureSpec(
        dtype=str(dtype),
        channels=channels,
        low=low,
        high=high,
        colour_space=colour_space,
        spatial_weight=float(spatial_weight),
        spatial_shape=tuple(int(s) for s in spatial_shape),
        no_data=tuple((float(lo), float(hi)) for lo, hi in no_data),
        valid_range=None if valid_range is None else (float(valid_range[0]),
                                                      float(valid_range[1])),
        alpha=n_channels - 1 if mask_alpha else None,
    )
