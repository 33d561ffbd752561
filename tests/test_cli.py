"""The CLI through main([...]): results, info, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from pipeline.cli import build_parser, main
from pipeline.config import config_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def npy_image(tmp_path, photos):
    path = tmp_path / "coffee.npy"
    np.save(path, photos["coffee"])
    return str(path)


@pytest.fixture
def tiny_image(tmp_path):
    """A 32x48 RGB image of four flat colour blocks (k=4 finds them exactly)."""
    image = np.zeros((32, 48, 3), np.uint8)
    image[:16, :24] = (200, 30, 30)
    image[:16, 24:] = (30, 200, 30)
    image[16:, :24] = (30, 30, 200)
    image[16:, 24:] = (220, 220, 220)
    path = tmp_path / "blocks.npy"
    np.save(path, image)
    return str(path)


def _kmseg_meta(store) -> dict:
    return json.loads((store / "zarr.json").read_text())["attributes"]["kmseg"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_segment_then_info(npy_image, tmp_path, capsys):
    out = str(tmp_path / "out.zarr")
    assert main(["segment", npy_image, "-k", "3", "-o", out, "-q", "--chunks", "100", "150"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{out}: k=3 engine=exact mse=")
    assert captured.err == ""  # -q: no progress, no messages
    assert main(["info", out]) == 0
    info = capsys.readouterr().out
    assert "status complete" in info and "cluster 3" in info and "(3, 400, 600)" in info


def test_progress_messages_go_to_stderr(tiny_image, tmp_path, capsys):
    out = str(tmp_path / "out.zarr")
    assert main(["segment", tiny_image, "-k", "4", "-o", out]) == 0
    captured = capsys.readouterr()
    assert "kmseg: fitting k=4: blocks (exact)" in captured.err
    assert captured.out.splitlines() == [line for line in captured.out.splitlines()
                                         if line.startswith(f"{out}: k=4 ")]
    assert "pixels per cluster=[384, 384, 384, 384]" in captured.out


def test_run_yaml_with_overrides(npy_image, tmp_path, capsys):
    job = tmp_path / "job.yaml"
    out = tmp_path / "job.zarr"
    job.write_text(f"inputs: [{npy_image}]\noutput: {out}\nk: 5\nquiet: true\n")
    assert main(["run", str(job), "-k", "2", "--set", "random_state=3"]) == 0
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "k=2" in info and "random_state=3" in info


def test_job_file_overrides_the_environment(tiny_image, tmp_path, monkeypatch):
    """defaults < KMSEG_* variables < the YAML job file < flags."""
    job = tmp_path / "job.yaml"
    out = tmp_path / "job.zarr"
    job.write_text(f"inputs: [{tiny_image}]\noutput: {out}\nk: 2\n")
    monkeypatch.setenv("KMSEG_K", "3")
    monkeypatch.setenv("KMSEG_RANDOM_STATE", "7")
    assert main(["run", str(job), "-q"]) == 0
    meta = _kmseg_meta(out)
    assert meta["k"] == 2  # the job file's, not KMSEG_K's
    assert meta["random_state"] == 7  # the environment's, over the default
    assert main(["run", str(job), "-q", "--overwrite", "-k", "4"]) == 0
    assert _kmseg_meta(out)["k"] == 4  # the flag's


def test_missing_file(tmp_path, capsys):
    missing = str(tmp_path / "missing.png")
    assert main(["segment", missing, "-o", str(tmp_path / "o.zarr"), "-q"]) != 0
    assert missing in _error_line(capsys)


def test_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    assert main(["segment", str(bad), "-o", str(tmp_path / "o.zarr"), "-q"]) != 0
    assert str(bad) in _error_line(capsys)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--pyramid-levels", "-2"], "pyramid_levels"),
        (["--n-workers", "0"], "n_workers"),
        (["--spatial-weight", "nan"], "spatial_weight"),
        (["--spatial-weight", "inf"], "spatial_weight"),
        (["-k", "0"], "k"),
        (["-k", "abc"], "k"),
        (["--tol", "-1"], "tol"),
        (["--chunks", "0", "5"], "chunks[0]"),
        (["--chunks", "64x0"], "chunks[1]"),
        (["--engine", "magic"], "engine"),
        (["--random-state", "-1"], "random_state"),
        (["--valid-range", "5", "1"], "valid_range"),
        (["--scheduler", "nohost"], "scheduler"),
        (["--cluster", "{kind: magic}"], "cluster"),
        (["--set", "nope=1"], "nope"),
        (["--set", "k=1.5"], "k"),
        (["--overwrite", "--set", "overwrite=maybe"], "overwrite"),
    ],
)
def test_bad_values_name_the_key(flags, named, tiny_image, tmp_path, capsys):
    out = tmp_path / "o.zarr"
    assert main(["segment", tiny_image, "-o", str(out), "-q", *flags]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"kmseg: error: {named}: "), line
    assert not out.exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KMSEG_K", "abc"), ("KMSEG_PYRAMID_LEVELS", "-2"), ("KMSEG_SPATIAL_WEIGHT", "nan"),
     ("DASK_SCHEDULER_ADDRESS", "not-an-address"), ("DASK_SCHEDULER_ADDRESS", "ftp://h:21")],
)
def test_bad_environment_variables_are_named(variable, value, tiny_image, tmp_path, capsys,
                                             monkeypatch):
    monkeypatch.setenv(variable, value)
    assert main(["segment", tiny_image, "-o", str(tmp_path / "o.zarr"), "-q"]) == 2
    assert _error_line(capsys).startswith(f"kmseg: error: {variable}: ")


@pytest.mark.parametrize(
    ("text", "named"),
    [("nope: 1\n", "nope"), ("k: [1, 2]\n", "k"), ("n_workers: 0\n", "n_workers"),
     ("quiet: sometimes\n", "quiet")],
)
def test_bad_job_file_keys_are_named(text, named, tiny_image, tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(f"inputs: [{tiny_image}]\noutput: {tmp_path / 'o.zarr'}\n{text}")
    assert main(["run", str(job)]) == 2
    assert _error_line(capsys).startswith(f"kmseg: error: {job}: {named}: ")


def test_usage_errors_are_one_line(tiny_image, tmp_path, capsys):
    assert main(["segment", tiny_image, "-o", str(tmp_path / "o.zarr"), "--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in _error_line(capsys)
    assert main([]) == 2
    assert "COMMAND" in _error_line(capsys)


def test_existing_output_needs_overwrite(npy_image, tmp_path, capsys):
    out = tmp_path / "o.zarr"
    assert main(["segment", npy_image, "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in out.iterdir())
    assert main(["segment", npy_image, "-o", str(out), "-q"]) == 2
    assert "--overwrite" in _error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == before
    assert main(["segment", npy_image, "-o", str(out), "-q", "--overwrite", "-k", "2"]) == 0


def test_overwrite_refuses_a_folder_that_is_not_zarr(npy_image, tmp_path, capsys):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("keep me")
    assert main(["segment", npy_image, "-o", str(folder), "-q", "--overwrite"]) == 2
    assert "not a Zarr store" in _error_line(capsys)
    assert (folder / "thesis.txt").read_text() == "keep me"


def test_python_dash_m_pipeline_version():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"kmseg \S+\n", done.stdout)
    assert main(["--version"]) == 0


# --- --help ---------------------------------------------------------------------------------------


def _config_actions(command: str) -> dict:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    return {
        a.dest: a for a in sub._actions
        if a.option_strings and a.dest in config_fields() and a.help != "==SUPPRESS=="
    }


@pytest.mark.parametrize("command", ["segment", "run"])
def test_help_shows_every_key_with_its_description_and_default(command):
    actions = _config_actions(command)
    expected = set(config_fields()) - ({"inputs"} if command == "segment" else set())
    assert set(actions) == expected
    for name in expected:
        assert actions[name].help.startswith(config_fields()[name].description), name
        assert "(default: " in actions[name].help, name
    assert actions["k"].help.endswith("(default: 4)")
    assert actions["tol"].help.endswith("(default: 0.0001)")
    assert actions["engine"].help.endswith("(default: auto)")
    assert actions["overwrite"].help.endswith("(default: false)")
    assert actions["chunks"].help.endswith("(default: none)")
    assert actions["max_pixels"].help.endswith(f"(default: {10**11})")
    # one flag per help line: no two keys share a help text
    assert len({a.help for a in actions.values()}) == len(actions)


def test_fit_help_says_its_output_is_a_model_file():
    """`kmseg fit -o` writes a model (JSON); its help said "output Zarr store"."""
    help_text = _config_actions("fit")["output"].help
    assert help_text.startswith("the model file to write (JSON)"), help_text
    assert "Zarr" not in help_text
    assert _config_actions("segment")["output"].help.startswith("output Zarr store")


def test_help_text(capsys):
    assert main(["segment", "--help"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"--max-iter MAX_ITER\s+K-Means iteration limit \(default: 300\)", text)
    assert re.search(r"--n-init N_INIT\s+K-Means restarts \(default: 10\)", text)


# --- start-up -------------------------------------------------------------------------------------


HEAVY = ("dask", "numpy", "zarr", "numba", "skimage", "sklearn", "distributed", "pydantic")


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        ("import pipeline.cli", ()),
        ("import pipeline.cli; pipeline.cli.main(['--version'])", ()),
        ("import pipeline.cli; pipeline.cli.build_parser().format_help()", ("pydantic",)),
    ],
)
def test_cli_start_up_imports_no_heavy_module(code, allowed):
    probe = f"{code}; import sys; print(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    loaded = set(done.stdout.split())
    assert loaded & (set(HEAVY) - set(allowed)) == set()


def test_command_process_loads_no_unused_array_library(tiny_image, tmp_path):
    """In the kmseg command's process, importing kmseg's API loads none of the array libraries
    dask registers when they are installed (sparse, scipy.sparse, scipy.fftpack), and a whole
    local run never imports distributed (dask's rechunk looked for a client) nor numba's
    extensions (sparse registers one). Each cost a small job part of its time."""
    out = tmp_path / "out.zarr"
    args = ["segment", str(tiny_image), "-k", "2", "-o", str(out), "-q"]
    probe = (
        f"import sys; sys.argv = ['kmseg', *{args!r}]\n"
        "from pipeline import lean_imports\n"
        "lean_imports.install()  # what main() does first when it reads sys.argv\n"
        "import pipeline.api\n"
        "hidden = ('sparse', 'scipy.sparse', 'scipy.fftpack', 'distributed')\n"
        "print([m for m in hidden if m in sys.modules])\n"
        "from pipeline.cli import main\n"
        "status = main()\n"
        "print(status, [m for m in ('distributed', 'scipy.fftpack', 'sparse')"
        " if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "[]"
    assert lines[-1] == "0 []"
    assert (out / "zarr.json").exists()


def test_command_process_loads_no_blas_for_numba(tmp_path):
    """In the kmseg command's own process (``main()`` reading ``sys.argv``), numba's first
    compilation does not import scipy.linalg to look for BLAS (no kmseg kernel uses it); a
    program calling ``main([...])`` keeps numba's BLAS support."""
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(grey, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))

    def probe(command: bool) -> list[str]:
        args = ["segment", str(grey), "-k", "2", "-o", str(tmp_path / f"{command}.zarr"), "-q"]
        call = "main()" if command else f"main({args!r})"
        code = (f"import sys; sys.argv = ['kmseg', *{args!r}]\n"
                "from pipeline.cli import main\n"
                f"status = {call}\n"
                "print(status, 'scipy.linalg' in sys.modules)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, cwd=ROOT)
        return done.stdout.split()[-2:]

    assert probe(command=True) == ["0", "False"]
    assert probe(command=False) == ["0", "True"]


def test_public_api_is_still_reachable():
    import pipeline

    assert callable(pipeline.segment) and callable(pipeline.run) and callable(pipeline.plan)
    assert pipeline.JobConfig.__name__ == "JobConfig"
    assert isinstance(pipeline.__version__, str)
    with pytest.raises(AttributeError):
        pipeline.no_such_name  # noqa: B018


def test_submodules_are_reachable_after_import_pipeline(tmp_path):
    """The README's `pipeline.report.write_report(...)` after a bare `import pipeline` (a fresh
    process: in this one the submodules are imported already)."""
    code = ("import pipeline; print(pipeline.report.write_report.__name__, "
            "pipeline.info.classes_csv.__name__, callable(pipeline.plan)); "
            "pipeline.no_such_module")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.stdout.split() == ["write_report", "classes_csv", "True"], done.stderr
    assert "AttributeError: module 'pipeline' has no attribute 'no_such_module'" in done.stderr


# --- logging --------------------------------------------------------------------------------------


def test_local_process_cluster_is_quiet_without_verbose(tiny_image, tmp_path):
    """A LocalCluster's INFO lines (scheduler, nanny, workers) appear only with -v."""
    def run(*extra: str) -> subprocess.CompletedProcess:
        out = tmp_path / f"o{len(extra)}.zarr"
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "segment", tiny_image, "-o", str(out), "-k", "4",
             "--local-scheduler", "processes", "--n-workers", "1", *extra],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
            env={**os.environ, "PYTHONPATH": ROOT},
        )

    quiet = run()
    assert quiet.returncode == 0, quiet.stderr
    assert "pixels per cluster=[384, 384, 384, 384]" in quiet.stdout
    assert "distributed." not in quiet.stderr
    assert "kmseg: fitting k=4" in quiet.stderr
    verbose = run("-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "distributed.scheduler - INFO" in verbose.stderr


# --- demo -----------------------------------------------------------------------------------------


def test_demo_runs_twice_replacing_its_own_output(tmp_path, capsys):
    folder = tmp_path / "demo"
    store = folder / "astronaut.zarr"
    assert main(["demo", str(folder), "-q", "-k", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"{store}: k=2 ")
    assert _kmseg_meta(store)["status"] == "complete"
    assert main(["demo", str(folder), "-q", "-k", "3"]) == 0  # the README's command, again
    assert capsys.readouterr().out.startswith(f"{store}: k=3 ")
    meta = _kmseg_meta(store)
    assert (meta["k"], meta["status"]) == (3, "complete")
    assert meta["input"]["shape"] == [512, 512, 3]


def test_demo_refuses_what_it_did_not_write(tmp_path, tiny_image, capsys):
    folder = tmp_path / "demo"
    folder.mkdir()
    # the user's own folder at the demo's path
    (folder / "astronaut.zarr").mkdir()
    (folder / "astronaut.zarr" / "notes.txt").write_text("mine")
    assert main(["demo", str(folder), "-q"]) == 2
    assert "not an earlier kmseg demo output" in _error_line(capsys)
    assert (folder / "astronaut.zarr" / "notes.txt").read_text() == "mine"
    # a kmseg output of another image at the demo's path
    other = tmp_path / "other"
    other.mkdir()
    assert main(["segment", tiny_image, "-o", str(other / "astronaut.zarr"), "-q"]) == 0
    capsys.readouterr()
    assert main(["demo", str(other), "-q"]) == 2
    assert "not an earlier kmseg demo output" in _error_line(capsys)
    assert _kmseg_meta(other / "astronaut.zarr")["input"]["path"] == tiny_image


def test_segment_inputs_from_the_environment(tiny_image, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "env.zarr")
    monkeypatch.setenv("KMSEG_INPUTS", tiny_image)
    monkeypatch.setenv("KMSEG_OUTPUT", out)
    assert main(["segment", "-q"]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: k=4 ")
    monkeypatch.delenv("KMSEG_INPUTS")
    assert main(["segment", "-q", "--overwrite"]) == 2
    assert _error_line(capsys).startswith("kmseg: error: inputs: no input given")


def test_list_flag_accepts_none(tiny_image, tmp_path, capsys):
    out = tmp_path / "o.zarr"
    assert main(["segment", tiny_image, "-o", str(out), "-q", "--chunks", "none"]) == 0
    assert _kmseg_meta(out)["config"]["chunks"] is None


def test_info_and_report_accept_quiet(tiny_image, tmp_path, capsys):
    out = str(tmp_path / "o.zarr")
    assert main(["segment", tiny_image, "-o", out, "-q"]) == 0
    assert main(["info", out, "-q"]) == 0
    assert main(["report", out, "-q", "-o", str(tmp_path / "page.html")]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("level", "text", "line"),
    [("ERROR", "kmseg-photo.zarr: exists", "kmseg: error: kmseg-photo.zarr: exists"),
     ("WARNING", "kmseg_missing.png: odd", "kmseg: warning: kmseg_missing.png: odd"),
     ("INFO", "kmseg-demo/astronaut.zarr written", "kmseg: kmseg-demo/astronaut.zarr written"),
     ("ERROR", "kmseg: interrupted", "kmseg: interrupted")],
)
def test_messages_starting_with_kmseg_keep_the_prefix(level, text, line):
    import logging

    from pipeline.cli import _Formatter

    record = logging.LogRecord("pipeline", getattr(logging, level), __file__, 1, text, (), None)
    assert _Formatter().format(record) == line


def test_log_line_during_a_progress_bar_gets_its_own_line(monkeypatch):
    """A message logged while a progress bar is drawn (the first run's compile notice, a
    warning) is printed on a line of its own, not appended to the bar."""
    import io
    import logging

    from tqdm import tqdm

    from pipeline.cli import setup_logging

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    setup_logging(0, quiet=False)
    with tqdm(total=4, desc="kmseg: working", file=sys.stderr) as bar:
        bar.update(1)
        logging.getLogger("kmseg").info("a message")
        bar.update(1)
    [line] = [line for line in err.getvalue().split("\n") if "a message" in line]
    assert line.split("\r")[-1] == "kmseg: a message"


@pytest.mark.parametrize("where", ["job file", "environment", "--set"])
def test_quiet_from_any_layer_silences_progress_messages(where, tiny_image, tmp_path, capsys,
                                                         monkeypatch):
    """``quiet`` ("no progress bar or progress messages") from a job file, KMSEG_QUIET or
    ``--set`` silences the messages as ``-q`` does (the first run's compile notice too: same
    logger, same level)."""
    out = tmp_path / "job.zarr"
    job = tmp_path / "job.yaml"
    job.write_text(f"inputs: [{tiny_image}]\noutput: {out}\nk: 4\n"
                   + ("quiet: true\n" if where == "job file" else ""))
    args = ["run", str(job)]
    if where == "environment":
        monkeypatch.setenv("KMSEG_QUIET", "true")
        args = ["segment", tiny_image, "-k", "4", "-o", str(out)]
    elif where == "--set":
        args = ["fit", tiny_image, "-k", "4", "-o", str(tmp_path / "model.json"),
                "--set", "quiet=true"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert re.match(r".*: k=4 engine=exact mse=", captured.out)


def test_no_writable_numba_cache_is_one_line_exit_2(tiny_image, tmp_path, capsys, monkeypatch):
    """A read-only install without a writable home: numba finds no folder for kmseg's kernels
    (``cache=True``) and raises when a kernel's module is imported; the job says what to set."""
    import pipeline.api

    def no_locator(config):
        raise RuntimeError("cannot cache function '_slot': no locator available for file "
                           "'/usr/lib/kmseg/pipeline/engines/bins.py'")

    monkeypatch.setattr(pipeline.api, "run", no_locator)
    assert main(["segment", tiny_image, "-k", "2", "-o", str(tmp_path / "o.zarr")]) == 2
    line = _error_line(capsys)
    assert line.startswith("kmseg: error: cannot cache kmseg's compiled kernels: cannot cache "
                           "function '_slot': no locator available for file ")
    assert line.endswith("; point NUMBA_CACHE_DIR at a writable folder")


@pytest.mark.parametrize("args", [["--version"], ["info", "{store}"]], ids=["version", "info"])
def test_reader_gone_stops_quietly(args, tiny_image, tmp_path):
    """`kmseg ... | head` whose reader has gone: no traceback, no error line, exit 141 (128 +
    SIGPIPE), as Unix tools stop. (argparse's --help already ignores a closed output.)"""
    store = tmp_path / "out.zarr"
    if "{store}" in args:
        assert main(["segment", str(tiny_image), "-k", "2", "-o", str(store), "-q"]) == 0
    read, write = os.pipe()
    os.close(read)  # the reader is gone before kmseg writes
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", *[a.format(store=store) for a in args]],
            stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120,
        )
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("argv, hint", [
    (["segment", "a.png", "--overwite", "-o", "o.zarr"], "did you mean --overwrite?"),
    (["segment", "a.png", "--random-sate=3", "-o", "o.zarr"], "did you mean --random-state?"),
    (["info", "o.zarr", "--cvs"], "did you mean --csv?"),
    (["segment", "a.png", "--zzzzzz", "-o", "o.zarr"], None),
])
def test_a_mistyped_option_gets_the_closest_one(argv, hint, capsys):
    # Python 3.11's argparse said "unrecognized arguments: --overwite" and no more.
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("kmseg: error: unrecognized arguments: ")
    assert (hint in line) if hint else ("did you mean" not in line)


def test_fit_without_output_names_the_model_file(tiny_image, capsys):
    """`kmseg fit` without -o: the line names what -o takes for fit (it said -o OUT.zarr)."""
    assert main(["fit", str(tiny_image), "-k", "2"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("kmseg: error: output: no output given") and "-o MODEL.json" in line


def test_fit_has_no_flags_for_keys_it_ignores(tiny_image, tmp_path, capsys):
    """`kmseg fit` writes a model, not a store: --report, --pyramid-levels, --model ... were
    accepted and ignored without a word. They are refused, naming the commands that take them."""
    model = tmp_path / "m.json"
    assert main(["fit", str(tiny_image), "-k", "2", "-o", str(model), "--report"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == ("kmseg: error: unrecognized arguments: --report; --report is an option of "
                    "kmseg segment and run, not of kmseg fit (see kmseg --help)")
    assert not model.exists()
    help_text = build_parser()._subparsers._group_actions[0].choices["fit"].format_help()
    for flag in ("--report", "--pyramid-levels", "--model", "--shared-model",
                 "--batch-processes"):
        assert flag not in help_text
    assert "--batch-inputs" in help_text and "--overwrite" in help_text


def test_an_input_failing_before_the_fit_gets_no_empty_fitting_line(tmp_path, capsys):
    """A single input that fails before its fit (no pixel with data) printed 'fitting k=3: '
    with no name before its error line."""
    path = tmp_path / "nan.npy"
    np.save(path, np.full((8, 8), np.nan, np.float32))
    assert main(["segment", str(path), "-k", "3", "-o", str(tmp_path / "o.zarr")]) == 2
    err = capsys.readouterr().err
    assert "fitting" not in err
    assert err.strip().splitlines()[-1] == (f"kmseg: error: {path}: no pixel has data "
                                            "(no data: NaN or infinite value)")
