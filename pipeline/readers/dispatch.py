"""Choose a reader for a path, and expand globs and folders into input lists.

Formats are a registry (:data:`READERS`) of :class:`ReaderEntry` objects, each saying whether it
can open a path (as xarray's backend entrypoints do with ``guess_can_open``): by suffix, by the
file's first bytes (TIFF, PNG, JPEG, BMP, NumPy and DICOM files can be recognised that way) or,
for a folder, by its contents (a Zarr store holds ``zarr.json``, ``.zarray`` or ``.zgroup``; a
DICOM series holds DICOM files). URLs (``s3://...``) are Zarr stores.

Anything that is neither a regular file nor a folder (a FIFO, socket or device) is refused
before it is opened: reading a FIFO would block for ever.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InputError
from pipeline.paths import is_url
from pipeline.readers.base import ImageSource, ReadOptions
from pipeline.readers.common import is_dicom_file
from pipeline.readers.nifti import open_nifti
from pipeline.readers.npy import open_npy
from pipeline.readers.raster import PNG_SIGNATURE, open_raster
from pipeline.readers.tiff import open_tiff
from pipeline.readers.zarrstore import open_zarr

_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
#: Bytes read from a file without a known suffix to recognise its format.
SNIFF_BYTES = 132


@dataclass(frozen=True)
class ReaderEntry:
    """One input format: how to recognise it and how to open it.

    Attributes
    ----------
    name : str
        Format name (``"tiff"``, ``"raster"``, ...), as :func:`suffix_format` returns it.
    suffixes : tuple of str
        Lower-case file or folder name endings, compound ones included (``".ome.tif"``).
    open : callable
        ``open(path, options) -> ImageSource``.
    magic : callable or None
        ``magic(first_bytes) -> bool``: recognises a file without a known suffix.
    folder : callable or None
        ``folder(path) -> bool``: recognises a folder that is one image.
    levels, series, array_path : bool
        Whether the format has pyramid levels, several series, arrays inside a group.
    """

    name: str
    suffixes: tuple[str, ...]
    open: Callable[[str, ReadOptions], ImageSource]
    magic: Callable[[bytes], bool] | None = None
    folder: Callable[[str], bool] | None = None
    levels: bool = False
    series: bool = False
    array_path: bool = False

    def guess_can_open(self, path: str) -> bool:
        """True if the path's name ends with one of this format's suffixes."""
        lower = os.fspath(path).lower().rstrip("/")
        return lower.endswith(self.suffixes)


def _is_zarr_folder(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, m)) for m in _ZARR_MARKERS)


def _open_dicom(path: str, options: ReadOptions) -> ImageSource:
    from pipeline.readers.dicom import open_dicom  # imports pydicom, only for DICOM inputs

    return open_dicom(path, series=options.series, options=options)


def _is_dicom_folder(path: str) -> bool:
    names = [n for n in sorted(os.listdir(path)) if not n.startswith(".")]
    files = [n for n in names if os.path.isfile(os.path.join(path, n))]
    if any(DICOM.guess_can_open(n) for n in files):
        return True
    unknown = (n for n in files if suffix_format(n) is None)
    return any(is_dicom_file(os.path.join(path, n)) for n in unknown)


#: What a file's first bytes say it holds: (format, suffix to give it, test of the first
#: bytes). The readers recognise files by them, and a misnamed file's error names what it holds.
SIGNATURES: tuple[tuple[str, str, Callable[[bytes], bool]], ...] = (
    ("TIFF", ".tif", lambda head: head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")),
    ("PNG", ".png", lambda head: head[:8] == PNG_SIGNATURE),
    ("JPEG", ".jpg", lambda head: head[:3] == b"\xff\xd8\xff"),
    ("BMP", ".bmp", lambda head: head[:2] == b"BM"),
    ("NumPy", ".npy", lambda head: head[:6] == b"\x93NUMPY"),
    ("DICOM", ".dcm", lambda head: head[128:132] == b"DICM"),
    ("gzip-compressed", ".nii.gz (if NIfTI)", lambda head: head[:2] == b"\x1f\x8b"),
)


def _holds(*formats: str) -> Callable[[bytes], bool]:
    """Whether a file's first bytes are those of one of ``formats`` (names in SIGNATURES)."""
    tests = [test for name, _, test in SIGNATURES if name in formats]
    return lambda head: any(test(head) for test in tests)


