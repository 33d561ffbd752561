"""Zarr v2/v3 arrays and OME-Zarr 0.4/0.5 images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.format import FormatV04

with warnings.catch_warnings():  # ome-zarr 0.18 warns about its own deprecated Scaler on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from ome_zarr.writer import write_image

from pipeline.errors import InputError
from pipeline.readers import open_image

from ._make import random_pixels
from .conftest import assert_reads


def test_v2_array(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 65535, size=(150, 170), dtype=np.uint16)
    path = tmp_path / "v2.zarr"
    array = zarr.create_array(path, shape=data.shape, chunks=(40, 60), dtype=data.dtype,
                              zarr_format=2)
    array[:] = data
    source = open_image(str(path))
    assert (source.axes, source.format, source.native_chunks) == ("yx", "zarr", (40, 60))
    assert source.metadata["zarr_format"] == 2
    assert source.spacing == (1.0, 1.0) and source.unit is None
    assert_reads(source, data)


def test_v3_sharded_volume(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.random((9, 100, 110)).astype(np.float32)
    path = tmp_path / "v3.zarr"
    array = zarr.create_array(path, shape=data.shape, chunks=(1, 25, 25), shards=(3, 50, 50),
                              dtype=data.dtype)
    array[:] = data
    source = open_image(str(path))
    assert source.axes == "zyx"
    assert source.native_chunks == (3, 50, 50)  # a task reads whole shards
    assert_reads(source, data)


def test_v3_dimension_names(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(-1000, 1000, size=(2, 60, 70), dtype=np.int16)
    path = tmp_path / "named.zarr"
    array = zarr.create_array(path, shape=data.shape, chunks=(1, 32, 32), dtype=data.dtype,
                              dimension_names=["c", "y", "x"])
    array[:] = data
    source = open_image(str(path))
    assert source.axes == "yxc"
    assert source.native_chunks == (32, 32, 2)
    assert_reads(source, np.moveaxis(data, 0, -1))


@pytest.fixture
def ome04(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    data = rng.integers(0, 255, size=(3, 120, 130), dtype=np.uint8)
    path = tmp_path / "image.ome.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=2)
    write_image(data, group, fmt=FormatV04(), axes="cyx", scale_factors=[2],
                scale={"c": 1.0, "y": 0.5, "x": 0.25},
                axes_units={"y": "micrometer", "x": "micrometer"},
                storage_options={"chunks": (1, 32, 48)})
    group.attrs["omero"] = {"channels": [{"label": n} for n in ("DAPI", "GFP", "RFP")]}
    return path, data


def test_ome_zarr_04(ome04: tuple[Path, np.ndarray]) -> None:
    path, data = ome04
    source = open_image(str(path))
    assert source.format == "ome-zarr"
    assert source.metadata["ome_version"] == "0.4"
    assert source.axes == "yxc"
    assert source.channel_names == ("DAPI", "GFP", "RFP")
    assert source.spacing == (0.5, 0.25)
    assert source.unit == "micrometer"
    assert source.native_chunks == (32, 48, 3)
    assert_reads(source, np.moveaxis(data, 0, -1))

    group = zarr.open_group(path, mode="r")
    level1 = np.moveaxis(np.asarray(group["s1"]), 0, -1)
    for source in (
        open_image(str(path), level=1),
        open_image(str(path), array_path="s1"),
        open_image(str(path / "s1")),  # an array inside an OME group keeps its metadata
    ):
        assert source.spacing == (1.0, 0.5)
        assert source.metadata["level"] == 1
        assert_reads(source, level1)


def test_ome_zarr_level_out_of_range(ome04: tuple[Path, np.ndarray]) -> None:
    path, _ = ome04
    with pytest.raises(InputError, match="level 2 out of range") as info:
        open_image(str(path), level=2)
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match="no array"):
        open_image(str(path), array_path="s9")


def test_ome_zarr_05_by_hand(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 4000, size=(1, 2, 6, 70, 80), dtype=np.uint16)  # t c z y x
    path = tmp_path / "v05.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=3)
    for name, array in (("0", data), ("1", data[:, :, :, ::2, ::2])):
        stored = group.create_array(name, shape=array.shape, chunks=(1, 1, 2, 32, 32),
                                    dtype=array.dtype, dimension_names=list("tczyx"))
        stored[:] = array
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"
    ]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{
            "axes": axes,
            "datasets": [
                {"path": "0", "coordinateTransformations": [
                    {"type": "scale", "scale": [1, 1, 2.0, 0.5, 0.5]}]},
                {"path": "1", "coordinateTransformations": [
                    {"type": "scale", "scale": [1, 1, 2.0, 1.0, 1.0]}]},
            ],
            # a whole-image scale multiplies every dataset's
            "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 2, 2]}],
        }],
        "omero": {"channels": [{"label": "a"}, {"label": "b"}]},
    }
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["attributes"]["ome"]["version"] == "0.5"
    source = open_image(str(path))
    assert source.axes == "zyxc"
    assert source.channel_names == ("a", "b")
    assert source.spacing == (2.0, 1.0, 1.0)
    assert source.native_chunks == (2, 32, 32, 2)
    assert source.metadata["ome_version"] == "0.5"
    assert_reads(source, np.moveaxis(data[0], 0, -1))
    level1 = open_image(str(path), level=1)
    assert level1.spacing == (2.0, 2.0, 2.0)
    assert_reads(level1, np.moveaxis(data[0, :, :, ::2, ::2], 0, -1))


def test_group_without_multiscales(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 255, size=(50, 60), dtype=np.uint8)
    path = tmp_path / "plain.zarr"
    group = zarr.open_group(path, mode="w")
    group.create_array("only", shape=data.shape, dtype=data.dtype)[:] = data
    assert_reads(open_image(str(path)), data)
    group.create_array("other", shape=(5, 5), dtype="u1")
    with pytest.raises(InputError, match="array_path"):
        open_image(str(path))
    assert_reads(open_image(str(path), array_path="only"), data)


def test_time_series_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    zarr.create_array(path, shape=(3, 20, 30), dtype="u1", dimension_names=["t", "y", "x"])
    with pytest.raises(InputError, match="time"):
        open_image(str(path))


def test_corrupt_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "bad.zarr"
    path.mkdir()
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable Zarr") as info:
        open_image(str(path))
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match="no such file"):
        open_image(str(tmp_path / "missing.zarr"))


@pytest.mark.parametrize(
    "dtype", ["bool", "int8", "uint32", "int32", "uint64", "int64", "float16"],
)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_exact_dtypes(tmp_path: Path, rng: np.random.Generator, dtype: str,
                      zarr_format: int) -> None:
    data = random_pixels(dtype, rng)
    path = tmp_path / f"{dtype}.zarr"
    array = zarr.create_array(path, shape=data.shape, chunks=(23, 31), dtype=data.dtype,
                              zarr_format=zarr_format)
    array[:] = data
    assert_reads(open_image(str(path)), data)


def test_unreadable_dtype_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "complex.zarr"
    zarr.create_array(path, shape=(4, 5), dtype="complex64")
    with pytest.raises(InputError, match="unsupported pixel data type") as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path)) and "complex64" in str(info.value)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_empty_array(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = tmp_path / "empty.zarr"
    zarr.create_array(path, shape=shape, dtype="uint8")
    with pytest.raises(InputError, match="empty") as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path))


def test_declared_size_beyond_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "huge.zarr"
    # metadata only: no chunk is written, as a hostile or damaged store would declare it
    zarr.create_array(path, shape=(2**20, 2**20, 3), chunks=(1024, 1024, 3), dtype="uint8")
    with pytest.raises(InputError, match="max_pixels") as info:
        open_image(str(path), max_pixels=2**39)
    assert str(info.value).startswith(str(path))
    assert open_image(str(path), max_pixels=2**40).shape == (2**20, 2**20, 3)
