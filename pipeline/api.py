"""The public Python API: plan, run, segment and fit."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.config import JobConfig, build_config, check_k_against_model, default_of
from pipeline.execution import open_executor
from pipeline.model import Model
from pipeline.plan import BatchResults, Plan, SegmentationResult, build_plan
from pipeline.readers import ImageSource, from_array
from pipeline.warn import capture

log = logging.getLogger(__name__)


def plan(config: JobConfig | Mapping[str, Any]) -> Plan:
    """Build the plan of a job without opening any input or reading any pixel.

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


def _execute(job: Plan, model: Model | None = None) -> BatchResults:
    """Run ``job`` on its scheduler: fit a shared model first when asked, apply any model."""
    config = job.config
    if config.model and config.shared_model:
        from pipeline.errors import ConfigError

        raise ConfigError("give either model or shared_model, not both")
    if model is None and config.model:
        model = Model.load(config.model)
    if model is not None and config.k != model.k and config.k != default_of("k"):
        from pipeline.errors import ConfigError

        raise ConfigError(f"k: {config.k} does not apply with a model, whose k is {model.k}; "
                          "leave k out")
    with open_executor(config) as executor:
        if model is None and config.shared_model:
            from pipeline.fit import fit_model

            model = fit_model(job, executor)
        results = job.execute(executor, model=model)
    if config.report and results:
        from pipeline.report import default_report_path, write_report

        page = write_report(config.output, default_report_path(config.output))
        log.info("report: %s", page)
    return results


def run(config: JobConfig | Mapping[str, Any]) -> BatchResults:
    """Plan and execute a job on the configured scheduler; return one result per input.

    Warnings raised while opening and processing the inputs are recorded in each output's
    metadata (``"warnings"``) and passed on as usual (see :func:`pipeline.warn.capture`).
    The returned list also says which inputs failed (``.failed``, with ``on_error:
    continue``) and how many an earlier run had finished (``.resumed``).
    """
    with capture(forward=True):
        return _execute(plan(config))


def _sources(inputs: Any) -> tuple[list[str], list[ImageSource] | None]:
    items = [inputs] if isinstance(inputs, (str, np.ndarray)) else list(inputs)
    arrays = [i for i in items if isinstance(i, np.ndarray)]
    if arrays and len(arrays) != len(items):
        raise TypeError("give either paths or arrays, not both")
    names = [f"array{i}" for i in range(len(items))] if arrays else [str(i) for i in items]
    sources = (
        [from_array(a, name=n) for a, n in zip(arrays, names, strict=True)] if arrays else None
    )
    return names, sources


def segment(
    inputs: str | np.ndarray | Sequence[str | np.ndarray],
    output: str,
    *,
    k: int | str | None = None,
    model: Model | str | None = None,
    **options: Any,
) -> BatchResults:
    """Segment one or more images with K-Means and write OME-Zarr output.

    Parameters
    ----------
    inputs : str, ndarray or sequence of them
        Paths (files, folders, globs) or in-memory arrays (``(y, x[, c])`` or
        ``(z, y, x[, c])``).
    output : str
        Output Zarr store.
    k : int or "auto", optional
        Number of clusters (default 4); with a ``model`` the model's k (another is refused).
    model : Model or str, optional
        Apply this model (or model file) to every input instead of fitting.
    **options
        Any other :class:`~pipeline.config.JobConfig` key (``engine``, ``random_state``,
        ``sample``, ``colour_space``, ``spatial_weight``, ``chunks``, ``overwrite``,
        ``scheduler``, ``quiet``, ``shared_model``, ``label_order``, ``on_error``, ...); they
        win over ``KMSEG_*`` environment variables.

    Returns
    -------
    BatchResults
        A list of :class:`~pipeline.plan.SegmentationResult` (centres, mse, inertia and pixel
        counts per input).

    Examples
    --------
    >>> from skimage import data
    >>> [result] = segment(data.astronaut(), "astronaut.zarr", k=4, quiet=True)  # doctest: +SKIP
    >>> result.mse  # doctest: +SKIP
    """
    names, sources = _sources(inputs)
    if isinstance(model, str):
        options["model"] = model
        model = None
    if model is not None and k is not None:
        check_k_against_model(k, model.k, "k")
    if model is not None:
        k = model.k
    if k is not None:
        options["k"] = k
    config = build_config({**options, "inputs": names, "output": output})
    with capture(forward=True):
        return _execute(build_plan(config, sources), model)


def fit(
    inputs: str | np.ndarray | Sequence[str | np.ndarray],
    *,
    k: int = 4,
    output: str | None = None,
    **options: Any,
) -> Model:
    """Fit one model on all ``inputs`` pooled (see :mod:`pipeline.fit`).

    Parameters
    ----------
    inputs : str, ndarray or sequence of them
        Paths (files, folders, globs) or in-memory arrays.
    k : int
        Number of clusters.
    output : str, optional
        Also save the model to this JSON file (never replaced unless ``overwrite=True``).
    **options
        Other :class:`~pipeline.config.JobConfig` keys (``engine``, ``sample``,
        ``random_state``, ``label_order``, ``colour_space``, scheduler keys, ...).

    Returns
    -------
    Model
        Pass it to :func:`segment` (``model=``), or save it with :meth:`Model.save`.
    """
    names, sources = _sources(inputs)
    config = build_config({**options, "inputs": names, "output": output or "model.json",
                           "k": k})
    return fit_config(config, sources, save=output is not None)


def fit_config(config: JobConfig, sources: list[ImageSource] | None = None,
               save: bool = True) -> Model:
    """Fit one model on the inputs of ``config`` and save it to ``config.output`` (``save``)."""
    import os

    from pipeline.errors import OutputError
    from pipeline.fit import fit_model
    from pipeline.model import is_model_file
    from pipeline.outputs import check_disjoint

    config = config.validate()
    if save and os.path.lexists(config.output):
        if not config.overwrite:
            raise OutputError(f"{config.output}: the model file already exists; pass "
                              "--overwrite (overwrite=True in Python) to replace it")
        if not is_model_file(config.output):
            raise OutputError(f"{config.output}: exists and is not a kmseg model file; "
                              "refusing to replace it")
    with capture(forward=True):
        job = build_plan(config, sources, check=False)
        if save:
            check_disjoint(config.output, [*config.inputs, *(j.path for j in job.jobs)])
        with open_executor(job.config) as executor:
            model = fit_model(job, executor)
    if save:
        if config.overwrite and os.path.isfile(config.output):
            os.remove(config.output)
        model.save(config.output)
    return model


__all__ = ["BatchResults", "Model", "SegmentationResult", "fit", "plan", "run", "segment"]
