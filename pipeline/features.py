"""Per-pixel feature vectors: scaling, colour space and spatial coordinates.

A :class:`FeatureSpec` is a small, picklable description of how a block of pixels becomes rows
of features. It is pure arithmetic (no I/O, no Dask) so every engine and the labeller share it,
and it can be tested on tiny arrays.

Features follow the original method: each value is scaled to [0, 1] by the dtype's range
(``uint8 / 255``) or, for floating-point data, by the data's range. Optionally RGB is converted to
CIELAB (L*, a*, b* divided by 100), and spatial coordinates scaled to [0, 1] and multiplied by a
weight are appended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ColourSpace = Literal["rgb", "lab"]


def dtype_range(dtype: np.dtype) -> tuple[float, float]:
    """Return ``(min, max)`` of an integer dtype, or ``(0, 1)`` for bool."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 0.0, 1.0
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


@dataclass(frozen=True)
class FeatureSpec:
    """How pixels of one image become feature rows.

    Attributes
    ----------
    dtype : str
        Input dtype.
    channels : tuple of int
        Input channels used as features (alpha is excluded); ``()`` for single-channel images.
    low, high : float
        Value range mapped to [0, 1].
    colour_space : {"rgb", "lab"}
        ``"lab"`` only for three feature channels.
    spatial_weight : float
        Weight of the appended spatial coordinates (0 appends none).
    spatial_shape : tuple of int
        Full spatial shape, to scale coordinates to [0, 1].
    """

    dtype: str
    channels: tuple[int, ...]
    low: float
    high: float
    colour_space: ColourSpace = "rgb"
    spatial_weight: float = 0.0
    spatial_shape: tuple[int, ...] = ()

    @property
    def n_value_features(self) -> int:
        return max(1, len(self.channels))

    @property
    def n_features(self) -> int:
        spatial = len(self.spatial_shape) if self.spatial_weight > 0 else 0
        return self.n_value_features + spatial

    @property
    def scale(self) -> float:
        span = self.high - self.low
        return span if span > 0 else 1.0

    @property
    def is_value_only(self) -> bool:
        """True when features depend only on the pixel value (no coordinates)."""
        return self.spatial_weight == 0

    def values(self, block: np.ndarray) -> np.ndarray:
        """Select feature channels of a block: shape ``(n_pixels, n_value_features)``."""
        if self.channels:
            block = block[..., list(self.channels)]
            return block.reshape(-1, len(self.channels))
        return block.reshape(-1, 1)

    def value_features(self, values: np.ndarray) -> np.ndarray:
        """Map raw values ``(n, n_value_features)`` to features (float32)."""
        feats = (values.astype(np.float32) - np.float32(self.low)) / np.float32(self.scale)
        if self.colour_space == "lab":
            from skimage.color import rgb2lab

            feats = (rgb2lab(np.clip(feats, 0, 1)[None], channel_axis=-1)[0] / 100.0).astype(
                np.float32
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
        features : ndarray, shape (n_pixels, n_features), float32
        valid : ndarray of bool, shape (n_pixels,)
            False where any value feature is NaN (no data); those rows are set to 0.
        """
        feats = self.value_features(self.values(block))
        valid = ~np.isnan(feats).any(axis=1)
        if not valid.all():
            feats[~valid] = 0
        if self.spatial_weight > 0:
            spatial_ndim = len(self.spatial_shape)
            shape = block.shape[:spatial_ndim]
            origin = tuple(origin) or (0,) * spatial_ndim
            grids = np.meshgrid(
                *[
                    (np.arange(o, o + s, dtype=np.float32) / max(full - 1, 1))
                    for o, s, full in zip(origin, shape, self.spatial_shape, strict=True)
                ],
                indexing="ij",
            )
            coords = np.stack([g.ravel() for g in grids], axis=1) * np.float32(self.spatial_weight)
            feats = np.concatenate([feats, coords], axis=1)
        return feats, valid

    def to_input_units(self, centres: np.ndarray) -> np.ndarray:
        """Convert centres in feature units to input values (float64, value features only)."""
        values = np.asarray(centres, dtype=np.float64)[:, : self.n_value_features]
        if self.colour_space == "lab":
            from skimage.color import lab2rgb

            values = lab2rgb(values[None] * 100.0, channel_axis=-1)[0]
        return values * self.scale + self.low


def make_feature_spec(
    dtype: np.dtype,
    n_channels: int,
    spatial_shape: tuple[int, ...],
    *,
    has_alpha: bool = False,
    data_range: tuple[float, float] | None = None,
    colour_space: ColourSpace = "rgb",
    spatial_weight: float = 0.0,
) -> FeatureSpec:
    """Build the :class:`FeatureSpec` for an image.

    ``data_range`` is required for floating-point dtypes (the data's min and max, NaN ignored).
    """
    dtype = np.dtype(dtype)
    if n_channels == 1:
        channels: tuple[int, ...] = ()
    else:
        channels = tuple(range(n_channels - 1 if has_alpha else n_channels))
        if len(channels) == 1:
            channels = (0,)
    if dtype.kind == "f":
        if data_range is None:
            raise ValueError("floating-point images need data_range")
        low, high = float(data_range[0]), float(data_range[1])
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
    )
