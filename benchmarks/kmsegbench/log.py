"""Progress messages of the benchmark (stderr, timestamped); the report goes to stdout."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
