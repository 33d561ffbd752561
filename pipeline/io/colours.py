"""Display colours of the label image: the centres' own colours or a qualitative palette.

The ``image-label`` colours must let a viewer tell every cluster apart. Colour images keep the
centres' colours when every pair of them differs by at least :data:`MIN_DELTA_E` in CIELAB
(ΔE*ab, CIE 1976; about 2.3 is a just-noticeable difference, 10 is clearly different at a
glance). Otherwise, and for every image without colour channels, labels take a fixed
qualitative palette: matplotlib's ``tab10`` then the light half of ``tab20`` (values copied, so
matplotlib is not needed), then colours chosen greedily farthest from all previous ones in
CIELAB (Glasbey et al. 2007) up to :data:`GREEDY_COLOURS`, then the remaining colours of a
41^3 RGB grid in a fixed order, so every label up to 65535 has its own colour.
"""

from __future__ import annotations

import functools

import numpy as np

#: Smallest CIELAB distance between two centre colours for them to be used as label colours.
MIN_DELTA_E = 10.0

#: Palette colours chosen greedily for maximal distance; later ones are merely unique.
GREEDY_COLOURS = 256

_TAB10 = [
    "1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd",
    "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf",
]
_TAB20_LIGHT = [
    "aec7e8", "ffbb78", "98df8a", "ff9896", "c5b0d5",
    "c49c94", "f7b6d2", "c7c7c7", "dbdb8d", "9edae5",
]
_GRID = 41


def _lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, dtype=np.float64).reshape(1, -1, 3))[0]


def min_delta_e(rgb: np.ndarray) -> float:
    """Smallest CIELAB distance between two rows of ``rgb`` (``(k, 3)`` in [0, 1]); inf if k<2."""
    if len(rgb) < 2:
        return float("inf")
    lab = _lab(rgb)
    d = np.sqrt(((lab[:, None, :] - lab[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return float(d.min())


@functools.cache
def _palette_full() -> np.ndarray:
    fixed = np.array(
        [[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _TAB10 + _TAB20_LIGHT],
        dtype=np.uint8,
    )
    levels = np.rint(np.linspace(0, 255, _GRID)).astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    code = lambda c: (c[:, 0].astype(np.int64) << 16) | (c[:, 1].astype(np.int64) << 8) | c[:, 2]  # noqa: E731
    grid = grid[~np.isin(code(grid), code(fixed))]
    lab = _lab(grid / 255.0)
    # Greedy candidates: neither near black nor near white, so labels show on any background.
    usable = (lab[:, 0] > 25) & (lab[:, 0] < 92)
    closest = np.full(len(grid), np.inf)
    for c in _lab(fixed / 255.0):
        closest = np.minimum(closest, ((lab - c) ** 2).sum(-1))
    closest[~usable] = -1
    chosen = []
    for _ in range(GREEDY_COLOURS - len(fixed)):
        i = int(np.argmax(closest))
        chosen.append(i)
        closest = np.minimum(closest, ((lab - lab[i]) ** 2).sum(-1))
        closest[i] = -1
    rest = np.setdiff1d(np.arange(len(grid)), chosen)
    rest = rest[np.random.default_rng(0).permutation(len(rest))]
    return np.concatenate([fixed, grid[chosen], grid[rest]])


def qualitative_palette(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 colours, all different, the first 256 far apart in CIELAB."""
    if k <= len(_TAB10) + len(_TAB20_LIGHT):
        return np.array(
            [[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in (_TAB10 + _TAB20_LIGHT)[:k]],
            dtype=np.uint8,
        ).reshape(-1, 3)
    full = _palette_full()
    if k > len(full):
        raise ValueError(f"no palette of {k} colours (at most {len(full)})")
    return full[:k].copy()


def label_rgb(display_rgb: np.ndarray) -> tuple[np.ndarray, str]:
    """Colours of labels 1..k and where they come from.

    Parameters
    ----------
    display_rgb : ndarray, shape (k, 3) or (k, 0)
        The centres' colours in [0, 1]; ``(k, 0)`` when the centres have no colour (one
        channel, channels that are not a colour image).

    Returns
    -------
    rgb : ndarray of uint8, shape (k, 3)
    source : {"centres", "palette"}
        ``"centres"`` when the centres' own colours are distinct enough
        (:data:`MIN_DELTA_E`), else ``"palette"`` (:func:`qualitative_palette`).
    """
    display_rgb = np.asarray(display_rgb, dtype=np.float64)
    k = len(display_rgb)
    if display_rgb.shape[1:] == (3,):
        rgb = np.rint(np.clip(display_rgb, 0, 1) * 255).astype(np.uint8)
        if min_delta_e(rgb / 255.0) >= MIN_DELTA_E:
            return rgb, "centres"
    return qualitative_palette(k), "palette"
