"""Benchmark inputs: generated once from real photos, cached on disk with a ``.complete`` marker.

Every generated file or folder ``PATH`` is written first and marked complete by a sibling file
``PATH.complete`` afterwards; an input without its marker (a run killed while writing it) is made
again. Nothing here reads pixels of a large input into memory: big inputs are written band by
band.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .log import log

#: Inputs of the 8-bit rows (kept from the first benchmark) and of issue 9.
PHOTOS = ("astronaut", "coffee", "retina")
TILED_SIZES = (4096, 8192, 16384, 32768)
ISSUE9_SIZES = ("rgb16", "uint16x4", "float-volume", "int32", "real16")
#: Chunk shape of the generated Zarr images (y, x); kmseg aligns its chunks to it.
ZARR_CHUNK = 1024
#: Photos bundled with scikit-image that the many-images folder is cut from.
MANY_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field",
               "immunohistochemistry")
MANY_SIDE = 256


@dataclass
class Input:
    """One benchmark input: what kmseg reads and how the script reads the same pixels.

    Attributes
    ----------
    name : str
        Row label.
    kmseg_input : str
        Path (or ``sample:NAME``) given to kmseg.
    open : callable
        Returns an array-like (NumPy array, memmap or Zarr array) of the pixels, spatial axes
        first, channels last, sliceable along axis 0.
    shape, dtype, channels : tuple of int, numpy.dtype, int
        Of that array.
    ks : list of int
        Values of k to run.
    methods : tuple of str
        Methods to run (see :mod:`.methods`).
    format : str
        ``zarr``, ``npy`` or ``png/jpeg`` (how the script reads it).
    group : str
        ``8-bit`` (first benchmark) or ``issue 9`` (targets of issue 9).
    data_range : tuple of float or None
        ``(min, max)`` of the data for float inputs (kmseg scales floats by it).
    skip : dict
        Method -> reason it is not run.
    """

    name: str
    kmseg_input: str
    open: Callable[[], Any]
    shape: tuple[int, ...]
    dtype: np.dtype
    channels: int
    ks: list[int]
    methods: tuple[str, ...]
    format: str
    group: str = "8-bit"
    data_range: tuple[float, float] | None = None
    skip: dict[str, str] = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        spatial = self.shape[:-1] if self.channels > 1 else self.shape
        return math.prod(spatial)

    @property
    def mpx(self) -> float:
        return self.n_pixels / 1e6

    @property
    def low_high(self) -> tuple[float, float]:
        """The value range mapped to features [0, 1], as kmseg maps it: the dtype's range for
        integers, the data's range for floats."""
        if self.dtype.kind == "f":
            if self.data_range is None:
                raise ValueError(f"{self.name}: float input without data_range")
            return self.data_range
        info = np.iinfo(self.dtype)
        return float(info.min), float(info.max)


# --------------------------------------------------------------------------------------------
# The complete-marker cache
# --------------------------------------------------------------------------------------------


def complete_marker(path: str) -> str:
    """The marker file that says ``path`` was written to the end."""
    return path.rstrip("/") + ".complete"


def is_complete(path: str) -> bool:
    return os.path.exists(path) and os.path.exists(complete_marker(path))


