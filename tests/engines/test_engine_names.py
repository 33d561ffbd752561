"""The engine names of the configuration and the engines that implement them agree."""

from __future__ import annotations

import subprocess
import sys

from pipeline.config import ENGINE_NAMES, JobConfig
from pipeline.engines import ENGINES


def test_every_configured_name_has_an_engine_and_every_engine_a_name():
    assert set(ENGINE_NAMES) - {"auto"} == set(ENGINES)
    assert "auto" in ENGINE_NAMES and "auto" not in ENGINES
    for name, engine in ENGINES.items():
        assert engine.name == name


def test_config_accepts_exactly_the_engine_names():
    for name in ENGINE_NAMES:
        assert JobConfig(inputs=["x.png"], output="o.zarr", engine=name).engine == name


def test_config_stays_light():
    """Reading the configuration imports no Dask (the CLI's --help stays fast)."""
    code = "import sys, pipeline.config; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