TIFF = ReaderEntry(
    "tiff",
    (".ome.tiff", ".ome.tif", ".ome.btf", ".tiff", ".tif", ".btf", ".tf2", ".tf8", ".svs",
     ".ndpi"),
    lambda path, o: open_tiff(path, level=o.level, series=o.series, options=o),
    magic=_holds("TIFF"),
    levels=True,
    series=True,
)
ZARR = ReaderEntry(
    "zarr",
    (".ome.zarr", ".zarr"),
    lambda path, o: open_zarr(path, level=o.level, array_path=o.array_path, options=o),
    folder=_is_zarr_folder,
    levels=True,
    array_path=True,
)
RASTER = ReaderEntry(
    "raster",
    (".png", ".jpeg", ".jpg", ".jpe", ".bmp"),
    lambda path, o: open_raster(path, options=o),
    magic=_holds("PNG", "JPEG", "BMP"),
)
NPY = ReaderEntry(
    "npy", (".npy",), lambda path, o: open_npy(path, options=o),
    magic=_holds("NumPy"),
)
# NIfTI needs its suffix: nibabel chooses the image class by it.
NIFTI = ReaderEntry("nifti", (".nii.gz", ".nii"), lambda path, o: open_nifti(path, options=o))
DICOM = ReaderEntry(
    "dicom",
    (".dcm", ".dicom"),
    lambda path, o: _open_dicom(path, o),
    magic=_holds("DICOM"),
    folder=_is_dicom_folder,
    series=True,
)

#: Every format kmseg reads, in the order they are asked (Zarr folders before DICOM folders).
READERS: tuple[ReaderEntry, ...] = (TIFF, ZARR, RASTER, NPY, NIFTI, DICOM)

#: Suffix -> format, longest suffixes first.
SUFFIXES: tuple[tuple[str, str], ...] = tuple(
    sorted(((s, e.name) for e in READERS for s in e.suffixes), key=lambda p: -len(p[0]))
)
#: Every readable suffix, longest first (compound ones such as ``.ome.tif`` included): the one
#: list for code that recognises or strips image suffixes.
READABLE_SUFFIXES: tuple[str, ...] = tuple(s for s, _ in SUFFIXES)
_BY_NAME = {e.name: e for e in READERS}


def open_image(path: str, options: ReadOptions | None = None, **kwargs: Any) -> ImageSource:
    """Open an image's metadata and return a lazy :class:`ImageSource`.

    Parameters
    ----------
    path : str
        File or folder (Zarr store, DICOM series folder), or a Zarr URL.
    options : ReadOptions, optional
        Level, series, array path, size limit and format options; built from ``kwargs``
        (``level=1``, ``series=2``, ...) when not given.

    Raises
    ------
    InputError
        For a missing path, a FIFO, socket or device, an unknown format, an option the format
        does not have, or anything its reader refuses.
    """
    options = options or ReadOptions(**kwargs)
    path = os.fspath(path)
    entry = reader_for(path)
    if options.array_path is not None and not entry.array_path:
        raise InputError(path, "array_path applies to Zarr stores only")
    if options.level != 0 and not entry.levels:
        raise InputError(path, f"pyramid level {options.level} out of range (the image has 1)")
    if options.series != 0 and not entry.series:
        raise InputError(path, f"series {options.series} out of range (the file has 1)")
    try:
        return entry.open(path, options)
    except InputError as exc:
        found = _other_content(path, entry)
        if found is None or exc.path != path:
            raise
        name, suffix = found
        raise InputError(path, f"{exc.problem}; the file holds {name} data: rename it to end "
                               f"in {suffix}") from None


def _other_content(path: str, entry: ReaderEntry) -> tuple[str, str] | None:
    """``(format, suffix)`` of what a misnamed file holds (``("JPEG", ".jpg")`` for JPEG data
    named ``.tif``), or None when its first bytes name no other format than its suffix."""
    if is_url(path) or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    if entry.magic is not None and entry.magic(head):
        return None
    return next(((name, suffix) for name, suffix, test in SIGNATURES if test(head)), None)