def mark_complete(path: str) -> None:
    with open(complete_marker(path), "w") as fh:
        fh.write(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def cached_npy(path: str, make: Callable[[], np.ndarray], what: str) -> str:
    """Save ``make()`` to ``path`` (``.npy``) unless it is there and complete; return ``path``."""
    if is_complete(path):
        return path
    log(f"making {path} ({what})")
    t0 = time.perf_counter()
    np.save(path, make())
    mark_complete(path)
    log(f"made {path} in {time.perf_counter() - t0:.1f} s")
    return path


def photo(name: str) -> np.ndarray:
    """A photo bundled with scikit-image (``skimage.data.NAME()``), no download."""
    from skimage import data

    return getattr(data, name)()


def resized(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resampled to ``shape`` (y, x), bilinear, float64 in [0, 1] for uint8 input."""
    from skimage.transform import resize

    return resize(image, shape, order=1, anti_aliasing=False, preserve_range=False)


# --------------------------------------------------------------------------------------------
# 8-bit inputs (the first benchmark)
# --------------------------------------------------------------------------------------------


def tiled_zarr(data_dir: str, size: int, base: str = "retina", noise: int = 2) -> str:
    """A ``size`` x ``size`` RGB uint8 Zarr made by tiling a real photo, with light noise.

    Noise is uniform in ``[-noise, noise]`` per value, clipped to uint8, so colours are not all
    repeats. Written band by band (at most ~64 MiB in memory).
    """
    import zarr

    path = os.path.join(data_dir, f"{base}-tiled-{size}.zarr")
    if is_complete(path):
        return path
    log(f"making {path} ({size}x{size} RGB uint8, tiled {base} + noise)")
    t0 = time.perf_counter()
    image = photo(base)
    h, w = image.shape[:2]
    chunk = min(ZARR_CHUNK, size)
    array = zarr.create_array(
        store=path, shape=(size, size, 3), chunks=(chunk, chunk, 3), dtype=np.uint8,
        dimension_names=("y", "x", "c"), overwrite=True,
    )
    cols = np.arange(size) % w
    band_rows = max(chunk, (64 * 2**20 // (size * 3)) // chunk * chunk)
    for r0 in range(0, size, band_rows):
        r1 = min(size, r0 + band_rows)
        band = image[np.arange(r0, r1) % h][:, cols].astype(np.int16)
        rng = np.random.default_rng([size, r0])
        band += rng.integers(-noise, noise + 1, size=band.shape, dtype=np.int16)
        array[r0:r1] = np.clip(band, 0, 255).astype(np.uint8)
    mark_complete(path)
    log(f"made {path} in {time.perf_counter() - t0:.1f} s")
    return path


def ct_volume(data_dir: str, size: int = 512, seed: int = 0, dtype: str = "int16") -> str:
    """A synthetic CT-like ``size``^3 volume in HU: air, fat, soft tissue, lungs, an organ,
    spine and ribs, plus Gaussian noise (sd 25 HU); saved once as ``.npy`` slice by slice.

    ``dtype`` ``int16`` rounds to whole HU (the scanner's usual storage); ``float32`` keeps the
    noise continuous (a reconstructed or resampled volume).
    """
    path = os.path.join(data_dir, f"ct-{size}.npy" if dtype == "int16"
                        else f"ct-{size}-{dtype}.npy")
    if is_complete(path):
        return path
    log(f"making {path} ({size}^3 {dtype} CT-like volume)")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(size,) * 3)
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    for z in range(size):
        zz = (z / (size - 1)) * 2 - 1
        s = np.full((size, size), -1000.0)  # air
        body = (yy / 0.75) ** 2 + (xx / 0.9) ** 2 + (zz / 1.2) ** 2
        s[body < 1.0] = -100.0  # fat
        s[body < 0.8] = 40.0  # soft tissue
        for cx in (-0.4, 0.4):  # lungs
            lung = ((yy + 0.1) / 0.45) ** 2 + ((xx - cx) / 0.3) ** 2 + (zz / 0.9) ** 2
            s[lung < 1.0] = -800.0
        organ = ((yy - 0.35) / 0.2) ** 2 + ((xx + 0.2) / 0.25) ** 2 + ((zz + 0.3) / 0.4) ** 2
        s[organ < 1.0] = 70.0  # e.g. liver
        spine = ((yy - 0.55) / 0.09) ** 2 + (xx / 0.09) ** 2
        s[spine < 1.0] = 700.0  # bone
        ribs = np.abs(np.sqrt((yy / 0.72) ** 2 + (xx / 0.86) ** 2) - 0.95) < 0.02
        s[ribs & (np.sin(zz * 40) > 0.5)] = 500.0
        s += rng.normal(0.0, 25.0, size=s.shape)
        if dtype == "int16":
            out[z] = np.clip(np.rint(s), -32768, 32767).astype(np.int16)
        else:
            out[z] = s.astype(dtype)
    out.flush()
    del out
    mark_complete(path)
    return path


# --------------------------------------------------------------------------------------------
# Issue 9 inputs: 16-bit colour, many channels, floats, 32-bit integers, a real 16-bit image
# --------------------------------------------------------------------------------------------


def rgb16_photo(data_dir: str, size: int = 2048, base: str = "coffee") -> str:
    """A 16-bit RGB photo: ``base`` resampled to ``size`` x ``size``, scaled to 0..65535, with
    Gaussian noise (sd 64, about 0.1% of the range) so nearly every value is distinct, as in a
    16-bit camera image."""

    def make() -> np.ndarray:
        rng = np.random.default_rng(9)
        values = resized(photo(base), (size, size)) * 65535.0
        values += rng.normal(0.0, 64.0, size=values.shape)
        return np.clip(np.rint(values), 0, 65535).astype(np.uint16)

    return cached_npy(os.path.join(data_dir, f"{base}-rgb16-{size}.npy"), make,
                      f"{size}x{size} RGB uint16")


def multichannel_uint16(data_dir: str, size: int = 2048) -> str:
    """A 4-channel uint16 microscopy-like image: the haematoxylin, eosin and DAB stain channels
    of scikit-image's immunohistochemistry photo (``skimage.color.rgb2hed``) plus its luminance,
    each stretched to its 0.5-99.5 percentiles (to its minimum and maximum where those two are
    equal: the eosin channel is almost all zero), resampled to ``size`` x ``size``, scaled to
    0..60000 with Gaussian noise (sd 120).

    Until 2026-11-30 the eosin stretch divided by zero, and the NaN it made spread through the
    bilinear resampling into the haematoxylin channel too: the file ``ihc-4ch-uint16-*.npy`` of
    the earlier results has those two channels all zero (two informative channels)."""

    def make() -> np.ndarray:
        from skimage.color import rgb2gray, rgb2hed

        ihc = photo("immunohistochemistry")
        stacked = np.concatenate([rgb2hed(ihc), rgb2gray(ihc)[..., None]], axis=-1)
        low, high = np.percentile(stacked, [0.5, 99.5], axis=(0, 1))
        flat = high <= low
        low[flat], high[flat] = stacked.min(axis=(0, 1))[flat], stacked.max(axis=(0, 1))[flat]
        span = np.where(high > low, high - low, 1.0)
        stretched = np.clip((stacked - low) / span, 0, 1)
        rng = np.random.default_rng(4)
        values = resized(stretched, (size, size)) * 60000.0
        values += rng.normal(0.0, 120.0, size=values.shape)
        return np.clip(np.rint(values), 0, 65535).astype(np.uint16)

    return cached_npy(os.path.join(data_dir, f"ihc-4stain-uint16-{size}.npy"), make,
                      f"{size}x{size}x4 uint16")


def int32_image(data_dir: str, size: int = 2048) -> str:
    """A 32-bit integer grey image: scikit-image's camera photo resampled to ``size`` x ``size``
    as photon counts up to 1,000,000 with Poisson noise (int32, e.g. an accumulated detector
    image)."""

    def make() -> np.ndarray:
        rng = np.random.default_rng(32)
        counts = resized(photo("camera"), (size, size)) * 1_000_000.0 + 50.0
        return rng.poisson(counts).astype(np.int32)

    return cached_npy(os.path.join(data_dir, f"camera-int32-{size}.npy"), make,
                      f"{size}x{size} int32")


def nibabel_mr_slice(data_dir: str) -> str:
    """A real 16-bit image shipped inside a pip package: the MR slice ``tests/data/0.dcm`` of
    nibabel (256x256 uint16, 12 bits stored), copied to ``.npy`` so that kmseg and the script
    read the same values (pydicom decodes it)."""
    import nibabel
    import pydicom

    source = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "0.dcm")

    def make() -> np.ndarray:
        return np.ascontiguousarray(pydicom.dcmread(source).pixel_array)

    return cached_npy(os.path.join(data_dir, "nibabel-mr-0.npy"), make,
                      f"real MR slice from {source}")


def pydicom_cr(data_dir: str) -> str:
    """A real 16-bit radiograph shipped in a pip package: ``RG1_UNCR.dcm`` of pydicom-data
    (computed radiography, 1955x1841 uint16, 15 bits stored, MONOCHROME1, about 25,000 distinct
    values), copied to ``.npy`` as pydicom decodes it so that kmseg and the script read the same
    values."""
    import pydicom
    from pydicom.data import get_testdata_file

    source = get_testdata_file("RG1_UNCR.dcm")
    if source is None:
        raise SystemExit("real16 needs pydicom-data (pip install -e '.[bench]')")

    def make() -> np.ndarray:
        return np.ascontiguousarray(pydicom.dcmread(source).pixel_array)

    return cached_npy(os.path.join(data_dir, "pydicom-rg1-cr.npy"), make,
                      f"real CR radiograph from {source}")


def float_range(path: str) -> tuple[float, float]:
    """``(min, max)`` of a float ``.npy``, NaN ignored, read slice by slice."""
    array = np.load(path, mmap_mode="r")
    lows, highs = [], []
    for i in range(len(array)):
        lows.append(np.nanmin(array[i]))
        highs.append(np.nanmax(array[i]))
    return float(min(lows)), float(max(highs))


# --------------------------------------------------------------------------------------------
# Many images (issue 8)
# --------------------------------------------------------------------------------------------


def many_photos(data_dir: str, count: int, side: int = MANY_SIDE) -> str:
    """A folder of ``count`` RGB PNG photos of ``side`` x ``side``, made once.

    Each is a random crop of one of :data:`MANY_PHOTOS` (bundled with scikit-image) rescaled by
    0.6-1.25, maybe mirrored, with Gaussian noise (sd 3), so no two images are alike. Written
    with Pillow; the folder is marked complete when every file is written.
    """
    from PIL import Image

    folder = os.path.join(data_dir, f"many-{side}-{count}")
    if is_complete(folder):
        return folder
    log(f"making {folder} ({count} PNG photos of {side}x{side})")
    t0 = time.perf_counter()
    os.makedirs(folder, exist_ok=True)
    scaled: list[np.ndarray] = []
    for name in MANY_PHOTOS:
        base = photo(name)
        for factor in (0.6, 0.8, 1.0, 1.25):
            h, w = base.shape[:2]
            shape = (max(side, round(h * factor)), max(side, round(w * factor)))
            scaled.append((resized(base, shape) * 255.0).astype(np.float32))
    for i in range(count):
        rng = np.random.default_rng([8, i])
        source = scaled[int(rng.integers(len(scaled)))]
        y = int(rng.integers(source.shape[0] - side + 1))
        x = int(rng.integers(source.shape[1] - side + 1))
        crop = source[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = crop + rng.normal(0.0, 3.0, size=crop.shape)
        pixels = np.clip(np.rint(crop), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"photo-{i:05d}.png"))
    mark_complete(folder)
    log(f"made {folder} in {time.perf_counter() - t0:.1f} s")
    return folder


# --------------------------------------------------------------------------------------------
# Choosing the inputs
# --------------------------------------------------------------------------------------------


def _open_zarr(path: str) -> Callable[[], Any]:
    def opener() -> Any:
        import zarr

        return zarr.open_array(path, mode="r")

    return opener


def _open_npy(path: str) -> Callable[[], Any]:
    return lambda: np.load(path, mmap_mode="r")


def _npy_input(name: str, path: str, ks: list[int], methods: tuple[str, ...], channels: int,
               group: str) -> Input:
    array = np.load(path, mmap_mode="r")
    data_range = float_range(path) if array.dtype.kind == "f" else None
    return Input(name, path, _open_npy(path), tuple(array.shape), array.dtype, channels, ks,
                 methods, "npy", group=group, data_range=data_range)


def smoke_input(data_dir: str, methods: tuple[str, ...]) -> Input:
    """The 64x64 face crop of astronaut (uint8 RGB), k=3: the ``--smoke`` input."""
    crop = np.ascontiguousarray(photo("astronaut")[96:160, 160:224])
    path = os.path.join(data_dir, "astronaut-crop-64.npy")
    np.save(path, crop)
    return Input("astronaut crop 64x64", path, _open_npy(path), crop.shape, np.dtype(np.uint8),
                 3, [3], methods, "npy")


def build_inputs(sizes: list[str], data_dir: str, photo_ks: list[int], big_k: int,
                 volume_k: int, methods: tuple[str, ...],
                 volume_methods: tuple[str, ...]) -> list[Input]:
    """The image inputs chosen by ``--sizes`` (made on disk first where needed), in the order
    of the report. ``many`` and ``startup`` are not image inputs (see :mod:`.many`,
    :mod:`.startup`)."""
    os.makedirs(data_dir, exist_ok=True)
    inputs: list[Input] = []
    if "photos" in sizes:
        for name in PHOTOS:
            img = photo(name)
            inputs.append(Input(f"{name} {img.shape[1]}x{img.shape[0]}", f"sample:{name}",
                                (lambda img=img: img), img.shape, img.dtype, img.shape[-1],
                                list(photo_ks), methods, "png/jpeg"))
    for size in TILED_SIZES:
        if str(size) in sizes:
            path = tiled_zarr(data_dir, size)
            inputs.append(Input(f"tiled {size}x{size}", path, _open_zarr(path),
                                (size, size, 3), np.dtype(np.uint8), 3, [big_k], methods,
                                "zarr"))
    if "volume" in sizes:
        path = ct_volume(data_dir)
        inputs.append(Input("CT volume 512^3 int16", path, _open_npy(path), (512, 512, 512),
                            np.dtype(np.int16), 1, [volume_k], volume_methods, "npy"))
    issue9 = "issue 9"
    if "rgb16" in sizes:
        inputs.append(_npy_input("coffee RGB uint16 2048x2048", rgb16_photo(data_dir), [8],
                                 methods, 3, issue9))
    if "uint16x4" in sizes:
        inputs.append(_npy_input("IHC 4-channel uint16 2048x2048", multichannel_uint16(data_dir),
                                 [6], methods, 4, issue9))
    if "float-volume" in sizes:
        inputs.append(_npy_input("CT volume 256^3 float32",
                                 ct_volume(data_dir, 256, dtype="float32"), [4], methods, 1,
                                 issue9))
    if "int32" in sizes:
        inputs.append(_npy_input("camera int32 2048x2048", int32_image(data_dir), [4], methods,
                                 1, issue9))
    if "real16" in sizes:
        inputs.append(_npy_input("pydicom-data CR 1955x1841 uint16 (real)",
                                 pydicom_cr(data_dir), [4], methods, 1, issue9))
    if "mr-slice" in sizes:
        inputs.append(_npy_input("nibabel MR 256x256 uint16 (real)", nibabel_mr_slice(data_dir),
                                 [4], methods, 1, issue9))
    return inputs
