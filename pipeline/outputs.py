"""Output locations: naming per-input groups, refusing to clobber, creating stores.

Every decision about where kmseg may write is made here (and the lock in :mod:`pipeline.lock`):

- an output may never be, contain or lie inside an input, compared as real paths (symbolic
  links and ``..`` resolved; URLs normalised), with or without ``overwrite``;
- kmseg replaces only a store it wrote (root ``zarr.json`` with ``attributes.kmseg``) that
  holds nothing else; anything else at the output is refused, naming what is there;
- an output whose root ``kmseg`` attributes say ``"status": "incomplete"`` is the unfinished
  output of an earlier run (a killed client, say): it is replaced without ``overwrite``;
- group names derived from input names are sanitised and unique.

Outputs are local folders or fsspec URLs (``s3://bucket/out.zarr``, ``gs://...``); URLs are
checked and removed through fsspec, never with local file functions.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import posixpath
import re
import shutil
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any

import zarr

from pipeline.errors import OutputError
from pipeline.lock import current_holder, lock_path
from pipeline.paths import is_url
from pipeline.readers import READABLE_SUFFIXES

log = logging.getLogger("kmseg")

#: Names a group may not take: Zarr's own metadata files and folders.
_RESERVED = {"zarr.json"}
_MAX_NAME = 100


def output_name(path: str) -> str:
    """A group name for an input path: its file name without image suffixes, made safe.

    The name holds only ``A-Z a-z 0-9 . _ -`` (accented letters become their base letter, other
    characters ``_``), starts with a letter or digit (so never ``.``,
    ``..`` or a hidden name), is at most 100 characters, is never empty (``image``) and is never
    Zarr's own ``zarr.json``.
    """
    base = re.split(r"[/\\]", str(path).rstrip("/\\"))[-1]
    lower = base.lower()
    for suffix in READABLE_SUFFIXES:
        if lower.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    # Accented letters keep their base letter (Ösophagus -> Osophagus, not sophagus).
    base = "".join(c for c in unicodedata.normalize("NFKD", base) if not unicodedata.combining(c))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip("._-")[:_MAX_NAME] or "image"
    if name.lower() in _RESERVED:
        name = f"image_{name}"
    return name


def unique_names(paths: list[str]) -> list[str]:
    """Distinct group names for several inputs (``name``, ``name_2``, ...), stable in order.

    Names are distinct also ignoring case, as folders are on case-insensitive file systems.
    """
    taken: set[str] = set()
    out = []
    for path in paths:
        base = output_name(path)
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name.lower())
        out.append(name)
    return out


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
    meta = _root_document(path)
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    kmseg = attrs.get("kmseg") if isinstance(attrs, dict) else None
    status = kmseg.get("status") if isinstance(kmseg, dict) else None
    return status if isinstance(status, str) else None


def _root_document(path: str) -> dict[str, Any] | None:
    """The parsed root ``zarr.json`` of a store, or None."""
    try:
        if is_url(path):
            fs, root = _url_fs(path)
            raw = fs.cat_file(f"{root.rstrip('/')}/zarr.json")
        else:
            with open(os.path.join(path, "zarr.json"), "rb") as fh:
                raw = fh.read()
        doc = json.loads(raw)
    except (OSError, ValueError, OutputError):
        return None
    return doc if isinstance(doc, dict) else None


def _exists(path: str) -> bool:
    """True if a local path exists, or if any object lies under a URL.

    Object stores that keep empty "directories" (SeaweedFS, MinIO) would otherwise make a
    deleted output look present.
    """
    if not is_url(path):
        return os.path.lexists(path)
    if is_zarr_store(path):
        return True
    fs, root = _url_fs(path)
    try:
        return bool(fs.find(root))
    except FileNotFoundError:
        return False


# --- inputs and outputs never overlap --------------------------------------------------------

#: Protocol spellings fsspec treats as one.
_PROTOCOL_ALIASES = {"s3a": "s3", "gcs": "gs", "abfss": "abfs", "az": "abfs"}


def real_location(path: str) -> tuple[str, str]:
    """Where ``path`` really is: ``(protocol, normalised path)``.

    Local paths (and ``file://`` URLs) are resolved with :func:`os.path.realpath` (symbolic
    links, ``..``, ``~``); URLs are normalised (``..``, ``.``, repeated and trailing ``/``,
    protocol aliases such as ``s3a``).
    """
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if not is_url(text):
        return "file", os.path.realpath(os.path.expanduser(text))
    protocol, _, rest = text.partition("://")
    protocol = protocol.lower().split("::")[-1]
    return _PROTOCOL_ALIASES.get(protocol, protocol), posixpath.normpath("/" + rest)


def overlap(output: str, source: str) -> str | None:
    """How ``output`` overlaps ``source`` (``"is"``, ``"contains"``, ``"lies inside"``) or None."""
    (p_out, out), (p_in, inp) = real_location(output), real_location(source)
    if p_out != p_in:
        return None
    if p_out == "file" and os.path.exists(inp):
        # Compared by identity too: case-insensitive file systems, bind mounts.
        out_chain, in_chain = _identities(out), _identities(inp)
        if in_chain and in_chain[0] in out_chain:
            # The input is the output's nearest existing folder or one of its parents.
            if os.path.exists(out) and out_chain[0] == in_chain[0]:
                return "is"
            return "lies inside"
        if os.path.exists(out) and out_chain and out_chain[0] in in_chain[1:]:
            return "contains"
    sep = "/" if p_out != "file" else os.sep
    if out == inp:
        return "is"
    if inp.startswith(out.rstrip(sep) + sep):
        return "contains"
    if out.startswith(inp.rstrip(sep) + sep):
        return "lies inside"
    return None


def _existing(path: str) -> str:
    """The longest existing ancestor of a real local path (the path itself if it exists)."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _identities(path: str) -> list[tuple[int, int]]:
    """``(device, inode)`` of the longest existing ancestor of ``path`` and of its parents."""
    chain = []
    current = _existing(path)
    while True:
        try:
            info = os.stat(current)
        except OSError:
            break
        chain.append((info.st_dev, info.st_ino))
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return chain


