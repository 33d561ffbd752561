"""Warnings from kmseg and from libraries: one clean line each, recorded per input.

:func:`capture` is a context manager placed around opening and processing the inputs. Inside
it every Python warning (kmseg's :class:`~pipeline.errors.KmsegWarning`, scikit-learn's
``ConvergenceWarning``, dask's ``PerformanceWarning``, ...) and every WARNING record of the
libraries that warn through :mod:`logging` (:data:`LIBRARY_LOGGERS`: tifffile, ...) is

* recorded as one line of text (:func:`recorded`; the plan writes those naming an input, and
  those naming none, into that input's metadata as ``"warnings"``);
* with ``echo=True`` (the CLI) logged once through the ``kmseg`` logger, which prints
  ``kmseg: warning: MESSAGE`` on stderr (no Python warning format, no source line);
* with ``forward=True`` (the Python API) passed on to the warning machinery that was active
  before (the user's filters and display, pytest's recorder), and library log records keep
  propagating as before.

The active filters still apply (so ``error`` filters, as in the test-suite, still raise).
Warnings raised in worker processes of a distributed cluster stay in the workers' logs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

#: Libraries that report problems through :mod:`logging` rather than :mod:`warnings`.
LIBRARY_LOGGERS = ("tifffile", "pydicom", "nibabel", "zarr", "numcodecs", "imagecodecs")

logger = logging.getLogger("kmseg")

_active: list[Capture] = []
_lock = threading.Lock()


def format_warning(message: object, category: type[Warning] | None = None) -> str:
    """One line for a warning: its text, prefixed by its class unless it is kmseg's own."""
    from pipeline.errors import KmsegWarning

    text = " ".join(str(message).split())
    if category is None or issubclass(category, KmsegWarning):
        return text
    return f"{category.__name__}: {text}"


class Capture:
    """The warnings seen inside one :func:`capture` context (see the module docstring)."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.lines: list[str] = []
        #: The warning display to pass warnings on to (``forward=True``), or None.
        self.forward: Any = None

    def add(self, line: str) -> None:
        with _lock:
            if line in self.lines:
                return
            self.lines.append(line)
        if self.echo:
            logger.warning(line)


class _RecordHandler(logging.Handler):
    def __init__(self, capture: Capture) -> None:
        super().__init__(logging.WARNING)
        self.capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.capture.add(f"{record.name}: {' '.join(record.getMessage().split())}")
        except Exception:  # pragma: no cover - never let a warning break the job
            self.handleError(record)


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"kmseg: {record.levelname.lower()}: {record.getMessage()}"


@contextlib.contextmanager
def capture(*, echo: bool = False, forward: bool = True) -> Iterator[Capture]:
    """Capture warnings while inputs are opened and processed.

    Parameters
    ----------
    echo : bool
        Log each distinct warning once through the ``kmseg`` logger as one line (a stderr
        handler printing ``kmseg: warning: ...`` is installed for the context when the logger
        has none). The CLI uses ``echo=True, forward=False``.
    forward : bool
        Also pass each warning on to the handler that was active before (the Python API).

    Yields
    ------
    Capture
        Its ``lines`` are the distinct warnings so far, in order.
    """
    record = Capture(echo)
    previous = warnings.showwarning
    record.forward = previous if forward else None

    def show(message, category, filename, lineno, file=None, line=None):
        record.add(format_warning(message, category))
        if forward:
            previous(message, category, filename, lineno, file, line)

    handler = _RecordHandler(record)
    libraries = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    propagate = [lib.propagate for lib in libraries]
    stream = None
    if echo and not logger.handlers:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(_LineFormatter())
        logger.addHandler(stream)
    kmseg_propagate = logger.propagate
    if stream is not None:
        logger.propagate = False
    with warnings.catch_warnings():
        warnings.showwarning = show
        for lib in libraries:
            lib.addHandler(handler)
            if not forward:
                lib.propagate = False
        _active.append(record)
        try:
            yield record
        finally:
            _active.remove(record)
            for lib, flag in zip(libraries, propagate, strict=True):
                lib.removeHandler(handler)
                lib.propagate = flag
            if stream is not None:
                logger.removeHandler(stream)
                logger.propagate = kmseg_propagate


def replay(lines: list[str]) -> None:
    """Record ``lines``, warnings captured in another process (a batch's worker processes), in
    the innermost active :func:`capture` as if raised here: each new one is logged (``echo``)
    and passed on (``forward``) once."""
    if not _active:
        return
    from pipeline.errors import KmsegWarning

    record = _active[-1]
    for line in lines:
        new = line not in record.lines
        record.add(line)
        if new and record.forward is not None:
            record.forward(line, KmsegWarning, __file__, 0)


def recorded() -> list[str]:
    """The warnings of the innermost active :func:`capture` (empty outside any)."""
    return list(_active[-1].lines) if _active else []


def for_input(lines: list[str], path: str, others: list[str]) -> list[str]:
    """The warnings that concern the input ``path``: those naming it, and those naming none of
    the job's inputs (``others``: every input's path)."""
    return [
        line for line in lines
        if path in line or not any(other in line for other in others)
    ]