def reader_for(path: str) -> ReaderEntry:
    """The registry entry that opens a path: by URL, folder contents, suffix or first bytes.

    Raises
    ------
    InputError
        If the path is missing, not a regular file or folder, or of no known format.
    """
    if is_url(path):
        return ZARR
    mode = check_file_kind(path)
    if stat.S_ISDIR(mode):
        entry = next((e for e in READERS if e.folder is not None and e.folder(path)), None)
        if entry is None:
            raise InputError(path, "the folder is neither a Zarr store nor a DICOM series")
        return entry
    entry = next((e for e in READERS if e.guess_can_open(path)), None) or _sniff(path)
    if entry is None or entry is ZARR:
        raise InputError(path, "unsupported file format")
    return entry


def check_file_kind(path: str) -> int:
    """``st_mode`` of a path that is a regular file or a folder (symbolic links followed).

    Raises
    ------
    InputError
        If it does not exist or is a FIFO, socket, device or other special file; nothing is
        opened.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(path, "no such file or directory") from None
    except OSError as exc:
        raise InputError(path, f"cannot access ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return mode
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    raise InputError(path, f"{kind}, not a regular file or folder: refused without reading it")


def suffix_format(path: str) -> str | None:
    """The format a path's suffix names, or None."""
    return next((e.name for e in READERS if e.guess_can_open(path)), None)


def folder_format(path: str) -> str | None:
    """``"zarr"`` or ``"dicom"`` for a folder that is itself one image, else None."""
    return next((e.name for e in READERS if e.folder is not None and e.folder(path)), None)


def _sniff(path: str) -> ReaderEntry | None:
    """The format a file's first bytes reveal, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return next((e for e in READERS if e.magic is not None and e.magic(head)), None)


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Expand globs and plain folders of images into a list of input paths.

    A glob expands to its sorted matches. A folder that is one image (Zarr store, DICOM series)
    stays one input; any other folder expands to the images directly inside it, sorted: files
    of a known suffix and sub-folders that are one image (a Zarr store, a DICOM series, such as
    one folder per patient). A DICOM series folder that also holds images of other formats
    expands to the series (the folder) followed by those images, so that none is left out
    unseen; a folder of DICOM files that are each their own series (radiographs, mammograms)
    expands to each file. URLs are kept as they are. Duplicates (also one file under several
    spellings or through a symbolic link) are dropped, the first one kept.
    """
    out: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if is_url(item):
            matches = [item]
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(item, "the pattern matches no file")
        else:
            check_file_kind(item)
            matches = [item]
        for match in matches:
            if not is_url(match) and stat.S_ISDIR(check_file_kind(match)):
                out.extend(_expand_folder(match))
            else:
                out.append(match)
    return unique_inputs(out)


def unique_inputs(paths: Sequence[str]) -> list[str]:
    """``paths`` without repeats, the first spelling kept: one file under several spellings
    (``a.png``, ``./a.png``, ``/abs/a.png``, a symbolic link to it) is one input; URLs are
    compared as given."""
    first: dict[str, str] = {}
    for path in paths:
        first.setdefault(path if is_url(path) else os.path.realpath(path), path)
    return list(first.values())


def _expand_folder(path: str) -> list[str]:
    kind = folder_format(path)
    if kind == "zarr":
        return [path]
    images = [
        full
        for name in sorted(os.listdir(path))
        if not name.startswith(".")
        and _is_other_image(full := os.path.join(path, name), name, in_series=kind == "dicom")
    ]
    for image in images:
        check_file_kind(image)
    if kind == "dicom":
        from pipeline.readers.dicom import single_file_series  # imports pydicom

        return [*(single_file_series(path) or [path]), *images]
    if not images:
        raise InputError(path, "the folder holds no image of a known format")
    return images


def _is_other_image(full: str, name: str, *, in_series: bool) -> bool:
    """Whether a folder entry is an input of its own: a file of a known suffix (other than
    DICOM when the folder is a DICOM series, whose files are the folder's one image), or a
    sub-folder that is one image (a Zarr store or DICOM series)."""
    fmt = suffix_format(name)
    if fmt is not None:
        return not (in_series and fmt == "dicom")
    return os.path.isdir(full) and folder_format(full) is not None