def input_root(item: str) -> str:
    """What an input as the user gave it covers: a glob's folder, else the path itself.

    ``in/folder/*.png`` covers ``in/folder`` (the path up to its first wildcard component): an
    output written there could be taken for an input on a rerun. A path that exists is itself,
    even when its name holds wildcard characters.
    """
    text = str(item)
    if is_url(text) or os.path.lexists(text) or not glob.has_magic(text):
        return text
    parts = text.split(os.sep)
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or "."


def _plain_glob(item: str) -> bool:
    """A local glob without ``**`` (a recursive glob counts as its whole folder)."""
    return (
        not is_url(item) and not os.path.lexists(item) and glob.has_magic(item)
        and "**" not in item
    )


def glob_takes(pattern: str, path: str) -> bool:
    """Whether the glob ``pattern`` matches ``path`` as written or as its real path (``*``
    never crosses a folder separator, as in :func:`glob.glob`)."""
    full = os.path.abspath(pattern)
    return any(
        PurePath(candidate).match(full)
        for candidate in {os.path.abspath(path), os.path.realpath(path)}
    )


def check_disjoint(output: str, inputs: Sequence[str]) -> None:
    """Refuse an output that is, contains or lies inside any input (after resolving links).

    ``inputs`` may be the expanded files and the inputs as given: folders, and globs (compared
    through :func:`input_root`).

    Raises
    ------
    OutputError
        Naming the output and the input.
    """
    for source in inputs:
        if isinstance(source, str) and _plain_glob(source):
            if glob_takes(source, output):
                raise OutputError(f"{output}: the input pattern {source} matches the output, "
                                  "which a rerun would read as an input; choose another output")
            continue
        root = input_root(source) if isinstance(source, str) else source
        if not is_url(str(root)) and not os.path.lexists(str(root)):
            continue  # in-memory arrays and names of no file: nothing on disk to protect
        relation = overlap(output, root)
        if relation:
            where = real_location(output)[1]
            raise OutputError(f"{output}: the output {relation} the input {source} "
                              f"(real path {where}); choose an output outside every input")


