"""Command-line interface: a thin layer over :mod:`pipeline.api`.

``kmseg segment``, ``kmseg run``, ``kmseg fit``, ``kmseg info``, ``kmseg report``, ``kmseg
demo`` and ``kmseg compile``; ``main(argv)`` returns the exit status so tests call it directly.
Results go to stdout; progress, warnings and errors go through :mod:`logging` to stderr (``-q``
quieter, ``-v`` more, with tracebacks).

This module imports only the standard library at start-up, the config (pydantic) when the
parser is built, and the heavy modules (Dask, NumPy, Zarr) in the command that runs, so that
``kmseg --version`` and ``kmseg --help`` are quick.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any, NoReturn

import pipeline
from pipeline import sigterm
from pipeline.errors import KmsegError, one_line
from pipeline.warn import capture

log = logging.getLogger("pipeline.cli")

#: Flags that have a short form.
_SHORT = {"k": "-k", "output": "-o", "quiet": "-q"}
#: Loggers of kmseg's own messages (``kmseg`` is used by older modules).
_LOGGERS = ("pipeline", "kmseg")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit status 2)."""

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> Any:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            message += self._closest_options(message.split(":", 1)[1].split())
        self.exit(2, f"kmseg: error: {message} (see {self.prog} --help)\n")

    def _closest_options(self, given: list[str]) -> str:
        """``"; did you mean --overwrite?"`` for mistyped options (``--overwite``), or which
        commands take an option the given command does not (``kmseg fit --report``); else
        ``""``.

        The candidates are the options of the command given and of this parser (Python 3.11's
        argparse suggests none).
        """
        import difflib

        commands = {name: parser for action in self._actions
                    if isinstance(action, argparse._SubParsersAction)
                    for name, parser in action.choices.items()}
        command = next((a for a in getattr(self, "_given", []) if a in commands), None)
        known = set(self._option_string_actions)
        if command is not None:
            known.update(commands[command]._option_string_actions)
        else:
            for parser in commands.values():
                known.update(parser._option_string_actions)
        hints = []
        for arg in given:
            option = arg.split("=", 1)[0]
            if not option.startswith("--") or option in known:
                continue
            others = [name for name, parser in commands.items()
                      if option in parser._option_string_actions]
            if others:
                return (f"; {option} is an option of kmseg {' and '.join(others)}, not of kmseg "
                        f"{command}")
            hints += difflib.get_close_matches(option, sorted(known), n=1, cutoff=0.75)
        return f"; did you mean {' or '.join(dict.fromkeys(hints))}?" if hints else ""


class _Version(argparse.Action):
    """``--version``, looking the version up only when asked (it costs start-up time)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(f"kmseg {pipeline.__version__}")
        parser.exit()


def _show(value: Any) -> str:
    """A default as the help shows it."""
    if value is None or value == "" or value == []:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


#: Config keys that mean nothing to ``kmseg fit`` (it writes a model file, not a Zarr store, and
#: makes the model rather than using one): it has no flags for them.
FIT_IGNORES = frozenset({"pyramid_levels", "report", "model", "shared_model", "batch_processes"})


def _add_config_flags(parser: argparse.ArgumentParser, *, positional_inputs: bool,
                      described_as: dict[str, str] | None = None,
                      without: frozenset[str] = frozenset()) -> None:
    """One flag per config key but those ``without``, help from the key's description (or
    ``described_as``, for a command that uses a key otherwise); unset flags give None."""
    from pipeline.config import LIST_KEYS, config_fields, default_of

    group = parser.add_argument_group(
        "configuration keys (each also a YAML key, a KMSEG_<KEY> variable and --set KEY=VALUE)"
    )
    for name, info in config_fields().items():
        if (name == "inputs" and positional_inputs) or name in without:
            continue
        flag = "--" + name.replace("_", "-")
        names = [_SHORT[name], flag] if name in _SHORT else [flag]
        described = (described_as or {}).get(name) or info.description or name.replace("_", " ")
        text = f"{described} (default: {_show(default_of(name))})".replace("%", "%%")
        if info.annotation is bool:
            group.add_argument(
                *names, dest=name, action="store_const", const=True, default=None, help=text
            )
            group.add_argument(
                "--no-" + name.replace("_", "-"),
                dest=name,
                action="store_const",
                const=False,
                help=argparse.SUPPRESS,
            )
            continue
        choices = typing.get_args(info.annotation)
        metavar = "{" + ",".join(choices) + "}" if typing.get_origin(info.annotation) is \
            typing.Literal else name.upper()
        nargs = "+" if name in LIST_KEYS else None
        group.add_argument(
            *names, dest=name, nargs=nargs, default=None, metavar=metavar, help=text
        )
    group.add_argument(
        "--set",
        dest="set_",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config key (repeatable)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given as flags and with ``--set``."""
    from pipeline.config import Layer, config_fields

    out = Layer(
        {
            name: getattr(args, name)
            for name in config_fields()
            if getattr(args, name, None) is not None
        }
    )
    for item in args.set_:
        key, sep, value = item.partition("=")
        if not sep:
            raise KmsegError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out


