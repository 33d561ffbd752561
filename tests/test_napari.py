"""The output opens in napari (napari-ome-zarr) as the recoloured picture plus visible labels.

Three levels: the ``omero`` metadata itself (always), the layers napari-ome-zarr's reader gives
napari (where napari is installed: ``pip install -e .[viewer]``), and a real napari window
under Xvfb whose screenshot must show the recoloured image's true colours (where ``xvfb-run``
and Qt's X11 libraries are installed too).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline import segment

# napari and its plugin engine warn about their own dependencies (pydantic) when imported, and
# about label colour dicts without a default entry, which napari-ome-zarr builds.
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore:color_dict did not provide:UserWarning"
)

#: Three flat colour classes: the recoloured image holds exactly these colours.
COLOURS = np.array([(220, 30, 30), (30, 200, 40), (20, 40, 210)], dtype=np.uint8)


def three_colours() -> np.ndarray:
    image = np.zeros((120, 180, 3), dtype=np.uint8)
    for i, colour in enumerate(COLOURS):
        image[:, 60 * i : 60 * (i + 1)] = colour
    return image


def has_napari() -> bool:
    return all(importlib.util.find_spec(m) for m in ("napari", "napari_ome_zarr"))


needs_napari = pytest.mark.skipif(
    not has_napari(), reason="napari and napari-ome-zarr are not installed (pip install .[viewer])"
)


@pytest.fixture(scope="module")
def rgb_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("napari") / "rgb.zarr")
    segment(three_colours(), out, k=3, quiet=True)
    return out


def test_rgb_output_has_red_green_blue_channels(rgb_output: str) -> None:
    from ome_zarr_models.common.omero import Omero

    ome = zarr.open_group(rgb_output, mode="r").attrs["ome"]
    omero = Omero.model_validate(ome["omero"])
    assert [c.color for c in omero.channels] == ["FF0000", "00FF00", "0000FF"]
    for channel in omero.channels:
        assert (channel.window.start, channel.window.end) == (0, 255)
    assert ome["omero"]["rdefs"]["model"] == "color"
    labels = zarr.open_group(rgb_output, mode="r")["labels/clusters"].attrs["ome"]
    assert labels["omero"]["channels"][0]["active"] is True
    assert "window" not in labels["omero"]["channels"][0]  # napari's labels layer takes none


def test_grey_volume_window_spans_the_centres(tmp_path: Path) -> None:
    from ome_zarr_models.common.omero import Omero

    volume = np.full((6, 40, 50), -1000, dtype=np.int16)  # air
    volume[:, 10:30, 10:40] = 40  # soft tissue
    volume[:, 15:25, 20:30] = 700  # bone
    out = str(tmp_path / "ct.zarr")
    segment(volume, out, k=3, quiet=True)
    ome = zarr.open_group(out, mode="r").attrs["ome"]
    [channel] = Omero.model_validate(ome["omero"]).channels
    assert channel.color == "FFFFFF"
    assert (channel.window.start, channel.window.end) == pytest.approx((-1000, 700))
    assert (channel.window.min, channel.window.max) == (-32768, 32767)
    assert ome["omero"]["rdefs"] == {"model": "greyscale", "defaultT": 0, "defaultZ": 3}


def test_alpha_channel_is_inactive(tmp_path: Path) -> None:
    image = np.dstack([three_colours(), np.full((120, 180), 255, np.uint8)])
    out = str(tmp_path / "rgba.zarr")
    segment(image, out, k=3, quiet=True)
    channels = zarr.open_group(out, mode="r").attrs["ome"]["omero"]["channels"]
    assert [c["active"] for c in channels] == [True, True, True, False]
    assert [c["label"] for c in channels] == ["R", "G", "B", "A"]


@needs_napari
def test_napari_ome_zarr_gives_coloured_channels_and_visible_labels(rgb_output: str) -> None:
    from napari.components import ViewerModel
    from napari_ome_zarr._reader import napari_get_reader

    viewer = ViewerModel()
    for data, meta, kind in napari_get_reader(rgb_output)():
        getattr(viewer, f"add_{kind}")(data, **meta)  # what napari does with reader output
    images = [layer for layer in viewer.layers if type(layer).__name__ == "Image"]
    [labels] = [layer for layer in viewer.layers if type(layer).__name__ == "Labels"]
    assert [layer.colormap.name for layer in images] == ["red", "green", "blue"]
    assert [layer.blending for layer in images] == [
        "translucent_no_depth", "additive", "additive"
    ]
    assert [tuple(layer.contrast_limits) for layer in images] == [(0, 255)] * 3
    assert labels.visible
    mapped = labels.colormap.map(np.array([1, 2, 3])) * 255
    centres = np.array(zarr.open_group(rgb_output, mode="r").attrs["kmseg"]["centres"])
    np.testing.assert_allclose(mapped[:, :3], centres, atol=1)


_WINDOW_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.open(sys.argv[1], plugin="napari-ome-zarr")
    layers = [
        {"type": type(l).__name__, "name": l.name, "visible": bool(l.visible)}
        for l in viewer.layers
    ]
    for layer in viewer.layers:
        if type(layer).__name__ == "Labels":
            layer.visible = False  # the picture alone
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    np.save(sys.argv[2], viewer.screenshot(canvas_only=True, flash=False))
    print("LAYERS " + json.dumps(layers))
    viewer.close()
    """
)


@needs_napari
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (Debian xvfb)")
def test_napari_window_shows_true_colours(rgb_output: str, tmp_path: Path) -> None:
    script = tmp_path / "view.py"
    script.write_text(_WINDOW_SCRIPT)
    shot = tmp_path / "shot.npy"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, str(script),
         rgb_output, str(shot)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    if "platform plugin" in done.stderr and "could be initialized" in done.stderr:
        pytest.skip("Qt cannot start under Xvfb: install libxcb-icccm4 libxcb-keysyms1 "
                    "libxcb-xinerama0 libxkbcommon-x11-0 libgl1 libegl1")
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("LAYERS "))
    layers = json.loads(line[len("LAYERS ") :])
    assert [(x["type"], x["visible"]) for x in layers] == [
        ("Image", True), ("Image", True), ("Image", True), ("Labels", True)
    ]
    pixels = np.load(shot)[..., :3].reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    shown = {tuple(c) for c, n in zip(colours, counts, strict=True) if n > 0.05 * len(pixels)}
    assert {tuple(int(v) for v in c) for c in COLOURS} <= shown  # the composite's true colours
