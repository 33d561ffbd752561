"""Per-class measurements: value statistics against NumPy, physical sizes, metadata."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from pipeline.measure import (
    block_value_stats,
    channel_labels,
    class_measurements,
    class_value_stats,
    voxel_size,
)


def reference_stats(
    image: np.ndarray, labels: np.ndarray, channels: tuple[int, ...], k: int
) -> np.ndarray:
    """The statistics table computed label by label with NumPy."""
    values = image.reshape(labels.size, -1)
    values = values[:, list(channels or (0,))].astype(np.float64)
    flat = labels.reshape(-1)
    n = values.shape[1]
    out = np.zeros((k + 1, 1 + 3 * n))
    out[:, 1 + n : 1 + 2 * n] = np.inf
    out[:, 1 + 2 * n :] = -np.inf
    for label in range(k + 1):
        picked = values[flat == label]
        out[label, 0] = len(picked)
        if len(picked):
            out[label, 1 : 1 + n] = picked.sum(axis=0)
            out[label, 1 + n : 1 + 2 * n] = np.fmin.reduce(picked, axis=0)
            out[label, 1 + 2 * n :] = np.fmax.reduce(picked, axis=0)
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_block_stats_match_numpy(rng: np.random.Generator, dtype: type) -> None:
    image = rng.integers(-100 if dtype is np.int16 else 0, 250, size=(7, 9, 4)).astype(dtype)
    labels = rng.integers(0, 4, size=(7, 9)).astype(np.uint8)
    labels[labels == 3] = 1  # label 3 has no pixels: its min/max stay at +-inf
    got = block_value_stats(image, labels, (0, 1, 2), k=3)  # channel 3 (alpha) not measured
    np.testing.assert_array_equal(got, reference_stats(image, labels, (0, 1, 2), 3))


@pytest.mark.parametrize("dtype", ["float16", "bool", ">u2", ">f4"])
def test_block_stats_of_dtypes_numba_lacks(rng: np.random.Generator, dtype: str) -> None:
    image = rng.integers(0, 2 if dtype == "bool" else 300, size=(6, 7)).astype(dtype)
    labels = rng.integers(0, 3, size=(6, 7)).astype(np.uint8)
    got = block_value_stats(image, labels, (), k=2)
    np.testing.assert_array_equal(got, reference_stats(image.astype(np.float64), labels, (), 2))


def test_block_stats_one_channel_and_nan(rng: np.random.Generator) -> None:
    image = rng.normal(size=(5, 6)).astype(np.float32)
    labels = rng.integers(1, 3, size=(5, 6)).astype(np.uint16)
    image[0, :3] = np.nan
    labels[0, :3] = 0  # NaN is no data: label 0
    got = block_value_stats(image, labels, (), k=2)
    want = reference_stats(image, labels, (), 2)
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-12)
    assert got[0, 0] == 3


@pytest.mark.parametrize("chunks", [(3, 4), (7, 5), (20, 20)])
def test_lazy_stats_with_odd_chunks_match_numpy(
    rng: np.random.Generator, chunks: tuple[int, int]
) -> None:
    image = rng.integers(0, 256, size=(20, 17, 3), dtype=np.uint8)
    labels = rng.integers(0, 6, size=(20, 17)).astype(np.uint8)
    lazy = class_value_stats(
        da.from_array(image, chunks=(*chunks, 3)), da.from_array(labels, chunks=chunks),
        (0, 1, 2), k=5,
    )
    assert lazy.shape == (6, 10)
    np.testing.assert_allclose(
        lazy.compute(), reference_stats(image, labels, (0, 1, 2), 5), rtol=1e-12
    )


def test_volume_of_a_ct_voxel_in_ml() -> None:
    size, unit, size_m = voxel_size((2.5, 0.5, 0.5), "millimeter")
    assert size == pytest.approx(0.625)
    assert unit == "mm³"
    assert size_m * 1e6 == pytest.approx(0.625e-3)  # m³ -> mL


def test_area_of_a_slide_pixel() -> None:
    assert voxel_size((0.25, 0.25), "micrometer")[:2] == (0.0625, "µm²")
    assert voxel_size((1.0, 1.0), None) == (None, None, None)


def test_class_records_sizes_are_pixels_times_voxel() -> None:
    # Labels of a 3-D volume with known counts: 10 voxels of class 1, 30 of class 2.
    image = np.concatenate([np.full(10, -1000), np.full(30, 40)]).astype(np.int16)
    labels = np.concatenate([np.full(10, 1), np.full(30, 2)]).astype(np.uint8)
    table = block_value_stats(image.reshape(2, 4, 5), labels.reshape(2, 4, 5), (), 2)
    records = class_measurements(
        table, np.array([[-1000.0], [40.0]]), (2.0, 0.5, 0.5), "millimeter", ["value"]
    )
    assert [r["pixels"] for r in records] == [10, 30]
    assert [r["fraction"] for r in records] == [0.25, 0.75]
    assert records[0]["size"] == pytest.approx(10 * 0.5)
    assert records[1]["size_unit"] == "mm³"
    assert records[1]["volume_ml"] == pytest.approx(30 * 0.5 / 1000)
    assert records[0]["mean"] == {"value": -1000.0}
    assert records[1]["min"] == {"value": 40.0} == records[1]["max"]
    assert records[0]["centre"] == {"value": -1000.0}


def test_photo_without_pixel_size_gives_pixels_only() -> None:
    table = block_value_stats(np.zeros((2, 2)), np.ones((2, 2), np.uint8), (), 1)
    [record] = class_measurements(table, np.zeros((1, 1)), (1.0, 1.0), None, ["value"])
    assert record["pixels"] == 4
    assert record["size"] is None and record["size_unit"] is None
    assert "area_mm2" not in record


def test_empty_class_has_no_values() -> None:
    table = block_value_stats(np.ones((2, 2)), np.ones((2, 2), np.uint8), (), 2)
    records = class_measurements(table, np.zeros((2, 1)), (0.5, 0.5), "micrometer", ["value"])
    assert records[1]["pixels"] == 0
    assert records[1]["mean"] == {"value": None}
    assert records[0]["area_mm2"] == pytest.approx(4 * 0.25e-6)


def test_channel_labels() -> None:
    assert channel_labels((0, 1, 2), ("R", "G", "B", "A")) == ["R", "G", "B"]
    assert channel_labels((), ()) == ["value"]
    assert channel_labels((0, 1), ()) == ["c0", "c1"]


def test_segment_records_classes(tmp_path: Path) -> None:
    """End to end: two known colour classes; sizes from a spacing, values from the fixture."""
    from pipeline.config import build_config
    from pipeline.execution import open_executor
    from pipeline.plan import build_plan
    from pipeline.readers import from_array

    image = np.zeros((30, 41, 3), dtype=np.uint8)
    image[:, :11] = (200, 10, 10)
    image[:, 11:] = (10, 10, 200)
    image[::2, 11:, 1] = 14  # class 2 holds two values in G: mean 12, min 10, max 14
    source = dataclasses.replace(
        from_array(image, name="two"), spacing=(0.5, 0.25), unit="micrometer"
    )
    config = build_config(
        {"inputs": ["two"], "output": str(tmp_path / "o.zarr"), "k": 2, "quiet": True,
         "chunks": [7, 9]}
    )
    plan = build_plan(config, [source])
    with open_executor(plan.config) as executor:
        [result] = plan.execute(executor)
    classes = sorted(result.metadata["classes"], key=lambda r: r["pixels"])
    red, blue = classes
    assert red["pixels"] == 30 * 11 and blue["pixels"] == 30 * 30
    assert red["fraction"] == pytest.approx(330 / 1230)
    assert red["size"] == pytest.approx(330 * 0.125)
    assert red["size_unit"] == "µm²"
    assert red["mean"] == {"R": 200.0, "G": 10.0, "B": 10.0}
    assert blue["mean"]["G"] == pytest.approx(12.0)
    assert (blue["min"]["G"], blue["max"]["G"]) == (10.0, 14.0)


def test_measurements_share_the_labelling_compute(tmp_path: Path, monkeypatch) -> None:
    """The value statistics add no compute of their own: the job computes as often as before."""
    from pipeline import segment
    from pipeline.execution import Executor

    labels: list[str] = []
    original = Executor.compute

    def counting(self, *collections, label="computing"):
        labels.append(label)
        return original(self, *collections, label=label)

    monkeypatch.setattr(Executor, "compute", counting)
    image = np.zeros((20, 30), dtype=np.uint8)
    image[:, 10:] = 100
    [result] = segment(image, str(tmp_path / "o.zarr"), k=2, quiet=True, chunks=[7, 11])
    assert labels == ["summarising", "labelling and writing"]
    assert sorted(r["pixels"] for r in result.metadata["classes"]) == [200, 400]


def test_physical_sizes_carry_no_float_noise() -> None:
    # 11520 voxels of 2.5 x 0.7 x 0.7 mm are 14112 mm³ (n * 1.2249999999999999 = 14111.999...)
    labels = np.ones(11520, np.uint8).reshape(10, 32, 36)
    table = block_value_stats(np.zeros_like(labels), labels, (), 1)
    [record] = class_measurements(table, np.array([[0.0]]), (2.5, 0.7, 0.7), "millimeter")
    assert record["size"] == 14112.0 and record["volume_ml"] == 14.112
    [flat] = class_measurements(
        block_value_stats(np.zeros((1, 3)), np.ones((1, 3), np.uint8), (), 1),
        np.array([[0.0]]), (0.1, 0.1), "millimeter",
    )
    assert flat["size"] == 0.03 and flat["area_mm2"] == 0.03


def test_mean_of_uint8_is_the_exact_float64_mean(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, size=(64, 96), dtype=np.uint8)
    labels = (rng.random((64, 96)) < 0.3).astype(np.uint8) + 1
    table = block_value_stats(image, labels, (), 2)
    records = class_measurements(table, np.array([[0.0], [0.0]]), (1.0, 1.0), None, ["v"])
    for record in records:
        exact = image[labels == record["label"]].astype(np.float64).mean()
        assert record["mean"]["v"] == exact
