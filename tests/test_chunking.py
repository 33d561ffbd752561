"""Chunk planning is pure arithmetic: checked with hypothesis."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from pipeline.chunking import (
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    choose_chunks,
    chunk_bytes_for_memory,
)
from pipeline.io.ngff import level_chunks

shapes = st.lists(st.integers(1, 200_000), min_size=2, max_size=3).map(tuple)


@given(
    shape=shapes,
    itemsize=st.sampled_from([1, 2, 4, 8]),
    channels=st.integers(1, 4),
    target=st.integers(2**16, 2**28),
)
def test_chunks_fit_the_image_and_the_target(shape, itemsize, channels, target):
    chunks = choose_chunks(shape, itemsize, channels, target)
    assert len(chunks) == len(shape)
    assert all(1 <= c <= s for c, s in zip(chunks, shape, strict=True))
    # Never far above the target: each axis is at most one alignment step over its share.
    assert (
        math.prod(chunks) * itemsize * channels
        <= max(target, 64 ** len(shape) * itemsize * channels) * 8
    )


@given(tile=st.sampled_from([128, 256, 512]), n=st.integers(2, 400))
def test_chunks_align_with_tiles(tile, n):
    shape = (tile * n + 7, tile * n + 3)
    chunks = choose_chunks(shape, 1, 3, 16 * 2**20, native=(tile, tile))
    assert all(c % tile == 0 or c == s for c, s in zip(chunks, shape, strict=True))


def test_small_unsplittable_images_are_one_chunk():
    assert choose_chunks((400, 600), 1, 3, 2**20, native=(400, 600)) == (400, 600)


def test_chunk_bytes_for_memory_known_values():
    # A quarter of the memory, shared by the tasks, each needing TASK_MEMORY_FACTOR chunks.
    assert chunk_bytes_for_memory(6 * 2**30, 2) == 32 * 2**20
    assert chunk_bytes_for_memory(2**30, 8) == MIN_CHUNK_BYTES  # 1.3 MiB raised to the floor
    assert chunk_bytes_for_memory(2**40, 1) == MAX_CHUNK_BYTES  # 10.7 GiB capped


def test_level_chunks_halve_in_y_and_x_only():
    assert level_chunks((8, 1024, 1024), (8, 4000, 3000), 2, 3) == (8, 256, 256)
    assert level_chunks((1024, 1024), (100, 5000), 4, 2) == (100, 128)
    assert level_chunks((100, 100), (1000, 1000), 3, 2) == (100, 100)


def test_cluster_jobs_use_the_cluster_chunk_size(tmp_path):
    import numpy as np

    from pipeline.chunking import CLUSTER_CHUNK_BYTES
    from pipeline.config import build_config
    from pipeline.plan import build_plan

    path = tmp_path / "big.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(20000, 20000)).flush()
    config = build_config(
        {"inputs": [str(path)], "output": str(tmp_path / "o.zarr"),
         "scheduler": "tcp://127.0.0.1:1"},
        environ={},
    )
    from pipeline.batch import open_image

    plan = build_plan(config)
    [job] = plan.jobs
    image = open_image(job.open(plan.config), plan.config)
    chunk_bytes = math.prod(c[0] for c in image.chunks)
    assert chunk_bytes <= CLUSTER_CHUNK_BYTES
