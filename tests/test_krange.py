"""k auto: the mse curve from each engine's summary, and the k it picks on known images."""

from __future__ import annotations

import itertools

import dask
import numpy as np
import pytest

from pipeline.config import JobConfig
from pipeline.engines import FitParams, select_engine
from pipeline.engines.dp1d import optimal_kmeans_1d
from pipeline.engines.krange import check_range, choose_k_auto, mse_curve, optimal_costs_1d
from pipeline.errors import ConfigError
from pipeline.features import make_feature_spec
from pipeline.readers.memory import from_array

FIVE = np.array(
    [[220, 30, 40], [30, 190, 60], [40, 50, 220], [240, 240, 230], [20, 20, 20]], dtype=np.uint8
)


def _five_colours(rng: np.random.Generator, shape=(60, 80)) -> np.ndarray:
    index = rng.integers(0, 5, shape)
    noise = rng.normal(0, 4, (*shape, 3))
    return np.clip(FIVE[index] + noise, 0, 255).astype(np.uint8)


def _ct(rng: np.random.Generator, shape=(8, 40, 40)) -> np.ndarray:
    """Air, fat, soft tissue and bone in HU with noise."""
    hu = np.array([-1000, -100, 40, 1000])
    index = rng.choice(4, shape, p=[0.4, 0.2, 0.3, 0.1])
    return (hu[index] + rng.normal(0, 15, shape)).astype(np.int16)


def _no_pass(*lazy):
    raise AssertionError("the curve should need no pass over the pixels")


def _summarise(image: np.ndarray, engine: str, chunks):
    source = from_array(image, name="img")
    arr = source.to_dask(chunks)
    data_range = (float(image.min()), float(image.max())) if image.dtype.kind == "f" else None
    spec = make_feature_spec(source.dtype, source.n_channels, source.spatial_shape,
                             data_range=data_range)
    params = FitParams(k=12, sample=5000, n_init=3)
    eng = select_engine(engine, arr, spec, params)
    (summary,) = dask.compute(eng.summarise(arr, spec, params))
    return eng, summary, arr, spec, params


def test_every_k_at_once_equals_the_dp_of_each_k(rng):
    x = np.sort(rng.normal(size=500))
    w = rng.integers(1, 9, 500).astype(np.float64)
    costs = optimal_costs_1d(x, w, 13)
    expected = [optimal_kmeans_1d(x, w, k).cost for k in range(1, 14)]
    assert np.allclose(costs, expected, rtol=1e-9, atol=1e-12)


def test_every_k_at_once_known_values():
    # values 0, 0, 10, 10, 20 (mean 8)
    x = np.array([0.0, 10.0, 20.0])
    w = np.array([2.0, 2.0, 1.0])
    costs = optimal_costs_1d(x, w, 4)
    assert costs[0] == pytest.approx(2 * 64 + 2 * 4 + 144)
    assert costs[1] == pytest.approx(600 / 9)  # {0, 0} | {10, 10, 20}: mean 40/3
    assert costs[2] == 0 and costs[3] == 0


def test_cost_is_exactly_zero_from_k_equal_to_the_number_of_values():
    """Bug: 4 grey levels gave a cost of 5.7e-13 at k = 4 (prefix-sum round-off) and 0 from
    k = 5, so k auto chose 5 and the fit then failed ("k=5 is larger than the 4 distinct
    values")."""
    x = np.array([10.0, 80.0, 160.0, 240.0]) / 255
    w = np.array([15137.0, 14461.0, 15137.0, 15265.0])
    costs = optimal_costs_1d(x, w, 13)
    assert costs[2] > 0 and np.all(costs[3:] == 0)


def test_k_auto_on_four_grey_levels_picks_four(rng, tmp_path):
    from pipeline import segment

    levels = np.array([10, 80, 160, 240], np.uint8)
    image = levels[rng.integers(0, 4, (300, 200))]
    [result] = segment(image, str(tmp_path / "out.zarr"), k="auto", quiet=True)
    assert result.k == 4 and result.mse == 0