# --- what an existing output holds -----------------------------------------------------------


def _expected_children(doc: dict[str, Any]) -> set[str] | None:
    """Names kmseg writes at the root of the store described by ``doc`` (None: unknown)."""
    attrs = doc.get("attributes") or {}
    kmseg = attrs.get("kmseg") or {}
    if isinstance(kmseg.get("outputs"), list):
        return {str(n) for n in kmseg["outputs"]}
    try:
        datasets = attrs["ome"]["multiscales"][0]["datasets"]
        return {str(d["path"]) for d in datasets} | {"labels"}
    except (KeyError, IndexError, TypeError):
        return None


class _Listing:
    """Lists folders of a local store or an fsspec URL alike."""

    def __init__(self, path: str) -> None:
        self.url = is_url(path)
        if self.url:
            self.fs, self.root = _url_fs(path)
            self.root = self.root.rstrip("/")
        else:
            self.root = os.path.realpath(path)

    def entries(self, rel: str) -> list[tuple[str, bool]]:
        """``(name, is_folder)`` in ``rel``; symbolic links count as files (never followed)."""
        if self.url:
            folder = f"{self.root}/{rel}".rstrip("/")
            items = self.fs.ls(folder, detail=True)
            return sorted((posixpath.basename(i["name"].rstrip("/")), i["type"] == "directory")
                          for i in items if i["name"].rstrip("/") != folder)
        folder = os.path.join(self.root, rel)
        return sorted((e.name, e.is_dir(follow_symlinks=False)) for e in os.scandir(folder))

    def node_type(self, rel: str) -> str | None:
        try:
            if self.url:
                raw = self.fs.cat_file(f"{self.root}/{rel}/zarr.json")
            else:
                path = os.path.join(self.root, rel, "zarr.json")
                if os.path.islink(path):
                    return None
                with open(path, "rb") as fh:
                    raw = fh.read()
            kind = json.loads(raw).get("node_type")
        except (OSError, ValueError, AttributeError):
            return None
        return kind if kind in ("group", "array") else None


#: Zarr's local store writes ``NAME.<uuid hex>.partial`` and renames it into place; a process
#: killed in between leaves it behind.
_ZARR_PARTIAL = re.compile(r"^[^/]+\.[0-9a-f]{32}\.partial$")


def foreign_entries(path: str) -> list[str]:
    """Entries of an existing output that kmseg did not write, relative to it (folders end in /).

    kmseg writes Zarr v3 nodes only: in a group, ``zarr.json`` and child nodes; in an array,
    ``zarr.json`` and its chunks ``c/``. At the root of a kmseg store the children must be the
    ones its metadata names. Anything else (a user's file or folder, a symbolic link, another
    Zarr format) is foreign. Chunk folders are not walked.
    """
    listing = _Listing(path)
    doc = _root_document(path)
    kmseg = (doc or {}).get("attributes", {}).get("kmseg") if doc else None
    if not isinstance(kmseg, dict):
        return [f"{n}/" if d else n for n, d in listing.entries("")]
    expected = _expected_children(doc or {})
    foreign: list[str] = []

    def walk(rel: str, kind: str, top: bool) -> None:
        for name, is_dir in listing.entries(rel):
            child = f"{rel}{name}"
            if not is_dir and (name == "zarr.json" or _ZARR_PARTIAL.match(name)):
                continue  # metadata, or zarr's own temporary file of a write that was killed
            if kind == "array":
                if not (name == "c" and is_dir):
                    foreign.append(f"{child}/" if is_dir else child)
                continue
            node = listing.node_type(child) if is_dir else None
            named = not (top and expected is not None and name not in expected)
            if node is None and is_dir and named:
                # Zarr made the folder of a node, and maybe nodes inside it (a window's nodes
                # are created concurrently); the process died before the node's zarr.json.
                # Such a folder is kmseg's if all it holds is.
                walk(f"{child}/", "group", False)
                continue
            if node is None or not named:
                foreign.append(f"{child}/" if is_dir else child)
            else:
                walk(f"{child}/", node, False)

    walk("", "group", True)
    return foreign


