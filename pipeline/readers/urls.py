"""Inputs given as fsspec URLs (``s3://``, ``gs://``, ``https://``...).

Zarr stores are read in place by the Zarr reader: each task fetches only the chunks it needs.
Single-file formats (TIFF, PNG, JPEG, NumPy, NIfTI, DICOM files) are copied whole into a
temporary folder once per process, on the client for their metadata and on each worker for
its pixels, and read there by their usual reader; the copies are removed when the process
exits. That suits files that fit on local disk; larger images belong in Zarr.

Credentials and endpoints come from the environment of each process (``AWS_*`` variables,
``~/.aws``, ``FSSPEC_*`` variables), never from the job config.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import InputError
from pipeline.paths import is_url
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import LoadOnceCache, ReadError
from pipeline.readers.dispatch import expand_inputs, open_image, suffix_format, unique_inputs

#: Formats read from a local copy of the whole file.
COPIED_FORMATS = ("tiff", "raster", "npy", "nifti", "dicom")


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise InputError(url, f"cannot open this URL ({exc})") from None


def expand_urls(inputs: Sequence[str]) -> list[str]:
    """Like :func:`~pipeline.readers.dispatch.expand_inputs`, also expanding globs in URLs."""
    out: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if is_url(item) and glob.has_magic(item.split("://", 1)[1]):
            fs, pattern = _fs(item)
            protocol = item.split("://", 1)[0]
            matches = sorted(fs.glob(pattern))
            if not matches:
                raise InputError(item, "the pattern matches no object")
            out.extend(f"{protocol}://{m}" for m in matches)
        else:
            out.extend(expand_inputs([item]))
    return unique_inputs(out)


def open_input(path: str, options: ReadOptions | None = None, **kwargs: Any) -> ImageSource:
    """Open a local path or URL; see :func:`~pipeline.readers.dispatch.open_image`."""
    options = options or ReadOptions(**kwargs)
    if not is_url(path) or suffix_format(path) not in COPIED_FORMATS:
        return open_image(path, options)
    fs, key = _fs(path)
    try:
        info = fs.info(key)
    except FileNotFoundError:
        raise InputError(path, "no such object") from None
    except Exception as exc:
        raise InputError(path, f"cannot read ({type(exc).__name__}: {exc})") from None
    version = f"{info.get('size')}:{info.get('ETag') or info.get('etag') or info.get('mtime')}"
    local = _COPIES.get(path, version)
    source = open_image(local, options)
    if not dataclasses.is_dataclass(source.reader) or not hasattr(source.reader, "path"):
        raise InputError(path, f"{source.format} files cannot be read from URLs")
    return dataclasses.replace(source, path=path, reader=CopiedFileReader(path, version,
                                                                          source.reader))


@dataclass(frozen=True)
class CopiedFileReader:
    """Reads a region of a remote file from this process's local copy of it.

    ``inner`` is the format's reader made on the client; its ``path`` is replaced by the local
    copy in each process.
    """

    url: str
    version: str
    inner: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.inner.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.inner.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        local = _COPIES.get(self.url, self.version)
        try:
            return dataclasses.replace(self.inner, path=local)[key]
        except Exception:
            if os.path.exists(local):
                raise
        # Another task of this process evicted the copy meanwhile: fetch it again.
        local = _COPIES.get(self.url, self.version)
        return dataclasses.replace(self.inner, path=local)[key]


class LocalCopies:
    """Whole-file copies of remote objects in a private temporary folder (LRU, thread-safe)."""

    def __init__(self, maxsize: int = 8) -> None:
        self._copies = LoadOnceCache(maxsize, valid=os.path.exists, evict=_remove)
        self._lock = threading.Lock()
        self._folder: str | None = None

    def get(self, url: str, version: str) -> str:
        """Local path of a copy of ``url`` (downloaded now if this process has none)."""
        return self._copies.get((url, version), lambda: self._download(url, version))

    def _download(self, url: str, version: str) -> str:
        folder = self._ensure_folder()
        digest = hashlib.sha256(f"{url}\n{version}".encode()).hexdigest()[:16]
        name = os.path.basename(url.rstrip("/")) or "object"
        path = os.path.join(folder, f"{digest}-{name}")
        partial = path + ".part"
        fs, key = _fs(url)
        try:
            fs.get_file(key, partial)
            os.replace(partial, path)
        except Exception as exc:
            _remove(partial)
            raise ReadError(url, f"cannot copy the object ({type(exc).__name__}: {exc})") from exc
        return path

    def _ensure_folder(self) -> str:
        with self._lock:
            if self._folder is None or not os.path.isdir(self._folder):
                self._folder = tempfile.mkdtemp(prefix="kmseg-url-")
                atexit.register(shutil.rmtree, self._folder, True)
            return self._folder


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


_COPIES = LocalCopies()
