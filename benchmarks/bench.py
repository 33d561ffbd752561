#!/usr/bin/env python
"""Benchmark kmseg against the usual ways of running K-Means on an image.

A thin entry point: the benchmark is the package ``benchmarks/kmsegbench`` (inputs, methods,
measure, many, startup, report, cli); see benchmarks/README.md. Run
``python benchmarks/bench.py --help``; ``--smoke`` is a run of a few seconds (used by the tests).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kmsegbench.cli import main
from kmsegbench.methods import METHODS  # noqa: F401  (the method names, for the tests)

if __name__ == "__main__":
    sys.exit(main())