@pytest.mark.parametrize("engine", ["exact", "binned", "dask-ml", "sample"])
def test_five_separated_colours_give_five(rng, engine):
    image = _five_colours(rng)
    if engine == "binned":  # the binned engine takes what the exact one does not: floats
        image = image.astype(np.float32) / 255
    eng, summary, arr, spec, params = _summarise(image, engine, (30, 40))
    k, info = choose_k_auto(eng, summary, arr, spec, params,
                            compute=_no_pass if engine in ("exact", "binned") else dask.compute)
    assert k == 5
    assert set(info["curve"]) == {str(k) for k in range(1, 14)}
    assert info["heuristic"] is True and info["k_min"] == 2 and info["k_max"] == 12
    curve = [info["curve"][str(k)] for k in range(1, 14)]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(curve))


@pytest.mark.parametrize("engine", ["exact", "binned", "sample"])
def test_ct_air_fat_soft_tissue_bone_give_four(rng, engine):
    image = _ct(rng)
    if engine == "binned":
        image = image.astype(np.float32)
    eng, summary, arr, spec, params = _summarise(image, engine, (4, 20, 20))
    k, info = choose_k_auto(eng, summary, arr, spec, params,
                            compute=_no_pass if engine in ("exact", "binned") else dask.compute)
    assert k == 4
    if engine in ("exact", "binned"):
        assert info["method"].startswith("dp-1d")


def test_exact_curve_needs_no_pass_over_the_pixels(rng, monkeypatch):
    eng, summary, arr, spec, params = _summarise(_five_colours(rng), "exact", (30, 40))

    def fail(*args, **kwargs):
        raise AssertionError("computed")

    curve, info = mse_curve(eng, summary, arr, spec, params, 2, 6, compute=fail)
    assert sorted(curve) == list(range(1, 8)) and "table" in info["method"]


def test_overflowed_table_uses_the_reproducible_sample(rng):
    eng, summary, arr, spec, params = _summarise(_five_colours(rng), "exact", (30, 40))
    summary.overflowed = True  # as a capped table that found too many distinct values
    calls = []

    def compute(*lazy):
        calls.append(len(lazy))
        return dask.compute(*lazy)

    params = FitParams(k=5, n_init=2, sample=3000)
    k, info = choose_k_auto(eng, summary, arr, spec, params, compute=compute)
    assert k == 5 and calls == [1] and info["method"] == "k-means of a 3000-pixel sample"


def test_range_is_validated():
    check_range(2, 12)
    for k_min, k_max in [(1, 5), (6, 5), (2, 1000)]:
        with pytest.raises(ConfigError, match="k_min and k_max"):
            check_range(k_min, k_max)


def test_plan_records_curve_and_choice(tmp_path, rng):
    from pipeline.execution import open_executor
    from pipeline.plan import build_plan

    image = _five_colours(rng)
    config = JobConfig(inputs=["img"], output=str(tmp_path / "o.zarr"), k="auto", quiet=True,
                        k_min=3, k_max=8)
    plan = build_plan(config, [from_array(image, name="img")])
    with open_executor(plan.config) as executor:
        [result] = plan.execute(executor)
    choice = result.metadata["k_auto"]
    assert result.k == 5 == choice["k"] and choice["k_min"] == 3 and choice["k_max"] == 8
    assert set(choice["curve"]) == {str(k) for k in range(2, 10)}
    assert result.metadata["config"]["k"] == "auto"


def test_report_shows_the_k_curve(tmp_path, rng):
    from pipeline.execution import open_executor
    from pipeline.plan import build_plan
    from pipeline.report import build_report

    out = str(tmp_path / "o.zarr")
    config = JobConfig(inputs=["img"], output=out, k="auto", quiet=True, k_min=2, k_max=8)
    plan = build_plan(config, [from_array(_five_colours(rng), name="img")])
    with open_executor(plan.config) as executor:
        plan.execute(executor)
    html = build_report(out)
    assert "Choice of k" in html and "k = 5 chosen automatically" in html
