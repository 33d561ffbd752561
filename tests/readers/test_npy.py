"""NumPy .npy files: exact values for every readable dtype, one-line refusals for the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.readers import open_image
from pipeline.readers.common import ReadError

from .conftest import assert_reads

SHAPE = (70, 90)


def _values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    data.flat[:2] = info.min, info.max
    return data


@pytest.mark.parametrize(
    "dtype", ["bool", "int8", "uint8", "int16", "uint32", "int32", "uint64", "int64", "float16",
              "float32", "float64"],
)
def test_exact_dtypes(tmp_path: Path, rng: np.random.Generator, dtype: str) -> None:
    data = _values(rng, dtype)
    path = tmp_path / f"{dtype}.npy"
    np.save(path, data)
    source = open_image(str(path))
    assert source.format == "npy" and source.axes == "yx"
    assert_reads(source, data)


def test_big_endian_and_fortran_order(tmp_path: Path, rng: np.random.Generator) -> None:
    data = _values(rng, "int32", (40, 60, 3))
    path = tmp_path / "fortran_be.npy"
    np.save(path, np.asfortranarray(data.astype(">i4")))
    source = open_image(str(path))
    assert source.axes == "yxc" and source.dtype == np.dtype("int32")
    assert_reads(source, data)


def test_volume(tmp_path: Path, rng: np.random.Generator) -> None:
    data = _values(rng, "uint16", (9, 40, 50))
    path = tmp_path / "volume.npy"
    np.save(path, data)
    source = open_image(str(path))
    assert source.axes == "zyx"
    assert_reads(source, data)


@pytest.mark.parametrize(
    ("data", "name"),
    [(np.zeros((4, 5), np.complex128), "complex128"), (np.zeros((4, 5), "M8[s]"), "datetime64"),
     (np.zeros((4, 5), [("a", "<i4")]), "V4"), (np.zeros((4, 5), "U3"), "U3")],
)
def test_unreadable_dtypes_are_one_line(tmp_path: Path, data: np.ndarray, name: str) -> None:
    path = tmp_path / "odd.npy"
    np.save(path, data)
    with pytest.raises(InputError, match="unsupported pixel data type") as info:
        open_image(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and name in message and "\n" not in message


def test_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="object") as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 5, 3), (3, 0, 5)])
def test_empty_arrays(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros(shape, np.uint8))
    with pytest.raises(InputError, match="empty") as info:
        open_image(str(path))
    assert str(info.value).startswith(str(path))


def test_truncated_and_corrupt(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, _values(rng, "float32"))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(InputError, match="truncated") as info:
        open_image(str(path))
    assert str(path) in str(info.value)
    path.write_bytes(raw[:20])  # the header itself is cut
    with pytest.raises(InputError, match=r"not a readable \.npy") as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_max_pixels(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "a.npy"
    np.save(path, _values(rng, "uint8", (40, 50, 3)))
    with pytest.raises(InputError, match="max_pixels"):
        open_image(str(path), max_pixels=1999)  # channels are not pixels
    assert open_image(str(path), max_pixels=2000).shape == (40, 50, 3)


def test_file_shrunk_after_opening_fails_in_task_naming_it(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    path = tmp_path / "shrunk.npy"
    np.save(path, _values(rng, "float64"))
    source = open_image(str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ReadError) as info:
        source.to_dask((32, 32)).compute()
    assert str(path) in str(info.value)
