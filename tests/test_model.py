"""Model files: round trip, refusal of files kmseg did not write, and of images they do not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import ConfigError, InputError, OutputError
from pipeline.model import Model


def _model() -> Model:
    return Model(
        centres=np.array([[10.0, 20.0, 30.0], [200.0, 100.0, 50.0]]),
        centres_features=np.array([[10.0, 20.0, 30.0], [200.0, 100.0, 50.0]]) / 255,
        dtype="uint8",
        n_channels=4,
        has_alpha=True,
        channels=(0, 1, 2),
        low=0.0,
        high=255.0,
        colour_space="rgb",
        spatial_weight=0.0,
        engine="exact",
        provenance={"inputs": ["a.png", "b.png"]},
    )


def test_round_trip(tmp_path):
    path = tmp_path / "m.json"
    _model().save(path)
    loaded = Model.load(path)
    assert loaded.k == 2
    np.testing.assert_array_equal(loaded.centres, _model().centres)
    assert loaded.channels == (0, 1, 2) and loaded.has_alpha and loaded.dtype == "uint8"
    assert json.loads(path.read_text())["format"] == "kmseg-model"
    spec = loaded.feature_spec((5, 6))
    assert spec.spatial_shape == (5, 6) and spec.scale == 255.0


def test_save_never_replaces_a_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        _model().save(path)
    assert path.read_text() == "mine"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ('{"format": "something"}', "not a kmseg model"),
        ('{"format": "kmseg-model", "version": 99}', "version 99"),
        ('{"format": "kmseg-model", "version": 1, "centres": []}', "invalid model file"),
    ],
)
def test_bad_model_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        Model.load(path)
    assert str(path) in str(err.value)


def test_an_image_it_does_not_fit_is_refused_by_name():
    model = _model()
    model.check_fits("ok.png", np.dtype(np.uint8), 4, True)
    with pytest.raises(InputError, match=r"grey\.png: .*1 channel\(s\), the model 4 channel"):
        model.check_fits("grey.png", np.dtype(np.uint8), 1, False)
    with pytest.raises(InputError, match="dtype is uint16, the model's uint8"):
        model.check_fits("deep.tif", np.dtype(np.uint16), 4, True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(centres_features=[[1, 2], [3, 4]]), "have 2 values, the feature"),
        (lambda d: d.update(centres_features=[[1, 2, 3, 4]] * 2), "have 4 values, not 3"),
        (lambda d: d.update(k=5), "k is 5 but it holds 2 centres"),
        (lambda d: d.update(k=-1), "k is -1"),
        (lambda d: d.update(centres=[[float("nan")] * 3] * 2), "finite"),
        (lambda d: d.update(label_order="bogus"), "unknown label_order 'bogus'"),
        (lambda d: d["features"].update(channels=[0, 1, 7]), "channels do not fit"),
    ],
)
def test_model_files_that_contradict_themselves_are_refused(tmp_path, edit, message):
    path = tmp_path / "m.json"
    _model().save(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message) as err:
        Model.load(path)
    assert str(err.value).startswith(f"{path}: invalid model file")


def test_fit_never_replaces_an_input_or_a_file_that_is_not_a_model(tmp_path):
    from PIL import Image

    from pipeline.cli import main

    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, 10:] = (200, 30, 40)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(image).save(folder / "a.png")
    before = (folder / "a.png").read_bytes()
    assert main(["fit", str(folder), "-k", "2", "-o", str(folder / "a.png"), "-q",
                 "--overwrite"]) == 2
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["fit", str(folder), "-k", "2", "-o", str(notes), "-q", "--overwrite"]) == 2
    assert (folder / "a.png").read_bytes() == before and notes.read_text() == "mine"
    model = tmp_path / "m.json"
    assert main(["fit", str(folder), "-k", "2", "-o", str(model), "-q"]) == 0
    assert main(["fit", str(folder), "-k", "2", "-o", str(model), "-q", "--overwrite"]) == 0


def test_k_given_with_a_model_is_refused(tmp_path, capsys):
    from PIL import Image

    from pipeline.cli import main

    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, 10:] = (200, 30, 40)
    Image.fromarray(image).save(tmp_path / "a.png")
    model = tmp_path / "m.json"
    assert main(["fit", str(tmp_path / "a.png"), "-k", "2", "-o", str(model), "-q"]) == 0
    for k in ("5", "auto"):
        capsys.readouterr()
        assert main(["segment", str(tmp_path / "a.png"), "--model", str(model), "-k", k,
                     "-o", str(tmp_path / f"o{k}.zarr"), "-q"]) == 2
        assert f"k: {k} does not apply with a model, whose k is 2" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "a.png"), "--model", str(model),
                 "-o", str(tmp_path / "o.zarr"), "-q"]) == 0


def test_k_given_with_a_model_is_refused_even_at_the_default_value(tmp_path, capsys,
                                                                   monkeypatch):
    """`-k 4` (the default's value, typed out) with a k=3 model was silently ignored: the
    README says a k that differs from the model's is refused, wherever it is given."""
    from PIL import Image

    import pipeline
    from pipeline.cli import main

    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, 10:20] = (200, 30, 40)
    image[:, 20:] = (20, 200, 40)
    Image.fromarray(image).save(tmp_path / "a.png")
    model = str(tmp_path / "m.json")
    assert main(["fit", str(tmp_path / "a.png"), "-k", "3", "-o", model, "-q"]) == 0
    job = tmp_path / "job.yaml"
    job.write_text(f"inputs: [{tmp_path / 'a.png'}]\noutput: {tmp_path / 'y.zarr'}\nk: 4\n"
                   f"model: {model}\n")
    cases = [
        (["segment", str(tmp_path / "a.png"), "--model", model, "-k", "4",
          "-o", str(tmp_path / "f.zarr"), "-q"], {}, "k: 4 does not apply"),
        (["segment", str(tmp_path / "a.png"), "--model", model, "--set", "k=4",
          "-o", str(tmp_path / "s.zarr"), "-q"], {}, "k: 4 does not apply"),
        (["segment", str(tmp_path / "a.png"), "--model", model,
          "-o", str(tmp_path / "e.zarr"), "-q"], {"KMSEG_K": "4"}, "KMSEG_K: 4 does not apply"),
        (["run", str(job), "-q"], {}, f"{job}: k: 4 does not apply"),
    ]
    for argv, environ, message in cases:
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "whose k is 3" in err[0], err
        for name in environ:
            monkeypatch.delenv(name)
    assert not any((tmp_path / n).exists() for n in ("f.zarr", "s.zarr", "e.zarr", "y.zarr"))
    # The model's own k, or none at all, is fine, from the CLI and from Python.
    assert main(["segment", str(tmp_path / "a.png"), "--model", model, "-k", "3",
                 "-o", str(tmp_path / "ok.zarr"), "-q"]) == 0
    [result] = pipeline.segment(str(tmp_path / "a.png"), str(tmp_path / "py.zarr"), model=model,
                                quiet=True)
    assert result.k == 3 and sorted(result.counts) == [200, 200, 200]
    with pytest.raises(ConfigError, match="k: 4 does not apply with a model, whose k is 3"):
        pipeline.segment(str(tmp_path / "a.png"), str(tmp_path / "py4.zarr"), k=4, model=model,
                         quiet=True)
    with pytest.raises(ConfigError, match="k: 4 does not apply with a model, whose k is 3"):
        pipeline.segment(str(tmp_path / "a.png"), str(tmp_path / "py4.zarr"), k=4,
                         model=Model.load(model), quiet=True)
