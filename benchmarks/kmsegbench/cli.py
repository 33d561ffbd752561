"""Flags and the run: ``python benchmarks/bench.py [flags]`` (see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback

import numpy as np

from . import inputs as inp
from .inputs import Input
from .log import log
from .many import ManyResult, run_many, seed_loop_main
from .measure import all_features, disk_usage, mse_all, read_floor, write_floor
from .methods import (
    DASKML,
    FAISS,
    FULL_ANCHORS,
    KMSEG,
    METHODS,
    SKLEARN10,
    SKLEARN_DEFAULT,
    Outcome,
    child_main,
    faiss_missing,
    run_in_memory,
    run_kmseg,
)
from .report import Row, StageRow, chunk_text, report, results_table
from .startup import StartupRow, run_startup

DEFAULT_DATA_DIR = os.path.join("/tmp", "kmseg-bench")
IMAGE_SIZES = ("photos", *(str(s) for s in inp.TILED_SIZES), "volume", *inp.ISSUE9_SIZES,
               "mr-slice")
ALL_SIZES = (*IMAGE_SIZES, "many", "startup")
#: ``mr-slice`` (a 256x256 real MR slice, where start-up is nearly all of kmseg's time) runs
#: only when asked for.
DEFAULT_SIZES = tuple(s for s in ALL_SIZES if s != "mr-slice")
#: Methods on the 512^3 int16 volume (the in-memory anchors above 140 Mpx are too slow).
VOLUME_METHODS = (KMSEG, SKLEARN_DEFAULT)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags (``--help``)."""
    parser = argparse.ArgumentParser(
        description="Benchmark kmseg against the usual ways of running K-Means on an image.")
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help=f"comma-separated inputs from {','.join(ALL_SIZES)} "
                             "(default: all)")
    parser.add_argument("--k", default="4,8,16", help="k values for the photos (default 4,8,16)")
    parser.add_argument("--big-k", type=int, default=8,
                        help="k for the tiled images (default 8)")
    parser.add_argument("--volume-k", type=int, default=4,
                        help="k for the 512^3 int16 volume (default 4)")
    parser.add_argument("--many-count", type=int, default=1000,
                        help="number of 256x256 PNG photos for 'many' (default 1000)")
    parser.add_argument("--many-k", type=int, default=4, help="k for 'many' (default 4)")
    parser.add_argument("--many-timeout", type=float, default=1800.0,
                        help="seconds after which each side of 'many' is stopped (default 1800)")
    parser.add_argument("--startup-repeats", type=int, default=3,
                        help="runs of each start-up command; the median is kept (default 3)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"where generated inputs are cached and outputs written "
                             f"(default {DEFAULT_DATA_DIR})")
    parser.add_argument("--out", help="also write the markdown report to this file")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run of a few seconds: a 64x64 photo crop (k=3) with every "
                             "method and 'many' on 3 photos (ignores --sizes)")
    parser.add_argument("--max-anchor-mpx", type=float, default=20.0,
                        help="largest input (Mpx) for dask-ml, sklearn n_init=10 and faiss "
                             "(default 20: the photos, 4096x4096 and the issue-9 inputs)")
    parser.add_argument("--max-sklearn-default-mpx", type=float, default=140.0,
                        help="largest input (Mpx) for sklearn default (default 140: up to "
                             "8192x8192 and the 512^3 volume)")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep kmseg's output stores under DATA_DIR/out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seed-loop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child or args.seed_loop:
        return args
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = sorted(set(args.sizes) - set(ALL_SIZES))
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {', '.join(ALL_SIZES)}")
    args.k = [int(v) for v in str(args.k).split(",") if v.strip()]
    if args.many_count < 1:
        parser.error("--many-count must be at least 1")
    if args.smoke:
        args.sizes, args.many_count = ["many"], 3
    return args


def mark_skips(items: list[Input], args: argparse.Namespace) -> None:
    """Record, per input, the methods not run and why (size limits, faiss missing)."""
    no_faiss = faiss_missing()
    for item in items:
        for method in item.methods:
            if method == FAISS and no_faiss:
                item.skip[method] = no_faiss
                continue
            limit = args.max_anchor_mpx if method in (DASKML, SKLEARN10, FAISS) else (
                args.max_sklearn_default_mpx if method == SKLEARN_DEFAULT else None
            )
            if limit is not None and item.mpx > limit:
                gib = item.n_pixels * item.channels * 8 / 2**30
                item.skip[method] = (
                    f"skipped: {item.mpx:.0f} Mpx > {limit:g} Mpx limit for this method "
                    f"(its float64 features alone take {gib:.1f} GiB)"
                )


