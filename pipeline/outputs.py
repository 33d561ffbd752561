"""Output locations: naming per-input groups, refusing to clobber, creating stores."""

from __future__ import annotations

import os
import re
import shutil

import zarr

from pipeline.errors import OutputError

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


def is_zarr_store(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "zarr.json")) or os.path.isfile(
        os.path.join(path, ".zgroup")
    )


def check_output(path: str, overwrite: bool, inputs: list[str]) -> None:
    """Fail early if ``path`` exists and may not be replaced."""
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"{path}: the folder {parent} does not exist")
        return
    if not overwrite:
        raise OutputError(f"{path}: output already exists; pass --overwrite to replace it")
    absolute = os.path.abspath(path)
    if any(os.path.abspath(p) == absolute for p in inputs):
        raise OutputError(f"{path}: the output cannot replace an input")
    if not (is_zarr_store(path) or (os.path.isdir(path) and not os.listdir(path))):
        raise OutputError(f"{path}: exists and is not a Zarr store; refusing to replace it")


def create_root(path: str, overwrite: bool) -> zarr.Group:
    """Create (or, with ``overwrite``, re-create) the output group at ``path``."""
    if os.path.exists(path) and overwrite:
        shutil.rmtree(path)
    try:
        return zarr.open_group(path, mode="w-", zarr_format=3)
    except (OSError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError) as exc:
        raise OutputError(f"{path}: cannot create the output ({exc})") from None
