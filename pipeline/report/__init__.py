"""``kmseg report``: one self-contained HTML page of an output store.

:func:`write_report` loads the output's metadata and small previews (:mod:`.data`), draws the
pictures (:mod:`.render`) and plots (:mod:`.plots`) and writes the page (:mod:`.page`).
"""

from __future__ import annotations

import os
import tempfile

from pipeline.errors import OutputError
from pipeline.outputs import is_url

__all__ = ["build_report", "default_report_path", "write_report"]


def default_report_path(store: str) -> str:
    """``NAME.report.html`` beside ``NAME.zarr`` (in the working folder for a URL store)."""
    base = os.path.basename(str(store).rstrip("/")) or "output"
    for suffix in (".ome.zarr", ".zarr"):
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    folder = "" if is_url(store) else os.path.dirname(os.path.abspath(str(store).rstrip("/")))
    return os.path.join(folder, base + ".report.html")


def build_report(store: str) -> str:
    """The HTML page of an output store, as text.

    Raises
    ------
    InputError
        If ``store`` is not a complete kmseg output.
    """
    # Figures are drawn on Agg canvases directly: pyplot and its backend are never touched.
    from pipeline.report.data import load_output
    from pipeline.report.page import build_page

    root_meta, images = load_output(store)
    return build_page(store, root_meta, images)


def write_report(store: str, html_path: str) -> str:
    """Write the report of an output store to ``html_path`` and return that path.

    The page is self-contained (pictures embedded as data URIs). An existing file is replaced
    only if it is a kmseg report; the page is written to a temporary file first and moved into
    place, so an interrupted run leaves no half page.

    Parameters
    ----------
    store : str
        A kmseg output (``OUT.zarr``), local or a URL.
    html_path : str
        Where to write the page.

    Raises
    ------
    InputError
        If ``store`` is not a complete kmseg output.
    OutputError
        If ``html_path`` is something other than a kmseg report, lies inside a Zarr store, or
        cannot be written.
    """
    from pipeline.report.page import GENERATOR

    folder = os.path.dirname(os.path.abspath(html_path))
    if not os.path.isdir(folder):
        raise OutputError(f"{html_path}: the folder {folder} does not exist")
    holder = _zarr_store_around(folder)
    if holder is not None:
        # The page would be a stray file among Zarr nodes: a later --overwrite of that output
        # refuses the store as holding an entry kmseg did not write.
        raise OutputError(f"{html_path}: lies inside the Zarr store {holder}; write the report "
                          f"beside it (default {default_report_path(holder)})")
    exists = os.path.lexists(html_path)
    if exists and not (os.path.isfile(html_path) and _is_report(html_path, GENERATOR)):
        raise OutputError(
            f"{html_path}: exists and is not a kmseg report; refusing to replace it"
        )
    page = build_report(store)
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(prefix=".kmseg-report-", suffix=".html", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, html_path)
    except OSError as exc:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
        raise OutputError(
            f"{html_path}: cannot write the report ({exc.strerror or exc})"
        ) from None
    return html_path


def _zarr_store_around(folder: str) -> str | None:
    """The nearest Zarr store (a folder with Zarr metadata) that is ``folder`` or holds it."""
    from pipeline.outputs import is_zarr_store

    current = os.path.realpath(folder)
    while True:
        if is_zarr_store(current):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _is_report(path: str, generator: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return f'<meta name="generator" content="{generator}' in head
