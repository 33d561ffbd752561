"""Output safety (issue 11, items 1-4 and 9): nothing is lost, no wrong success is reported.

Every case runs the CLI in-process and checks the exit status, the one-line message naming
the paths involved, and that every file of the inputs (and of anything refused) is unchanged,
by sha256 before and after.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import string
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.errors import KmsegWarning, OutputError
from pipeline.lock import LOCK_SUFFIX, OutputLock, lock_path
from pipeline.outputs import (
    check_output,
    output_name,
    output_status,
    overlap,
    unique_names,
    write_problem,
)

ARGS = ["-k", "3", "-q", "--random-state", "0"]


def checksums(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (files given directly count too)."""
    out = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("kmseg: error: ") and "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def image() -> np.ndarray:
    """Four flat quadrants: the labels of any correct k=4 run are known."""
    data = np.zeros((48, 64, 3), np.uint8)
    data[:24, 32:] = (200, 30, 30)
    data[24:, :32] = (30, 200, 30)
    data[24:, 32:] = (30, 30, 200)
    return data


def zarr_input(path: Path, data: np.ndarray) -> Path:
    """A Zarr group at ``path`` with the image as array ``0`` (like ``scan.zarr/0``)."""
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.create_array("0", data=data, chunks=(24, 32, 3))
    return path


def kmseg_output(tmp_path: Path, name: str, image: np.ndarray) -> Path:
    source = tmp_path / f"{name}-source.npy"
    np.save(source, image)
    out = tmp_path / name
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 0
    return out


# --- item 1 and 2: an output may never be, contain, or lie inside an input -------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_through_symlinked_folder_is_refused(tmp_path, image, capsys, overwrite):
    data = tmp_path / "data"
    data.mkdir()
    scan = zarr_input(data / "scan.zarr", image)
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    before = checksums(data)
    output = str(tmp_path / "link" / "scan.zarr")
    assert main(["segment", str(scan), *ARGS, "-o", output, *overwrite]) == 2
    line = error_line(capsys)
    assert output in line and str(scan) in line
    assert checksums(data) == before


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_containing_the_input_is_refused(tmp_path, image, capsys, overwrite):
    scan = zarr_input(tmp_path / "scan.zarr", image)
    before = checksums(scan)
    source = f"{scan}/0"
    assert main(["segment", source, *ARGS, "-o", str(scan), *overwrite]) == 2
    line = error_line(capsys)
    assert f"{scan}: the output contains the input {source}" in line
    assert checksums(scan) == before


def test_output_inside_the_input_or_through_dotdot_is_refused(tmp_path, image, capsys):
    scan = zarr_input(tmp_path / "scan.zarr", image)
    before = checksums(scan)
    for output in (f"{scan}/out.zarr", f"{tmp_path}/x/../scan.zarr"):
        code = main(["segment", str(scan), *ARGS, "-o", output, "--overwrite"])
        assert code == 2
        assert output in error_line(capsys)
    assert checksums(scan) == before
    assert not (scan / "out.zarr").exists()


def test_unfinished_output_that_holds_the_input_is_kept(tmp_path, image, capsys):
    scan = zarr_input(tmp_path / "scan.zarr", image)
    root = zarr.open_group(str(scan), mode="r+")
    root.attrs["kmseg"] = {"version": "0", "status": "incomplete"}
    before = checksums(scan)
    assert main(["segment", f"{scan}/0", *ARGS, "-o", str(scan)]) == 2
    assert str(scan) in error_line(capsys)
    assert checksums(scan) == before


def test_overlap_of_urls():
    assert overlap("s3://b/scan.zarr", "s3://b/scan.zarr/0") == "contains"
    assert overlap("s3a://b/x/../scan.zarr/", "s3://b//scan.zarr") == "is"
    assert overlap("s3://b/scan.zarr/out.zarr", "s3://b/scan.zarr") == "lies inside"
    assert overlap("s3://b/scan.zarr2", "s3://b/scan.zarr") is None
    assert overlap("gs://b/scan.zarr", "s3://b/scan.zarr") is None


# --- item 3: --overwrite replaces only what kmseg wrote ---------------------------------------