def run_input(item: Input, k: int, args: argparse.Namespace, X: np.ndarray | None,
              rates: dict[str, float]) -> tuple[list[Row], StageRow]:
    """Every method of ``item`` at ``k``: kmseg and its floors, then the others, then the mse
    of all of them in one pass."""
    workers = os.cpu_count() or 1
    out_dir = os.path.join(args.data_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    outcomes: dict[str, Outcome] = {}
    rows: list[Row] = []

    log(f"{item.name} k={k}: read floor")
    # The first read warms the page cache for every method alike; the second is the floor.
    read_floor(item, None)
    log(f"{item.name} k={k}: kmseg")
    kmseg = run_kmseg(item, k, out_dir)
    outcomes[KMSEG] = kmseg
    r_floor = read_floor(item, kmseg.extra.get("chunks"))
    log(f"{item.name} k={k}: kmseg {kmseg.seconds:.2f} s ({kmseg.note}); write floor")
    w_floor, written = write_floor(kmseg.extra["output"], os.path.join(out_dir, "floor.zarr"))
    output_bytes = disk_usage(kmseg.extra["output"])
    if not args.keep_outputs:
        shutil.rmtree(kmseg.extra["output"], ignore_errors=True)

    for method in item.methods:
        if method == KMSEG:
            continue
        if method in item.skip:
            reason = item.skip[method]
            if method in rates:
                reason += f"; ~{rates[method] * item.mpx:.0f} s by linear extrapolation"
            rows.append(Row(item.name, item.mpx, k, method, None, reason, item.group))
            continue
        log(f"{item.name} k={k}: {method}")
        outcome = run_in_memory(method, item, X, k, workers)
        log(f"{item.name} k={k}: {method} {outcome.seconds:.2f} s")
        outcomes[method] = outcome
        rates[method] = max(rates.get(method, 0.0), outcome.seconds / item.mpx)

    log(f"{item.name} k={k}: mse of every method over all pixels")
    t0 = time.perf_counter()
    mses = mse_all(item, {m: o.centres for m, o in outcomes.items()}, workers)
    log(f"{item.name} k={k}: mse pass {time.perf_counter() - t0:.1f} s")
    for method, outcome in outcomes.items():
        outcome.mse = mses[method]
        rows.append(Row(item.name, item.mpx, k, method, outcome, group=item.group))
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: order[r.method])
    stage = StageRow(item.name, item.mpx, k, kmseg.extra, r_floor, w_floor, written,
                     output_bytes, mses[KMSEG], chunk_text(kmseg.extra.get("chunks"), item))
    return rows, stage


def run_images(items: list[Input], args: argparse.Namespace) -> tuple[list[Row],
                                                                     list[StageRow]]:
    """Every image input at each of its k; a failing input is reported and the run goes on."""
    rows: list[Row] = []
    stages: list[StageRow] = []
    rates: dict[str, float] = {}  # seconds per Mpx of each anchor on the largest input run
    for item in items:
        X = None
        if any(m in FULL_ANCHORS and m not in item.skip for m in item.methods):
            log(f"{item.name}: loading {item.mpx:.1f} Mpx as float64 features")
            X = all_features(item)
        for k in item.ks:
            try:
                new_rows, stage = run_input(item, k, args, X, rates)
                stages.append(stage)
            except Exception as exc:  # report it and go on with the other inputs
                traceback.print_exc()
                reason = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                new_rows = [Row(item.name, item.mpx, k, m, None, reason, item.group)
                            for m in item.methods]
            rows += new_rows
            print(results_table(new_rows), file=sys.stderr, flush=True)
        del X
    return rows, stages


def byte_compile_kmseg() -> None:
    """Write the bytecode (``.pyc``) of kmseg's modules, as ``pip install`` does for a regular
    install. An editable install leaves it to the first import, and with
    ``PYTHONDONTWRITEBYTECODE`` set (as on some CI machines) every kmseg process would
    compile kmseg's source again: about 0.08 s of each small job."""
    import compileall

    import pipeline

    compileall.compile_dir(os.path.dirname(os.path.abspath(pipeline.__file__)), quiet=1)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the report (and write it to ``--out``). Returns 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.seed_loop:
        return seed_loop_main(args.seed_loop, args.many_k)
    started = time.perf_counter()
    byte_compile_kmseg()
    os.makedirs(args.data_dir, exist_ok=True)
    out_dir = os.path.join(args.data_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    if args.smoke:
        items = [inp.smoke_input(args.data_dir, METHODS)]
    else:
        items = inp.build_inputs(args.sizes, args.data_dir, args.k, args.big_k, args.volume_k,
                                 METHODS, VOLUME_METHODS)
    mark_skips(items, args)
    rows, stages = run_images(items, args)

    many: ManyResult | None = None
    if "many" in args.sizes:
        folder = inp.many_photos(args.data_dir, args.many_count)
        try:
            many = run_many(folder, out_dir, args.many_k, args.many_timeout, args.keep_outputs)
        except Exception:
            traceback.print_exc()
    startup: list[StartupRow] = []
    if "startup" in args.sizes:
        try:
            startup = run_startup(out_dir, args.startup_repeats)
        except Exception:
            traceback.print_exc()

    text = report(rows, stages, many, startup, started, argv)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0
