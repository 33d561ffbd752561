"""SIGTERM as an exception, so that ``finally`` clauses run (locks, temporary folders).

Python's default for SIGTERM (``kill``, ``docker stop``, a batch system's time limit) ends the
process at once: no ``finally`` clause runs. Inside :func:`raising`, SIGTERM raises an
exception in the main thread instead, where Python runs signal handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def raising(exception: Callable[[int], BaseException]) -> Iterator[None]:
    """Inside the block, SIGTERM raises ``exception(signum)`` in the main thread.

    Changed only when called in the main thread and only where SIGTERM has its default action
    (a program's own handler is left alone); the default is restored on leaving.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise exception(signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
