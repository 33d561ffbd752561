"""Shared reader helpers: keys, errors, caches, units."""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.readers.common import (
    DecodeCache,
    ReadError,
    RegionReader,
    common_unit,
    normalize_unit,
    split_key,
)


@dataclass(frozen=True, eq=False)
class _ArrayReader(RegionReader):
    path: str
    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        assert all(s.step is None for s in box)
        return self.array[box]


@dataclass(frozen=True, eq=False)
class _BrokenReader(_ArrayReader):
    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        raise ValueError("bad tile")


@pytest.mark.parametrize(
    "key",
    [
        (slice(2, 5), slice(None)),
        (3,),
        (-1, slice(None, None, 3)),
        (Ellipsis, 4),
        (slice(None, None, -2), slice(7, 1, -3)),
        (slice(5, 2), slice(None)),
        slice(1, 9, 4),
    ],
)
def test_region_reader_keys(key: object) -> None:
    data = np.arange(12 * 10, dtype=np.int16).reshape(12, 10)
    np.testing.assert_array_equal(_ArrayReader("x", data)[key], data[key])


def test_split_key_plain_slices_need_no_post() -> None:
    box, post = split_key((slice(0, 3), slice(4, 9)), (10, 10))
    assert box == (slice(0, 3), slice(4, 9)) and post is None
    with pytest.raises(IndexError):
        split_key((10,), (10, 10))


def test_read_error_names_file_and_pickles() -> None:
    reader = _BrokenReader("/data/image.tif", np.zeros((4, 4)))
    with pytest.raises(ReadError, match="bad tile") as info:
        reader[0:2, 0:2]
    error = info.value
    assert isinstance(error, InputError)
    assert str(error).startswith("/data/image.tif: ")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.path, clone.problem, str(clone)) == (error.path, error.problem, str(error))


@dataclass(frozen=True, eq=False)
class _ManyLinesReader(_ArrayReader):
    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        # pydicom's message when no decoder plugin can decode the pixel data.
        raise RuntimeError("Unable to decode as exceptions were raised by all available "
                           "plugins:\n  pillow: SIZ marker length must be at least 38\n")


def test_read_error_of_a_many_line_library_message_is_one_line() -> None:
    with pytest.raises(ReadError) as info:
        _ManyLinesReader("/data/scan.dcm", np.zeros((4, 4)))[0:2, 0:2]
    assert str(info.value) == (
        "/data/scan.dcm: cannot read pixels: RuntimeError: Unable to decode as exceptions were "
        "raised by all available plugins: pillow: SIZ marker length must be at least 38"
    )
    clone = pickle.loads(pickle.dumps(info.value))
    assert str(clone) == str(info.value)


def test_a_corrupt_compressed_dicom_is_one_error_line(tmp_path, capsys) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    from pipeline.cli import main

    from .conftest import ct_slice, save_dicom

    ds = ct_slice(np.zeros((8, 10), np.uint16), position=(0.0, 0.0, 0.0), series_uid="1.2.3",
                  instance=1)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(100)])  # a cut J2K header
    ds["PixelData"].VR = "OB"
    path = save_dicom(ds, tmp_path / "scan.dcm")
    assert main(["segment", str(path), "-k", "2", "-o", str(tmp_path / "o.zarr"), "-q"]) == 2
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("kmseg: error: ")]
    assert len(errors) == 1 and "scan.dcm" in errors[0]
    assert all(line.startswith("kmseg: ") for line in err), err  # no continuation lines


def test_decode_cache_loads_once_under_contention() -> None:
    cache = DecodeCache(maxsize=1)
    calls = []
    gate = threading.Barrier(8)

    def load() -> np.ndarray:
        calls.append(1)
        return np.zeros(3)

    def worker() -> None:
        gate.wait()
        cache.get("k", load)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    cache.get("other", load)
    cache.get("k", load)  # evicted by "other"
    assert len(calls) == 3


def test_units() -> None:
    assert normalize_unit("µm") == normalize_unit("micron") == "micrometer"
    assert normalize_unit("pixel") is None
    assert common_unit([100.0, 0.5], ["nanometer", "micrometer"]) == ((0.1, 0.5), "micrometer")
    assert common_unit([2.0, 1.0], [None, None]) == ((2.0, 1.0), None)
