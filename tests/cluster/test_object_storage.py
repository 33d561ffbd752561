"""Inputs and outputs on object storage: a real S3 server (SeaweedFS) and an HTTP server."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import zarr

from pipeline.cli import main
from pipeline.outputs import output_status
from tests.cluster.conftest import JOB_ARGS
from tests.cluster.helpers import assert_same_output
from tests.cluster.procs import HOST, free_port, wait_for_port

pytestmark = pytest.mark.cluster


def _put_zarr(url: str, image: np.ndarray) -> None:
    array = zarr.create_array(url, shape=image.shape, chunks=(128, 128, 3), dtype=image.dtype,
                              zarr_format=3)
    array[...] = image


def _all_objects(s3) -> dict[str, bytes]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    return {key: fs.cat_file(key) for key in fs.find(s3.bucket)}


def test_s3_zarr_in_and_out_on_local_cluster(s3, image_path, reference, capfd):
    """Workers of a LocalCluster read a Zarr input from S3 and write the output to S3.

    The labels are those of the same job on local threads from a local file.
    """
    bucket = s3.bucket
    _put_zarr(f"s3://{bucket}/inputs/tiled.zarr", np.load(image_path))
    out = f"s3://{bucket}/outputs/seg.zarr"
    block = "{kind: local, n_workers: 2, threads_per_worker: 1, memory_limit: 1GiB}"
    args = ["segment", f"s3://{bucket}/inputs/tiled.zarr", *JOB_ARGS, "-o", out,
            "--cluster", block]
    assert main(args) == 0
    assert_same_output(str(reference), out)
    assert output_status(out) == "complete"
    # An existing output is refused without --overwrite and replaced with it.
    assert main(args) == 2
    assert "already exists" in capfd.readouterr().err
    assert main([*args[:-2], "--overwrite"]) == 0  # on local threads this time
    assert_same_output(str(reference), out)
    # Credentials came from the environment; none of them is in any object, nor in the logs.
    logs = capfd.readouterr()
    for secret in (s3.secret_key, s3.access_key):
        assert secret not in logs.out + logs.err
        for key, data in _all_objects(s3).items():
            assert secret.encode() not in data, key


def test_s3_unfinished_output_is_replaced(s3, image_path, reference):
    out = f"s3://{s3.bucket}/outputs/unfinished.zarr"
    root = zarr.open_group(out, mode="w", zarr_format=3)
    root.attrs["kmseg"] = {"version": "0", "status": "incomplete"}
    root.create_array("stale", shape=(4,), dtype="u1")
    assert main(["segment", str(image_path), *JOB_ARGS, "-o", out]) == 0
    assert_same_output(str(reference), out)
    assert "stale" not in zarr.open_group(out, mode="r")


def test_s3_tiff_and_png_inputs(s3, image_path, reference, tmp_path):
    import s3fs
    import tifffile
    from PIL import Image

    image = np.load(image_path)
    tifffile.imwrite(tmp_path / "tiled.tif", image, tile=(128, 128))
    Image.fromarray(image).save(tmp_path / "tiled.png")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.put_file(str(tmp_path / "tiled.tif"), f"{s3.bucket}/files/tiled.tif")
    fs.put_file(str(tmp_path / "tiled.png"), f"{s3.bucket}/files/tiled.png")
    out = tmp_path / "files.zarr"
    assert main(["segment", f"s3://{s3.bucket}/files/*", *JOB_ARGS, "-o", str(out)]) == 0
    meta = zarr.open_group(str(out), mode="r").attrs["kmseg"]
    assert meta["outputs"] == ["tiled", "tiled_2"]
    for name in meta["outputs"]:
        assert_same_output(str(reference), str(out / name))
        recorded = zarr.open_group(str(out / name), mode="r").attrs["kmseg"]["input"]["path"]
        assert recorded.startswith(f"s3://{s3.bucket}/files/tiled.")


def test_https_style_inputs(image_path, reference, tmp_path, processes):
    """Read-only HTTP(S) URLs: a Zarr store and a PNG served over HTTP on 127.0.0.1."""
    from PIL import Image

    site = tmp_path / "site"
    site.mkdir()
    image = np.load(image_path)
    Image.fromarray(image).save(site / "tiled.png")
    _put_zarr(str(site / "tiled.zarr"), image)
    port = free_port()
    server = processes.start("http", [sys.executable, "-m", "http.server", str(port),
                                      "--bind", HOST, "--directory", str(site)])
    wait_for_port(port, 30, server)
    for name in ("tiled.png", "tiled.zarr"):
        out = tmp_path / f"{name}.out.zarr"
        code = main(["segment", f"http://{HOST}:{port}/{name}", *JOB_ARGS, "-o", str(out)])
        assert code == 0
        assert_same_output(str(reference), str(out))


def test_s3_missing_input_is_a_clear_error(s3, tmp_path, capsys):
    code = main(["segment", f"s3://{s3.bucket}/nothing/here.tif", "-o", str(tmp_path / "o.zarr"),
                 "-q"])
    assert code == 2
    assert "no such object" in capsys.readouterr().err
