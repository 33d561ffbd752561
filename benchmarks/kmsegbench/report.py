"""The markdown report: result tables with ratios, kmseg's stages, and the targets."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import PHOTOS, Input
from .many import ManyResult
from .methods import DASKML, FAISS, KMSEG, METHODS, SKLEARN10, SKLEARN_DEFAULT, Outcome
from .startup import StartupRow

#: Targets of issue 8 (many images) and issue 9 (speed everywhere).
SPEEDUP_TARGET = 10.0  # kmseg end to end vs sklearn n_init=10 fit alone
MSE_TARGET = 1.001  # kmseg mse / best mse of sklearn, dask-ml, faiss
MANY_TIME_TARGET = 0.5  # kmseg time / seed-method loop time
MANY_MEMORY_GIB = 1.5
STARTUP_TARGET_S = 0.3
#: The peers whose best mse kmseg is held to (issue 9).
PEERS = (SKLEARN10, SKLEARN_DEFAULT, DASKML, FAISS)


@dataclass
class Row:
    """One method on one input and k (``outcome`` is None when skipped or failed)."""

    input: str
    mpx: float
    k: int
    method: str
    outcome: Outcome | None
    skipped: str = ""
    group: str = "8-bit"


@dataclass
class StageRow:
    """kmseg's run on one input and k, with the floors measured around it."""

    input: str
    mpx: float
    k: int
    report: dict[str, Any]
    read_floor_s: float
    write_floor_s: float
    written_bytes: int
    output_bytes: int
    mse_script: float
    chunk_text: str = "?"


def _f(value: float | None, fmt: str) -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def ratio_text(value: float | None) -> str:
    """``0.42x``, ``3.1x``, ``36x``; ``–`` when unknown."""
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.2f}x" if value < 1 else f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


def _mpx(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:.0f}"


def _groups(rows: list[Row]) -> dict[tuple[str, int], list[Row]]:
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.input, row.k), []).append(row)
    return groups


def best_mse(group: list[Row]) -> float | None:
    """The lowest mse of the methods that ran in ``group``."""
    return min((r.outcome.mse for r in group if r.outcome is not None
                and r.outcome.mse is not None), default=None)


def results_table(rows: list[Row]) -> str:
    """Every method on every input: wall time, its ratio to kmseg, mse, mse / best."""
    head = ("| input | Mpx | k | method | wall s | time / kmseg | mse | mse / best | notes |\n"
            "|---|---:|---:|---|---:|---:|---:|---:|---|\n")
    lines = []
    for group in _groups(rows).values():
        best = best_mse(group)
        kmseg_s = next((r.outcome.seconds for r in group
                        if r.method == KMSEG and r.outcome is not None), None)
        for row in group:
            o = row.outcome
            if o is None:
                lines.append(f"| {row.input} | {_mpx(row.mpx)} | {row.k} | {row.method} | – | – "
                             f"| – | – | {row.skipped} |")
                continue
            note = o.note
            if row.method == KMSEG and "peak_rss_bytes" in o.extra:
                note += f"; peak RSS {o.extra['peak_rss_bytes'] / 2**30:.2f} GiB"
            ratio = o.seconds / kmseg_s if kmseg_s and o.seconds is not None else None
            mse_ratio = o.mse / best if best and o.mse is not None else None
            lines.append(
                f"| {row.input} | {_mpx(row.mpx)} | {row.k} | {row.method} "
                f"| {_f(o.seconds, '.2f')} | {ratio_text(ratio)} | {_f(o.mse, '.6g')} "
                f"| {_f(mse_ratio, '.4f')} | {note} |"
            )
    return head + "\n".join(lines) + "\n"


def issue9_table(rows: list[Row]) -> str:
    """Per issue-9 input: kmseg, sklearn n_init=10, dask-ml and faiss with their time ratios to
    kmseg, kmseg's mse / best, and whether the target is met."""
    head = ("| input | k | kmseg s | sklearn n_init=10 s (/ kmseg) | dask-ml s (/ kmseg) "
            "| faiss s (/ kmseg) | kmseg mse / best peer | target |\n"
            "|---|---:|---:|---:|---:|---:|---:|---|\n")
    lines = []
    for (name, k), group in _groups([r for r in rows if r.group == "issue 9"]).items():
        by = {r.method: r.outcome for r in group}
        km = by.get(KMSEG)
        if km is None:
            lines.append(f"| {name} | {k} | failed | – | – | – | – | – |")
            continue

        def cell(method: str, km: Outcome = km, by: dict = by) -> str:
            o = by.get(method)
            if o is None or o.seconds is None:
                return "–"
            return f"{o.seconds:.2f} ({ratio_text(o.seconds / km.seconds)})"

        verdict, _ = issue9_verdict(group)
        numbers = issue9_numbers(group)
        mse_ratio = numbers[1] if numbers else None
        lines.append(f"| {name} | {k} | {km.seconds:.2f} | {cell(SKLEARN10)} | {cell(DASKML)} "
                     f"| {cell(FAISS)} | {_f(mse_ratio, '.4f')} | {verdict} |")
    return head + "\n".join(lines) + "\n"


