"""``kmseg compile``: compile kmseg's numba kernels into numba's on-disk cache before any job.

kmseg's kernels are ``@numba.njit(cache=True)``: each compiles the first time a job calls it
with a new type signature and is then loaded from numba's cache (``__pycache__/`` beside the
installed modules, numba's per-user folder where the install is read-only, or
``NUMBA_CACHE_DIR``). On a fresh install, and in every container of an image without a
cache, that costs seconds per job (issue 9). :func:`precompile` fills the cache by running
tiny real segmentations of the common kinds of input (:data:`KINDS`), written as files in a
temporary folder and segmented through :func:`pipeline.api.run`, so that the signatures
compiled are exactly those real jobs load; the folder is removed afterwards. A second run
compiles nothing (it only loads the kernels) and takes a few seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import sigterm
from pipeline.errors import OutputError

#: Image shape (y, x) of the tiny inputs: more than one pyramid level (the larger side over
#: 256, the smaller at least 128: see :func:`pipeline.io.pyramid.n_levels`), so the kernels
#: that downsample the image and the labels compile too.
SHAPE = (160, 320)
#: Suffixes of numba's cache files: the index of a kernel and one compiled signature.
CACHE_SUFFIXES = (".nbi", ".nbc")


def _photo(channels: int = 3) -> np.ndarray:
    """A smooth 8-bit test picture with noise, ``(y, x, channels)`` uint8."""
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float64)
    planes = [x * 0.8, y * 1.5, (x + y) * 0.5, x * 0.3 + y]
    noise = np.random.default_rng(0).normal(0.0, 8.0, (*SHAPE, channels))
    picture = np.stack([p % 256 for p in planes[:channels]], axis=-1) + noise
    return np.clip(picture, 0, 255).astype(np.uint8)


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def _tiff(path: Path, array: np.ndarray, **kwargs: Any) -> None:
    import tifffile

    tifffile.imwrite(path, array, **kwargs)


def _write_rgb8(path: Path) -> None:
    _png(path, _photo())


def _write_rgb8_large(path: Path) -> None:
    from PIL import Image

    # At least 2^24 / 16 pixels: the labeller's dense lookup table over 24-bit colours
    # (pipeline.engines.lookup.use_dense_table), as for any photo of 1 megapixel or more.
    Image.fromarray(np.tile(_photo(), (7, 4, 1))[:1024, :1024]).save(path, quality=90)


def _write_rgba8(path: Path) -> None:
    rgba = _photo(4)
    rgba[..., 3] = 255
    rgba[: SHAPE[0] // 4, : SHAPE[1] // 4, 3] = 0  # transparent: no data
    _png(path, rgba)


def _write_grey8(path: Path) -> None:
    _png(path, _photo(1)[..., 0])


def _write_grey_alpha8(path: Path) -> None:
    grey_alpha = _photo(2)
    grey_alpha[..., 1] = 255
    grey_alpha[: SHAPE[0] // 4, : SHAPE[1] // 4, 1] = 0
    _png(path, grey_alpha)


def _write_grey16(path: Path) -> None:
    _tiff(path, _photo(1)[..., 0].astype(np.uint16) * 257)


def _write_rgb16(path: Path) -> None:
    _tiff(path, _photo().astype(np.uint16) * 257, photometric="rgb")


def _write_uint16_channels(channels: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        planes = np.stack([_photo(4)[..., c % 4] for c in range(channels)]).astype(np.uint16)
        _tiff(path, planes * 257, photometric="minisblack", metadata={"axes": "CYX"})

    return write


def _grey_float(rows: int = SHAPE[0]) -> np.ndarray:
    """A grey picture of continuous values (each pixel its own), ``(rows, x)`` float64."""
    grey = np.tile(_photo(1)[..., 0], (-(-rows // SHAPE[0]), 1))[:rows]
    return (grey + np.random.default_rng(1).uniform(-0.5, 0.5, grey.shape)) / 256.0


def _write_float32(path: Path) -> None:
    # At least 2^18 / 4 pixels in the block: one float channel is binned into a dense table
    # (pipeline.engines.bins.bin_features); the float64 kind below, smaller, takes the hash.
    _tiff(path, _grey_float(rows=256).astype(np.float32))


def _write_float64(path: Path) -> None:
    np.save(path, _grey_float())


def _write_float32_rgb(path: Path) -> None:
    np.save(path, _photo().astype(np.float32) / 255)


def _write_volume_float32(path: Path) -> None:
    volume = np.random.default_rng(0).normal(size=(8, 64, 64)).astype(np.float32)
    volume[:, :, 32:] += 4.0
    np.save(path, volume)


def _write_volume_int16(path: Path) -> None:
    import nibabel

    # CT in Hounsfield units: air, soft tissue, bone (NIfTI stores x, y, z).
    volume = np.full((64, 64, 8), -1000, np.int16)
    volume[8:56, 8:56] = 40
    volume[24:40, 24:40] = 700
    noise = np.random.default_rng(0).normal(0, 20, volume.shape)
    nibabel.save(nibabel.Nifti1Image((volume + noise).astype(np.int16), np.eye(4)), path)


def _write_int32(path: Path) -> None:
    _tiff(path, (_photo(1)[..., 0].astype(np.int32) - 100) * 1000)


def _write_mask(path: Path) -> None:
    mask = np.zeros(SHAPE, np.uint8)
    mask[SHAPE[0] // 8 : -SHAPE[0] // 8, SHAPE[1] // 8 : -SHAPE[1] // 8] = 255
    _png(path, mask)


@dataclass(frozen=True)
class Kind:
    """One kind of job: a tiny input written to a file and the config keys it runs with.

    ``options`` may name ``"{mask}"`` as a value: it becomes the path of a mask image of
    :data:`SHAPE` (the inner three quarters) written beside the input.
    """

    name: str
    description: str
    filename: str
    write: Callable[[Path], None]
    options: dict[str, Any] = field(default_factory=dict)


#: The kinds of job compiled, in order. Each compiles the kernels the ones before it did not
#: (masks, no data and other k values reuse the same signatures; a kind is here because its
#: engine, dtype or layout needs signatures of its own).
KINDS: tuple[Kind, ...] = (
    Kind("rgb8", "8-bit RGB photo (exact engine)", "rgb8.png", _write_rgb8),
    Kind("rgb8-large", "8-bit RGB photo, 1024x1024 JPEG in 4 chunks", "rgb8.jpg",
         _write_rgb8_large, {"chunks": [512, 512]}),
    Kind("rgb8-auto-k", "8-bit RGB photo, k auto", "rgb8.png", _write_rgb8, {"k": "auto"}),
    Kind("rgba8", "8-bit RGBA photo, alpha 0 = no data", "rgba8.png", _write_rgba8),
    Kind("grey8", "8-bit grey", "grey8.png", _write_grey8),
    # One feature with k auto: the optimal cost of every k in one dynamic programming run
    # (pipeline.engines.krange), for grey images and volumes of any dtype.
    Kind("grey8-auto-k", "8-bit grey, k auto", "grey8.png", _write_grey8, {"k": "auto"}),
    Kind("grey-alpha8", "8-bit grey with alpha", "grey-alpha8.png", _write_grey_alpha8),
    Kind("grey16", "16-bit grey (exact engine)", "grey16.tif", _write_grey16),
    Kind("grey16-valid-range", "16-bit grey, valid range (no data)", "grey16.tif",
         _write_grey16, {"valid_range": [2000.0, 60000.0]}),
    Kind("rgb16", "16-bit RGB (binned engine)", "rgb16.tif", _write_rgb16),
    Kind("rgb16-chunks", "16-bit RGB in 4 chunks", "rgb16.tif", _write_rgb16,
         {"chunks": [SHAPE[0] // 2, SHAPE[1] // 2]}),
    Kind("rgb16-mask", "16-bit RGB with a mask", "rgb16.tif", _write_rgb16, {"mask": "{mask}"}),
    Kind("uint16x4", "4-channel uint16 (binned engine)", "uint16x4.tif",
         _write_uint16_channels(4)),
    Kind("uint16x8", "8-channel uint16", "uint16x8.tif", _write_uint16_channels(8)),
    Kind("float32", "float32 grey image (dense bins)", "float32.tif", _write_float32),
    Kind("float64", "float64 grey image (hashed bins)", "float64.npy", _write_float64),
    Kind("float32-rgb", "float32 3-channel image", "float32-rgb.npy", _write_float32_rgb),
    Kind("float32-volume", "float32 volume (binned engine)", "volume.npy",
         _write_volume_float32),
    Kind("int16-volume", "int16 CT volume (NIfTI)", "ct.nii.gz", _write_volume_int16),
    Kind("int32", "int32 image", "int32.tif", _write_int32),
)


@dataclass(frozen=True)
class KindResult:
    """What compiling one :class:`Kind` took: seconds and kernel signatures compiled."""

    kind: Kind
    seconds: float
    kernels: int


@dataclass(frozen=True)
class Summary:
    """The outcome of :func:`precompile`.

    Attributes
    ----------
    results : list of KindResult
        One per kind, in order.
    seconds : float
        Wall time of all kinds, in seconds.
    cache_folders : list of Path
        The folders numba caches kmseg's kernels in (one per package folder that has kernels).
    cache_files : int
        numba cache files (``*.nbi``, ``*.nbc``) in those folders afterwards.
    files_written : int
        Cache files created or rewritten by this run.
    """

    results: list[KindResult]
    seconds: float
    cache_folders: list[Path]
    cache_files: int
    files_written: int

    @property
    def kernels(self) -> int:
        """Kernel signatures compiled, in all kinds."""
        return sum(r.kernels for r in self.results)

    @property
    def cache_root(self) -> Path:
        """``NUMBA_CACHE_DIR`` if set (absolute: numba resolves a relative one against the
        current folder of each job), else the folder common to :attr:`cache_folders`."""
        import numba

        if numba.config.CACHE_DIR:
            return Path(numba.config.CACHE_DIR).absolute()
        if not self.cache_folders:
            return Path()
        return Path(os.path.commonpath([str(p) for p in self.cache_folders]))


def cache_error(exc: BaseException) -> OutputError | None:
    """The one-line error for numba's "cannot cache function ...: no locator available" (no
    writable folder for kmseg's compiled kernels: a read-only install without a writable home),
    or None for any other exception."""
    if not (isinstance(exc, RuntimeError) and "cannot cache function" in str(exc)):
        return None
    return OutputError(f"cannot cache kmseg's compiled kernels: {exc}; point NUMBA_CACHE_DIR "
                       "at a writable folder")


@contextmanager
def _cache_errors() -> Iterator[None]:
    """Inside the block, numba's "cannot cache" error becomes :func:`cache_error`'s line."""
    try:
        yield
    except RuntimeError as exc:
        error = cache_error(exc)
        if error is None:
            raise
        raise error from None


def check_cache_dir() -> None:
    """Check that ``NUMBA_CACHE_DIR``, where set, can be created and written.

    numba itself silently falls back to another folder (or fails with a traceback when it
    finds none), so ``kmseg compile`` checks first.

    Raises
    ------
    OutputError
        Naming the folder and the operating system's reason.
    """
    import numba

    folder = numba.config.CACHE_DIR
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise OutputError(
            f"NUMBA_CACHE_DIR={folder}: the numba cache folder cannot be created or written "
            f"({exc.strerror or exc}); point NUMBA_CACHE_DIR at a writable folder"
        ) from None


def kmseg_kernels() -> list[Any]:
    """The numba dispatchers of kmseg's modules imported so far (``@njit(cache=True)``)."""
    import sys

    from numba.core.registry import CPUDispatcher

    kernels = []
    for name, module in list(sys.modules.items()):
        if name != "pipeline" and not name.startswith("pipeline."):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == name:
                kernels.append(value)
    return kernels