def _listed(names: list[str], what: str = " kmseg did not write") -> str:
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} {'entry' if len(names) == 1 else 'entries'}{what}: {shown}"


def _check_existing(path: str, overwrite: bool) -> bool:
    """Check what is at an existing ``path``; True if it must be cleared before writing.

    Raises
    ------
    OutputError
        If it is a file, holds anything kmseg did not write, or is a finished kmseg output
        and ``overwrite`` is False.
    """
    if not is_url(path) and os.path.islink(str(path).rstrip("/") or "/"):
        # Clearing and re-creating through a link would act on its target, or fail half-way.
        raise OutputError(f"{path}: the output is a symbolic link (to {os.path.realpath(path)}); "
                          "give the real path as the output")
    if not is_url(path) and not os.path.isdir(path):
        raise OutputError(f"{path}: already exists and is not a folder; choose another output")
    listing = _Listing(path)
    if not listing.entries(""):
        return False  # an empty folder may be used
    status = output_status(path)
    if status is None:
        if is_zarr_store(path):
            raise OutputError(f"{path}: already exists and is a Zarr store kmseg did not write "
                              f"({_listed(foreign_entries(path), '')}); kmseg replaces only "
                              "its own outputs")
        raise OutputError(f"{path}: already exists, is not a Zarr store and holds "
                          f"{_listed(foreign_entries(path))}; choose another output")
    foreign = foreign_entries(path)
    if foreign:
        raise OutputError(f"{path}: a kmseg output that holds {_listed(foreign)}; "
                          "refusing to replace it")
    if status != "incomplete" and not overwrite:
        raise OutputError(f"{path}: output already exists; pass --overwrite (overwrite=True in "
                          "Python) to replace it")
    return True


def check_output(path: str, overwrite: bool, inputs: list[str], given: Sequence[str] = ()) -> None:
    """Fail early if ``path`` may not be written.

    ``inputs`` are the expanded input files, ``given`` the inputs as the user gave them (folders,
    globs): the output may lie inside neither.

    Refused: HTTP(S) URLs; an output that is, contains or lies inside an input (real paths);
    an output another live kmseg process is writing (its lock); anything at ``path`` that kmseg
    did not write; a finished kmseg output without ``overwrite``. An unfinished kmseg output
    (status ``incomplete``) may always be replaced, and an empty folder used.

    Raises
    ------
    OutputError
        With one line naming the output and the reason.
    """
    if str(path).startswith(("http://", "https://")):
        raise OutputError(f"{path}: HTTP(S) URLs are read-only; write the output to a folder "
                          "or an object store URL (s3://, gs://)")
    check_disjoint(path, [*inputs, *given])
    check_disjoint(lock_path(path), [*inputs, *given])
    holder = current_holder(path)
    if holder is not None:
        raise OutputError(f"{path}: the output is being written by {holder.describe()} "
                          f"(lock {lock_path(path)})")
    if not _exists(path):
        if not is_url(path):
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                problem = "is a file, not a folder" if os.path.exists(parent) else "does not exist"
                raise OutputError(f"{path}: the folder {parent} {problem}")
        return
    _check_existing(path, overwrite)


#: In the head of the HTML performance report Dask writes (bokeh's ``output_file`` title).
_DASK_REPORT_TITLE = "<title>Dask Performance Report</title>"


