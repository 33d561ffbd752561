"""Exceptions and warnings raised by kmseg.

Every error a user can cause derives from :class:`KmsegError`; the CLI prints its message on one
line and exits non-zero without a traceback.
"""

from __future__ import annotations

import re


def one_line(text: object) -> str:
    """``text`` on one line: each line break, with the blanks around it, becomes one space.

    Library messages quoted in kmseg's errors span lines at times (pydicom lists each decoder
    plugin that failed on a line of its own); kmseg's error is one line whatever it quotes.
    """
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text).strip())


class KmsegError(Exception):
    """Base class for errors caused by input, configuration or environment."""


class InputError(KmsegError):
    """An input file is missing, unreadable, corrupt or of an unsupported shape."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # errors raised in worker processes travel back pickled
        return (type(self), (self.path, self.problem))


class ConfigError(KmsegError):
    """A configuration value is invalid."""


class OutputError(KmsegError):
    """The output cannot be written (exists without overwrite, not writable, ...)."""


class KmsegWarning(UserWarning):
    """Warnings emitted by kmseg (turned into errors in the test-suite)."""
