"""``kmseg info --csv``: one row per image and class, sizes from the input's pixel size."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from pipeline.cli import main
from pipeline.info import CSV_COLUMNS, classes_csv


def two_colour_slide(path: Path) -> np.ndarray:
    """An OME-TIFF of 0.5 x 0.25 µm pixels: 30 x 11 red pixels, 30 x 30 blue ones."""
    image = np.zeros((30, 41, 3), dtype=np.uint8)
    image[:, :11] = (200, 10, 10)
    image[:, 11:] = (10, 10, 200)
    tifffile.imwrite(
        path, image, photometric="rgb",
        metadata={"PhysicalSizeY": 0.5, "PhysicalSizeX": 0.25,
                  "PhysicalSizeYUnit": "µm", "PhysicalSizeXUnit": "µm"},
    )
    return image


def ct_volume(path: Path) -> np.ndarray:
    """A NIfTI volume of 2.5 x 0.8 x 0.8 mm voxels: air around a block of soft tissue."""
    import nibabel

    volume = np.full((8, 20, 24), -1000, dtype=np.int16)  # (z, y, x)
    volume[2:6, 5:15, 4:20] = 40  # 4 * 10 * 16 = 640 voxels
    image = nibabel.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.diag([0.8, 0.8, 2.5, 1]))
    image.header.set_xyzt_units("mm")
    nibabel.save(image, path)
    return volume


def read_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_of_a_single_slide(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_colour_slide(tmp_path / "slide.ome.tif")
    out = str(tmp_path / "slide.zarr")
    assert main(["segment", str(tmp_path / "slide.ome.tif"), "-k", "2", "-o", out, "-q"]) == 0
    capsys.readouterr()
    assert main(["info", out, "--csv"]) == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split(",")
    assert header[: len(CSV_COLUMNS)] == list(CSV_COLUMNS)
    rows = sorted(read_rows(text), key=lambda r: int(r["pixels"]))
    assert [r["image"] for r in rows] == ["slide", "slide"]
    red, blue = rows
    assert (int(red["pixels"]), int(blue["pixels"])) == (330, 900)
    assert float(red["fraction"]) == pytest.approx(330 / 1230)
    assert float(red["size"]) == pytest.approx(330 * 0.5 * 0.25)
    assert red["size_unit"] == "µm²"
    assert float(blue["area_mm2"]) == pytest.approx(900 * 0.125e-6)
    assert red["volume_ml"] == ""
    assert float(red["mean_R"]) == 200 and float(blue["max_B"]) == 200
    assert float(red["centre_G"]) == pytest.approx(10, abs=1e-3)


def test_csv_of_a_batch_has_a_row_per_image_and_class(tmp_path: Path) -> None:
    two_colour_slide(tmp_path / "slide.ome.tif")
    volume = ct_volume(tmp_path / "ct.nii.gz")
    out = str(tmp_path / "batch.zarr")
    inputs = [str(tmp_path / "slide.ome.tif"), str(tmp_path / "ct.nii.gz")]
    assert main(["segment", *inputs, "-k", "2", "-o", out, "-q"]) == 0
    rows = read_rows(classes_csv(out))
    assert [(r["image"], r["label"]) for r in rows] == [
        ("slide", "1"), ("slide", "2"), ("ct", "1"), ("ct", "2")
    ]
    ct = sorted((r for r in rows if r["image"] == "ct"), key=lambda r: int(r["pixels"]))
    tissue = ct[0]
    assert int(tissue["pixels"]) == int((volume == 40).sum()) == 640
    assert tissue["size_unit"] == "mm³"
    assert float(tissue["size"]) == pytest.approx(640 * 2.5 * 0.8 * 0.8)
    assert float(tissue["volume_ml"]) == pytest.approx(640 * 1.6 / 1000)
    assert float(tissue["mean_value"]) == 40 and tissue["mean_R"] == ""
    assert tissue["area_mm2"] == ""


def test_photo_without_pixel_size_has_no_size(tmp_path: Path) -> None:
    from pipeline import segment

    image = np.zeros((10, 12), dtype=np.uint8)
    image[:, 4:] = 200
    out = str(tmp_path / "photo.zarr")
    segment(image, out, k=2, quiet=True)
    rows = read_rows(classes_csv(out))
    assert sorted(int(r["pixels"]) for r in rows) == [40, 80]
    assert {(r["size"], r["size_unit"], r["area_mm2"]) for r in rows} == {("", "", "")}


def test_outputs_without_class_records_give_counts(tmp_path: Path) -> None:
    from pipeline import segment

    image = np.zeros((10, 12), dtype=np.uint8)
    image[:, 4:] = 200
    out = str(tmp_path / "old.zarr")
    segment(image, out, k=2, quiet=True)
    group = zarr.open_group(out, mode="r+")
    meta = dict(group.attrs["kmseg"])
    del meta["classes"]  # as written before kmseg recorded them
    group.attrs["kmseg"] = meta
    rows = read_rows(classes_csv(out))
    assert sorted(int(r["pixels"]) for r in rows) == [40, 80]
    assert sorted(float(r["centre_value"]) for r in rows) == pytest.approx([0, 200], abs=1e-3)


def test_csv_of_an_unfinished_output_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "unfinished.zarr"
    zarr.open_group(str(out), mode="w").attrs["kmseg"] = {"status": "incomplete"}
    assert main(["info", str(out), "--csv"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "did not finish" in err


def test_plain_info_shows_each_class_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    # `kmseg info` showed pixels only; the physical sizes were in --csv and the report alone.
    two_colour_slide(tmp_path / "slide.ome.tif")
    volume = ct_volume(tmp_path / "ct.nii.gz")
    for name in ("slide.ome.tif", "ct.nii.gz"):
        out = str(tmp_path / f"{name}.zarr")
        assert main(["segment", str(tmp_path / name), "-k", "2", "-o", out, "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "slide.ome.tif.zarr")]) == 0
    text = capsys.readouterr().out
    red = 330 * 0.5 * 0.25  # µm²
    assert f"330 px, {red:.4g} µm² ({red * 1e-6:.4g} mm²)" in text
    assert main(["info", str(tmp_path / "ct.nii.gz.zarr")]) == 0
    text = capsys.readouterr().out
    tissue = int((volume == 40).sum()) * 2.5 * 0.8 * 0.8  # mm³
    assert f"640 px, {tissue:.4g} mm³ ({tissue / 1000:.4g} mL)" in text


def test_plain_info_of_a_photo_has_no_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    np.save(tmp_path / "photo.npy", np.repeat(np.array([[0, 200]], np.uint8), 6, axis=0))
    out = str(tmp_path / "photo.zarr")
    assert main(["segment", str(tmp_path / "photo.npy"), "-k", "2", "-o", out, "-q"]) == 0
    capsys.readouterr()
    assert main(["info", out]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "cluster " in ln]
    assert [ln.split(",")[0].strip() for ln in lines] == ["cluster 1: 6 px", "cluster 2: 6 px"]
    assert all(", centre [" in ln and "µm" not in ln and "mm" not in ln for ln in lines)


def test_csv_of_a_partial_batch_has_the_finished_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A batch with failed inputs (on_error: continue) was refused as "status incomplete",
    # though `kmseg info` and the report show its finished images.
    from pipeline.errors import KmsegWarning

    two_colour_slide(tmp_path / "slide.ome.tif")
    np.save(tmp_path / "flat.npy", np.full((6, 6), 7, np.uint8))  # one value: fails at k=2
    out = str(tmp_path / "batch.zarr")
    inputs = [str(tmp_path / "slide.ome.tif"), str(tmp_path / "flat.npy")]
    assert main(["segment", *inputs, "-k", "2", "-o", out, "-q", "--on-error", "continue"]) == 3
    with pytest.warns(KmsegWarning, match=r"1 input\(s\) failed and have no rows: .*flat\.npy"):
        rows = read_rows(classes_csv(out))
    assert sorted((r["image"], int(r["pixels"])) for r in rows) == [("slide", 330),
                                                                     ("slide", 900)]
