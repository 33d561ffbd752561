"""Choose a reader for a path, and expand globs and folders into input lists.

The reader is chosen by suffix; a file without a known suffix by its first bytes (TIFF, PNG,
JPEG, BMP, NumPy and DICOM files can be recognised that way); a folder is a
Zarr store (it holds ``zarr.json``, ``.zarray`` or ``.zgroup``) or a DICOM series (it holds
DICOM files). URLs (``s3://...``) are Zarr stores.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any

from pipeline.errors import InputError
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.dicom import is_dicom_file, open_dicom
from pipeline.readers.nifti import open_nifti
from pipeline.readers.npy import open_npy
from pipeline.readers.raster import PNG_SIGNATURE, open_raster
from pipeline.readers.tiff import open_tiff
from pipeline.readers.zarrstore import open_zarr

#: Suffix -> format, longest suffixes first.
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".nii.gz", "nifti"),
    (".tiff", "tiff"),
    (".tif", "tiff"),
    (".btf", "tiff"),
    (".tf2", "tiff"),
    (".tf8", "tiff"),
    (".svs", "tiff"),
    (".ndpi", "tiff"),
    (".zarr", "zarr"),
    (".png", "raster"),
    (".jpeg", "raster"),
    (".jpg", "raster"),
    (".jpe", "raster"),
    (".bmp", "raster"),
    (".npy", "npy"),
    (".nii", "nifti"),
    (".dcm", "dicom"),
    (".dicom", "dicom"),
)
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def open_image(path: str, options: ReadOptions | None = None, **kwargs: Any) -> ImageSource:
    """Open an image's metadata and return a lazy :class:`ImageSource`.

    Parameters
    ----------
    path : str
        File or folder (Zarr store, DICOM series folder), or a Zarr URL.
    options : ReadOptions, optional
        Level, series, array path, size limit and format options; built from ``kwargs``
        (``level=1``, ``series=2``, ...) when not given.
    """
    options = options or ReadOptions(**kwargs)
    level, series, array_path = options.level, options.series, options.array_path
    path = os.fspath(path)
    if "://" in path:
        kind = "zarr"
    elif not os.path.exists(path):
        raise InputError(path, "no such file or directory")
    elif os.path.isdir(path):
        kind = folder_format(path)
        if kind is None:
            raise InputError(path, "the folder is neither a Zarr store nor a DICOM series")
    else:
        kind = suffix_format(path) or _sniff(path)
        if kind is None or kind == "zarr":
            raise InputError(path, "unsupported file format")
    if array_path is not None and kind != "zarr":
        raise InputError(path, "array_path applies to Zarr stores only")
    if level != 0 and kind not in ("tiff", "zarr"):
        raise InputError(path, f"pyramid level {level} out of range (the image has 1)")
    if series != 0 and kind not in ("tiff", "dicom"):
        raise InputError(path, f"series {series} out of range (the file has 1)")
    if kind == "tiff":
        return open_tiff(path, level=level, series=series, options=options)
    if kind == "zarr":
        return open_zarr(path, level=level, array_path=array_path, options=options)
    if kind == "dicom":
        return open_dicom(path, series=series, options=options)
    if kind == "nifti":
        return open_nifti(path, options=options)
    if kind == "raster":
        return open_raster(path, options=options)
    return open_npy(path, options=options)


def suffix_format(path: str) -> str | None:
    """The format a path's suffix names, or None."""
    lower = path.lower().rstrip("/")
    return next((kind for suffix, kind in SUFFIXES if lower.endswith(suffix)), None)


def folder_format(path: str) -> str | None:
    """``"zarr"`` or ``"dicom"`` for a folder that is itself one image, else None."""
    if any(os.path.exists(os.path.join(path, m)) for m in _ZARR_MARKERS):
        return "zarr"
    names = [n for n in sorted(os.listdir(path)) if not n.startswith(".")]
    files = [n for n in names if os.path.isfile(os.path.join(path, n))]
    if any(suffix_format(n) == "dicom" for n in files):
        return "dicom"
    unknown = (n for n in files if suffix_format(n) is None)
    if any(is_dicom_file(os.path.join(path, n)) for n in unknown):
        return "dicom"
    return None


def _sniff(path: str) -> str | None:
    """The format a file's first bytes reveal, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if head[:8] == PNG_SIGNATURE or head[:3] == b"\xff\xd8\xff" or head[:2] == b"BM":
        return "raster"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[128:132] == b"DICM":
        return "dicom"
    return None  # NIfTI needs its suffix: nibabel chooses the image class by it


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Expand globs and plain folders of images into a list of input paths.

    A glob expands to its sorted matches. A folder that is one image (Zarr store, DICOM series)
    stays one input; any other folder expands to the images directly inside it, sorted, by
    known suffix. URLs are kept as they are. Duplicates are dropped, first one kept.
    """
    out: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if "://" in item:
            matches = [item]
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(item, "the pattern matches no file")
        elif not os.path.exists(item):
            raise InputError(item, "no such file or directory")
        else:
            matches = [item]
        for match in matches:
            if "://" not in match and os.path.isdir(match):
                out.extend(_expand_folder(match))
            else:
                out.append(match)
    return list(dict.fromkeys(out))


def _expand_folder(path: str) -> list[str]:
    if folder_format(path) is not None:
        return [path]
    images = [
        os.path.join(path, name)
        for name in sorted(os.listdir(path))
        if not name.startswith(".") and suffix_format(name) is not None
    ]
    if not images:
        raise InputError(path, "the folder holds no image of a known format")
    return images
