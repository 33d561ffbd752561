"""EXIF / TIFF ``Orientation`` (tag 274): show an image the way a viewer does, region by region.

The eight values name the position of the stored first row and column (TIFF 6.0, EXIF 2.3).
Each is a transpose of the stored rows and columns, then flips of the displayed rows and/or
columns, as ``tifffile.reorient`` and Pillow's ``ImageOps.exif_transpose`` apply them to
whole images. Here a region of the displayed image is mapped back to the stored region that
holds it, so readers still read only the tiles a task needs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Orientation value -> (transpose, flip rows, flip columns), flips in displayed coordinates.
_STEPS: dict[int, tuple[bool, bool, bool]] = {
    1: (False, False, False),  # top-left: as stored
    2: (False, False, True),  # top-right: mirrored left-right
    3: (False, True, True),  # bottom-right: rotated 180°
    4: (False, True, False),  # bottom-left: mirrored top-bottom
    5: (True, False, False),  # left-top: transposed
    6: (True, False, True),  # right-top: rotated 90° clockwise to display
    7: (True, True, True),  # right-bottom: transverse
    8: (True, True, False),  # left-bottom: rotated 90° counter-clockwise to display
}

#: What each value does to the stored image, recorded in the metadata.
DESCRIPTIONS = {
    1: "none",
    2: "flipped left-right",
    3: "rotated 180 degrees",
    4: "flipped top-bottom",
    5: "transposed",
    6: "rotated 90 degrees clockwise",
    7: "transversed (rotated 90 degrees clockwise, flipped left-right)",
    8: "rotated 90 degrees counter-clockwise",
}


class Orientation(NamedTuple):
    """An Orientation value and the axis of the rows (``y``) in the presented axes.

    Attributes
    ----------
    code : int
        1-8; any other value is treated as 1 by :func:`orientation_code`.
    y_axis : int
        Index of the y axis; x follows it.
    """

    code: int = 1
    y_axis: int = 0

    @property
    def transposed(self) -> bool:
        """True when displayed rows are stored columns (values 5-8)."""
        return _STEPS[self.code][0]

    def displayed_shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        """The shape a viewer shows for a stored (presented-axes) shape."""
        return self._swap(stored)

    def stored_shape(self, displayed: tuple[int, ...]) -> tuple[int, ...]:
        """The stored shape of a displayed shape (the same swap)."""
        return self._swap(displayed)

    def stored_box(self, box: tuple[slice, ...], displayed: tuple[int, ...]) -> tuple[slice, ...]:
        """The stored region (step-1 slices) holding a displayed region of a displayed shape."""
        transpose, flip_y, flip_x = _STEPS[self.code]
        y = self.y_axis
        out = list(box)
        for axis, flip in ((y, flip_y), (y + 1, flip_x)):
            if flip:
                n, sl = displayed[axis], box[axis]
                out[axis] = slice(n - sl.stop, n - sl.start)
        if transpose:
            out[y], out[y + 1] = out[y + 1], out[y]
        return tuple(out)

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Turn a block read from :meth:`stored_box` into displayed orientation."""
        transpose, flip_y, flip_x = _STEPS[self.code]
        y = self.y_axis
        if transpose:
            block = np.swapaxes(block, y, y + 1)
        if flip_y:
            block = np.flip(block, axis=y)
        if flip_x:
            block = np.flip(block, axis=y + 1)
        return block

    def _swap(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not self.transposed:
            return tuple(shape)
        out = list(shape)
        y = self.y_axis
        out[y], out[y + 1] = out[y + 1], out[y]
        return tuple(out)


#: Orientation 1: shown as stored.
AS_STORED = Orientation()


def orientation_code(value: object) -> int:
    """The Orientation value of a tag, 1 when absent or invalid (as viewers do)."""
    try:
        code = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 1
    return code if code in _STEPS else 1
