"""One log line when a job starts compiling kmseg's numba kernels (a fresh install's first run).

Without it, the first job after an install sits for seconds with nothing to show why. The line
comes from numba's ``numba:compile`` event (its Event API), which fires only when a kernel is
compiled, never when it is loaded from the cache; it is logged once per process.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("kmseg")

MESSAGE = ("compiling kmseg's kernels for their first use (once per install, several seconds; "
           "`kmseg compile` does it ahead of time)")

_state = {"installed": False, "told": False}


def install() -> None:
    """Listen for the first compilation of a kmseg kernel in this process (idempotent)."""
    if _state["installed"]:
        return
    from numba.core import event

    class _FirstCompile(event.Listener):
        def on_start(self, ev: Any) -> None:
            if not _state["told"] and ev.data["dispatcher"].py_func.__module__.startswith(
                    "pipeline."):
                _state["told"] = True
                log.info("%s", MESSAGE)

        def on_end(self, ev: Any) -> None:
            pass

    event.register("numba:compile", _FirstCompile())
    _state["installed"] = True


def silence() -> None:
    """No line in this process (``kmseg compile`` says what it compiles itself)."""
    _state["told"] = True