def issue9_numbers(group: list[Row]) -> tuple[float, float] | None:
    """kmseg's speed-up over sklearn n_init=10 (fit alone) and its mse / the best mse of the
    peers (both scikit-learn rows, dask-ml, faiss) on one input and k; None if not run."""
    by = {r.method: r.outcome for r in group}
    km, sk = by.get(KMSEG), by.get(SKLEARN10)
    peers = [by[m].mse for m in PEERS if by.get(m) is not None and by[m].mse is not None]
    if km is None or km.mse is None or sk is None or sk.seconds is None or not peers:
        return None
    return sk.seconds / km.seconds, km.mse / min(peers)


def issue9_verdict(group: list[Row]) -> tuple[str, str]:
    """``(verdict, text)`` for "kmseg >= 10x faster than sklearn n_init=10 and mse <= 1.001x
    the best of scikit-learn, dask-ml and faiss" on one input and k."""
    numbers = issue9_numbers(group)
    if numbers is None:
        return "not judged", "kmseg or the anchors did not run"
    speedup, mse_ratio = numbers
    fast, close = speedup >= SPEEDUP_TARGET, mse_ratio <= MSE_TARGET
    verdict = "**met**" if fast and close else "**missed**"
    text = (f"{speedup:.1f}x faster than sklearn n_init=10 (≥ {SPEEDUP_TARGET:g}x: "
            f"{'yes' if fast else 'no'}), mse / best peer {mse_ratio:.4f} (≤ {MSE_TARGET}: "
            f"{'yes' if close else 'no'})")
    return verdict, text


