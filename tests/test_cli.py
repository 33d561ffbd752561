"""The CLI through main([...]): results, info, and one-line errors with non-zero exits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.cli import main


@pytest.fixture
def npy_image(tmp_path, photos):
    path = tmp_path / "coffee.npy"
    np.save(path, photos["coffee"])
    return str(path)


def test_segment_then_info(npy_image, tmp_path, capsys):
    out = str(tmp_path / "out.zarr")
    assert main(["segment", npy_image, "-k", "3", "-o", out, "-q", "--chunks", "100", "150"]) == 0
    printed = capsys.readouterr().out
    assert "k=3" in printed and "mse=" in printed
    assert main(["info", out]) == 0
    info = capsys.readouterr().out
    assert "status complete" in info and "cluster 3" in info and "(3, 400, 600)" in info


def test_run_yaml_with_overrides(npy_image, tmp_path, capsys):
    job = tmp_path / "job.yaml"
    out = tmp_path / "job.zarr"
    job.write_text(f"inputs: [{npy_image}]\noutput: {out}\nk: 5\nquiet: true\n")
    assert main(["run", str(job), "-k", "2", "--set", "random_state=3"]) == 0
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "k=2" in info and "random_state=3" in info


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_missing_file(tmp_path, capsys):
    missing = str(tmp_path / "missing.png")
    assert main(["segment", missing, "-o", str(tmp_path / "o.zarr"), "-q"]) != 0
    assert missing in _error_line(capsys)


def test_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    assert main(["segment", str(bad), "-o", str(tmp_path / "o.zarr"), "-q"]) != 0
    assert str(bad) in _error_line(capsys)


def test_k_below_one(npy_image, tmp_path, capsys):
    assert main(["segment", npy_image, "-k", "0", "-o", str(tmp_path / "o.zarr"), "-q"]) == 2
    assert "k must be at least 1" in _error_line(capsys)


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
    assert (folder / "thesis.txt").exists()


def test_python_dash_m_pipeline(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("kmseg ")


def test_every_config_flag_has_help():
    from dataclasses import fields

    from pipeline.cli import build_parser
    from pipeline.config import JobConfig

    parser = build_parser()
    segment = parser._subparsers._group_actions[0].choices["segment"]
    helps = {a.dest: a.help for a in segment._actions}
    for f in fields(JobConfig):
        if f.name != "inputs":
            assert helps.get(f.name), f"--{f.name} has no help"


def test_demo_segments_the_bundled_photo(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", str(folder), "-q"]) == 0
    printed = capsys.readouterr().out
    assert str(folder / "astronaut.zarr") in printed
    assert main(["info", str(folder / "astronaut.zarr")]) == 0
    assert "status complete" in capsys.readouterr().out
    assert main(["demo", str(folder), "-q"]) == 2  # never overwritten silently
    assert main(["demo", str(folder), "-q", "--overwrite"]) == 0
