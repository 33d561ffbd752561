"""Output locations: naming per-input groups, refusing to clobber, creating stores.

Outputs are local folders or fsspec URLs (``s3://bucket/out.zarr``, ``gs://...``); URLs are
checked and removed through fsspec, never with local file functions. An output whose root
``kmseg`` attributes say ``"status": "incomplete"`` is the unfinished output of an earlier run
of kmseg (a killed client, say): it is replaced without ``overwrite``, since nothing in it can
be used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from typing import Any

import zarr

from pipeline.errors import OutputError

log = logging.getLogger("kmseg")

_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".nii.gz", ".tiff", ".tif", ".svs", ".zarr",
             ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".nii", ".dcm")


def output_name(path: str) -> str:
    """A group name for an input path: its file name without image suffixes."""
    base = os.path.basename(str(path).rstrip("/")) or "image"
    lower = base.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]", "_", base) or "image"


def unique_names(paths: list[str]) -> list[str]:
    """Distinct group names for several inputs (``name``, ``name_2``, ...)."""
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        name = output_name(path)
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out


def is_url(path: str) -> bool:
    """True for fsspec URLs (``s3://``, ``gs://``, ``https://``...), False for local paths."""
    return "://" in str(path) and not str(path).startswith("file://")


def _url_fs(path: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as exc:
        raise OutputError(f"{path}: cannot use this URL ({exc})") from None


def is_zarr_store(path: str) -> bool:
    """True if ``path`` (a folder or URL) holds Zarr group or array metadata at its root."""
    markers = ("zarr.json", ".zgroup", ".zarray")
    if is_url(path):
        fs, root = _url_fs(path)
        return any(fs.exists(f"{root.rstrip('/')}/{m}") for m in markers)
    return any(os.path.isfile(os.path.join(path, m)) for m in markers)


def output_status(path: str) -> str | None:
    """The ``status`` in a kmseg output's root attributes, or None if it is not one."""
    try:
        if is_url(path):
            fs, root = _url_fs(path)
            raw = fs.cat_file(f"{root.rstrip('/')}/zarr.json")
        else:
            with open(os.path.join(path, "zarr.json"), "rb") as fh:
                raw = fh.read()
        meta = json.loads(raw)
    except (OSError, ValueError, OutputError):
        return None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    kmseg = attrs.get("kmseg") if isinstance(attrs, dict) else None
    status = kmseg.get("status") if isinstance(kmseg, dict) else None
    return status if isinstance(status, str) else None


def _exists(path: str) -> bool:
    """True if a local path exists, or if any object lies under a URL.

    Object stores that keep empty "directories" (SeaweedFS, MinIO) would otherwise make a
    deleted output look present.
    """
    if not is_url(path):
        return os.path.exists(path)
    if is_zarr_store(path):
        return True
    fs, root = _url_fs(path)
    try:
        return bool(fs.find(root))
    except FileNotFoundError:
        return False


def _same(a: str, b: str) -> bool:
    if is_url(a) or is_url(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return os.path.abspath(a) == os.path.abspath(b)


def check_output(path: str, overwrite: bool, inputs: list[str]) -> None:
    """Fail early if ``path`` exists and may not be replaced.

    An unfinished kmseg output (status ``incomplete``) may always be replaced.
    """
    if str(path).startswith(("http://", "https://")):
        raise OutputError(f"{path}: HTTP(S) URLs are read-only; write the output to a folder "
                          "or an object store URL (s3://, gs://)")
    if not _exists(path):
        if not is_url(path):
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise OutputError(f"{path}: the folder {parent} does not exist")
        return
    if output_status(path) == "incomplete" and not any(_same(p, path) for p in inputs):
        return
    if not overwrite:
        raise OutputError(f"{path}: output already exists; pass --overwrite to replace it")
    if any(_same(p, path) for p in inputs):
        raise OutputError(f"{path}: the output cannot replace an input")
    if is_url(path):
        if not is_zarr_store(path):
            raise OutputError(f"{path}: exists and is not a Zarr store; refusing to replace it")
    elif not (is_zarr_store(path) or (os.path.isdir(path) and not os.listdir(path))):
        raise OutputError(f"{path}: exists and is not a Zarr store; refusing to replace it")


def remove_output(path: str) -> None:
    """Delete an output store (a local folder, or every object under a URL)."""
    if is_url(path):
        fs, root = _url_fs(path)
        fs.rm(root, recursive=True)
        fs.invalidate_cache()
    else:
        shutil.rmtree(path)


def create_root(path: str, overwrite: bool) -> zarr.Group:
    """Create (or, with ``overwrite``, re-create) the output group at ``path``.

    An unfinished output of an earlier kmseg run is replaced even without ``overwrite``.
    """
    removed = False
    if _exists(path):
        if output_status(path) == "incomplete":
            log.warning("kmseg: replacing the unfinished output %s of an earlier run", path)
            remove_output(path)
            removed = True
        elif overwrite:
            remove_output(path)
            removed = True
    # Once our own removal is done, "w" is as safe as "w-" and clears what "w-" would take for
    # data: empty "directories" some object stores keep after a delete, or a chunk written
    # meanwhile by a task of the killed run that was still going on a remote worker.
    mode = "w" if removed else "w-"
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except (OSError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError) as exc:
        raise OutputError(f"{path}: cannot create the output ({exc})") from None
