"""Batches of many images: layout decided once, resume after SIGKILL, on_error, label order,
one model for many images, memory independent of the number of inputs.

Every batch here runs in a real ``python -m pipeline`` process (the CLI) unless it tests the
Python API.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

import pipeline
from pipeline.cli import main
from pipeline.config import build_config
from pipeline.plan import build_plan

#: Four colours of distinct luminance, darkest first (Rec. 709 luma).
COLOURS = np.array([[10, 20, 30], [200, 40, 40], [40, 200, 60], [250, 240, 230]], np.uint8)
ROOT = Path(__file__).resolve().parents[1]


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def patch_image(seed: int, size: int = 24, colours: np.ndarray = COLOURS) -> np.ndarray:
    """A ``size`` x ``size`` RGB image of the given colours in random blocks, with every colour
    present; returns the image and the index of each pixel's colour."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(colours), size=(size // 4, size // 4)).repeat(4, 0).repeat(4, 1)
    index.flat[: len(colours)] = np.arange(len(colours))
    return colours[index], index


def write_pngs(folder: Path, n: int, size: int = 24, noise: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image, _ = patch_image(i, size)
        if noise:
            rng = np.random.default_rng(i)
            image = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0, 255)
        path = folder / f"img{i:03d}.png"
        Image.fromarray(image.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def kmseg(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, env=environ, timeout=600, **kwargs)


def kmseg_background(*args: str, env: dict | None = None, stderr=subprocess.DEVNULL,
                     **kwargs) -> subprocess.Popen:
    """``python -m pipeline ARGS`` started in the background (stdout discarded)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=environ,
                            stdout=subprocess.DEVNULL, stderr=stderr,
                            text=stderr is not subprocess.DEVNULL, **kwargs)


def group_status(root: Path, name: str) -> str | None:
    try:
        meta = json.loads((root / name / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("attributes", {}).get("kmseg", {}).get("status")


#: Metadata that differs between two runs of the same job: times, the output's own path, and
#: how many processes ran it.
_VARYING = {"timings", "fit_s", "bin_fit_s", "curve_s", "summary_task_s", "created", "output",
            "batch_processes"}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VARYING}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def assert_same_store(a: Path, b: Path) -> None:
    """Every file of two stores equal: chunk files byte for byte, metadata except timings."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        left, right = (a / rel).read_bytes(), (b / rel).read_bytes()
        if rel.name == "zarr.json":
            assert _strip(json.loads(left)) == _strip(json.loads(right)), rel
        else:
            assert left == right, f"{rel} differs"


# -- layout and plan ------------------------------------------------------------------------


def test_glob_results_report_their_own_groups(tmp_path):
    """Bug of issue 12: a glob of two PNGs wrote out.zarr/a and out.zarr/b but both results
    reported out.zarr."""
    (tmp_path / "in").mkdir()  # the output may not lie in a glob's folder
    for name, seed in (("a", 1), ("b", 2)):
        Image.fromarray(patch_image(seed)[0]).save(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out.zarr"
    results = pipeline.run({"inputs": [str(tmp_path / "in" / "*.png")], "output": str(out),
                            "k": 4, "quiet": True})
    assert [r.output for r in results] == [f"{out}/a", f"{out}/b"]
    assert group_status(out, "a") == group_status(out, "b") == "complete"


def test_layout_rule(tmp_path):
    """One explicit file: the store is the image; a glob or a folder, even of one file: groups."""
    folder = tmp_path / "one"
    [path] = write_pngs(folder, 1)
    explicit = build_plan(build_config({"inputs": [str(path)], "output": str(tmp_path / "e")}))
    assert not explicit.grouped and explicit.jobs[0].output == str(tmp_path / "e")
    for item in (str(folder / "*.png"), str(folder)):
        plan = build_plan(build_config({"inputs": [item], "output": str(tmp_path / "g")}))
        assert plan.grouped and plan.jobs[0].output == f"{tmp_path / 'g'}/img000"


def test_plan_is_lazy_and_immutable(tmp_path):
    """Planning opens no input (a broken file fails only when its window runs), and executing
    leaves the plan as it was."""
    write_pngs(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    config = build_config({"inputs": [str(tmp_path / "in")], "output": str(tmp_path / "o"),
                           "quiet": True, "on_error": "continue"})
    plan = build_plan(config)
    before = list(plan.jobs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.jobs[0].name = "x"  # type: ignore[misc]
    from pipeline.execution import open_executor

    with open_executor(plan.config) as executor:
        results = plan.execute(executor)
    assert list(plan.jobs) == before
    assert [r.name for r in results] == ["img000", "img001"]
    assert [f.name for f in results.failed] == ["broken"]


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [[], ["--batch-inputs", "1", "--batch-processes", "2"]],
                         ids=["here", "in processes"])
def test_on_error_continue(tmp_path, processes):
    """A bad file and a one-colour image fail; the others are written; exit status 3. In
    processes, both failures happen in worker processes (the first window runs here)."""
    folder = tmp_path / "in"
    write_pngs(folder, 2)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(folder / "flat.png")
    out = tmp_path / "out.zarr"
    proc = kmseg("segment", str(folder), "-k", "4", "-o", str(out), "-q",
                 "--on-error", "continue", *processes)
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(lines) == 2
    assert any("bad.png" in line for line in lines)
    assert any("flat.png" in line and "k=4" in line for line in lines)
    meta = zarr.open_group(out, mode="r").attrs["kmseg"]
    assert meta["status"] == "partial"
    assert [f["input"] for f in meta["failed"]] == ["bad", "flat"]
    assert meta["outputs"] == ["img000", "img001"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["img000", "img001"]
    # The default stops at the first failure, with one line naming the file.
    stopped = kmseg("segment", str(folder), "-k", "4", "-o", str(tmp_path / "s.zarr"), "-q")
    assert stopped.returncode == 2
    assert stopped.stderr.strip().count("\n") == 0 and "bad.png" in stopped.stderr


# -- resume -----------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", ["1", "2"])
def test_killed_batch_resumes_to_the_same_bytes(tmp_path, processes):
    """SIGKILL the client mid-batch; the same command keeps the finished inputs, does the rest,
    says so, and the store equals an uninterrupted run's file for file. With worker processes
    (two), the workers die with the client."""
    folder = tmp_path / "in"
    n = 48
    write_pngs(folder, n, size=32, noise=True)
    args = ["-k", "3", "-q", "--batch-inputs", "4", "--batch-processes", processes]
    env: dict[str, str] = {}
    reference = tmp_path / "reference.zarr"
    assert kmseg("segment", str(folder), *args, "-o", str(reference), env=env).returncode == 0

    out = tmp_path / "out.zarr"
    proc = kmseg_background("segment", str(folder), *args, "-o", str(out), env=env)
    deadline = time.monotonic() + 300
    done = 0
    workers: list[int] = []
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            done = sum(group_status(out, f"img{i:03d}") == "complete" for i in range(n))
            workers = _children(proc.pid)
            # with worker processes: once they run (they start after the first window)
            if done >= 4 and (processes == "1" or len(workers) >= 2):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the batch ended before it could be killed"
    if processes == "2":
        assert len(workers) >= 2  # the pool's processes
    assert _alive(workers) == []
    finished = [i for i in range(n) if group_status(out, f"img{i:03d}") == "complete"]
    assert 0 < len(finished) < n
    kept = out / f"img{finished[0]:03d}" / "labels" / "clusters" / "0" / "c"
    stamps = {p: p.stat().st_mtime_ns for p in kept.rglob("*") if p.is_file()}

    # Another configuration over the unfinished batch is refused in one line.
    other = kmseg("segment", str(folder), "-k", "4", "-q", "-o", str(out), env=env)
    assert other.returncode == 2
    assert other.stderr.count("\n") == 1, other.stderr
    assert "different job configuration" in other.stderr

    again = kmseg("segment", str(folder), *args, "-o", str(out), env=env)
    assert again.returncode == 0, again.stderr
    [said] = [line for line in again.stderr.splitlines() if "resuming" in line]
    done = int(said.split(" of ")[0].split()[-1])
    assert done >= len(finished)
    assert f"{done} of {n} done, resuming" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished inputs untouched
    assert_same_store(reference, out)
    # A finished batch is never rewritten without --overwrite.
    assert kmseg("segment", str(folder), *args, "-o", str(out), env=env).returncode == 2


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"PPid:\t{parent}\n" in status:
                found.append(int(entry.name))
    return found


def _alive(pids: list[int], wait: float = 10.0) -> list[int]:
    """Those of ``pids`` still running (not zombies) after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _unfinished_copy(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A reference store of 3 inputs and a second, finished one whose root says
    ``incomplete`` again (as an interrupted batch leaves it): ``(args, reference, out)``."""
    folder = tmp_path / "in"
    write_pngs(folder, 3, size=24)
    args = ["segment", str(folder), "-k", "4", "-q", "--batch-inputs", "1"]
    reference, out = tmp_path / "reference.zarr", tmp_path / "out.zarr"
    assert kmseg(*args, "-o", str(reference)).returncode == 0
    assert kmseg(*args, "-o", str(out)).returncode == 0
    _set_status(out, "incomplete")
    return args, reference, out


def _set_status(group: Path, status: str) -> None:
    """Rewrite the kmseg ``status`` in the metadata of ``group``."""
    meta = json.loads((group / "zarr.json").read_text())
    meta["attributes"]["kmseg"]["status"] = status
    (group / "zarr.json").write_text(json.dumps(meta))


def test_resume_after_a_kill_between_a_folder_and_its_zarr_json(tmp_path):
    """A SIGKILL while zarr creates a node leaves its folder without ``zarr.json`` (an empty
    ``img002/`` or ``img001/0/``); the bug: the rerun refused the output as holding an entry
    kmseg did not write instead of resuming. The leftovers are the state such a kill leaves,
    made by hand so the test does not depend on when the kill lands."""
    args, reference, out = _unfinished_copy(tmp_path)
    _set_status(out / "img001", "incomplete")
    shutil.rmtree(out / "img001" / "0")  # img001 half created: level 0 without zarr.json
    (out / "img001" / "0").mkdir()
    shutil.rmtree(out / "img002")
    (out / "img002" / "labels").mkdir(parents=True)  # img002: folders only

    again = kmseg(*args, "-o", str(out))
    assert again.returncode == 0, again.stderr
    # and says nothing else (the bug: zarr's "Object at img002 is not recognized as a
    # component of a Zarr hierarchy" for each such folder, also for the empty prefixes an S3
    # server such as SeaweedFS keeps after kmseg removed a group)
    assert again.stderr == "kmseg: warning: 1 of 3 done, resuming\n"
    assert_same_store(reference, out)


def test_resume_after_a_kill_while_a_window_s_nodes_are_created(tmp_path):
    """A window's groups and arrays are created concurrently (one ``create_hierarchy``), so a
    SIGKILL can leave a node's children without the node's own ``zarr.json``: ``img001/``
    holding ``img001/0/zarr.json`` and ``img001/labels/...``, or ``img002/labels/clusters/``
    holding ``clusters/0/zarr.json``. The bug (seen killing the main process of a batch with
    worker processes, three windows being created at once): every rerun refused the output as
    holding entries kmseg did not write, so the batch could never be resumed. The leftovers are
    made by hand from a finished store so the test does not depend on when the kill lands."""
    args, reference, out = _unfinished_copy(tmp_path)
    (out / "img001" / "zarr.json").unlink()  # the group's children are there, not the group
    _set_status(out / "img002", "incomplete")
    (out / "img002" / "labels" / "clusters" / "zarr.json").unlink()

    again = kmseg(*args, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stderr == "kmseg: warning: 1 of 3 done, resuming\n"
    assert_same_store(reference, out)
    # What kmseg did not write is still refused: a file beside the half-created nodes.
    _set_status(out, "incomplete")
    (out / "img001" / "zarr.json").unlink()
    (out / "img001" / "notes.txt").write_text("mine")
    refused = kmseg(*args, "-o", str(out))
    assert refused.returncode == 2 and "img001/notes.txt" in refused.stderr, refused.stderr
    assert (out / "img001" / "notes.txt").read_text() == "mine"
    # A half-created group of an input that now fails (on_error: continue) is removed, not
    # left in the partial output.
    (out / "img001" / "notes.txt").unlink()
    (tmp_path / "in" / "img001.png").write_bytes(b"not a png")
    partial = kmseg(*args, "-o", str(out), "--on-error", "continue")
    assert partial.returncode == 3, partial.stderr
    assert not (out / "img001").exists()


def test_report_of_a_partial_batch(tmp_path):
    """``report: true`` with ``on_error: continue`` and a failing input; the bug: the batch
    ended with exit 2 ("the job did not finish (status incomplete)") and no page, though the
    output was a finished partial batch. The page shows the finished images and lists the
    failed input once with its error; exit 3 as for any partial batch."""
    folder = tmp_path / "in"
    write_pngs(folder, 3, size=24)
    Image.fromarray(np.full((24, 24, 3), 9, np.uint8)).save(folder / "img001.png")
    out = tmp_path / "out.zarr"
    proc = kmseg("segment", str(folder), "-k", "4", "-q", "-o", str(out), "--report",
                 "--on-error", "continue")
    assert proc.returncode == 3, proc.stderr
    page = (tmp_path / "out.report.html").read_text()
    assert "img000" in page and "img002" in page
    bad = str(folder / "img001.png")
    assert f"<li>{bad}: k=4 is larger than the 1 distinct value(s) in the image</li>" in page
    info = kmseg("info", str(out)).stdout
    assert info.count(bad) == 1 and "1 input(s) failed" in info


def test_resume_refuses_a_finished_input_that_is_no_longer_an_input(tmp_path):
    """An input finished by a killed batch and removed from the folder before the rerun; the
    bug: the rerun resumed and kept its group, unlisted in the root's ``outputs``, so the
    output held a result of no input of the job and ``--overwrite`` then refused the store as
    holding an entry kmseg did not write. Refused in one line, as a changed input is, and
    ``--overwrite`` starts over."""
    folder = tmp_path / "in"
    write_pngs(folder, 3, size=24)
    out = tmp_path / "out.zarr"
    args = ["segment", str(folder), "-k", "4", "-q", "--batch-inputs", "1", "-o", str(out)]
    assert kmseg(*args).returncode == 0
    for meta in (out / "zarr.json", out / "img002" / "zarr.json"):  # as a kill leaves it
        doc = json.loads(meta.read_text())
        doc["attributes"]["kmseg"]["status"] = "incomplete"
        meta.write_text(json.dumps(doc))
    (folder / "img000.png").unlink()

    again = kmseg(*args)
    assert again.returncode == 2, again.stderr
    assert again.stderr.count("\n") == 1 and str(folder / "img000.png") in again.stderr
    assert "no longer one of its inputs" in again.stderr
    assert group_status(out, "img000") == "complete"  # nothing removed by the refusal

    fresh = kmseg(*args, "--overwrite")
    assert fresh.returncode == 0, fresh.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["img001", "img002"]


def test_resume_refuses_a_mask_changed_since_its_input_was_segmented(tmp_path):
    """``--mask FOLDER``: the job's fingerprint knows only the folder's name; the bug: a mask
    replaced between the killed run and the rerun went unnoticed, so the resumed output mixed
    results of the old and the new masks. Refused in one line naming the mask."""
    folder, masks = tmp_path / "in", tmp_path / "masks"
    write_pngs(folder, 3, size=24)
    masks.mkdir()
    inside = np.zeros((24, 24), np.uint8)
    inside[4:20, 2:22] = 255
    for i in range(3):
        Image.fromarray(inside).save(masks / f"img{i:03d}.png")
    out = tmp_path / "out.zarr"
    args = ["segment", str(folder), "-k", "4", "-q", "--batch-inputs", "1", "--mask",
            str(masks), "-o", str(out)]
    assert kmseg(*args).returncode == 0
    for meta in (out / "zarr.json", out / "img002" / "zarr.json"):  # as a kill leaves it
        doc = json.loads(meta.read_text())
        doc["attributes"]["kmseg"]["status"] = "incomplete"
        meta.write_text(json.dumps(doc))
    inside[:, :12] = 0
    Image.fromarray(inside).save(masks / "img000.png")
    os.utime(masks / "img000.png", ns=(1, 10**18))  # another stamp whatever the clock

    again = kmseg(*args)
    assert again.returncode == 2, again.stderr
    assert again.stderr.count("\n") == 1, again.stderr
    assert f"the mask {masks / 'img000.png'} of the input" in again.stderr


@pytest.mark.parametrize("batch_inputs", ["1", "32", "1 in processes"])
def test_each_input_keeps_its_own_warnings(tmp_path, batch_inputs):
    """A warning raised when an input is opened (here nibabel repairing b.nii's header) is
    recorded in that input's metadata only. The bug: the window's warnings were counted from
    the start of its fit, after its inputs were opened, and the next window is opened before
    this one is written, so b's warning went to a's metadata and never to b's."""
    import struct

    import nibabel as nib

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in "abcd":
        data = rng.integers(0, 4, (20, 20, 6)).astype(np.int16) * 100
        nib.Nifti1Image(data, np.eye(4)).to_filename(folder / f"{name}.nii")
    raw = bytearray((folder / "b.nii").read_bytes())
    struct.pack_into("<f", raw, 80, -1.0)  # pixdim[1] < 0: nibabel repairs it and says so
    (folder / "b.nii").write_bytes(bytes(raw))
    out = tmp_path / "out.zarr"
    processes = ["--batch-processes", "2"] if "processes" in batch_inputs else []
    proc = kmseg("segment", str(folder), "-k", "4", "-q", "-o", str(out), "--batch-inputs",
                 batch_inputs.split()[0], *processes)
    assert proc.returncode == 0, proc.stderr
    warned = {name: json.loads((out / name / "zarr.json").read_text())["attributes"]["kmseg"][
        "warnings"] for name in "abcd"}
    assert warned["a"] == warned["c"] == warned["d"] == []
    [line] = warned["b"]
    assert line.startswith(f"{folder / 'b.nii'}: NIfTI header repaired by nibabel: pixdim")
    assert proc.stderr.count("NIfTI header repaired") == 1, proc.stderr


# -- label order --------------------------------------------------------------------------------


def test_label_one_is_the_darkest_class_in_every_image(tmp_path):
    folder = tmp_path / "in"
    rng = np.random.default_rng(5)
    expected = {}
    for i in range(4):
        # The same colours listed in a different order per image, so the fit finds them in
        # different orders.
        colours = COLOURS[rng.permutation(len(COLOURS))]
        image, index = patch_image(i, 24, colours)
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"p{i}.png")
        rank = np.argsort(np.argsort(_luma(colours)))  # 0 = darkest
        expected[f"p{i}"] = rank[index] + 1
    out = tmp_path / "out.zarr"
    assert main(["segment", str(folder), "-k", "4", "-o", str(out), "-q"]) == 0
    root = zarr.open_group(out, mode="r")
    for name, labels in expected.items():
        np.testing.assert_array_equal(root[f"{name}/labels/clusters/0"][...], labels)
        assert root[name].attrs["kmseg"]["label_order"] == "luminance"
    # size: label 1 is the largest class.
    out2 = tmp_path / "size.zarr"
    assert main(["segment", str(folder), "-k", "4", "-o", str(out2), "-q",
                 "--label-order", "size", "--engine", "sample"]) == 0
    for name, labels in expected.items():
        counts = zarr.open_group(out2, mode="r")[name].attrs["kmseg"]["pixels_per_cluster"]
        assert counts == sorted(np.bincount(labels.ravel())[1:].tolist(), reverse=True)


# -- one model for many images -------------------------------------------------------------------


def test_pooled_model_fitted_and_applied(tmp_path):
    folder = tmp_path / "in"
    paths = write_pngs(folder, 3, size=32, noise=True)
    model_path = tmp_path / "model.json"
    proc = kmseg("fit", *map(str, paths), "-k", "4", "-o", str(model_path), "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(model_path.read_text())
    assert data["format"] == "kmseg-model" and data["k"] == 4 and data["engine"] == "exact"
    centres = np.asarray(data["centres_features"])
    # The exact pooled objective: every pixel of every image, computed here with NumPy
    # (features of 8-bit values are v / 255 in float32, exact enough at that precision).
    pixels = np.concatenate([np.asarray(Image.open(p)).reshape(-1, 3) for p in paths])
    pixels = (pixels.astype(np.float32) / np.float32(255)).astype(np.float64)
    d2 = ((pixels[:, None, :] - centres[None]) ** 2).sum(-1)
    assert data["provenance"]["inertia"] == pytest.approx(d2.min(1).sum(), rel=1e-9)
    assert data["provenance"]["n_pixels"] == len(pixels)
    assert np.all(np.diff(_luma(centres * 255)) > 0)  # numbered by luminance

    out = tmp_path / "out.zarr"
    proc = kmseg("segment", *map(str, paths), "--model", str(model_path), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    root = zarr.open_group(out, mode="r")
    for path in paths:
        px = (np.asarray(Image.open(path)).astype(np.float32) / np.float32(255)).astype(float)
        d2 = ((px[..., None, :] - centres) ** 2).sum(-1)
        np.testing.assert_array_equal(root[f"{path.stem}/labels/clusters/0"][...],
                                      d2.argmin(-1) + 1)
        assert root[path.stem].attrs["kmseg"]["engine"] == "model"

    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(grey)
    proc = kmseg("segment", str(grey), "--model", str(model_path), "-o",
                 str(tmp_path / "g.zarr"), "-q")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(grey) in proc.stderr

    # --shared-model fits the same model and applies it.
    shared = tmp_path / "shared.zarr"
    proc = kmseg("segment", *map(str, paths), "-k", "4", "--shared-model", "-o", str(shared),
                 "-q")
    assert proc.returncode == 0, proc.stderr
    for path in paths:
        np.testing.assert_array_equal(root[f"{path.stem}/labels/clusters/0"][...],
                                      zarr.open_group(shared, mode="r")[
                                          f"{path.stem}/labels/clusters/0"][...])


def test_model_python_api(tmp_path):
    images = [patch_image(i, 16)[0] for i in range(3)]
    model = pipeline.fit(images, k=4, output=str(tmp_path / "m.json"))
    np.testing.assert_allclose(model.centres, COLOURS.astype(float), atol=1e-9)
    loaded = pipeline.Model.load(tmp_path / "m.json")
    np.testing.assert_array_equal(loaded.centres_features, model.centres_features)
    results = pipeline.segment(images, str(tmp_path / "o.zarr"), model=loaded, quiet=True)
    for result, image in zip(results, images, strict=True):
        assert result.mse == 0.0
        assert result.counts.sum() == image.shape[0] * image.shape[1]


def test_small_images_get_no_dense_lookup_table():
    """8-bit RGB keys (24 bits): a 256 x 256 image searches sorted keys instead of holding a
    16 MiB table; from 2^20 pixels on, the dense table is used."""
    from pipeline.engines.lookup import use_dense_table

    assert not use_dense_table(24, 256 * 256)
    assert use_dense_table(24, 1 << 20)
    assert use_dense_table(16, 10)
    assert not use_dense_table(32, 1 << 40)


# -- memory ----------------------------------------------------------------------------------------


_PEAK = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_is_flat_in_the_number_of_inputs(tmp_path):
    """Peak resident memory of 160 inputs stays within 60 MiB of that of 40."""
    peaks = {}
    for n in (40, 160):
        folder = write_pngs(tmp_path / f"in{n}", n, size=64, noise=True)[0].parent
        out = tmp_path / f"out{n}.zarr"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK, sys.executable, "-m", "pipeline", "segment",
             str(folder), "-k", "4", "-o", str(out), "-q", "--batch-inputs", "8"],
            capture_output=True, text=True, env=env, timeout=900,
        )
        assert proc.returncode == 0, proc.stderr
        peaks[n] = int(proc.stdout.split()[-1]) * 1024
    assert peaks[160] - peaks[40] < 60 * 2**20, peaks


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every process below it (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        todo += _children(current)
    return total


@pytest.mark.slow
def test_memory_of_the_worker_processes_is_flat_in_the_number_of_inputs(tmp_path):
    """With worker processes, the peak resident memory of the whole process tree (sampled
    every 20 ms) for 200 inputs stays within 100 MiB of that for 40."""
    peaks = {}
    for n in (40, 200):
        folder = write_pngs(tmp_path / f"in{n}", n, size=64, noise=True)[0].parent
        proc = kmseg_background("segment", str(folder), "-k", "4", "-o",
                                str(tmp_path / f"out{n}.zarr"), "-q", "--batch-processes", "2",
                                stderr=None)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.02)
        assert proc.returncode == 0
        peaks[n] = peak
    assert peaks[200] - peaks[40] < 100 * 2**20, peaks


def test_a_window_of_only_failing_inputs_with_continue(tmp_path, capsys):
    """Every input of a window fails: each is named, the batch goes on, exit 3, and
    ``kmseg info`` lists the failures."""
    from PIL import Image

    from pipeline.cli import main
    from pipeline.info import describe_output

    folder = tmp_path / "imgs"
    folder.mkdir()
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, 10:] = (200, 30, 40)
    Image.fromarray(image).save(folder / "a_good.png")
    (folder / "b_bad.png").write_bytes((folder / "a_good.png").read_bytes()[:60])
    (folder / "c_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    out = tmp_path / "o.zarr"
    code = main(["segment", str(folder), "-k", "2", "-o", str(out), "-q",
                 "--on-error", "continue", "--batch-inputs", "1"])
    err = capsys.readouterr().err
    assert code == 3
    assert "b_bad.png" in err and "c_bad.png" in err and "Traceback" not in err
    text = describe_output(str(out))
    assert "status partial" in text and "2 input(s) failed" in text
    assert text.count("failed: ") == 2 and "[a_good] k=2" in text


def test_the_fingerprint_follows_the_model_and_mask_files(tmp_path):
    from pipeline.batch import job_fingerprint
    from pipeline.config import build_config

    model, mask = tmp_path / "m.json", tmp_path / "mask.png"
    model.write_text('{"a": 1}')
    mask.write_bytes(b"1")
    config = build_config({"inputs": ["x"], "output": "o.zarr", "model": str(model),
                           "mask": str(mask)}, environ={})
    first = job_fingerprint(config)
    model.write_text('{"a": 2}')
    second = job_fingerprint(config)
    mask.write_bytes(b"22")
    third = job_fingerprint(config)
    assert len({first, second, third}) == 3


def test_resume_refuses_an_input_changed_since_it_was_segmented(tmp_path, capsys):
    from pipeline.cli import main as cli_main

    folder = tmp_path / "in"
    write_pngs(folder, 3, size=32, noise=True)
    out = tmp_path / "out.zarr"
    args = ["segment", str(folder), "-k", "3", "-q", "-o", str(out)]
    assert cli_main(args) == 0
    root = zarr.open_group(out, mode="r+")
    root.attrs["kmseg"] = {**root.attrs["kmseg"], "status": "incomplete"}  # as if killed
    changed = folder / "img001.png"
    pixels = np.asarray(Image.open(changed))
    Image.fromarray(255 - pixels).save(changed)
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"the input {changed} changed" in err


@pytest.mark.parametrize("batch_inputs", ["1", "32", "1 in processes"])
@pytest.mark.parametrize("fault", ["unreadable", "one colour", "corrupt pixels", "corrupt tile"])
def test_stop_finishes_every_input_before_the_failing_one(tmp_path, fault, batch_inputs):
    """Windows are fitted ahead of writing; ``on_error: stop`` still ends as a sequential run
    would: every input before the failing one complete, none after it written, exit 2 — also
    when the failing input shares its window with the inputs before it (the default window;
    the bug: a fit failure dropped the whole window, so img000 and img001 were not written)."""
    folder = tmp_path / "in"
    write_pngs(folder, 5, size=24)
    bad = folder / "img002.png"
    if fault == "unreadable":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    elif fault == "corrupt pixels":  # the header opens; decoding fails inside a task
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif fault == "corrupt tile":  # a tiled TIFF whose last tile's zlib data is garbage
        import tifffile

        bad.unlink()
        bad = folder / "img002.tif"
        tifffile.imwrite(bad, patch_image(2, 64)[0], tile=(32, 32), compression="zlib")
        with tifffile.TiffFile(bad) as tif:
            offset, size = tif.pages[0].dataoffsets[-1], tif.pages[0].databytecounts[-1]
        data = bytearray(bad.read_bytes())
        data[offset:offset + size] = b"\x11" * size
        bad.write_bytes(bytes(data))
    else:
        Image.fromarray(np.full((24, 24, 3), 9, np.uint8)).save(bad)
    out = tmp_path / "out.zarr"
    # "in processes": the failing input and those after it run in worker processes (the first
    # window runs in the main process), so the inputs after it may be written before the
    # failure is known, and must be removed.
    processes = ["--batch-processes", "2"] if "processes" in batch_inputs else []
    proc = kmseg("segment", str(folder), "-k", "4", "-o", str(out), "-q", "--batch-inputs",
                 batch_inputs.split()[0], *processes)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and bad.name in proc.stderr
    # named once (the bug: a failure found while opening, in the main process, came back from
    # a worker as "img002.png: img002.png: ...")
    assert proc.stderr.count(bad.name) == 1, proc.stderr
    assert [group_status(out, f"img{i:03d}") for i in range(5)] == [
        "complete", "complete", None, None, None]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["img000", "img001"]


# -- worker processes ---------------------------------------------------------------------


def test_worker_processes_write_what_this_process_writes(tmp_path, monkeypatch):
    """A batch of small images runs its windows in worker processes by default (batches of at
    least ``POOL_MIN_INPUTS``, lowered here to 16 for 20 images), and writes the same store,
    file for file, as one process."""
    from pipeline import batchpool

    monkeypatch.setattr(batchpool, "POOL_MIN_INPUTS", 16)

    folder = tmp_path / "in"
    write_pngs(folder, 20, size=32, noise=True)
    started = []
    real_pool = batchpool.Pool

    class Counted(real_pool):
        def __init__(self, n, *args, **kwargs):
            started.append(n)
            super().__init__(n, *args, **kwargs)

    monkeypatch.setattr(batchpool, "Pool", Counted)
    here = tmp_path / "here.zarr"
    pipeline.segment(str(folder), str(here), k=3, quiet=True, n_workers=2, batch_inputs=4,
                     batch_processes=1)
    assert started == []
    pooled = tmp_path / "pooled.zarr"
    results = pipeline.segment(str(folder), str(pooled), k=3, quiet=True, n_workers=2,
                               batch_inputs=4)
    assert started == [2]
    assert [r.name for r in results] == [f"img{i:03d}" for i in range(20)]
    assert_same_store(here, pooled)
    for r in results:
        assert r.counts.sum() == 32 * 32


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """Worker processes do not re-run the caller's script (spawned processes normally import
    the main module, so a script without ``if __name__ == "__main__"`` would start the batch
    again in every worker)."""
    folder = tmp_path / "in"
    write_pngs(folder, 6)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import pipeline\n"
        "print('started', flush=True)\n"
        f"r = pipeline.segment({str(folder)!r}, {str(tmp_path / 'out.zarr')!r}, k=4, "
        "quiet=True, batch_processes=2, batch_inputs=1)\n"
        "print(len(r), 'done', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["started", "6 done"]


def test_a_worker_killed_mid_batch_is_one_line_and_the_rerun_resumes(tmp_path):
    """SIGKILL one worker process (as the kernel's out-of-memory killer would): the batch stops
    with one line, no later input looks finished, and the same command completes the store."""
    folder = tmp_path / "in"
    n = 40
    write_pngs(folder, n, size=32, noise=True)
    args = ["-k", "3", "-q", "--batch-inputs", "1", "--batch-processes", "2"]
    reference = tmp_path / "reference.zarr"
    assert kmseg("segment", str(folder), *args, "-o", str(reference)).returncode == 0
    out = tmp_path / "out.zarr"
    proc = kmseg_background("segment", str(folder), *args, "-o", str(out),
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    killed = None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            done = sum(group_status(out, f"img{i:03d}") == "complete" for i in range(n))
            workers = [pid for pid in _children(proc.pid)
                       if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if done >= 3 and workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
                break
            time.sleep(0.01)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "the batch ended before a worker could be killed"
    assert proc.returncode == 2, stderr
    assert stderr.count("\n") == 1 and "a worker process ended abruptly" in stderr, stderr
    statuses = [group_status(out, f"img{i:03d}") for i in range(n)]
    first_missing = statuses.index(None) if None in statuses else n
    assert set(statuses[first_missing:]) <= {None}  # nothing after a gap looks finished
    again = kmseg("segment", str(folder), *args, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert_same_store(reference, out)