def test_overwrite_refuses_a_zarr_group_with_user_files(tmp_path, image, capsys):
    source = tmp_path / "in.npy"
    np.save(source, image)
    folder = tmp_path / "project.zarr"
    zarr.open_group(str(folder), mode="w", zarr_format=3)
    (folder / "raw").mkdir()
    (folder / "raw" / "slide.bin").write_bytes(b"only copy")
    (folder / "notes.txt").write_text("my notes")
    before = checksums(folder, source)
    assert main(["segment", str(source), *ARGS, "-o", str(folder), "--overwrite"]) == 2
    line = error_line(capsys)
    assert str(folder) in line and "kmseg did not write" in line
    assert checksums(folder, source) == before


def test_overwrite_refuses_a_folder_and_lists_what_is_there(tmp_path, image, capsys):
    source = tmp_path / "in.npy"
    np.save(source, image)
    folder = tmp_path / "results"
    (folder / "raw").mkdir(parents=True)
    for name in ("notes.txt", "a.csv", "b.csv"):
        (folder / name).write_text(name)
    before = checksums(folder)
    assert main(["segment", str(source), *ARGS, "-o", str(folder), "--overwrite"]) == 2
    line = error_line(capsys)
    assert "holds 4 entries kmseg did not write: a.csv, b.csv, notes.txt, ..." in line
    assert checksums(folder) == before


def test_overwrite_refuses_extra_files_inside_a_kmseg_output(tmp_path, image, capsys):
    out = kmseg_output(tmp_path, "out.zarr", image)
    (out / "labels" / "notes.txt").write_text("mine")
    (out / "extra").mkdir()
    before = checksums(out)
    source = tmp_path / "out.zarr-source.npy"
    assert main(["segment", str(source), *ARGS, "-o", str(out), "--overwrite"]) == 2
    line = error_line(capsys)
    assert "2 entries kmseg did not write: extra/, labels/notes.txt" in line
    assert checksums(out) == before


def test_overwrite_refuses_a_group_kmseg_did_not_list(tmp_path, image, capsys):
    out = kmseg_output(tmp_path, "out.zarr", image)
    zarr.open_group(str(out / "mine"), mode="w", zarr_format=3).create_array(
        "data", shape=(2,), dtype="u1")
    before = checksums(out)
    source = tmp_path / "out.zarr-source.npy"
    assert main(["segment", str(source), *ARGS, "-o", str(out), "--overwrite"]) == 2
    assert "mine/" in error_line(capsys)
    assert checksums(out) == before


def test_overwrite_refuses_a_foreign_zarr_store(tmp_path, image, capsys):
    source = tmp_path / "in.npy"
    np.save(source, image)
    other = tmp_path / "other.zarr"
    zarr.create_array(str(other), shape=(4, 4), dtype="u1", zarr_format=3)[:] = 7
    before = checksums(other)
    assert main(["segment", str(source), *ARGS, "-o", str(other), "--overwrite"]) == 2
    assert f"{other}: already exists and is a Zarr store kmseg did not write" in error_line(capsys)
    assert checksums(other) == before


def test_overwrite_replaces_a_kmseg_output_and_an_empty_folder_is_used(tmp_path, image, capsys):
    out = kmseg_output(tmp_path, "out.zarr", image)
    source = tmp_path / "out.zarr-source.npy"
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 2
    assert "pass --overwrite" in error_line(capsys)
    assert main(["segment", str(source), "-k", "2", "-q", "-o", str(out), "--overwrite"]) == 0
    assert zarr.open_group(str(out), mode="r").attrs["kmseg"]["k"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["segment", str(source), *ARGS, "-o", str(empty)]) == 0
    assert output_status(str(empty)) == "complete"


def test_output_that_is_a_file_is_refused(tmp_path, image, capsys):
    source = tmp_path / "in.npy"
    np.save(source, image)
    target = tmp_path / "out.zarr"
    target.write_text("a file")
    assert main(["segment", str(source), *ARGS, "-o", str(target), "--overwrite"]) == 2
    assert str(target) in error_line(capsys)
    assert target.read_text() == "a file"