def chunk_text(chunks: list[list[int]] | None, item: Input) -> str:
    """kmseg's spatial chunk shape and how many chunks the image has, e.g. ``4096x4096 (64)``."""
    if not chunks:
        return "?"
    n_spatial = len(item.shape) - (1 if item.channels > 1 else 0)
    spatial = [int(c[0]) for c in chunks[:n_spatial]]
    count = math.prod(-(-n // c) for n, c in zip(item.shape, spatial, strict=False))
    return f"{'x'.join(map(str, spatial))} ({count})"


def stages_table(stages: list[StageRow]) -> str:
    """kmseg's time per stage against the read and write floors."""
    head = (
        "| input | k | total s | process s | Mpx/s | read floor s | summary s | fit s "
        "| label+write s | write floor s | summary − read floor | label+write − floors "
        "| other s | output MiB | peak RSS GiB | engine | chunk | load before/after |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n"
    )
    lines = []
    for s in stages:
        t = s.report.get("timings", {})
        summary = float(t.get("summary_s", 0.0)) + float(t.get("range_s", 0.0))
        fit = float(t.get("fit_s", 0.0))
        lw = float(t.get("label_write_s", 0.0))
        other = s.report["wall_s"] - summary - fit - lw
        lines.append(
            f"| {s.input} | {s.k} | {s.report['wall_s']:.2f} | {s.report['process_s']:.2f} "
            f"| {s.mpx / s.report['wall_s']:.1f} "
            f"| {s.read_floor_s:.2f} | {summary:.2f} | {fit:.2f} | {lw:.2f} "
            f"| {s.write_floor_s:.2f} "
            f"| {summary - s.read_floor_s:+.2f} | {lw - s.read_floor_s - s.write_floor_s:+.2f} "
            f"| {other:.2f} | {s.output_bytes / 2**20:.1f} "
            f"| {s.report['peak_rss_bytes'] / 2**30:.2f} | {s.report['engine']} "
            f"| {s.chunk_text} "
            f"| {'/'.join(f'{v:.1f}' for v in s.report.get('load', ()))} |"
        )
    return head + "\n".join(lines) + "\n"


def many_table(result: ManyResult) -> str:
    """kmseg's batch against the seed-method loop on the same folder."""
    head = ("| run | images | Mpx | k | process s | loop alone s | images/s | peak memory GiB "
            "| mean mse per image | notes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")

    def line(name: str, run, loop_s, mse, note) -> str:
        ok = run.returncode == 0
        rate = result.count / run.seconds if ok and run.seconds else None
        return (f"| {name} | {result.count} | {_mpx(result.megapixels)} | {result.k} "
                f"| {run.seconds:.2f} | {_f(loop_s, '.2f')} | {_f(rate, '.1f')} "
                f"| {run.peak_tree_bytes / 2**30:.2f} | {_f(mse, '.6g')} "
                f"| {note if ok else 'failed: ' + run.stderr.strip()[-200:].replace('|', '/')} |")

    kmseg_note = (f"`kmseg segment FOLDER -k {result.k} -o OUT.zarr -q`; {result.outputs} "
                  "outputs with an mse")
    return head + "\n".join([
        line("kmseg batch", result.kmseg, None, result.kmseg_mse, kmseg_note),
        line("seed-method loop", result.loop, result.loop_s, result.loop_mse,
             "Pillow read + sklearn KMeans(n_init='auto') fit + predict + recolour per image, "
             "writes nothing"),
    ]) + "\n"


def startup_table(rows: list[StartupRow]) -> str:
    """The start-up rows."""
    head = "| what | seconds | runs (median) | target | notes |\n|---|---:|---:|---|---|\n"
    return head + "\n".join(
        f"| {r.what} | {_f(r.seconds, '.2f')} | {r.runs or '–'} | {r.target or '–'} "
        f"| {r.note or '–'} |" for r in rows) + "\n"


def machine() -> str:
    """Cores, CPU, memory, OS and the versions of the libraries compared."""
    import dask
    import dask_ml
    import sklearn
    import zarr

    import pipeline

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "not installed"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, kmseg "
        f"{getattr(pipeline, '__version__', '?')}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}, dask {dask.__version__}, dask-ml {dask_ml.__version__}, faiss "
        f"{faiss_version}, zarr {zarr.__version__}"
    )


def provenance() -> str:
    """The commit of the working tree (read-only git) and the newest edit of pipeline/."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "pipeline"], capture_output=True, text=True,
                               check=False).stdout.strip()
    except OSError:
        head, dirty = "", ""
    newest = 0.0
    for folder, _, files in os.walk(root / "pipeline"):
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.path.getmtime(os.path.join(folder, name)))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)) if newest else "?"
    return (f"commit {head or '?'}{' + uncommitted changes in pipeline/' if dirty else ''}; "
            f"newest pipeline/*.py edit {stamp}")


def targets(rows: list[Row], stages: list[StageRow], many: ManyResult | None,
            startup: list[StartupRow]) -> list[str]:
    """One line per target of benchmarks/README.md that the measured inputs allow to judge."""
    done = {(r.input, r.k, r.method): r.outcome for r in rows if r.outcome is not None}
    by_input = {(s.input, s.k): s for s in stages}
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    for (name, k, method), o in done.items():
        if method != KMSEG or name.split()[0] not in PHOTOS or "crop" in name:
            continue
        ref = done.get((name, k, SKLEARN10))
        if ref is None or o.mse is None or ref.mse is None:
            continue
        ratio = o.mse / ref.mse
        out.append(f"* {name} k={k}: kmseg mse / sklearn n_init=10 mse = {ratio:.5f} "
                   f"(≤ 1.001): {verdict(ratio <= 1.001)}")
    for (name, k, method), o in done.items():
        if method != KMSEG or name != "tiled 4096x4096":
            continue
        for anchor, factor in ((SKLEARN10, 20), (DASKML, 10)):
            ref = done.get((name, k, anchor))
            if ref is None:
                continue
            speedup = ref.seconds / o.seconds
            out.append(f"* {name} k={k}: kmseg {o.seconds:.1f} s vs {anchor} fit "
                       f"{ref.seconds:.1f} s = {speedup:.1f}x faster (≥ {factor}x): "
                       f"{verdict(speedup >= factor)}")
    for (name, k), s in by_input.items():
        if name != "tiled 32768x32768":
            continue
        wall, rss = s.report["wall_s"], s.report["peak_rss_bytes"] / 2**30
        out.append(f"* {name} k={k}: {wall:.1f} s (≤ 60 s): {verdict(wall <= 60)}; peak RSS "
                   f"{rss:.2f} GiB (≤ 3 GiB): {verdict(rss <= 3)}")
        ref = by_input.get(("tiled 8192x8192", k))
        if ref is not None:
            t_big, t_ref = s.mpx / wall, ref.mpx / ref.report["wall_s"]
            out.append(f"* throughput at 1074 Mpx {t_big:.1f} Mpx/s vs {t_ref:.1f} Mpx/s at "
                       f"67 Mpx = {t_big / t_ref:.2f} (≥ 0.80): {verdict(t_big >= 0.8 * t_ref)}")
    for (name, k), s in by_input.items():
        if name == "CT volume 512^3 int16":
            wall = s.report["wall_s"]
            out.append(f"* {name} k={k}: {wall:.1f} s end to end (≤ 10 s): "
                       f"{verdict(wall <= 10)}")
    for (name, k), group in _groups([r for r in rows if r.group == "issue 9"]).items():
        v, text = issue9_verdict(group)
        out.append(f"* {name} k={k}: kmseg ≥ {SPEEDUP_TARGET:g}x faster than sklearn n_init=10 "
                   f"and mse ≤ {MSE_TARGET}x best: {v} ({text})")
    if many is not None:
        km, loop = many.kmseg, many.loop
        if km.returncode == 0:
            ratio = km.seconds / loop.seconds
            gib = km.peak_tree_bytes / 2**30
            out.append(f"* many images ({many.count} PNG {_mpx(many.megapixels)} Mpx, "
                       f"k={many.k}): kmseg {km.seconds:.1f} s / seed-method loop "
                       f"{loop.seconds:.1f} s = {ratio:.2f} (≤ {MANY_TIME_TARGET}): "
                       f"{verdict(ratio <= MANY_TIME_TARGET)}; peak memory {gib:.2f} GiB "
                       f"(≤ {MANY_MEMORY_GIB} GiB): {verdict(gib <= MANY_MEMORY_GIB)}")
        else:
            out.append(f"* many images: kmseg failed (exit {km.returncode}): **missed**")
    for r in startup:
        if r.target == f"≤ {STARTUP_TARGET_S} s" and r.seconds is not None:
            out.append(f"* {r.what}: {r.seconds:.2f} s (≤ {STARTUP_TARGET_S} s): "
                       f"{verdict(r.seconds <= STARTUP_TARGET_S)}")
    job = next((r for r in startup if r.what.startswith("`kmseg segment")), None)
    fit = next((r for r in startup if r.what.startswith("sklearn")), None)
    if job and fit and job.seconds is not None and fit.seconds is not None:
        out.append(f"* {job.what}: {job.seconds:.2f} s vs sklearn n_init=10 fit alone "
                   f"{fit.seconds:.2f} s (no slower): {verdict(job.seconds <= fit.seconds)}")
    cold = next((r for r in startup if r.what.startswith("same job, first")), None)
    warm = next((r for r in startup if r.what.startswith("same job, second")), None)
    if cold and warm and cold.seconds and warm.seconds:
        out.append(f"* first run after an empty numba cache {cold.seconds:.2f} s vs warm "
                   f"{warm.seconds:.2f} s ({cold.seconds / warm.seconds:.1f}x; target: near "
                   "the warm time, no number set)")
    return out or ["* (none of the target inputs was run)"]


def mse_checks(stages: list[StageRow]) -> list[str]:
    """Lines comparing kmseg's self-reported mse with the script's."""
    checks = []
    worst = 0.0
    for s in stages:
        reported = s.report.get("mse_reported")
        if reported is not None and s.mse_script > 0:
            rel = abs(reported - s.mse_script) / s.mse_script
            worst = max(worst, rel)
            if rel > 1e-4:
                checks.append(f"* {s.input} k={s.k}: kmseg reports mse {reported:.8g}, the "
                              f"script measures {s.mse_script:.8g} (relative difference "
                              f"{rel:.2e})")
    if stages:
        checks.append(f"* kmseg's own mse agrees with the script's to a relative {worst:.1e} "
                      "at worst (kmseg computes features in float32)")
    return checks


def report(rows: list[Row], stages: list[StageRow], many: ManyResult | None,
           startup: list[StartupRow], started: float, argv: list[str]) -> str:
    """The whole markdown report."""
    parts = [
        f"Machine: {machine()}",
        "",
        f"Code: {provenance()}",
        "",
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        "the stage table gives it before and after each kmseg run (timings are only "
        "comparable on a quiet machine).",
        "",
        f"Command: `python benchmarks/bench.py {' '.join(argv)}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}, {time.perf_counter() - started:.0f} s in all)",
        "",
    ]
    if rows:
        parts += ["### Methods", "", results_table(rows)]
    if any(r.group == "issue 9" for r in rows):
        parts += ["### Issue 9: 16-bit colour, many channels, floats, 32-bit integers", "",
                  issue9_table(rows)]
    if stages:
        parts += ["### kmseg stages against the floors", "", stages_table(stages),
                  "### Checks", "", *mse_checks(stages), ""]
    if many is not None:
        parts += ["### Many images (issue 8)", "", many_table(many)]
    if startup:
        parts += ["### Start-up (issue 9)", "", startup_table(startup)]
    parts += ["### Targets", "", *targets(rows, stages, many, startup), ""]
    return "\n".join(parts)


__all__ = ["METHODS", "Row", "StageRow", "report", "results_table"]
