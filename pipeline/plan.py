"""A job as an immutable plan, built first and executed separately.

:func:`build_plan` expands the inputs to a list of paths (listing is cheap), checks the output
and decides, once, where each input's output goes (:func:`layout`); it opens no input and
reads no pixels. :meth:`Plan.execute` streams the inputs through :mod:`pipeline.batch` in
bounded windows, opening each input's metadata only when its window starts, and returns one
result per input; it never changes the plan.

Output layout (decided once, here):

* one input given explicitly (one file, one URL, one Zarr store or DICOM series folder, or an
  in-memory array): the output store *is* that image;
* several inputs, a glob or a folder of images (even if it holds or matches one image): one
  group per image in the store, named after the file (``out.zarr/a``, ``out.zarr/b``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config import JobConfig
from pipeline.errors import InputError
from pipeline.execution import Executor, shared_path
from pipeline.outputs import check_output, unique_names
from pipeline.readers import ImageSource
from pipeline.readers.urls import expand_urls
from pipeline.samples import resolve as resolve_sample


@dataclass(frozen=True)
class InputJob:
    """One input of a plan: where it comes from and where its output goes.

    Attributes
    ----------
    name : str
        Name of the input (its group name in a batch).
    path : str
        Path or URL of the input (as the workers see it).
    group : str or None
        Group of the output store holding this input's output; ``None`` when the store's root
        is the image.
    output : str
        Where the output is, as reported to the user (``out.zarr`` or ``out.zarr/name``).
    source : ImageSource or None
        An already opened source (in-memory arrays); ``None``: opened when its window starts.
    """

    name: str
    path: str
    group: str | None
    output: str
    source: ImageSource | None = field(default=None, compare=False, repr=False)

    def open(self, config: JobConfig) -> ImageSource:
        """Open the input's metadata (no pixels)."""
        if self.source is not None:
            return self.source
        from pipeline.readers.urls import open_input

        return open_input(self.path, config.read_options())


@dataclass(frozen=True)
class SegmentationResult:
    """What one input's segmentation produced (also written to the output metadata)."""

    name: str
    output: str
    k: int
    engine: str
    centres: np.ndarray
    centres_features: np.ndarray
    mse: float
    inertia: float
    counts: np.ndarray
    no_data: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class FailedInput:
    """An input that failed in a batch run with ``on_error: continue``."""

    name: str
    path: str
    error: str


class BatchResults(list):
    """The results of a job: a list of :class:`SegmentationResult` (one per finished input, in
    input order), plus the inputs that failed (``failed``, only with ``on_error: continue``)
    and how many were kept from an earlier run (``resumed``)."""

    def __init__(self, results=(), failed=(), resumed: int = 0) -> None:
        super().__init__(results)
        self.failed: list[FailedInput] = list(failed)
        self.resumed = resumed


@dataclass(frozen=True)
class Plan:
    """Everything decided for a job before any input is opened; :meth:`execute` runs it.

    Attributes
    ----------
    config : JobConfig
        The validated config (output path as the workers see it).
    jobs : tuple of InputJob
        The inputs, in order.
    grouped : bool
        True when each input gets a group of the store (see the module docstring).
    """

    config: JobConfig
    jobs: tuple[InputJob, ...]
    grouped: bool

    @property
    def multi(self) -> bool:
        return self.grouped

    def execute(self, executor: Executor, model: Any = None) -> BatchResults:
        """Run the job and return one result per finished input.

        Parameters
        ----------
        executor : Executor
        model : Model, optional
            Apply this model to every input instead of fitting (see :mod:`pipeline.model`).
        """
        from pipeline.batch import run_batch

        return run_batch(self, executor, model=model)


def grouped_layout(items: list[str], n_paths: int) -> bool:
    """The layout rule: False (the store is the image) for one explicit input, True (one group
    per image) for several inputs, a glob or a folder of images.

    Parameters
    ----------
    items : list of str
        The inputs as given (paths, globs, folders, URLs).
    n_paths : int
        How many inputs they expanded to.
    """
    if len(items) != 1 or n_paths != 1:
        return True
    item = str(items[0])
    if "://" in item:
        return glob.has_magic(item.split("://", 1)[1])
    if glob.has_magic(item):
        return True
    # A folder that is one image (a Zarr store, a DICOM series) is one explicit input.
    if os.path.isdir(item):
        from pipeline.readers.dispatch import folder_format

        return folder_format(item) is None
    return False


def _check_output(
    path: str, overwrite: bool, inputs: list[str], grouped: bool, config: JobConfig
) -> None:
    """Fail early if the output may not be written (:func:`pipeline.outputs.check_output`); a
    batch that ended ``partial`` (some inputs failed) may be resumed like an unfinished one
    (see :mod:`pipeline.batch`)."""
    from pipeline.outputs import output_status

    status = output_status(path)
    check_output(path, overwrite or (grouped and status == "partial"), inputs,
                 given=[str(i) for i in config.inputs])
    if grouped and status in ("incomplete", "partial") and not overwrite:
        from pipeline.batch import check_same_job

        check_same_job(path, config)


def build_plan(
    config: JobConfig, sources: list[ImageSource] | None = None, *, check: bool = True
) -> Plan:
    """Expand the inputs, check the output and decide each input's output; open no input.

    ``sources`` replaces opening ``config.inputs`` (used for in-memory arrays; one array is one
    explicit input, several get one group each). ``check=False`` skips checking the output
    (``kmseg fit``, whose output is a model file).
    """
    config = config.validate()
    if sources is None:
        paths = [
            shared_path(p, config)
            for p in expand_urls([resolve_sample(item) for item in config.inputs])
        ]
        grouped = grouped_layout([resolve_sample(i) for i in config.inputs], len(paths))
    else:
        paths = [s.path for s in sources]
        grouped = len(sources) > 1
    import dataclasses

    config = dataclasses.replace(config, output=shared_path(config.output, config))
    if check:
        _check_output(config.output, config.overwrite, paths, grouped, config)
    names = unique_names(paths) if grouped else [unique_names(paths)[0]]
    jobs = tuple(
        InputJob(
            name=name,
            path=path,
            group=name if grouped else None,
            output=f"{config.output.rstrip('/')}/{name}" if grouped else config.output,
            source=sources[i] if sources is not None else None,
        )
        for i, (name, path) in enumerate(zip(names, paths, strict=True))
    )
    if not jobs:
        raise InputError(str(config.inputs[0]), "no input found")
    return Plan(config=config, jobs=jobs, grouped=grouped)
