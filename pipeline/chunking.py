"""Choosing chunk shapes from a memory target (pure arithmetic)."""

from __future__ import annotations

import math

#: Granularity of chunk sides when the storage has no tiles of its own.
DEFAULT_ALIGN = 64
#: Working memory of one task, in multiples of its input chunk (float features, distances,
#: labels, recoloured block and the downsampled levels).
TASK_MEMORY_FACTOR = 24
#: Bounds of the automatic chunk size.
MIN_CHUNK_BYTES = 4 * 2**20
MAX_CHUNK_BYTES = 64 * 2**20
#: Automatic chunk size on a cluster, whose workers' memory is unknown when planning:
#: small enough for a worker with 2 GiB per thread.
CLUSTER_CHUNK_BYTES = 32 * 2**20


def chunk_bytes_for_memory(memory_bytes: float, tasks_at_once: int) -> int:
    """Input bytes per chunk so that ``tasks_at_once`` tasks fit in ``memory_bytes`` with room.

    Only a quarter of the memory is planned for, leaving the rest to the interpreter, Dask and
    chunks waiting to be written.
    """
    per_task = memory_bytes / 4 / max(1, tasks_at_once) / TASK_MEMORY_FACTOR
    return int(min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, per_task)))


#: Automatic chunks are made small enough for at least this many chunks per worker thread, so
#: that every thread has work until the end (images large enough only).
CHUNKS_PER_WORKER = 4
#: ... but never smaller than this.
MIN_PARALLEL_CHUNK_BYTES = 2**20


def parallel_chunk_bytes(target_bytes: float, image_bytes: float, workers: int) -> float:
    """``target_bytes`` reduced so that an image of ``image_bytes`` is cut into at least
    :data:`CHUNKS_PER_WORKER` chunks per worker, but not below
    :data:`MIN_PARALLEL_CHUNK_BYTES`."""
    share = image_bytes / (CHUNKS_PER_WORKER * max(1, workers))
    return min(target_bytes, max(MIN_PARALLEL_CHUNK_BYTES, share))


def local_memory_bytes() -> int:
    """Memory available on this machine now (psutil, a dependency of distributed)."""
    import psutil

    return int(psutil.virtual_memory().available)


def choose_chunks(
    spatial_shape: tuple[int, ...],
    itemsize: int,
    n_channels: int,
    target_bytes: float,
    native: tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    """Spatial chunk shape of about ``target_bytes`` per chunk.

    Chunks are (hyper)cubes aligned to the native storage chunks where known, or to
    :data:`DEFAULT_ALIGN` pixels, and never larger than the image.

    Parameters
    ----------
    spatial_shape : tuple of int
        Image shape without the channel axis.
    itemsize, n_channels : int
        Bytes per value and values per pixel.
    target_bytes : float
        Desired bytes of input per chunk.
    native : tuple of int, optional
        Storage chunk (tile) shape, spatial axes only.
    """
    ndim = len(spatial_shape)
    pixels = max(1.0, target_bytes / (itemsize * n_channels))
    if native is not None and all(n >= s for n, s in zip(native, spatial_shape, strict=True)):
        # Formats that cannot read regions (PNG, JPEG): one chunk if it is not huge.
        if math.prod(spatial_shape) <= 4 * pixels:
            return tuple(spatial_shape)
        native = None
    chunks = [0] * ndim
    remaining = pixels
    # Short axes first, so what they cannot take goes to the longer ones.
    order = sorted(range(ndim), key=lambda a: spatial_shape[a])
    for n_left, axis in zip(range(ndim, 0, -1), order, strict=True):
        side = remaining ** (1.0 / n_left)
        align = native[axis] if native is not None else DEFAULT_ALIGN
        align = max(1, min(align, spatial_shape[axis]))
        size = min(max(align, int(side // align) * align), spatial_shape[axis])
        chunks[axis] = size
        remaining = max(1.0, remaining / size)
    return tuple(chunks)
