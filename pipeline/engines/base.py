"""The fitting-engine interface.

An engine fits K-Means centres in two steps so that a job over several images runs in few
computes:

1. ``summarise`` returns a lazy Dask collection (or ``None``) describing the pixels: the
   summaries of all inputs are computed together, in one graph;
2. ``fit`` turns that computed summary into centres; iterative engines may compute further.

Centres are always in feature units (see :mod:`pipeline.features`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import dask.array as da
import numpy as np

from pipeline.errors import KmsegError
from pipeline.features import FeatureSpec


class TooFewValues(KmsegError):
    """The image has fewer distinct feature vectors (among pixels with data) than ``k``.

    Engines know no path: the plan re-raises this as an :class:`InputError` naming the input.
    """

    def __init__(self, k: int, n_distinct: int) -> None:
        self.k = k
        self.n_distinct = n_distinct
        super().__init__(
            f"k={k} is larger than the {n_distinct} distinct value(s) in the image"
            + (" (no pixel has data)" if n_distinct == 0 else "")
        )

    def __reduce__(self):
        return (type(self), (self.k, self.n_distinct))


@dataclass(frozen=True)
class FitParams:
    """Parameters shared by all engines."""

    k: int
    random_state: int | None = 0
    sample: int | None = None
    max_iter: int = 300
    tol: float = 1e-4
    n_init: int = 10


@dataclass
class FitResult:
    """Centres found by an engine.

    Attributes
    ----------
    centres : ndarray, shape (k, n_features)
        Cluster centres in feature units, float64.
    engine : str
        Name of the engine that produced them.
    n_iter : int or None
        Iterations of the final run, where the engine reports them.
    optimal : bool
        True when the centres are proven globally optimal (1-D dynamic programming).
    labeller : object or None
        Optional picklable ``labeller(block, origin) -> labels`` (1..k, 0 for no data) that is
        faster than nearest-centre search (a lookup table, say).
    stats : ndarray or None
        ``(2, k + 1)`` pixel counts and sums of squared feature distances per label (column 0:
        no data), when the engine knows them exactly without another pass over the pixels
        (a weighted table of every pixel value does).
    values : ndarray or None
        ``(k, n_value_features)`` centres in input units, in the input's integer dtype, exact
        (each cluster's mean computed from the table in integer offsets, rounded): what the
        recoloured image holds. ``None``: the centres converted from feature units are used.
    means : ndarray or None
        ``(k, n_value_features)`` float64 centres in input units computed from the table's
        values (no feature scaling on the way: a cluster of one value gives that value), NaN
        for an empty cluster; ``None``: the centres converted from feature units are used.
    info : dict
        Engine-specific facts recorded in the output metadata.
    """

    centres: np.ndarray
    engine: str
    n_iter: int | None = None
    optimal: bool = False
    labeller: Any = None
    stats: np.ndarray | None = None
    values: np.ndarray | None = None
    means: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def centres_input(self, spec: Any) -> np.ndarray:
        """Centres in input units (see :func:`centres_in_input_units`)."""
        return centres_in_input_units(spec, self.centres, self.means)


def centres_in_input_units(spec: Any, centres: np.ndarray, means: np.ndarray | None) -> np.ndarray:
    """Centres in input units, float64 ``(k, n_value_features)``: ``means`` where known (not
    NaN), else ``centres`` (feature units) converted by ``spec``, a
    :class:`~pipeline.features.FeatureSpec`."""
    converted = spec.to_input_units(centres)
    if means is None:
        return converted
    return np.where(np.isnan(means), converted, means)


class Engine(Protocol):
    """What every fitting engine provides."""

    name: str

    def summarise(self, image: da.Array, spec: FeatureSpec, params: FitParams) -> Any:
        """Return a lazy Dask collection summarising the pixels, or ``None``."""

    def fit(
        self, summary: Any, image: da.Array, spec: FeatureSpec, params: FitParams
    ) -> FitResult:
        """Return centres from the computed summary."""
