#!/usr/bin/env python
"""Which numba kernels one kmseg command compiles, and for how long (issue 9, first run).

Runs ``kmseg ARGS`` in this process with ``NUMBA_CACHE_DIR`` set to a new empty folder (so every
kernel compiles, as on the first run after an install; the package's own cache is not touched)
and times each compilation through numba's ``numba:compile`` events. Prints, per kmseg kernel
compiled from Python (the roots), the seconds it took including the kernels and library
functions compiled inside it, the tree of those nested compilations, and the type signatures
each kernel was compiled for. ``--warm DIR`` reuses a cache folder (run twice: the second run
shows what a warm cache still compiles).

Example::

    python benchmarks/numba_compile_times.py -- segment astronaut.png -k 8 -o /tmp/a.zarr -q
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Compile:
    """One compilation: dispatcher name, argument types, seconds, nested compilations."""

    name: str
    args: str
    seconds: float = 0.0
    children: list[Compile] = field(default_factory=list)


def install_listener() -> list[Compile]:
    """Record every numba compilation from now on; returns the list of root compilations."""
    from numba.core import event

    roots: list[Compile] = []
    local = threading.local()

    class Listener(event.Listener):
        def on_start(self, ev):
            d = ev.data["dispatcher"]
            name = f"{d.py_func.__module__}.{d.py_func.__qualname__}"
            stack = getattr(local, "stack", None)
            if stack is None:
                stack = local.stack = []
            stack.append((time.perf_counter(), Compile(name, str(ev.data["args"]))))

        def on_end(self, ev):
            start, node = local.stack.pop()
            node.seconds = time.perf_counter() - start
            (local.stack[-1][1].children if local.stack else roots).append(node)

    event.register("numba:compile", Listener())
    return roots


def show(node: Compile, depth: int, min_seconds: float) -> None:
    if node.seconds < min_seconds:
        return
    print(f"{'  ' * depth}{node.seconds:6.2f}  {node.name}")
    for child in node.children:
        show(child, depth + 1, min_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm", help="numba cache folder to use and keep (default: a new one)")
    parser.add_argument("--min", type=float, default=0.05,
                        help="hide nested compilations shorter than this (s, default 0.05)")
    parser.add_argument("kmseg_args", nargs=argparse.REMAINDER, help="-- then kmseg's arguments")
    args = parser.parse_args(argv)
    kmseg_args = args.kmseg_args[1:] if args.kmseg_args[:1] == ["--"] else args.kmseg_args
    cache = args.warm or tempfile.mkdtemp(prefix="kmseg-numba-")
    os.environ["NUMBA_CACHE_DIR"] = cache
    started = time.perf_counter()
    roots = install_listener()
    from pipeline.cli import main as kmseg

    status = kmseg(kmseg_args)
    total = time.perf_counter() - started
    own = [r for r in roots if r.name.startswith("pipeline.")]
    compiling = sum(r.seconds for r in roots)
    print(f"\nkmseg {' '.join(kmseg_args)}: exit {status}, {total:.2f} s in all, "
          f"{compiling:.2f} s compiling (numba cache {cache})")
    print("\nseconds  kernel (nested compilations indented)")
    for root in own:
        show(root, 0, args.min)
    signatures: dict[str, list[str]] = {}

    def collect(node: Compile) -> None:
        if node.name.startswith("pipeline."):
            signatures.setdefault(node.name, []).append(node.args)
        for child in node.children:
            collect(child)

    for root in roots:
        collect(root)
    print("\nsignatures per kmseg kernel")
    for name, sigs in sorted(signatures.items()):
        print(f"{len(sigs):3d}  {name}")
        for sig in sigs:
            # An objmode block is compiled in object mode, as its own "signature".
            print(f"       {sig}" + ("  (its objmode block)" if "ffi_forced_object" in sig else ""))
    if not args.warm:
        shutil.rmtree(cache, ignore_errors=True)  # the folder made above
    return status


if __name__ == "__main__":
    sys.exit(main())