# --- item 4: one writer per output ----------------------------------------------------------


def test_second_writer_fails_at_once_naming_the_holder(tmp_path, image, capsys):
    source = tmp_path / "in.npy"
    np.save(source, image)
    out = tmp_path / "out.zarr"
    with OutputLock(str(out)):
        assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 2
        line = error_line(capsys)
        assert f"kmseg process {os.getpid()} on host {socket.gethostname()}, started " in line
        assert str(out) in line
        assert not out.exists()
    assert not Path(lock_path(str(out))).exists()
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 0


def test_lock_is_taken_when_writing_even_if_planning_passed(tmp_path, image):
    from pipeline.api import plan
    from pipeline.execution import open_executor

    source = tmp_path / "in.npy"
    np.save(source, image)
    out = tmp_path / "out.zarr"
    job = plan({"inputs": [str(source)], "output": str(out), "k": 3, "quiet": True})
    with (OutputLock(str(out)), open_executor(job.config) as executor,
          pytest.raises(OutputError, match="being written by kmseg process")):
        job.execute(executor)
    assert not out.exists()


@pytest.mark.filterwarnings("always::pipeline.errors.KmsegWarning")
def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, image, capsys):
    source = tmp_path / "in.npy"
    np.save(source, image)
    out = tmp_path / "out.zarr"
    stale = Path(str(out) + LOCK_SUFFIX)
    dead = {"host": socket.gethostname(), "pid": 2**22 + 17, "started": "2026-01-01T00:00:00"}
    stale.write_text(json.dumps(dead))
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 0
    warnings = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("kmseg: warning:")
    ]
    assert len(warnings) == 1 and f"stale lock of kmseg process {dead['pid']}" in warnings[0]
    assert output_status(str(out)) == "complete"
    assert not stale.exists()


def test_lock_is_released_on_interrupt_and_the_output_stays_incomplete(
    tmp_path, image, monkeypatch
):
    import importlib

    plan_module = importlib.import_module("pipeline.outputs")  # the batch creates the root there
    source = tmp_path / "in.npy"
    np.save(source, image)
    out = tmp_path / "out.zarr"
    real = plan_module.create_root

    def interrupted(path: str, overwrite: bool) -> zarr.Group:
        root = real(path, overwrite)
        root.attrs["kmseg"] = {"version": "x", "status": "incomplete"}
        raise KeyboardInterrupt

    monkeypatch.setattr(plan_module, "create_root", interrupted)
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 130
    assert output_status(str(out)) == "incomplete"
    assert not Path(lock_path(str(out))).exists()
    monkeypatch.setattr(plan_module, "create_root", real)
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 0
    assert output_status(str(out)) == "complete"


def test_info_tells_an_unfinished_output_apart(tmp_path, capsys):
    out = tmp_path / "o.zarr"
    root = zarr.open_group(str(out), mode="w", zarr_format=3)
    root.attrs["kmseg"] = {"version": "0", "status": "incomplete", "outputs": ["a", "b"]}
    group = root.create_group("a")
    group.attrs["kmseg"] = {"status": "complete"}
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "status incomplete" in printed and "INCOMPLETE" in printed
    assert "cluster" not in printed


# --- item 9: a full disk, a read-only file system -------------------------------------------


