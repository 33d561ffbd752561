"""Choosing k automatically from the objective curve (a heuristic, documented as such).

Each k in ``k_min..k_max + 1`` is fitted on the engine's summary of the pixels (for the exact
engine the table of distinct values, so the curve costs one pass over the pixels whatever the
number of k), giving the mean squared distance ``mse(k)``.

The rule: with ``d(k) = ln(mse(k - 1) / mse(k))``, how much the step to k lowered the mse on a
log scale, the chosen k maximises ``d(k) / d(k + 1)``: a large step into k followed by a small
one out of it. Splitting real structure (two well-separated colours or tissues that were merged)
removes most of the remaining mse; splitting one colour plus noise removes little (at most 2/pi of
a Gaussian's variance along one axis), so the ratio peaks at the number of real classes. It is the
elbow criterion (Thorndike, "Who belongs in the family?", Psychometrika 1953) measured on the
logarithm of the curve, which makes it independent of the scale of the features. A k whose mse
is 0 (every pixel on a centre) is chosen at once.

It finds the built-in number of classes on images made of well-separated classes (tested on
separated colours and on a CT phantom of air, fat, soft tissue and bone); on natural images
there is no right k, and the curve is recorded in the output metadata so that a person can judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def choose_k(curve: Mapping[int, float], k_min: int, k_max: int) -> tuple[int, dict[str, Any]]:
    """Pick k from ``{k: mse}``.

    Parameters
    ----------
    curve : mapping of int to float
        The mse of the best fit found for each k in ``k_min - 1 .. k_max + 1`` (``k = 1`` is
        the variance).
    k_min, k_max : int
        The range to choose from, ``2 <= k_min <= k_max``.

    Returns
    -------
    k : int
    info : dict
        ``rule``, the ``scores`` ``d(k) / d(k + 1)`` and the curve, for the metadata.

    Raises
    ------
    ValueError
        If the curve lacks a k the rule needs.
    """
    missing = [k for k in range(k_min - 1, k_max + 2) if k not in curve]
    if missing:
        raise ValueError(f"the curve lacks k = {missing}")
    mse = {k: max(float(curve[k]), 0.0) for k in range(k_min - 1, k_max + 2)}
    info: dict[str, Any] = {
        "rule": "argmax d(k)/d(k+1), d(k) = ln(mse(k-1)/mse(k))",
        "curve": {str(k): v for k, v in mse.items()},
    }
    exact = [k for k in range(k_min, k_max + 1) if mse[k] == 0]
    if exact:
        return exact[0], info
    floor = 1e-300
    drop = {
        k: math.log(max(mse[k - 1], floor) / max(mse[k], floor))
        for k in range(k_min, k_max + 2)
    }
    scores = {k: drop[k] / max(drop[k + 1], 1e-12) for k in range(k_min, k_max + 1)}
    info["scores"] = {str(k): round(v, 4) for k, v in scores.items()}
    return max(scores, key=lambda k: (scores[k], -k)), info
