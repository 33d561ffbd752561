"""The job configuration: layers in order, every key checked, messages naming the key."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from pipeline.config import (
    JobConfig,
    build_config,
    check_address,
    config_fields,
    default_of,
    from_environment,
    load_yaml,
)
from pipeline.errors import ConfigError

BASE = {"inputs": ["a.png"], "output": "o.zarr"}
README = Path(__file__).resolve().parents[1] / "README.md"


def _job(tmp_path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


# --- precedence: defaults < environment < YAML job file < flags ---------------------------------


def test_precedence_defaults_environment_yaml_flags(tmp_path):
    job = _job(tmp_path, "input: [a.png]\noutput: out.zarr\nk: 6\nengine: dask-ml\n"
                         "random_state: 5\n")
    environ = {"KMSEG_ENGINE": "sample", "KMSEG_K": "7", "KMSEG_N_INIT": "3"}
    config = build_config(load_yaml(job), {"k": "3"}, environ=environ)
    assert config.k == 3  # flag over YAML over environment
    assert config.engine == "dask-ml"  # YAML over environment
    assert config.n_init == 3  # environment over default
    assert config.random_state == 5  # YAML over default
    assert config.max_iter == 300  # default
    assert config.inputs == ["a.png"]
    assert config.output == "out.zarr"


def test_a_mapping_overrides_the_environment():
    config = build_config({**BASE, "k": 2}, environ={"KMSEG_K": "9", "KMSEG_TOL": "0.5"})
    assert (config.k, config.tol) == (2, 0.5)


def test_yaml_scheduler_overrides_dask_scheduler_address(tmp_path):
    job = _job(tmp_path, "inputs: [a.png]\noutput: o.zarr\nscheduler: tcp://10.0.0.2:8786\n")
    config = build_config(load_yaml(job), environ={"DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.1:1"})
    assert config.scheduler == "tcp://10.0.0.2:8786"


def test_dask_scheduler_address_from_environment():
    config = build_config(BASE, environ={"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"})
    assert config.scheduler == "tcp://127.0.0.1:1"
    both = {"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1", "KMSEG_SCHEDULER": "host:8786"}
    assert build_config(BASE, environ=both).scheduler == "host:8786"


def test_environment_values():
    environ = {
        "KMSEG_INPUTS": os.pathsep.join(["a.png", "b.tif"]),
        "KMSEG_OUTPUT": "o.zarr",
        "KMSEG_CHUNKS": "256x128",
        "KMSEG_QUIET": "yes",
        "KMSEG_VALID_RANGE": "-1000,3000",
        "KMSEG_RANDOM_STATE": "none",
        "KMSEG_SAMPLE": "",  # empty: unset
        "KMSEG_DATA": "/data",  # not a key (the Docker files use it): ignored
    }
    config = build_config(environ=environ)
    assert config.inputs == ["a.png", "b.tif"]
    assert config.chunks == [256, 128]
    assert config.quiet is True
    assert config.valid_range == [-1000.0, 3000.0]
    assert config.random_state is None
    assert config.sample is None
    assert from_environment({"KMSEG_DATA": "/data", "KMSEG_K": ""}) == {}


# --- text forms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("512x256", [512, 256]), ("512,256", [512, 256]), (["512", "256"], [512, 256]),
     (["512x256"], [512, 256]), ("[64, 32, 16]", [64, 32, 16]), ([8, 4], [8, 4])],
)
def test_chunks_forms(value, expected):
    assert build_config({**BASE, "chunks": value}, environ={}).chunks == expected


def test_typed_values_from_text():
    config = build_config(
        {**BASE, "k": "12", "tol": "1e-3", "overwrite": "true", "array_path": "0",
         "cluster": "{kind: local, n_workers: 2}", "valid_range": ["-5", "5"]},
        environ={},
    )
    assert (config.k, config.tol, config.overwrite, config.array_path) == (12, 1e-3, True, "0")
    assert config.cluster == {"kind": "local", "n_workers": 2}
    assert config.valid_range == [-5.0, 5.0]


def test_whole_numbers_in_scientific_notation(tmp_path):
    # `--max-pixels 1e12` (the README gives the default as 10^11) and `sample: 1e5` in YAML,
    # which reads 1e5 as text, were refused as "unable to parse string as an integer".
    config = build_config({**BASE, "max_pixels": "1e12", "sample": "2.5E3"},
                          environ={"KMSEG_RANDOM_STATE": "1e2"})
    assert (config.max_pixels, config.sample, config.random_state) == (10**12, 2500, 100)
    assert build_config(load_yaml(_job(tmp_path, "inputs: [a.png]\noutput: o.zarr\n"
                                                 "max_pixels: 1e12\n")),
                        environ={}).max_pixels == 10**12
    with pytest.raises(ConfigError, match="sample"):
        build_config({**BASE, "sample": "2.5e0"}, environ={})  # not a whole number
    with pytest.raises(ConfigError, match="max_pixels"):
        build_config({**BASE, "max_pixels": "1e-3"}, environ={})


def test_yaml_input_alias_and_numbers_as_paths(tmp_path):
    job = _job(tmp_path, "input: a.png\noutput: o.zarr\narray_path: 0\n")
    config = build_config(load_yaml(job), environ={})
    assert config.inputs == ["a.png"]
    assert config.array_path == "0"
    both = _job(tmp_path, "input: a.png\ninputs: [b.png]\noutput: o.zarr\n")
    with pytest.raises(ConfigError, match=r"job\.yaml: give either input or inputs"):
        load_yaml(both)


# --- every key checked, the message naming it ---------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "named"),
    [
        ({"k": 0}, "k"),
        ({"k": 65536}, "k"),
        ({"k": "x"}, "k"),
        ({"k": True}, "k"),
        ({"k": [1, 2]}, "k"),
        ({"pyramid_levels": "-2"}, "pyramid_levels"),
        ({"n_workers": 0}, "n_workers"),
        ({"spatial_weight": "nan"}, "spatial_weight"),
        ({"spatial_weight": float("inf")}, "spatial_weight"),
        ({"spatial_weight": -1}, "spatial_weight"),
        ({"tol": -1}, "tol"),
        ({"tol": "inf"}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"n_init": 0}, "n_init"),
        ({"sample": 0}, "sample"),
        ({"random_state": -1}, "random_state"),
        ({"random_state": 2**32}, "random_state"),
        ({"level": -1}, "level"),
        ({"series": -1}, "series"),
        ({"chunks": "0,5"}, "chunks[0]"),
        ({"chunks": [5]}, "chunks"),
        ({"chunks": "4x4x4x4"}, "chunks"),
        ({"chunk_mb": 0}, "chunk_mb"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"valid_range": [5, 1]}, "valid_range"),
        ({"valid_range": [1]}, "valid_range"),
        ({"valid_range": ["nan", 1]}, "valid_range[0]"),
        ({"engine": "magic"}, "engine"),
        ({"colour_space": "hsv"}, "colour_space"),
        ({"local_scheduler": "gpu"}, "local_scheduler"),
        ({"alpha": "drop"}, "alpha"),
        ({"missing_slices": "ignore"}, "missing_slices"),
        ({"overwrite": "maybe"}, "overwrite"),
        ({"scheduler": "no-port"}, "scheduler"),
        ({"cluster": "[1, 2]"}, "cluster"),
        ({"cluster": {"kind": "magic"}}, "cluster"),
        ({"inputs": []}, "inputs"),
        ({"output": ""}, "output"),
        ({"nope": 1}, "nope"),
    ],
)
def test_invalid_values_name_the_key(layer, named):
    with pytest.raises(ConfigError) as caught:
        build_config({**BASE, **layer}, environ={})
    message = str(caught.value)
    assert message.startswith(f"{named}: "), message
    assert "\n" not in message


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"^ks: unknown config key \(did you mean k\?\)$"):
        build_config({**BASE, "ks": 3}, environ={})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"KMSEG_K": "abc"}, "KMSEG_K"),
        ({"KMSEG_N_WORKERS": "0"}, "KMSEG_N_WORKERS"),
        ({"KMSEG_SPATIAL_WEIGHT": "nan"}, "KMSEG_SPATIAL_WEIGHT"),
        ({"DASK_SCHEDULER_ADDRESS": "not an address"}, "DASK_SCHEDULER_ADDRESS"),
        ({"DASK_SCHEDULER_ADDRESS": "http://host:8786"}, "DASK_SCHEDULER_ADDRESS"),
    ],
)
def test_bad_environment_variable_is_named(environ, named):
    with pytest.raises(ConfigError, match=rf"^{named}: "):
        build_config(BASE, environ=environ)


def test_overridden_environment_value_is_not_used():
    assert build_config({**BASE, "k": 3}, environ={"KMSEG_K": "abc"}).k == 3


def test_yaml_errors_name_the_file_and_key(tmp_path):
    job = _job(tmp_path, "inputs: [a.png]\noutput: o.zarr\nnope: 1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(job))}: nope: unknown config key"):
        build_config(load_yaml(job), environ={})
    job = _job(tmp_path, "inputs: [a.png]\noutput: o.zarr\nk: [1, 2]\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(job))}: k: "):
        build_config(load_yaml(job), environ={})


def test_bad_yaml_names_the_file(tmp_path):
    job = tmp_path / "bad.yaml"
    job.write_text("k: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_yaml(job)


@pytest.mark.parametrize(
    "address", ["tcp://127.0.0.1:8786", "tls://scheduler.example.org:8786", "host:8786",
                "tcp://[::1]:8786", "ucx://10.1.2.3:13337"],
)
def test_scheduler_addresses_accepted(address):
    assert check_address(address) == address
    assert build_config({**BASE, "scheduler": address}, environ={}).scheduler == address


@pytest.mark.parametrize(
    "address", ["host", "tcp://host", "http://host:8786", "tcp://host:99999", "tcp://host:x",
                "tcp://a b:1", "tcp://host:8786/path"],
)
def test_scheduler_addresses_refused(address):
    with pytest.raises(ValueError, match="not a scheduler address"):
        check_address(address)


def test_password_in_a_bad_address_is_not_shown():
    with pytest.raises(ConfigError) as caught:
        build_config({**BASE, "scheduler": "tcp://me:s3cr3t@host"}, environ={})
    assert "s3cr3t" not in str(caught.value)


# --- the object -----------------------------------------------------------------------------------


def test_config_is_immutable_and_replace_validates():
    config = build_config(BASE, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.k = 5  # type: ignore[misc]
    assert dataclasses.replace(config, k=9).k == 9
    with pytest.raises(ValueError, match="must be 1-65535 or auto, got 0"):
        dataclasses.replace(config, k=0)


def test_defaults():
    config = build_config(BASE, environ={})
    assert (config.k, config.engine, config.random_state, config.sample) == (4, "auto", 0, None)
    assert (config.max_iter, config.tol, config.n_init) == (300, 1e-4, 10)
    assert (config.local_scheduler, config.connect_timeout, config.alpha) == ("threads", 30.0,
                                                                              "mask")
    assert config.max_pixels == 10**11
    assert default_of("inputs") == []


def test_read_options():
    config = build_config({**BASE, "level": 2, "series": 1, "array_path": "0",
                           "max_pixels": 1000, "missing_slices": "error", "reorient": True},
                          environ={})
    options = config.read_options()
    assert (options.level, options.series, options.array_path) == (2, 1, "0")
    assert (options.max_pixels, options.missing_slices, options.reorient) == (1000, "error", True)


def test_to_dict_redacts_secrets():
    config = build_config(
        {**BASE, "scheduler": "tls://me:s3cr3t@host:8786",
         "cluster": {"kind": "gateway", "password": "hunter2"}},
        environ={},
    )
    recorded = config.to_dict()
    assert recorded["scheduler"] == "tls://***@host:8786"
    assert recorded["cluster"] == {"kind": "gateway", "password": "***"}
    assert recorded["k"] == 4
    assert set(recorded) == set(config_fields())


def test_every_key_has_a_description_and_a_readme_row():
    text = README.read_text()
    section = text.split("### Configuration keys", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    for name, info in config_fields().items():
        assert info.description, f"{name} has no description"
        assert name in documented, f"{name} is missing from the README's configuration table"
    assert documented <= set(config_fields())
    assert JobConfig.__doc__


def test_config_pickles_for_worker_processes():
    import pickle

    config = build_config({**BASE, "cluster": "{kind: local}", "chunks": "64x64"}, environ={})
    assert pickle.loads(pickle.dumps(config)) == config


@pytest.mark.parametrize(
    ("value", "expected"), [("auto", "auto"), ("AUTO", "auto"), ("7", 7), (7.0, 7)]
)
def test_k_is_a_number_or_auto(value, expected):
    assert build_config({**BASE, "k": value}, environ={}).k == expected


@pytest.mark.parametrize("value", ["abc", [1, 2], 2.5, 0, 70000])
def test_bad_k_is_one_message_naming_k(value):
    with pytest.raises(ConfigError, match=r"^k: (must be a whole number or auto|must be 1-65535)"):
        build_config({**BASE, "k": value}, environ={})


# --- unset values, malformed lists, unknown variables (tester's findings) ----------------------


@pytest.mark.parametrize("layer", [{"chunks": ["none"]}, {"chunks": "none"}, {"chunks": ["None"]}])
def test_list_keys_accept_none_as_a_flag_or_text(layer):
    assert build_config({**BASE, **layer}, environ={}).chunks is None


@pytest.mark.parametrize(("key", "default"), [("k", 4), ("quiet", False)])
def test_keys_without_unset_refuse_none_naming_the_default(key, default):
    with pytest.raises(ConfigError, match=rf"^{key}: has no unset value; .*default: {default}"):
        build_config({**BASE, key: "none"}, environ={})
    with pytest.raises(ConfigError, match=rf"^KMSEG_{key.upper()}: has no unset value"):
        build_config(BASE, environ={f"KMSEG_{key.upper()}": "null"})


@pytest.mark.parametrize("text", ["[1,", "1,", "[1,,2]", "1, 2]", "(1, 2", "["])
def test_malformed_list_text_is_refused_naming_the_variable(text):
    with pytest.raises(ConfigError, match=r"^KMSEG_VALID_RANGE: malformed list"):
        build_config(BASE, environ={"KMSEG_VALID_RANGE": text})


def test_unknown_variable_warns_once_with_the_close_key(monkeypatch):
    from pipeline import config
    from pipeline.errors import KmsegWarning

    monkeypatch.setattr(config, "_warned_variables", set())
    with pytest.warns(KmsegWarning, match=r"^KMSEG_CHUNK: not a kmseg setting, ignored; "
                                          r"did you mean KMSEG_CHUNKS\?$"):
        assert build_config(BASE, environ={"KMSEG_CHUNK": "16"}).chunks is None
    build_config(BASE, environ={"KMSEG_CHUNK": "16"})  # once: no second warning (= error here)


def test_variables_the_project_uses_for_itself_are_silent(monkeypatch):
    from pipeline import config

    monkeypatch.setattr(config, "_warned_variables", set())
    root = Path(__file__).resolve().parents[1]
    used: set[str] = set()
    for folder in ("docker", ".ci"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                text = path.read_text(errors="ignore")
                used |= set(re.findall(r"KMSEG_[A-Z0-9_]*[A-Z0-9]", text))
    assert {"KMSEG_DATA", "KMSEG_JOB"} <= used
    build_config(BASE, environ={name: "1" for name in used - {"KMSEG_" + k.upper()
                                                               for k in config_fields()}})


def test_yaml_duplicate_key_and_non_utf8_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"job.yaml: k: given twice \(again on line 3\)$"):
        load_yaml(_job(tmp_path, "inputs: [a.png]\nk: 3\nk: 4\n"))
    path = tmp_path / "bytes.yaml"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ConfigError, match=r"bytes.yaml: not a UTF-8 text file"):
        load_yaml(path)
