"""Command-line interface: a thin layer over :mod:`pipeline.api`.

``kmseg segment``, ``kmseg run``, ``kmseg info`` and ``kmseg demo``; ``main(argv)`` returns the
exit status so tests call it directly.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from pipeline import __version__
from pipeline.config import JobConfig, build_config, load_yaml
from pipeline.errors import KmsegError

#: Flags that have a short form.
_SHORT = {"k": "-k", "output": "-o", "quiet": "-q"}
#: Keys given as positional arguments of ``segment``.
_POSITIONAL = {"inputs"}


def _add_config_flags(parser: argparse.ArgumentParser, *, positional_inputs: bool) -> None:
    """One flag per config key; unset flags keep lower layers' values (default None)."""
    for f in fields(JobConfig):
        if f.name in _POSITIONAL and positional_inputs:
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [_SHORT[f.name], flag] if f.name in _SHORT else [flag]
        doc = _field_doc(f.name)
        if f.type in ("bool", bool):
            parser.add_argument(
                *names, dest=f.name, action="store_const", const=True, default=None, help=doc
            )
            if f.name != "quiet":
                parser.add_argument(
                    "--no-" + f.name.replace("_", "-"),
                    dest=f.name,
                    action="store_const",
                    const=False,
                    help=argparse.SUPPRESS,
                )
        elif f.name in ("inputs", "chunks"):
            parser.add_argument(*names, dest=f.name, nargs="+", default=None, help=doc)
        else:
            parser.add_argument(*names, dest=f.name, default=None, help=doc)
    parser.add_argument(
        "--set",
        dest="set_",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config key (repeatable)",
    )


def _field_doc(name: str) -> str:
    """The first line of a key's description in :class:`JobConfig`'s docstring."""
    lines = (JobConfig.__doc__ or "").splitlines()
    for i, line in enumerate(lines):
        names, sep, _ = line.strip().partition(" :")
        if sep and name in [n.strip() for n in names.split(",")]:
            indent = len(line) - len(line.lstrip()) + 1
            text = []
            for follow in lines[i + 1 :]:
                if len(follow) - len(follow.lstrip()) < indent or not follow.strip():
                    break
                text.append(follow.strip())
            return " ".join(text).replace("``", "")
    return ""


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {
        f.name: getattr(args, f.name)
        for f in fields(JobConfig)
        if getattr(args, f.name, None) is not None
    }
    for item in args.set_:
        key, sep, value = item.partition("=")
        if not sep:
            raise KmsegError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out


def _print_results(results: list, quiet: bool) -> None:
    for r in results:
        counts = ", ".join(str(int(c)) for c in r.counts)
        print(
            f"{r.output}: k={r.k} engine={r.engine} mse={r.mse:.6g} "
            f"inertia={r.inertia:.6g} pixels per cluster=[{counts}]"
        )


def cmd_segment(args: argparse.Namespace) -> int:
    from pipeline.api import run

    overrides = _overrides(args)
    overrides["inputs"] = args.inputs
    config = build_config({}, overrides)
    _print_results(run(config), config.quiet)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.api import run

    config = build_config(load_yaml(args.config), _overrides(args))
    _print_results(run(config), config.quiet)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from pipeline.info import classes_csv, describe_output

    if getattr(args, "csv", False):
        sys.stdout.write(classes_csv(args.store))
        return 0
    print(describe_output(args.store))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import default_report_path, write_report

    page = write_report(args.store, args.output or default_report_path(args.store))
    print(page)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    run_demo(args.folder, k=int(args.k), overwrite=bool(args.overwrite), quiet=args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmseg",
        description="Segment images of any size with K-Means on Dask, writing OME-Zarr.",
    )
    parser.add_argument("--version", action="version", version=f"kmseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0,
            help="more logging; show tracebacks on errors",
        )

    p = sub.add_parser("segment", help="segment images: kmseg segment INPUT... -k 4 -o OUT.zarr")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    _add_config_flags(p, positional_inputs=True)
    common(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("run", help="run a YAML job: kmseg run JOB.yaml [--key value ...]")
    p.add_argument("config", metavar="JOB.yaml")
    _add_config_flags(p, positional_inputs=False)
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("info", help="describe an output store")
    p.add_argument("store", metavar="OUT.zarr")
    p.add_argument(
        "--csv", action="store_true", help="per-class measurements as CSV, one row per class"
    )
    common(p)
    p.set_defaults(func=cmd_info)

    # kmseg report: a self-contained HTML page of an output (pipeline.report).
    p = sub.add_parser("report", help="write an HTML report: kmseg report OUT.zarr -o PAGE.html")
    p.add_argument("store", metavar="OUT.zarr")
    p.add_argument(
        "-o", "--output", default=None, metavar="PAGE.html",
        help="the page to write (default: NAME.report.html beside OUT.zarr)",
    )
    common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="segment a bundled sample photo")
    p.add_argument(
        "folder",
        nargs="?",
        default="kmseg-demo",
        help="folder for the sample and its output (default: kmseg-demo)",
    )
    p.add_argument("-k", default=4, type=int, help="number of clusters (default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit status (0 success, 1 failure, 2 bad input/usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0) or 0
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.WARNING)
    if verbose < 2:  # distributed logs every worker and client event at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except KmsegError as exc:
        if verbose > 0:
            traceback.print_exc()
        print(f"kmseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kmseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure inside a task: still one line without -v
        if verbose > 0:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"kmseg: error: {type(exc).__name__}: {message} (run with -v for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