def _print_results(results: list) -> None:
    for r in results:
        counts = ", ".join(str(int(c)) for c in r.counts)
        print(
            f"{r.output}: k={r.k} engine={r.engine} mse={r.mse:.6g} "
            f"inertia={r.inertia:.6g} pixels per cluster=[{counts}]"
        )


def cmd_segment(args: argparse.Namespace) -> int:
    from pipeline.config import build_config

    overrides = _overrides(args)
    if args.inputs:  # else from another layer (KMSEG_INPUTS, --set inputs=...) or an error
        overrides["inputs"] = args.inputs
    elif overrides.get("inputs") == []:
        del overrides["inputs"]
    config = build_config(overrides)
    _quiet_from_config(args, config)
    from pipeline.api import run  # after the config is checked: errors come quickly

    results = run(config)
    _print_results(results)
    return _status(results)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import build_config, load_yaml

    config = build_config(load_yaml(args.config), _overrides(args))
    _quiet_from_config(args, config)
    from pipeline.api import run

    results = run(config)
    _print_results(results)
    return _status(results)


def _quiet_from_config(args: argparse.Namespace, config: Any) -> None:
    """``quiet`` from any layer (a job file, ``KMSEG_QUIET``, ``--set``), not only ``-q``,
    leaves only warnings and errors on stderr (``-v`` still wins)."""
    if config.quiet and not args.verbose:
        setup_logging(quiet=True)


def _status(results: Any) -> int:
    """0, or 3 (:data:`pipeline.batch.EXIT_SOME_FAILED`) when inputs of a batch failed."""
    failed = getattr(results, "failed", [])
    if not failed:
        return 0
    from pipeline.batch import EXIT_SOME_FAILED

    logging.getLogger("kmseg").error(
        "%d input(s) failed; see the 'failed' list in the output's metadata", len(failed)
    )
    return EXIT_SOME_FAILED