def cache_folders(kernels: list[Any]) -> list[Path]:
    """The folders numba chose for the caches of ``kernels`` (set when each was defined)."""
    folders = set()
    for kernel in kernels:
        cache = getattr(kernel, "_cache", None)  # numba's FunctionCache; None without cache
        path = getattr(cache, "cache_path", None)
        if path:
            folders.add(Path(path))
    return sorted(folders)


def _cache_files(folders: list[Path]) -> dict[Path, int]:
    """Each numba cache file in ``folders`` and its modification time (ns since the epoch)."""
    files = {}
    for folder in folders:
        if folder.is_dir():
            for path in folder.iterdir():
                if path.suffix in CACHE_SUFFIXES:
                    files[path] = path.stat().st_mtime_ns
    return files


@contextmanager
def _count_compilations() -> Iterator[list[str]]:
    """Collect the kmseg kernel signatures numba compiles inside the block."""
    from numba.core import event

    compiled: list[str] = []

    class Listener(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            func = ev.data["dispatcher"].py_func
            if func.__module__.startswith("pipeline."):
                compiled.append(f"{func.__module__}.{func.__qualname__}{ev.data['args']}")

        def on_end(self, ev: event.Event) -> None:
            pass

    listener = Listener()
    event.register("numba:compile", listener)
    try:
        yield compiled
    finally:
        event.unregister("numba:compile", listener)


def _now_ns() -> int:
    """The current time as the file system stamps it (a file's mtime written now, ns)."""
    with tempfile.TemporaryFile() as probe:
        return os.fstat(probe.fileno()).st_mtime_ns


def _segment(kind: Kind, folder: Path) -> None:
    """Write the input of ``kind`` (once) and segment it through the public API."""
    from pipeline.api import run
    from pipeline.config import build_config

    path = folder / kind.filename
    if not path.exists():
        kind.write(path)
    options = dict(kind.options)
    for key, value in options.items():
        if value == "{mask}":
            mask = folder / "mask.png"
            if not mask.exists():
                _write_mask(mask)
            options[key] = str(mask)
    # environ={}: the job runs here, in threads, whatever KMSEG_* or DASK_SCHEDULER_ADDRESS
    # the shell sets (a remote cluster would compile on its workers, not into this cache).
    config = build_config(
        {"k": 4, **options, "inputs": [str(path)], "output": str(folder / f"{kind.name}.zarr"),
         "quiet": True},
        environ={},
    )
    run(config)


def precompile(
    kinds: tuple[Kind, ...] = KINDS, progress: Callable[[KindResult], None] | None = None
) -> Summary:
    """Compile the kernels of ``kinds`` of job into numba's on-disk cache.

    Parameters
    ----------
    kinds : tuple of Kind
        The jobs to run (default :data:`KINDS`), each on a tiny file in a temporary folder
        that is removed afterwards.
    progress : callable, optional
        Called with each kind's :class:`KindResult` as soon as it is done.

    Returns
    -------
    Summary
        Seconds and kernel signatures compiled per kind, the cache folders and the cache
        files written.

    Raises
    ------
    OutputError
        ``NUMBA_CACHE_DIR`` cannot be written, or numba finds no writable cache folder.
    """
    check_cache_dir()
    from pipeline import compile_notice

    compile_notice.silence()
    with _cache_errors():
        import pipeline.api  # noqa: F401  (imports at start-up are no part of any kind's time)
    # Files written from now on; the folders are known only once the kernels' modules are
    # imported, during the first job (the file system's clock, ns).
    since = _now_ns()
    started = time.perf_counter()
    # SIGTERM ends with status 143 after the temporary folder is removed.
    with sigterm.raising(lambda signum: SystemExit(128 + signum)):
        folder = Path(tempfile.mkdtemp(prefix="kmseg-compile-"))
        try:
            results = _run_kinds(kinds, folder, progress)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - started
    folders = cache_folders(kmseg_kernels())
    after = _cache_files(folders)
    written = sum(1 for stamp in after.values() if stamp >= since)
    return Summary(results, seconds, folders, len(after), written)


def _run_kinds(
    kinds: tuple[Kind, ...], folder: Path, progress: Callable[[KindResult], None] | None
) -> list[KindResult]:
    """Segment each of ``kinds`` in ``folder``, counting the kernel signatures compiled."""
    results = []
    for kind in kinds:
        t0 = time.perf_counter()
        with _cache_errors(), _count_compilations() as compiled:
            _segment(kind, folder)
        result = KindResult(kind, time.perf_counter() - t0, len(compiled))
        results.append(result)
        if progress is not None:
            progress(result)
    return results


