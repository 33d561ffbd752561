"""Shape → axes inference shared by readers that carry no axis metadata."""

from __future__ import annotations

from pipeline.errors import InputError

#: Largest trailing dimension still taken as a channel axis when nothing says otherwise.
MAX_CHANNELS = 8


def infer_axes(path: str, shape: tuple[int, ...], axes: str | None = None) -> str:
    """Return the axes string (``yx``, ``yxc``, ``zyx`` or ``zyxc``) for an array shape.

    A trailing dimension of at most :data:`MAX_CHANNELS` is a channel axis; otherwise a 3-D
    array is a volume.
    """
    if axes is not None:
        axes = axes.lower()
        if axes not in ("yx", "yxc", "zyx", "zyxc") or len(axes) != len(shape):
            raise InputError(path, f"axes {axes!r} do not fit an array of shape {shape}")
        return axes
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3:
        return "yxc" if shape[-1] <= MAX_CHANNELS else "zyx"
    if len(shape) == 4 and shape[-1] <= MAX_CHANNELS:
        return "zyxc"
    raise InputError(path, f"cannot interpret an array of shape {shape} as an image or volume")
