"""``kmseg report``: a self-contained page that renders, on photos, slides, volumes and batches."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipeline.cli import main
from pipeline.errors import InputError, OutputError
from pipeline.report import build_report, default_report_path, write_report
from pipeline.report import data as report_data
from pipeline.report.plots import class_boundaries, distinct_colours
from pipeline.report.render import overlay, physical_shape, resample_nearest, to_display

COLOURS = np.array([(220, 30, 30), (30, 200, 40), (20, 40, 210)], dtype=np.uint8)


class References(HTMLParser):
    """Every URL-valued attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action") and value:
                self.urls.append(value)


def references(page: str) -> References:
    parser = References()
    parser.feed(page)
    return parser


def stripes(height: int = 96, width: int = 150) -> np.ndarray:
    """Three vertical stripes of known colours: 50 columns each."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for i, colour in enumerate(COLOURS):
        image[:, 50 * i : 50 * (i + 1)] = colour
    return image


@pytest.fixture
def photo_output(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "stripes.png"
    Image.fromarray(stripes()).save(path)
    out = str(tmp_path / "stripes.zarr")
    assert main(["segment", str(path), "-k", "3", "-o", out, "-q"]) == 0
    return out, path


def test_page_is_self_contained(photo_output: tuple[str, Path]) -> None:
    out, _ = photo_output
    page = build_report(out)
    found = references(page)
    assert found.urls, "the page has pictures"
    assert all(u.startswith(("data:image/", "#")) for u in found.urls), found.urls
    assert "http://" not in page.replace('content="width', "") and "https://" not in page
    assert "file:" not in page and "<link" not in page and "<script" not in page
    assert found.tags.count("img") >= 4  # input, recoloured, overlay, distribution


def test_page_shows_the_palette_and_measurements(photo_output: tuple[str, Path]) -> None:
    out, _ = photo_output
    page = build_report(out)
    assert page.count("4,800") >= 3  # 96 x 50 pixels in each class, three classes
    assert "33.33 %" in page
    for colour in COLOURS:  # each centre's own colour is a swatch
        assert "#{:02x}{:02x}{:02x}".format(*colour) in page
    assert "sizes are in pixels only" in page  # a PNG has no physical pixel size
    assert 'alt="colour distribution"' in page
    assert "exact" in page and "configuration" in page


def test_input_that_is_gone_is_reported_unavailable(photo_output: tuple[str, Path]) -> None:
    out, path = photo_output
    os.remove(path)
    page = build_report(out)
    assert "input unavailable" in page and str(path) in page
    assert "labels (white: no data)" in page


def test_replaced_input_of_the_same_shape_is_not_shown(photo_output: tuple[str, Path]) -> None:
    import json

    out, path = photo_output
    recorded = json.loads((Path(out) / "zarr.json").read_text())["attributes"]["kmseg"]["input"]
    stat = path.stat()
    assert recorded["stamp"] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    Image.fromarray(stripes()[:, ::-1].copy()).save(path)  # same shape, other content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    page = build_report(out)
    assert f"the input {path} has changed since the job" in page
    assert "labels (white: no data)" in page


def test_write_replaces_only_its_own_reports(photo_output: tuple[str, Path], tmp_path) -> None:
    out, _ = photo_output
    target = tmp_path / "page.html"
    assert write_report(out, str(target)) == str(target)
    first = target.read_text()
    assert first.startswith("<!DOCTYPE html>")
    write_report(out, str(target))  # its own report: replaced
    other = tmp_path / "notes.html"
    other.write_text("<html>my notes</html>")
    with pytest.raises(OutputError, match="not a kmseg report"):
        write_report(out, str(other))
    assert other.read_text() == "<html>my notes</html>"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".kmseg-report-")]


def test_report_inside_a_zarr_store_is_refused(photo_output: tuple[str, Path], capsys) -> None:
    # `-o OUT.zarr/r.html` wrote the page among the store's nodes; a later `segment
    # --overwrite` of OUT.zarr then refused the store for holding an entry kmseg did not write.
    out, _ = photo_output
    before = sorted(os.listdir(out))
    assert main(["report", out, "-o", os.path.join(out, "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside the Zarr store" in err and "r.html" in err
    assert main(["report", out, "-o", os.path.join(out, "labels", "r.html")]) == 2
    assert sorted(os.listdir(out)) == before
    assert not os.path.exists(os.path.join(out, "labels", "r.html"))


def test_cli_report_default_path(photo_output: tuple[str, Path], capsys) -> None:
    out, _ = photo_output
    assert default_report_path(out) == out[: -len(".zarr")] + ".report.html"
    assert main(["report", out]) == 0
    assert os.path.isfile(out[: -len(".zarr")] + ".report.html")
    assert main(["report", out + "-missing", "-o", out + ".html"]) == 2
    assert "no such output store" in capsys.readouterr().err


def test_unfinished_output_is_refused(tmp_path: Path) -> None:
    import zarr

    out = tmp_path / "unfinished.zarr"
    zarr.open_group(str(out), mode="w").attrs["kmseg"] = {"status": "incomplete"}
    with pytest.raises(InputError, match="did not finish"):
        build_report(str(out))


def test_volume_shows_three_orthogonal_planes(tmp_path: Path) -> None:
    import nibabel

    volume = np.full((10, 40, 48), -1000, dtype=np.int16)
    volume[3:8, 10:30, 8:40] = 40
    volume[4:7, 15:25, 20:28] = 700
    image = nibabel.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.diag([0.8, 0.8, 2.5, 1]))
    image.header.set_xyzt_units("mm")
    nibabel.save(image, tmp_path / "ct.nii.gz")
    out = str(tmp_path / "ct.zarr")
    assert main(["segment", str(tmp_path / "ct.nii.gz"), "-k", "3", "-o", out, "-q"]) == 0
    _, [loaded] = report_data.load_output(out)
    titles = [p.title for p in loaded.planes]
    assert titles == [
        "axial (z = 5)", "coronal (y = 20), z upwards", "sagittal (x = 24), z upwards"
    ]
    axial, coronal, sagittal = loaded.planes
    np.testing.assert_array_equal(axial.input, volume[5])  # the input, on the labels' grid
    np.testing.assert_array_equal(coronal.input, volume[::-1, 20])
    np.testing.assert_array_equal(sagittal.input, volume[::-1, :, 24])
    assert coronal.spacing == (2.5, 0.8)
    page = build_report(out)
    assert "mm³" in page and "mL" in page
    # 5 x 20 x 32 - 3 x 10 x 8 soft-tissue voxels of 1.6 mm³
    assert f"{(5 * 20 * 32 - 240) * 1.6 / 1000:.4g}" in page


def test_batch_page_has_a_table_of_images(tmp_path: Path) -> None:
    paths = []
    for name, image in (("a", stripes()), ("b", stripes()[:, ::-1])):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        paths.append(str(path))
    out = str(tmp_path / "batch.zarr")
    assert main(["segment", *paths, "-k", "3", "-o", out, "-q"]) == 0
    page = build_report(out)
    links = [u for u in references(page).urls if u.startswith("#")]
    assert links == ["#image-0", "#image-1"]
    assert 'id="image-0"' in page and 'id="image-1"' in page
    assert "class fractions" in page


def test_slide_preview_reads_a_coarser_pyramid_level(tmp_path: Path) -> None:
    """A pyramidal TIFF: the input preview comes from a smaller level, never level 0 whole."""
    full = np.tile(stripes(256, 150), (8, 8, 1))  # 2048 x 1200
    marker = np.full((1024, 600, 3), 77, dtype=np.uint8)  # level 1 differs on purpose
    path = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = {"tile": (256, 256), "photometric": "rgb"}
        tif.write(full, subifds=1, **options)
        tif.write(marker, subfiletype=1, **options)
    out = str(tmp_path / "slide.zarr")
    assert main(["segment", str(path), "-k", "3", "-o", out, "-q"]) == 0
    _, [loaded] = report_data.load_output(out)
    [plane] = loaded.planes
    assert loaded.level == 1  # 1024 x 600: the coarsest output level with both sides >= 512
    assert plane.labels.shape == (1024, 600)
    assert plane.input.shape == (1024, 600, 3)
    assert (plane.input == 77).all()  # read from level 1


def test_large_input_without_pyramid_is_not_read(photo_output, monkeypatch) -> None:
    out, _ = photo_output
    monkeypatch.setattr(report_data, "INPUT_READ_LIMIT", 1000)
    _, [loaded] = report_data.load_output(out)
    assert loaded.planes[0].input is None
    assert "without a smaller pyramid level" in loaded.input_note


def test_input_preview_is_on_the_labels_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, size=(2100, 1300), dtype=np.uint8)
    np.save(tmp_path / "noise.npy", image)
    out = str(tmp_path / "noise.zarr")
    assert main(["segment", str(tmp_path / "noise.npy"), "-k", "2", "-o", out, "-q"]) == 0
    _, [loaded] = report_data.load_output(out)
    [plane] = loaded.planes
    assert loaded.level == 1  # 1050 x 650: the coarsest level with both sides >= 512
    step = 2 * report_data.stride(1050)  # level factor x read stride
    expected = image[::step, ::step][: plane.labels.shape[0], : plane.labels.shape[1]]
    np.testing.assert_array_equal(plane.input, expected)


def test_choose_level_and_stride() -> None:
    shapes = [(4000, 3000), (2000, 1500), (1000, 750), (500, 375)]
    assert report_data.choose_level(shapes) == 2
    assert report_data.choose_level([(300, 200)]) == 0
    assert report_data.stride(1000) == 1 and report_data.stride(1025) == 2


def test_render_helpers() -> None:
    grey = np.array([[0, 50], [100, 200]], dtype=np.int16)
    np.testing.assert_array_equal(
        to_display(grey, [(0, 100)], [0])[..., 0], [[0, 128], [255, 255]]
    )
    base = np.full((2, 2, 3), 100, np.uint8)
    tinted = overlay(base, np.array([[0, 1], [1, 1]]), np.array([[200, 0, 0]], np.uint8))
    np.testing.assert_array_equal(tinted[0, 0], [100, 100, 100])  # no data: unchanged
    assert tuple(tinted[1, 1]) != (100, 100, 100)
    np.testing.assert_array_equal(resample_nearest(np.arange(4).reshape(2, 2), (4, 4))[::2, ::2],
                                  [[0, 1], [2, 3]])
    assert physical_shape((60, 200), (2.5, 0.8), 200) == (188, 200)


def test_plot_helpers() -> None:
    np.testing.assert_allclose(class_boundaries([700, -1000, 40]), [-480, 370])
    values = np.array([[1, 2, 3], [1, 2, 3], [9, 9, 9]], dtype=np.uint8)
    colours, counts, classes = distinct_colours(values, np.array([2, 2, 1]), [(0, 255)] * 3)
    assert colours.tolist() == [[1, 2, 3], [9, 9, 9]]
    assert counts.tolist() == [2, 1] and classes.tolist() == [2, 1]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (Debian package)")
def test_page_renders_in_headless_chromium(photo_output: tuple[str, Path], tmp_path) -> None:
    out, _ = photo_output
    page = write_report(out, str(tmp_path / "page.html"))
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1200,2000", f"file://{page}"],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    assert pixels.std() > 20  # not blank
    colours = np.unique(pixels, axis=0)
    assert len(colours) > 200  # pictures, plots and text, not a flat page
    for colour in COLOURS:  # the recoloured stripes are on screen in their true colours
        assert (np.abs(pixels.astype(int) - colour).sum(axis=1) == 0).sum() > 500


def test_automatic_k_curve_is_shown(photo_output: tuple[str, Path]) -> None:
    import zarr

    from pipeline.autok import choose_k

    out, _ = photo_output
    k, info = choose_k({1: 0.3, 2: 0.1, 3: 1e-4, 4: 9e-5, 5: 8e-5}, 2, 4)
    assert k == 3  # three stripes
    group = zarr.open_group(out, mode="r+")
    group.attrs["kmseg"] = {**group.attrs["kmseg"], "k_auto": info}
    page = build_report(out)
    assert "Choice of k" in page and 'alt="k curve"' in page
    assert "k = 3 chosen automatically" in page


def test_report_colours_are_the_image_label_colours(photo_output: tuple[str, Path]) -> None:
    import json

    from pipeline.report.render import class_colours, hex_colour

    out, _ = photo_output
    attrs = json.loads((Path(out) / "labels" / "clusters" / "zarr.json").read_text())
    colors = attrs["attributes"]["ome"]["image-label"]["colors"]
    rgba = {c["label-value"]: c["rgba"] for c in colors}
    _, [image] = report_data.load_output(out)
    np.testing.assert_array_equal(image.label_rgb, [rgba[i][:3] for i in (1, 2, 3)])
    page = build_report(out)
    for label in (1, 2, 3):
        assert hex_colour(rgba[label]) in page
    for colour in class_colours(3):  # tab10 is not used when the metadata has colours
        assert hex_colour(colour) not in page


def test_histogram_legend_lists_classes_in_order(monkeypatch) -> None:
    from pipeline.report import plots

    figures = []
    monkeypatch.setattr(plots, "figure_uri", lambda fig: figures.append(fig) or "data:")
    values = np.array([1, 2, 3, 10, 11, 20, 21, 30], np.uint8)
    labels = np.array([1, 1, 1, 2, 2, 3, 3, 4])
    plots.value_histogram(values, labels, np.full((4, 3), 100, np.uint8), [2, 10.5, 20.5, 30], "v")
    [axes] = figures[0].axes
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [
        "class 1", "class 2", "class 3", "class 4"
    ]


def test_transparent_pixels_are_white_in_the_recoloured_panel(tmp_path: Path) -> None:
    from pipeline.report.page import plane_views

    rgba = np.zeros((64, 96, 4), np.uint8)
    rgba[..., :3] = stripes(64, 96)[..., :3]
    rgba[..., 3] = 255
    rgba[:16] = 0  # transparent black: no data
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    out = str(tmp_path / "rgba.zarr")
    assert main(["segment", str(path), "-k", "2", "-o", out, "-q"]) == 0
    _, [image] = report_data.load_output(out)
    plane = image.planes[0]
    assert (plane.labels[:16] == 0).all()
    html = plane_views(image, plane, image.label_rgb)
    assert "recoloured (each pixel its class centre; white: no data)" in html
    uri = html.split('src="')[2].split('"')[0]  # input, recoloured, labels
    import base64
    import io

    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert (picture[: picture.shape[0] // 4 - 1] == 255).all()


def test_header_names_the_pixel_size(photo_output: tuple[str, Path]) -> None:
    page = build_report(photo_output[0])
    assert "· no physical pixel size</p>" in page and "pixel no physical" not in page


def test_segment_writes_the_report_with_report_true(tmp_path):
    from pipeline.cli import main

    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[:, 20:] = (200, 30, 40)
    path = tmp_path / "two.npy"
    np.save(path, image)
    out = tmp_path / "two.zarr"
    assert main(["segment", str(path), "-k", "2", "-o", str(out), "-q", "--report"]) == 0
    page = (tmp_path / "two.report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "data:image/png;base64," in page


def test_a_batch_page_shows_a_bounded_number_of_images_in_full(tmp_path, monkeypatch) -> None:
    # Every image of a batch had its full section (pictures, plots, input previews): 300
    # photos made a 330 MB page, all previews held in memory at once.
    monkeypatch.setattr(report_data, "DETAILED_MAX", 2)
    monkeypatch.setattr(report_data, "THUMBNAIL_READ_MAX", 40)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.roll(stripes(), 10 * i, axis=1)).save(folder / f"p{i}.png")
    out = str(tmp_path / "batch.zarr")
    assert main(["segment", str(folder), "-k", "3", "-o", out, "-q"]) == 0
    (folder / "p3.png").unlink()  # an image shown in the table only: its input is not read
    _, images = report_data.load_output(out)
    assert [image.full for image in images] == [True, True, False, False]
    for image in images[2:]:
        [plane] = image.planes
        assert plane.input is None and image.input_note is None
        assert max(plane.recoloured.shape[:2]) <= 40
    page = build_report(out)
    assert page.count('<section class="image"') == 2
    assert page.count("<tr><td><img") == 4  # every image has its row of the summary table
    assert "The first 2 of the 4 images are shown in full" in page
    assert f"kmseg report {out}/NAME" in page
    assert page.count('href="#image-') == 2  # rows link to sections that exist only


def test_a_small_input_is_enlarged_pixel_for_pixel_like_its_recoloured_image() -> None:
    """A 64x64 input was enlarged with Lanczos (blurred edges, ringing) beside the recoloured
    image enlarged by nearest neighbour: with k equal to its distinct values the two looked
    different although they are equal. Enlarging keeps the pixels; only reducing smooths."""
    from pipeline.report.data import Plane
    from pipeline.report.page import DISPLAY_MAX, DISPLAY_MIN, _fit

    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[::2, ::2] = (250, 10, 10)  # every pixel differs from its neighbours
    rgb[1::2, 1::2] = (10, 250, 10)
    plane = Plane("image", rgb, np.ones((64, 64), np.uint8), rgb, (1.0, 1.0))
    enlarged = _fit(rgb, plane, DISPLAY_MAX, True)
    factor = enlarged.shape[0] // 64
    assert enlarged.shape == (64 * factor, 64 * factor, 3) and 64 * factor >= DISPLAY_MIN
    assert np.array_equal(enlarged, rgb.repeat(factor, 0).repeat(factor, 1))
    # Reducing a large picture still smooths (a mean of the checkerboard's colours appears).
    large = np.tile(rgb, (20, 20, 1))
    reduced = _fit(large, Plane("image", large, np.ones(large.shape[:2], np.uint8), large,
                                (1.0, 1.0)), DISPLAY_MAX, True)
    assert max(reduced.shape[:2]) == DISPLAY_MAX
    assert len(np.unique(reduced.reshape(-1, 3), axis=0)) > 3