@pytest.mark.parametrize(
    ("code", "said"),
    [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only"),
     (errno.EDQUOT, "the disk quota is exceeded")],
)
def test_write_errors_name_the_output(tmp_path, image, capsys, monkeypatch, code, said):
    import zarr.storage._local as local

    source = tmp_path / "in.npy"
    np.save(source, image)
    out = tmp_path / "out.zarr"
    real = local._put
    calls = []

    def failing(path: Path, value, exclusive: bool = False) -> int:
        calls.append(path)
        if "/c/" in str(path) and len(calls) > 12:  # some chunks written, then the disk fails
            raise OSError(code, os.strerror(code), str(path))
        return real(path, value, exclusive)

    monkeypatch.setattr(local, "_put", failing)
    before = checksums(source)
    assert main(["segment", str(source), *ARGS, "-o", str(out), "--chunks", "8", "8"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"kmseg: error: {out}: cannot write the output: {said}")
    assert output_status(str(out)) == "incomplete"
    assert not Path(lock_path(str(out))).exists()
    assert checksums(source) == before
    monkeypatch.setattr(local, "_put", real)
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 0


def test_permission_errors_are_the_outputs_only_inside_it(tmp_path):
    out = str(tmp_path / "out.zarr")
    inside = OSError(errno.EACCES, "Permission denied", f"{out}/labels/zarr.json")
    elsewhere = OSError(errno.EACCES, "Permission denied", str(tmp_path / "in.png"))
    assert write_problem(inside, out) == "permission denied"
    assert write_problem(elsewhere, out) is None
    assert write_problem(OSError(errno.ENOSPC, "No space left"), out) == "the disk is full"
    assert write_problem(ValueError("x"), out) is None


def test_check_output_refuses_a_missing_parent(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_output(str(tmp_path / "nowhere" / "o.zarr"), False, [])


def test_check_output_names_a_parent_that_is_a_file(tmp_path):
    # It said "the folder .../notes.txt does not exist" of a file that is there.
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match=r"notes\.txt is a file, not a folder"):
        check_output(str(tmp_path / "notes.txt" / "o.zarr"), False, [])
    assert (tmp_path / "notes.txt").read_text() == "x"


# --- group names derived from input names ---------------------------------------------------

_NAME = st.text(alphabet=string.printable + "é/\\.\x00", max_size=40)


@given(st.lists(_NAME, min_size=1, max_size=8))
def test_group_names_are_safe_unique_and_stable(paths):
    names = unique_names(paths)
    assert names == unique_names(paths)
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert name and name not in (".", "..") and name[0].isalnum()
        assert "/" not in name and "\\" not in name and os.sep not in name
        assert name.lower() != "zarr.json" and len(name) <= 110
        assert set(name) <= set(string.ascii_letters + string.digits + "._-")


def test_group_names_examples():
    assert output_name("/data/scan.ome.tiff") == "scan"
    assert output_name("/data/..") == "image"
    assert output_name("zarr.json.png") == "image_zarr.json"
    assert unique_names(["a/x.png", "b/x.png", "x_2.png", "X.png"]) == ["x", "x_2", "x_2_2", "X_3"]
    # Accented letters kept their place as "_", and a first one was stripped: "sophagus".
    assert output_name("/data/Ösophagus Magen.tif") == "Osophagus_Magen"
    assert output_name("/data/ïmg ä.npy") == "img_a"
    assert output_name("Ｆｕｌｌ.png") == "Full"  # full-width letters (compatibility forms)
    assert output_name("日本.png") == "image"


def test_url_outputs_are_locked_too():
    import fsspec

    out = "memory://kmseg-test/out.zarr"
    fs = fsspec.filesystem("memory")
    with OutputLock(out):
        with pytest.raises(OutputError, match=f"being written by kmseg process {os.getpid()}"):
            OutputLock(out).__enter__()
        with pytest.raises(OutputError, match="being written by"):
            check_output(out, False, [])
    assert not fs.exists("/kmseg-test/out.zarr" + LOCK_SUFFIX)
    dead = {"host": socket.gethostname(), "pid": 2**22 + 17, "started": "2026-01-01T00:00:00"}
    fs.pipe_file("/kmseg-test/out.zarr" + LOCK_SUFFIX, json.dumps(dead).encode())
    with pytest.warns(KmsegWarning, match="stale lock"), OutputLock(out):
        pass
    elsewhere = {**dead, "host": "another-host"}
    fs.pipe_file("/kmseg-test/out.zarr" + LOCK_SUFFIX, json.dumps(elsewhere).encode())
    with pytest.raises(OutputError, match="on host another-host"):
        OutputLock(out).__enter__()
    fs.rm("/kmseg-test/out.zarr" + LOCK_SUFFIX)


# --- safety review: symlinked outputs, lock spellings, folder inputs, the report, messages ----


def test_overwrite_of_a_symlink_to_a_kmseg_output_is_refused_and_clears_nothing(
    tmp_path, image, capsys
):
    target = kmseg_output(tmp_path, "s2.zarr", image)
    link = tmp_path / "link.zarr"
    link.symlink_to(target, target_is_directory=True)
    source = tmp_path / "s2.zarr-source.npy"
    before = checksums(target, source)
    assert main(["segment", str(source), *ARGS, "-o", str(link), "--overwrite"]) == 2
    line = error_line(capsys)
    assert f"{link}: the output is a symbolic link (to {target})" in line
    assert checksums(target, source) == before
    assert output_status(str(target)) == "complete"
    assert not Path(lock_path(str(link))).exists()


def test_a_dangling_symlink_output_is_refused(tmp_path, image, capsys):
    source = tmp_path / "in.npy"
    np.save(source, image)
    link = tmp_path / "link.zarr"
    link.symlink_to(tmp_path / "nowhere.zarr")
    assert main(["segment", str(source), *ARGS, "-o", str(link)]) == 2
    assert "symbolic link" in error_line(capsys)
    assert not (tmp_path / "nowhere.zarr").exists()


def test_every_spelling_of_an_output_meets_one_lock(tmp_path, image, capsys, monkeypatch):
    """A second process holds the lock of ``out/s.zarr``; reaching that output through a link
    to it, a symlinked folder, ``..`` or a relative path is refused naming it, and nothing
    changes."""
    import subprocess
    import sys

    import pipeline

    (tmp_path / "out").mkdir()
    out = kmseg_output(tmp_path / "out", "s.zarr", image)
    source = tmp_path / "out" / "s.zarr-source.npy"
    (tmp_path / "alias").symlink_to(tmp_path / "out", target_is_directory=True)
    (tmp_path / "link.zarr").symlink_to(out, target_is_directory=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom pipeline.lock import OutputLock\n"
         f"with OutputLock({str(out)!r}):\n    print('held', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(pipeline.__file__).resolve().parents[1])},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = checksums(tmp_path / "out")  # the output, its source and the holder's lock
        monkeypatch.chdir(tmp_path / "out")
        for spelling in (str(tmp_path / "link.zarr"), str(tmp_path / "alias" / "s.zarr"),
                         str(tmp_path / "out" / ".." / "out" / "s.zarr"), "s.zarr", "./s.zarr/"):
            code = main(["segment", str(source), *ARGS, "-o", spelling, "--overwrite"])
            assert code == 2, spelling
            line = error_line(capsys)
            assert f"kmseg process {holder.pid} on host {socket.gethostname()}" in line
            assert checksums(tmp_path / "out") == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not Path(lock_path(str(out))).exists()
    assert main(["segment", str(source), *ARGS, "-o", "s.zarr", "--overwrite"]) == 0


def test_lock_path_is_beside_the_real_path(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    expected = str(tmp_path.resolve() / "real" / f"s.zarr{LOCK_SUFFIX}")
    assert lock_path(str(tmp_path / "alias" / "s.zarr")) == expected
    assert lock_path(str(tmp_path / "real" / "x" / ".." / "s.zarr")) == expected
    assert lock_path("s3://bucket/a/s.zarr") == f"s3://bucket/a/s.zarr{LOCK_SUFFIX}"


@pytest.mark.parametrize("layout", ["folder", "glob"])
def test_output_inside_a_folder_or_matched_by_a_glob_input_is_refused(
    tmp_path, image, capsys, layout
):
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(2):
        np.save(folder / f"img{i}.npy", image)
    # A folder input covers everything inside it; a glob covers what it matches (folder/*
    # would take folder/x.zarr for an input on a rerun).
    given = str(folder) if layout == "folder" else str(folder / "*")
    expected = (
        "the output lies inside the input" if layout == "folder"
        else "the input pattern " + given + " matches the output"
    )
    before = checksums(folder)
    for overwrite in ([], ["--overwrite"]):
        output = str(folder / "x.zarr")
        assert main(["segment", given, *ARGS, "-o", output, *overwrite]) == 2
        assert f"{output}: {expected}" in error_line(capsys)
        assert checksums(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["img0.npy", "img1.npy"]
    # beside the folder is fine
    assert main(["segment", given, *ARGS, "-o", str(tmp_path / "x.zarr")]) == 0


def test_an_output_a_glob_does_not_match_may_sit_beside_its_files(tmp_path, image):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(2):
        np.save(folder / f"img{i}.npy", image)
    before = checksums(folder)
    assert main(["segment", str(folder / "*.npy"), *ARGS, "-o", str(folder / "seg.zarr")]) == 0
    assert checksums(folder / "img0.npy", folder / "img1.npy") == before
    # a rerun reads the same two inputs (the output is not taken for one) and is refused only
    # because the output exists
    assert main(["segment", str(folder / "*.npy"), *ARGS, "-o", str(folder / "seg.zarr")]) == 2


def test_input_root_of_globs_folders_and_files(tmp_path):
    from pipeline.outputs import input_root

    (tmp_path / "a").mkdir()
    named = tmp_path / "scan[1].npy"
    named.write_bytes(b"")
    assert input_root(str(tmp_path / "a" / "*.png")) == str(tmp_path / "a")
    assert input_root(str(tmp_path / "a" / "**" / "x?.png")) == str(tmp_path / "a")
    assert input_root(str(tmp_path / "a")) == str(tmp_path / "a")
    assert input_root(str(named)) == str(named)  # an existing file is itself
    assert input_root("*.png") == "."


@pytest.mark.parametrize("where", ["input", "notes", "folder-input", "output", "inside-output"])
def test_performance_report_never_replaces_what_kmseg_did_not_write(
    tmp_path, image, capsys, where
):
    folder = tmp_path / "folder"
    folder.mkdir()
    victim = folder / "victim.npy"
    np.save(victim, image)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    out = tmp_path / "out.zarr"
    given, report = {
        "input": (victim, victim),
        "notes": (victim, notes),
        "folder-input": (folder, folder / "r.html"),
        "output": (victim, out),
        "inside-output": (victim, out / "r.html"),
    }[where]
    if where == "inside-output":
        kmseg_output(tmp_path, "out.zarr", image)
        (tmp_path / "out.zarr-source.npy").unlink()
    before = checksums(folder, notes, *([out] if out.exists() else []))
    argv = ["segment", str(given), *ARGS, "-o", str(out), "--overwrite",
            "--performance-report", str(report)]
    assert main(argv) == 2
    assert str(report) in error_line(capsys)
    assert checksums(folder, notes, *([out] if out.exists() else [])) == before
    assert not (folder / "r.html").exists() and not (out / "r.html").exists()


def test_performance_report_replaces_an_earlier_one(tmp_path, image):
    source = tmp_path / "in.npy"
    np.save(source, image)
    report = tmp_path / "perf.html"
    out = str(tmp_path / "out.zarr")
    assert main(["segment", str(source), *ARGS, "-o", out, "--performance-report",
                 str(report)]) == 0
    first = report.read_text()
    assert "<title>Dask Performance Report</title>" in first
    assert main(["segment", str(source), *ARGS, "-o", out, "--overwrite",
                 "--performance-report", str(report)]) == 0
    assert "<title>Dask Performance Report</title>" in report.read_text()


def test_already_exists_names_the_python_keyword_too(tmp_path, image):
    from pipeline.api import segment

    out = kmseg_output(tmp_path, "out.zarr", image)
    with pytest.raises(OutputError, match=r"pass --overwrite \(overwrite=True in Python\)"):
        segment(image, str(out), k=2)


def test_zarr_temporary_files_of_a_killed_write_are_not_foreign(tmp_path, image):
    from pipeline.outputs import foreign_entries

    source = tmp_path / "in.npy"
    np.save(source, image)
    out = tmp_path / "out.zarr"
    assert main(["segment", str(source), *ARGS, "-o", str(out)]) == 0
    leftover = out / "labels" / "clusters" / f"zarr.{'0123456789abcdef' * 2}.partial"
    leftover.write_text("{")
    assert foreign_entries(str(out)) == []
    (out / "labels" / "notes.partial").write_text("mine")
    assert foreign_entries(str(out)) == ["labels/notes.partial"]
