"""Numbering classes by a deterministic rule, so label 1 means the same thing in every image.

K-Means returns its centres in whatever order the fit found them. kmseg renumbers them before
anything is written:

``luminance`` (the default)
    ascending luminance of the centre: Rec. 709 luma ``0.2126 R + 0.7152 G + 0.0722 B`` of the
    centre's first three feature values for RGB features (scaled to [0, 1] as in
    :mod:`pipeline.features`), ``L*`` for CIELAB features, the value itself for one channel, and
    the mean of the channels for any other number of channels (2, or 4 and more). Label 1 is the
    darkest class. Ties are broken by the remaining feature values, in order.
``size``
    descending number of pixels (label 1 is the largest class), ties by luminance.
``none``
    the order the engine returned.

Source of the luma weights: ITU-R BT.709-6, item 3.2.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

LabelOrder = Literal["luminance", "size", "none"]
LABEL_ORDERS: tuple[str, ...] = ("luminance", "size", "none")

#: ITU-R BT.709 luma coefficients for R, G and B.
REC709 = np.array([0.2126, 0.7152, 0.0722])


def luminance(centres_features: np.ndarray, colour_space: str, n_value_features: int) -> np.ndarray:
    """Luminance of each centre, the key of the ``luminance`` order.

    Parameters
    ----------
    centres_features : ndarray, shape (k, n_features)
        Centres in feature units (value features first, then any spatial coordinates).
    colour_space : {"rgb", "lab"}
        The feature space.
    n_value_features : int
        Number of value (non-spatial) features.

    Returns
    -------
    ndarray, shape (k,), float64
    """
    values = np.asarray(centres_features, dtype=np.float64)[:, :n_value_features]
    if colour_space == "lab":
        return values[:, 0]
    if n_value_features == 3:
        return values @ REC709
    return values.mean(axis=1)


def class_order(
    centres_features: np.ndarray,
    rule: str,
    *,
    colour_space: str = "rgb",
    n_value_features: int | None = None,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Permutation that puts the centres in the order of ``rule``.

    Parameters
    ----------
    centres_features : ndarray, shape (k, n_features)
        Centres in feature units.
    rule : {"luminance", "size", "none"}
        See the module docstring.
    colour_space : {"rgb", "lab"}
    n_value_features : int, optional
        Value features among the columns (default: all).
    counts : ndarray, shape (k,), optional
        Pixels per class; required for ``size``.

    Returns
    -------
    ndarray of intp, shape (k,)
        ``order[i]`` is the index of the centre that becomes label ``i + 1``.

    Raises
    ------
    ValueError
        For an unknown rule, or ``size`` without counts.
    """
    centres = np.asarray(centres_features, dtype=np.float64)
    k = len(centres)
    if rule == "none":
        return np.arange(k)
    n_value = centres.shape[1] if n_value_features is None else n_value_features
    luma = luminance(centres, colour_space, n_value)
    # np.lexsort sorts by the last key first.
    tie_breaks = [centres[:, j] for j in reversed(range(centres.shape[1]))]
    if rule == "luminance":
        return np.lexsort([*tie_breaks, luma])
    if rule == "size":
        if counts is None:
            raise ValueError("the size order needs pixel counts")
        return np.lexsort([*tie_breaks, luma, -np.asarray(counts, dtype=np.float64)])
    raise ValueError(f"unknown label order {rule!r}; choose from {', '.join(LABEL_ORDERS)}")


def relabel_table(order: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Lookup table from the engine's labels (0..k) to ordered labels: ``new = table[old]``.

    Label 0 (no data) stays 0.
    """
    order = np.asarray(order)
    table = np.zeros(len(order) + 1, dtype=dtype)
    table[order + 1] = np.arange(1, len(order) + 1, dtype=dtype)
    return table


class RelabelledLabeller:
    """Wraps an engine's labeller and renumbers its labels through a small table.

    Parameters
    ----------
    inner : callable
        ``inner(block, origin) -> labels`` (0 = no data, 1..k).
    table : ndarray, shape (k + 1,)
        From :func:`relabel_table`.
    """

    def __init__(self, inner: Any, table: np.ndarray) -> None:
        self.inner = inner
        self.table = np.asarray(table)

    def __call__(self, block: np.ndarray, origin: tuple[int, ...]) -> np.ndarray:
        return np.take(self.table, self.inner(block, origin))

    def __dask_tokenize__(self) -> tuple:
        from dask.base import tokenize

        return (type(self).__name__, tokenize(self.inner), self.table.tobytes())


def reorder_fit(fit: Any, order: np.ndarray) -> Any:
    """A :class:`~pipeline.engines.base.FitResult` with its classes renumbered by ``order``.

    Centres, exact centre values and means and the per-label statistics are permuted; the
    labeller is wrapped so that the labels it writes follow the new numbering (no-data stays 0).
    """
    import dataclasses

    from pipeline.labels import label_dtype

    order = np.asarray(order, dtype=np.intp)
    if np.array_equal(order, np.arange(len(order))):
        return fit
    stats = fit.stats
    if stats is not None:
        stats = np.concatenate([stats[:, :1], stats[:, 1:][:, order]], axis=1)
    labeller = fit.labeller
    if labeller is not None:
        labeller = RelabelledLabeller(labeller, relabel_table(order, label_dtype(len(order))))
    values = None if fit.values is None else np.asarray(fit.values)[order]
    means = None if fit.means is None else np.asarray(fit.means)[order]
    return dataclasses.replace(
        fit, centres=np.asarray(fit.centres)[order], stats=stats, labeller=labeller,
        values=values, means=means,
    )
