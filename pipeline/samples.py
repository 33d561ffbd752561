"""Real sample images bundled with scikit-image, addressed as ``sample:NAME``."""

from __future__ import annotations

import os

from pipeline.errors import InputError

PREFIX = "sample:"


def sample_names() -> list[str]:
    """Names of the bundled sample photos (``astronaut``, ``coffee``, ``retina``, ...)."""
    folder = _folder()
    return sorted(
        os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith((".png", ".jpg"))
    )


def resolve(item: str) -> str:
    """Return the file path for ``sample:NAME``; other inputs are returned unchanged."""
    if not item.startswith(PREFIX):
        return item
    name = item[len(PREFIX) :]
    for suffix in (".png", ".jpg"):
        path = os.path.join(_folder(), name + suffix)
        if os.path.isfile(path):
            return path
    raise InputError(item, f"no such sample; choose from {', '.join(sample_names())}")


def _folder() -> str:
    import skimage.data

    return os.path.dirname(skimage.data.__file__)