def check_report_path(report: str, output: str, given: Sequence[str]) -> None:
    """Refuse a ``performance_report`` file that would replace or land in something not kmseg's.

    Refused: an existing path that is not a Dask performance report (a file
    whose head holds Dask's title, as :func:`pipeline.report.write_report` recognises its own
    pages); a path that is, contains or lies inside an input as given (folders, glob folders)
    or the output; the output's lock file.

    Raises
    ------
    OutputError
        Naming the report path and the reason.
    """
    if is_url(str(report)):
        return
    for what, source in [*(("input", g) for g in given), ("output", output)]:
        root = input_root(source)
        # The output is compared even before it exists; an input that is no file is skipped.
        present = what == "output" or is_url(root) or os.path.lexists(root)
        relation = present and overlap(report, root)
        if relation:
            raise OutputError(f"{report}: the performance report {relation} the {what} "
                              f"{source}; choose another file")
    if real_location(report) == real_location(lock_path(output)):
        raise OutputError(f"{report}: the performance report is the output's lock file; "
                          "choose another file")
    if os.path.lexists(report) and not _is_dask_report(report):
        raise OutputError(f"{report}: exists and is not a Dask performance report; refusing to "
                          "replace it with the performance report")


def _is_dask_report(path: str) -> bool:
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    return _DASK_REPORT_TITLE in head


def _clear(path: str) -> None:
    """Delete everything in an output checked by :func:`_check_existing` (a folder stays)."""
    if is_url(path):
        fs, root = _url_fs(path)
        fs.rm(root, recursive=True)
        fs.invalidate_cache()
        return
    folder = os.path.realpath(path)
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def create_root(path: str, overwrite: bool) -> zarr.Group:
    """Create (or, with ``overwrite``, re-create) the output group at ``path``.

    What is there is checked again (it may have changed since planning); an unfinished output
    of an earlier kmseg run is replaced even without ``overwrite``.

    Raises
    ------
    OutputError
        As :func:`check_output`, or if the group cannot be created.
    """
    cleared = False
    if _exists(path) and _check_existing(path, overwrite):
        if output_status(path) == "incomplete":
            log.warning("kmseg: replacing the unfinished output %s of an earlier run", path)
        _clear(path)
        cleared = True
    # Once our own removal is done, "w" is as safe as "w-" and clears what "w-" would take for
    # data: empty "directories" some object stores keep after a delete, or a chunk written
    # meanwhile by a task of the killed run that was still going on a remote worker.
    mode = "w" if cleared else "w-"
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except (zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError) as exc:
        raise OutputError(f"{path}: cannot create the output ({exc})") from None
    except OSError as exc:
        problem = write_problem(exc, path) or exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"{path}: cannot create the output: {problem}") from None


# --- errors while writing --------------------------------------------------------------------

_WRITE_PROBLEMS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def write_problem(exc: BaseException, output: str) -> str | None:
    """What an error raised while writing ``output`` means for the user, or None if unknown.

    A full disk, an exceeded quota or a read-only file system can only come from writing; a
    permission error is the output's only when the file it names lies in the output (or is its
    lock), since reading an input can also be refused.
    """
    if not isinstance(exc, OSError) or exc.errno not in _WRITE_PROBLEMS:
        return None
    if exc.errno in (errno.EACCES, errno.EPERM):
        if exc.filename is None or is_url(output):
            return None
        name = real_location(str(exc.filename))
        if not (overlap(output, str(exc.filename)) in ("is", "contains")
                or name == real_location(lock_path(output))
                or name == real_location(os.path.dirname(os.path.abspath(output)) or "/")):
            return None
    return _WRITE_PROBLEMS[exc.errno]


@contextlib.contextmanager
def writing(output: str) -> Iterator[None]:
    """Turn write failures of ``output`` (full disk, read-only, denied) into one-line errors.

    Raises
    ------
    OutputError
        Naming the output and the problem; the output stays marked incomplete.
    """
    try:
        yield
    except OSError as exc:
        problem = write_problem(exc, output)
        if problem is None:
            raise
        raise OutputError(f"{output}: cannot write the output: {problem}; it is left marked "
                          "incomplete (rerun the same command once this is fixed)") from None