def cmd_fit(args: argparse.Namespace) -> int:
    from pipeline.config import build_config

    overrides = _overrides(args)
    overrides["inputs"] = args.inputs
    config = build_config(overrides)
    _quiet_from_config(args, config)
    from pipeline.api import fit_config

    model = fit_config(config)
    mse = model.provenance.get("mse")
    print(f"{config.output}: k={model.k} engine={model.engine} "
          f"mse={'nan' if mse is None else format(mse, '.6g')} "
          f"pixels={model.provenance.get('n_pixels')}")
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

    options: dict[str, Any] = {"quiet": args.quiet}
    if args.k is not None:
        options["k"] = args.k
    _print_results([run_demo(args.folder, **options)])
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from pipeline.precompile import KindResult, precompile

    def signatures(n: int) -> str:
        return f"{n} kernel signature{'' if n == 1 else 's'} compiled"

    def progress(result: KindResult) -> None:
        print(f"{result.seconds:6.2f} s  {result.kind.description}: "
              f"{signatures(result.kernels)}", flush=True)

    if not args.verbose:  # the tiny jobs' own progress messages are noise here
        setup_logging(quiet=True)
    summary = precompile(progress=None if args.quiet else progress)
    if not args.quiet:
        print(f"{summary.seconds:6.2f} s  in all: {signatures(summary.kernels)}, "
              f"{summary.files_written} cache files written ({summary.cache_files} in "
              f"{summary.cache_root})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``kmseg`` argument parser with its commands."""
    parser = _Parser(
        prog="kmseg",
        description="Segment images of any size with K-Means on Dask, writing OME-Zarr.",
    )
    parser.add_argument("--version", action=_Version, help="print kmseg's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0,
            help="more messages (Dask's too) and tracebacks on errors",
        )

    def quiet(p: argparse.ArgumentParser) -> None:
        p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")

    def sub_parser(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text)

    p = sub_parser("segment", "segment images: kmseg segment INPUT... -k 4 -o OUT.zarr")
    p.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="image files, folders or globs (or KMSEG_INPUTS / --set inputs=...)",
    )
    _add_config_flags(p, positional_inputs=True)
    common(p)
    p.set_defaults(func=cmd_segment)

    p = sub_parser("fit", "fit one model on all inputs pooled: kmseg fit INPUT... -k 4 -o "
                   "MODEL.json")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    _add_config_flags(p, positional_inputs=True, without=FIT_IGNORES,
                      described_as={"output": "the model file to write (JSON)"})
    common(p)
    p.set_defaults(func=cmd_fit)

    p = sub_parser("run", "run a YAML job: kmseg run JOB.yaml [--key value ...]")
    p.add_argument("config", metavar="JOB.yaml")
    _add_config_flags(p, positional_inputs=False)
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub_parser("info", "describe an output store")
    p.add_argument("store", metavar="OUT.zarr")
    quiet(p)
    p.add_argument(
        "--csv", action="store_true", help="per-class measurements as CSV, one row per class"
    )
    common(p)
    p.set_defaults(func=cmd_info)

    # kmseg report: a self-contained HTML page of an output (pipeline.report).
    p = sub_parser("report", "write an HTML report: kmseg report OUT.zarr -o PAGE.html")
    p.add_argument("store", metavar="OUT.zarr")
    p.add_argument(
        "-o", "--output", default=None, metavar="PAGE.html",
        help="the page to write (default: NAME.report.html beside OUT.zarr)",
    )
    quiet(p)
    common(p)
    p.set_defaults(func=cmd_report)

    p = sub_parser("demo", "segment a photo bundled with scikit-image")
    p.add_argument(
        "folder", nargs="?", default="kmseg-demo", help="output folder (default: kmseg-demo)"
    )
    p.add_argument("-k", default=None, help="number of clusters (default: 4)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=cmd_demo)

    # kmseg compile: fill numba's cache with kmseg's kernels (pipeline.precompile, issue 9).
    p = sub_parser("compile", "compile kmseg's kernels into numba's cache now, so that the "
                   "first job does not (after an install, in an image build)")
    quiet(p)
    common(p)
    p.set_defaults(func=cmd_compile)
    return parser


# --- messages -----------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (tests replace it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # the base class sets it; always use sys.stderr
        pass

    def emit(self, record: logging.LogRecord) -> None:
        # Once tqdm is loaded a progress bar may be on the line: tqdm.write clears it, prints
        # the message on a line of its own and redraws the bar.
        tqdm = sys.modules.get("tqdm")
        if tqdm is None:
            super().emit(record)
            return
        try:
            tqdm.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's own policy: report, never raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    """``kmseg: message``, ``kmseg: warning: message``, ``kmseg: error: message``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        # Only a message already formatted ("kmseg: interrupted") keeps its text; a path such
        # as kmseg-photo.zarr at the start of a message is not a prefix.
        if text.startswith("kmseg: "):
            return text
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return f"kmseg: {text}"


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(_Formatter())


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Send kmseg's messages to stderr: INFO by default, WARNING with ``quiet``, DEBUG with -v.

    Dask's distributed logs INFO lines only with ``-v`` (see :mod:`pipeline.execution`).
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if _HANDLER not in logger.handlers:
            logger.addHandler(_HANDLER)


#: Exit status after Ctrl-C (SIGINT): 128 + SIGINT, as shells report.
EXIT_INTERRUPTED = 130
#: Exit status after SIGTERM (``kill``, ``docker stop``, a batch system's time limit):
#: 128 + SIGTERM.
EXIT_TERMINATED = 143
#: Exit status when the reader of kmseg's output goes away (``kmseg ... | head``): 128 + SIGPIPE,
#: as a shell reports for Unix tools stopped by the signal.
EXIT_BROKEN_PIPE = 141


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a job stops as after Ctrl-C: its lock
    released, a batch's unfinished groups removed, the output left marked incomplete."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit status (0 success, 1 failure, 2 bad input/usage,
    3 some inputs of a batch failed with ``on_error: continue``, 130 interrupted (Ctrl-C), 141
    the reader of the standard output went away, 143 terminated (SIGTERM))."""
    try:
        status = _main(argv)
    except BrokenPipeError:
        # Quietly, as Unix tools stop: nothing more can be read. Standard output now points at
        # /dev/null so that the interpreter's flush at exit does not fail again (the recipe of
        # Python's signal module documentation, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    if status in (EXIT_INTERRUPTED, EXIT_TERMINATED) and argv is None:
        # The command's process, interrupted and cleaned up: end now with the status. Left to
        # the interpreter, it would first wait for threads still in a task (a kernel being
        # compiled), and CPython ends killed by SIGINT instead whenever the interrupt passed
        # through code run by exec() of a string (numba, dataclasses), even though kmseg
        # caught it: the same 130 for a shell, but not one status.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _main(argv: Sequence[str] | None) -> int:
    is_command = argv is None
    if argv is None:  # this process is the kmseg command: nothing else will jit code here
        from pipeline import lean_imports

        lean_imports.install()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:  # before building the parser: the quickest answer
        print(f"kmseg {pipeline.__version__}")
        return 0
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    verbose = args.verbose
    setup_logging(verbose, quiet=bool(getattr(args, "quiet", False)))
    # Every warning, kmseg's or a library's, as one `kmseg: warning: ...` line, recorded in
    # the output metadata of the input it names.
    # SIGTERM stops the command's job as Ctrl-C does (Python's default ends it at once, no
    # clean-up: the lock file stays and nothing is said).
    terminate = sigterm.raising(lambda signum: Terminated()) if is_command else (
        contextlib.nullcontext())
    with capture(echo=True, forward=False), terminate:
        try:
            return int(args.func(args))
        except KmsegError as exc:
            log.error("%s", one_line(exc), exc_info=verbose > 0)
            return 2
        except Terminated:
            log.error("kmseg: terminated")
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            log.error("kmseg: interrupted")  # as a shell user expects: no "error:" prefix
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            raise  # main() stops quietly
        except Exception as exc:  # a failure inside a task: still one line without -v
            if isinstance(exc, RuntimeError):
                from pipeline.precompile import cache_error

                # numba found no writable folder for kmseg's compiled kernels (a read-only
                # install, no writable home): the user's setup, like any output error.
                error = cache_error(exc)
                if error is not None:
                    log.error("%s", error, exc_info=verbose > 0)
                    return 2
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.error(
                "%s: %s (run with -v for details)", type(exc).__name__, message,
                exc_info=verbose > 0,
            )
            return 1


if __name__ == "__main__":
    sys.exit(main())
