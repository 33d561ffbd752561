"""The one test of whether a path is an fsspec URL or a local path."""

from __future__ import annotations

import os


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for fsspec URLs (``s3://``, ``gs://``, ``https://`` ...), False for local paths.

    ``file://`` URLs count as URLs too: they are opened through fsspec like the others.
    """
    return "://" in os.fspath(path)
