"""Reader choice, input expansion, and that opening reads no pixels."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
import zarr
from PIL import Image

from pipeline.errors import InputError
from pipeline.readers import dicom, expand_inputs, nifti, open_image, raster, tiff, zarrstore
from pipeline.readers.common import RegionReader
from pipeline.readers.dispatch import READABLE_SUFFIXES, READERS, suffix_format
from pipeline.readers.npy import NpyBlockReader
from pipeline.readers.urls import expand_urls

from .conftest import assert_reads, save_dicom


@pytest.fixture
def samples(
    tmp_path: Path, rng: np.random.Generator, ct_series: Callable[..., tuple[Path, np.ndarray]]
) -> dict[str, tuple[Path, str, tuple[int, ...]]]:
    """One small file of each format: name -> (path, format, shape).

    The true arrays are in :data:`TRUTH` (``samples_truth``)."""
    folder = tmp_path / "samples"
    folder.mkdir()
    grey = rng.integers(0, 255, size=(40, 50), dtype=np.uint8)
    out = {}
    tifffile.imwrite(folder / "a.tif", grey, tile=(16, 16))
    out["tiff"] = (folder / "a.tif", "tiff", (40, 50))
    Image.fromarray(grey).save(folder / "b.png")
    out["png"] = (folder / "b.png", "png", (40, 50))
    Image.fromarray(grey).save(folder / "c.jpg")
    out["jpeg"] = (folder / "c.jpg", "jpeg", (40, 50))
    Image.fromarray(grey).save(folder / "d.bmp")
    out["bmp"] = (folder / "d.bmp", "bmp", (40, 50))
    np.save(folder / "e.npy", grey)
    out["npy"] = (folder / "e.npy", "npy", (40, 50))
    nib.save(nib.Nifti1Image(np.zeros((50, 40, 3), np.int16), np.eye(4)), folder / "f.nii.gz")
    out["nifti"] = (folder / "f.nii.gz", "nifti", (3, 40, 50))
    zarr.create_array(folder / "g.zarr", shape=(40, 50), dtype="u1")[:] = grey
    out["zarr"] = (folder / "g.zarr", "zarr", (40, 50))
    series, hu = ct_series(n=3, shape=(40, 50))
    out["dicom"] = (series, "dicom", (3, 40, 50))
    TRUTH.clear()
    TRUTH.update({name: grey for name in ("tiff", "png", "bmp", "npy", "zarr")})
    TRUTH["nifti"] = np.zeros((3, 40, 50), np.int16)
    TRUTH["dicom"] = hu
    return out


#: The true array of each lossless sample, as the ``samples`` fixture wrote it.
TRUTH: dict[str, np.ndarray] = {}


def test_formats_by_suffix_and_folder(samples: dict) -> None:
    for path, fmt, shape in samples.values():
        source = open_image(str(path))
        assert (source.format, source.shape) == (fmt, shape)


def test_opening_reads_no_pixels(samples: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels read while opening")

    monkeypatch.setattr(RegionReader, "__getitem__", refuse)
    monkeypatch.setattr(NpyBlockReader, "__getitem__", refuse)
    monkeypatch.setattr(raster.RasterBlockReader, "_decode", refuse)
    monkeypatch.setattr(raster.imagecodecs, "png_decode", refuse)
    for module, name in ((tiff, "_open_level"), (zarrstore, "_open_array"), (nifti, "_load"),
                         (dicom, "pixel_array"), (dicom, "iter_pixels")):
        monkeypatch.setattr(module, name, refuse)
    for path, _, shape in samples.values():
        source = open_image(str(path))
        assert source.shape == shape
        assert source.to_dask((16, 16) if len(shape) == 2 else (1, 16, 16)).shape == shape


def test_sniffing_without_suffix(samples: dict, tmp_path: Path) -> None:
    for name in ("tiff", "png", "jpeg", "bmp", "npy"):
        path, fmt, shape = samples[name]
        bare = tmp_path / f"bare_{name}"
        shutil.copy(path, bare)
        source = open_image(str(bare))
        assert (source.format, source.shape) == (fmt, shape)
    dicom_file = next(samples["dicom"][0].iterdir())
    shutil.copy(dicom_file, tmp_path / "IM0001")
    assert open_image(str(tmp_path / "IM0001")).shape == (40, 50)


def test_unsupported_and_missing(tmp_path: Path, samples: dict) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="unsupported file format") as info:
        open_image(str(text))
    assert str(text) in str(info.value)
    with pytest.raises(InputError, match="no such file") as info:
        open_image(str(tmp_path / "nope.tif"))
    assert "nope.tif" in str(info.value)
    png = str(samples["png"][0])
    with pytest.raises(InputError, match="level 1 out of range"):
        open_image(png, level=1)
    with pytest.raises(InputError, match="series 2 out of range"):
        open_image(png, series=2)
    with pytest.raises(InputError, match="array_path"):
        open_image(str(samples["tiff"][0]), array_path="0")


def test_expand_plain_folder(samples: dict) -> None:
    folder = samples["png"][0].parent
    (folder / "notes.txt").write_text("skip me")
    (folder / ".hidden.png").write_bytes(b"")
    got = expand_inputs([str(folder)])
    names = [Path(p).name for p in got]
    assert names == ["a.tif", "b.png", "c.jpg", "d.bmp", "e.npy", "f.nii.gz", "g.zarr"]


def test_expand_image_folders_and_globs(samples: dict) -> None:
    series = str(samples["dicom"][0])
    store = str(samples["zarr"][0])
    assert expand_inputs([series, store]) == [series, store]
    folder = samples["png"][0].parent
    got = expand_inputs([str(folder / "*.png"), str(folder / "[ab].*"), str(folder / "b.png")])
    assert got == [str(folder / "b.png"), str(folder / "a.tif")]
    assert expand_inputs(["s3://bucket/image.zarr"]) == ["s3://bucket/image.zarr"]


def test_expand_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([str(tmp_path / "missing.png")])
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.png")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no image") as info:
        expand_inputs([str(empty)])
    assert str(empty) in str(info.value)


def test_every_sample_reads(samples: dict) -> None:
    for name, (path, _, _) in samples.items():
        if name == "jpeg":
            continue  # lossy; covered in test_raster
        source = open_image(str(path))
        expected = TRUTH[name]
        if name == "dicom":  # the DICOM reader's dtype is its own business: compare values
            got = source.to_dask((1, 16, 16)).compute()
            np.testing.assert_array_equal(got, expected)
        else:
            assert_reads(source, expected)


def test_registry() -> None:
    names = [entry.name for entry in READERS]
    assert names == ["tiff", "zarr", "raster", "npy", "nifti", "dicom"]
    for suffix in (".btf", ".ndpi", ".svs", ".ome.tif", ".ome.zarr", ".nii.gz", ".jpe"):
        assert suffix in READABLE_SUFFIXES
    assert list(READABLE_SUFFIXES) == sorted(READABLE_SUFFIXES, key=len, reverse=True)
    for name, fmt in (("a.TIF", "tiff"), ("b.nii.gz", "nifti"), ("c.JPG", "raster"),
                      ("d.npy", "npy"), ("e.dcm", "dicom"), ("f.txt", None)):
        assert suffix_format(name) == fmt


def _fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(path)
    return path


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes: the check must not open it.
    fifo = _fifo(tmp_path / "pipe.png")
    for call in (open_image, lambda p: expand_inputs([p]),
                 lambda p: expand_inputs([str(tmp_path / "*.png")])):
        with pytest.raises(InputError, match="FIFO") as info:
            call(str(fifo))
        assert str(fifo) in str(info.value) and "\n" not in str(info.value)


def test_fifo_inside_a_folder_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8)).save(folder / "a.png")
    _fifo(folder / "b.png")
    with pytest.raises(InputError, match="FIFO") as info:
        expand_inputs([str(folder)])
    assert "b.png" in str(info.value)


def test_socket_and_device_are_refused(tmp_path: Path) -> None:
    if os.path.exists("/dev/null"):
        with pytest.raises(InputError, match="device"):
            open_image("/dev/null")
    path = tmp_path / "s.png"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
    except OSError:
        pytest.skip("cannot bind a Unix socket here")
    try:
        with pytest.raises(InputError, match="socket"):
            open_image(str(path))
    finally:
        sock.close()


def test_relative_paths_survive_a_change_of_directory(
    samples: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # workers of a cluster may run in another working directory than the client
    for path, _, _ in samples.values():
        monkeypatch.chdir(path.parent)
        source = open_image(path.name)
        monkeypatch.chdir(tmp_path.parent)
        array = source.to_dask((16, 16) if source.spatial_ndim == 2 else (1, 16, 16))
        assert array.compute().shape == source.shape


def test_dicom_folder_with_other_images_leaves_none_out(
    tmp_path: Path, rng: np.random.Generator, ct_series: Callable[..., tuple[Path, np.ndarray]]
) -> None:
    # A folder holding a DICOM series and images of other formats used to be read as the
    # series alone, every other image left out without a word (exit status 0).
    folder, hu = ct_series("mixed", n=3, shape=(20, 24))
    grey = rng.integers(0, 255, (12, 16), dtype=np.uint8)
    tifffile.imwrite(folder / "b.tif", grey)
    Image.fromarray(grey).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    got = expand_inputs([str(folder)])
    assert got == [str(folder), str(folder / "a.png"), str(folder / "b.tif")]
    assert open_image(got[0]).shape == hu.shape  # the folder is still read as the series
    # A folder holding only the series stays one input, as before.
    (folder / "a.png").unlink()
    (folder / "b.tif").unlink()
    assert expand_inputs([str(folder)]) == [str(folder)]


def test_folder_of_series_folders_expands_to_each_series(
    tmp_path: Path, ct_series: Callable[..., tuple[Path, np.ndarray]]
) -> None:
    # One folder per patient: each sub-folder that is one image is an input, as a Zarr store
    # inside a folder of images already was; other sub-folders are not read.
    study = tmp_path / "study"
    study.mkdir()
    first, hu1 = ct_series(folder=study / "case01", n=3, shape=(20, 24))
    second, hu2 = ct_series(folder=study / "case02", n=2, shape=(16, 24))
    (study / "notes").mkdir()
    (study / "notes" / "a.txt").write_text("x")
    got = expand_inputs([str(study)])
    assert got == [str(first), str(second)]
    assert [open_image(p).shape for p in got] == [hu1.shape, hu2.shape]


@pytest.mark.parametrize("name, holds, suffix", [
    ("scan.tif", "JPEG", ".jpg"),
    ("scan.png", "TIFF", ".tif"),
    ("scan.dcm", "NumPy", ".npy"),
])
def test_a_misnamed_file_names_what_it_holds(tmp_path: Path, rng: np.random.Generator, name: str,
                                           holds: str, suffix: str) -> None:
    # A JPEG named .tif was "not a TIFF file: header=b'\xff\xd8\xff\xe0'": true, but the user
    # had to decode the bytes to learn it is a JPEG.
    pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    made = {"JPEG": tmp_path / "a.jpg", "TIFF": tmp_path / "a.tif", "NumPy": tmp_path / "a.npy"}
    source = made[holds]
    if holds == "JPEG":
        Image.fromarray(pixels).save(source)
    elif holds == "TIFF":
        tifffile.imwrite(source, pixels, photometric="rgb")
    else:
        np.save(source, pixels)
    target = tmp_path / name
    shutil.copyfile(source, target)
    with pytest.raises(InputError) as info:
        open_image(str(target))
    assert str(info.value).startswith(f"{target}: ")
    assert str(info.value).endswith(f"the file holds {holds} data: rename it to end in {suffix}")
    assert "\n" not in str(info.value)


def test_a_corrupt_file_of_its_own_format_gets_no_rename_hint(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    path.write_bytes(b"II*\0" + bytes(4))
    with pytest.raises(InputError) as info:
        open_image(str(path))
    assert "rename" not in str(info.value)


def test_one_file_under_several_spellings_is_one_input(tmp_path: Path, rng: np.random.Generator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # a.png ./a.png /abs/a.png were three inputs: the same image segmented three times.
    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    monkeypatch.chdir(tmp_path)
    given = ["a.png", "./a.png", str(tmp_path / "a.png"), "link.png", "*.png", "."]
    assert expand_inputs(given) == ["a.png"]
    assert expand_urls(given) == ["a.png"]  # what the plan calls, item by item


def test_folder_of_single_file_series_expands_to_each_file(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    # Radiographs (CR, DX, mammograms) are each their own series of one file: a folder of them
    # used to be read as its first series with a warning, every other radiograph skipped.
    from ._dicom_make import grey_slice

    folder = tmp_path / "radiographs"
    folder.mkdir()
    stored = [rng.integers(0, 4095, shape, dtype=np.uint16) for shape in ((20, 24), (18, 30),
                                                                          (20, 24))]
    for name, values in zip(("b.dcm", "a.dcm", "c"), stored, strict=True):
        save_dicom(grey_slice(values, position=None, slope=None, Modality="DX"), folder / name)
    got = expand_inputs([str(folder)])
    assert got == [str(folder / "a.dcm"), str(folder / "b.dcm"), str(folder / "c")]
    for path, values in zip(got, (stored[1], stored[0], stored[2]), strict=True):
        np.testing.assert_array_equal(open_image(path).to_dask(values.shape).compute(), values)
    # Two files of one series stay one input (the folder), as a CT series does.
    save_dicom(grey_slice(stored[0], position=None, slope=None, instance=2,
                          series_uid=str(pydicom.dcmread(folder / "a.dcm").SeriesInstanceUID)),
               folder / "d.dcm")
    assert expand_inputs([str(folder)]) == [str(folder)]
