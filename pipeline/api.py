"""The public Python API: plan, run and segment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.config import JobConfig, build_config
from pipeline.execution import open_executor
from pipeline.plan import Plan, SegmentationResult, build_plan
from pipeline.readers import ImageSource, from_array
from pipeline.warn import capture


def plan(config: JobConfig | Mapping[str, Any]) -> Plan:
    """Build the plan of a job without reading any pixels.

    Parameters
    ----------
    config : JobConfig or mapping
        The job; a mapping's keys win over ``KMSEG_*`` environment variables, which win over
        the defaults.

    Raises
    ------
    ConfigError
        A key is unknown or its value is invalid (the message names the key).
    """
    if not isinstance(config, JobConfig):
        config = build_config(dict(config))
    return build_plan(config)


def run(config: JobConfig | Mapping[str, Any]) -> list[SegmentationResult]:
    """Plan and execute a job on the configured scheduler; return one result per input.

    Warnings raised while opening and processing the inputs are recorded in each output's
    metadata (``"warnings"``) and passed on as usual (see :func:`pipeline.warn.capture`).
    """
    with capture(forward=True):
        job = plan(config)
        with open_executor(job.config) as executor:
            return job.execute(executor)


def segment(
    inputs: str | np.ndarray | Sequence[str | np.ndarray],
    output: str,
    *,
    k: int = 4,
    **options: Any,
) -> list[SegmentationResult]:
    """Segment one or more images with K-Means and write OME-Zarr output.

    Parameters
    ----------
    inputs : str, ndarray or sequence of them
        Paths (files, folders, globs) or in-memory arrays (``(y, x[, c])`` or
        ``(z, y, x[, c])``).
    output : str
        Output Zarr store.
    k : int
        Number of clusters.
    **options
        Any other :class:`~pipeline.config.JobConfig` key (``engine``, ``random_state``,
        ``sample``, ``colour_space``, ``spatial_weight``, ``chunks``, ``overwrite``,
        ``scheduler``, ``quiet``, ...); they win over ``KMSEG_*`` environment variables.

    Returns
    -------
    list of SegmentationResult
        Centres, mse, inertia and pixel counts per input.

    Examples
    --------
    >>> from skimage import data
    >>> [result] = segment(data.astronaut(), "astronaut.zarr", k=4, quiet=True)  # doctest: +SKIP
    >>> result.mse  # doctest: +SKIP
    """
    items = [inputs] if isinstance(inputs, (str, np.ndarray)) else list(inputs)
    arrays = [i for i in items if isinstance(i, np.ndarray)]
    if arrays and len(arrays) != len(items):
        raise TypeError("give either paths or arrays, not both")
    names = [f"array{i}" for i in range(len(items))] if arrays else [str(i) for i in items]
    config = build_config({**options, "inputs": names, "output": output, "k": k})
    sources: list[ImageSource] | None = (
        [from_array(a, name=n) for a, n in zip(arrays, names, strict=True)] if arrays else None
    )
    with capture(forward=True):
        job = build_plan(config, sources)
        with open_executor(job.config) as executor:
            return job.execute(executor)
