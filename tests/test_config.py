"""Layered configuration: defaults, YAML, environment, overrides."""

from __future__ import annotations

import pytest

from pipeline.config import build_config, load_yaml
from pipeline.errors import ConfigError


def test_layers_later_wins(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("input: [a.png]\noutput: out.zarr\nk: 6\nengine: dask-ml\n")
    config = build_config(load_yaml(job), {"k": "3"}, environ={"KMSEG_ENGINE": "sample"})
    assert config.k == 3
    assert config.engine == "sample"
    assert config.inputs == ["a.png"]
    assert config.output == "out.zarr"


def test_dask_scheduler_address_from_environment():
    config = build_config(
        {"inputs": ["a"], "output": "o"}, environ={"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"}
    )
    assert config.scheduler == "tcp://127.0.0.1:1"


@pytest.mark.parametrize(
    "layer",
    [
        {"k": 0},
        {"k": "x"},
        {"engine": "magic"},
        {"colour_space": "hsv"},
        {"nope": 1},
        {"sample": 0},
        {"chunks": "0,4"},
    ],
)
def test_invalid_values_are_rejected(layer):
    with pytest.raises(ConfigError):
        build_config({"inputs": ["a"], "output": "o", **layer}, environ={})


def test_bad_yaml_names_the_file(tmp_path):
    job = tmp_path / "bad.yaml"
    job.write_text("k: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_yaml(job)
