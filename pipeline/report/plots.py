"""Plots of the report (matplotlib, Agg): the colour distribution of the input by class.

Colour images: the distinct colours of a sample of pixels, weighted by their pixel counts, in
the three 2-D projections of the first three channels, each colour drawn in its class's colour
and the centres marked. One channel: the histogram of the values stacked by class, with the
class boundaries (midpoints between consecutive centres) and the centres marked.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

#: Distinct colours drawn at most (a weighted sample beyond).
MAX_POINTS = 30_000


def _figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    fig.patch.set_facecolor("white")
    return fig


def figure_uri(fig) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def distinct_colours(
    values: np.ndarray, labels: np.ndarray, window: Sequence[tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct colours of pixels at 8-bit precision within ``window``, with their weights.

    Parameters
    ----------
    values : ndarray, shape (n, 3)
        Pixel values (input units) of three channels.
    labels : ndarray, shape (n,)
        Class of each pixel.
    window : three (low, high)
        Range of each channel mapped to 0..255 before grouping (exact for 8-bit images).

    Returns
    -------
    colours : ndarray, shape (m, 3), float64
        Each distinct colour, in input units (the bin's first pixel).
    counts : ndarray, shape (m,), int64
        Pixels of that colour.
    classes : ndarray, shape (m,)
        The class of the colour's first pixel.
    """
    low = np.array([w[0] for w in window], dtype=np.float64)
    high = np.array([w[1] for w in window], dtype=np.float64)
    scaled = (values.astype(np.float64) - low) / np.where(high > low, high - low, 1.0)
    q = np.clip(np.round(scaled * 255), 0, 255).astype(np.int64)
    key = (q[:, 0] << 16) | (q[:, 1] << 8) | q[:, 2]
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    return values[first].astype(np.float64), counts, labels[first]


def colour_projections(
    values: np.ndarray,
    labels: np.ndarray,
    class_colours: np.ndarray,
    centres: np.ndarray,
    centre_colours: np.ndarray,
    names: Sequence[str],
    window: Sequence[tuple[float, float]],
) -> str:
    """Weighted distinct colours in the three 2-D projections, coloured by class.

    Parameters
    ----------
    values : ndarray, shape (n, 3)
        Sampled pixels with data (input units), first three feature channels.
    labels : ndarray, shape (n,)
        Their classes (1..k).
    class_colours : ndarray, shape (k, 3), uint8
        Display colour of each class.
    centres : ndarray, shape (k, >=3)
        Cluster centres in input units.
    centre_colours : ndarray, shape (k, 3), uint8
        The centres' own colours on screen.
    names : three str
        Channel names for the axes.
    window : three (low, high)
        Axis ranges.

    Returns
    -------
    str
        PNG data URI.
    """
    colours, counts, classes = distinct_colours(values, labels, window)
    if len(colours) > MAX_POINTS:
        rng = np.random.default_rng(0)
        keep = rng.choice(len(colours), MAX_POINTS, replace=False, p=counts / counts.sum())
        colours, counts, classes = colours[keep], counts[keep], classes[keep]
    order = np.argsort(-counts, kind="stable")  # heavy colours first, light ones on top
    colours, counts, classes = colours[order], counts[order], classes[order]
    sizes = 3 + 120 * np.sqrt(counts / counts.max()) if len(counts) else counts
    point_colours = class_colours[np.clip(classes - 1, 0, len(class_colours) - 1)] / 255
    fig = _figure(12, 4.2)
    axes = fig.subplots(1, 3)
    for ax, (a, b) in zip(axes, [(0, 1), (0, 2), (1, 2)], strict=True):
        ax.scatter(
            colours[:, a], colours[:, b], s=sizes, c=point_colours, alpha=0.45, linewidths=0
        )
        for i, centre in enumerate(centres):
            ax.scatter(
                centre[a], centre[b], s=220, c=[centre_colours[i] / 255],
                edgecolors=[class_colours[i] / 255], linewidths=3, zorder=3,
            )
            ax.annotate(
                str(i + 1), (centre[a], centre[b]), xytext=(9, 7), textcoords="offset points",
                fontsize=10, fontweight="bold", zorder=4,
            )
        ax.set_xlim(window[a])
        ax.set_ylim(window[b])
        ax.set_xlabel(names[a])
        ax.set_ylabel(names[b])
        ax.set_aspect("equal", adjustable="box")
        ax.grid(True, alpha=0.25)
        ax.set_title(f"{names[a]}–{names[b]}", fontsize=11)
    return figure_uri(fig)


def class_boundaries(centres: Sequence[float]) -> np.ndarray:
    """Boundaries between the classes of one channel: midpoints of the sorted centres."""
    ordered = np.sort(np.asarray(centres, dtype=np.float64))
    return (ordered[1:] + ordered[:-1]) / 2


def value_histogram(
    values: np.ndarray,
    labels: np.ndarray,
    class_colours: np.ndarray,
    centres: Sequence[float],
    name: str,
) -> str:
    """Histogram of one channel's values stacked by class, with the class boundaries.

    Parameters
    ----------
    values : ndarray, shape (n,)
        Sampled values with data (input units).
    labels : ndarray, shape (n,)
        Their classes (1..k).
    class_colours : ndarray, shape (k, 3), uint8
    centres : sequence of float
        Cluster centres (input units).
    name : str
        Axis label.

    Returns
    -------
    str
        PNG data URI.
    """
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1
    integer = np.issubdtype(values.dtype, np.integer) and high - low < 256
    edges = np.arange(low - 0.5, high + 1.5) if integer else np.linspace(low, high, 257)
    k = len(class_colours)
    fig = _figure(12, 3.8)
    ax = fig.subplots()
    stacks = [values[labels == c] for c in range(1, k + 1)]
    ax.hist(
        stacks, bins=edges, stacked=True, histtype="stepfilled",
        color=[c / 255 for c in class_colours], label=[f"class {c}" for c in range(1, k + 1)],
    )
    counts, _ = np.histogram(values, bins=edges)
    nonzero = counts[counts > 0]
    if len(nonzero) and counts.max() > 50 * np.median(nonzero):
        ax.set_yscale("log")
    for boundary in class_boundaries(centres):
        ax.axvline(boundary, color="0.2", linestyle="--", linewidth=1)
    for i, centre in enumerate(centres):
        ax.axvline(centre, color=class_colours[i] / 255, linewidth=2.5, alpha=0.9)
    ax.set_xlabel(name)
    ax.set_ylabel("pixels in the sample")
    ax.set_xlim(edges[0], edges[-1])
    ax.grid(True, alpha=0.25)
    if k <= 12:  # classes 1..k in order (a stacked histogram lists its patches reversed)
        handles, texts = ax.get_legend_handles_labels()
        order = sorted(range(len(texts)), key=lambda i: int(texts[i].split()[-1]))
        ax.legend([handles[i] for i in order], [texts[i] for i in order],
                  loc="upper right", fontsize=9, ncols=min(k, 6))
    return figure_uri(fig)


def k_curve(curve: dict[str, float], chosen: int, scores: dict[str, float] | None = None) -> str:
    """The objective curve of automatic k: mse against k (log scale), the chosen k marked.

    Parameters
    ----------
    curve : dict of str to float
        ``{k: mse}`` as recorded by :func:`pipeline.autok.choose_k`.
    chosen : int
        The k that was picked.
    scores : dict of str to float, optional
        The rule's score of each candidate k, drawn on a second axis.

    Returns
    -------
    str
        PNG data URI.
    """
    ks = sorted(int(k) for k in curve)
    mse = [max(float(curve[str(k)]), 1e-300) for k in ks]
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    ax.plot(ks, mse, "o-", color="#2f6db5", label="mse")
    ax.set_yscale("log")
    ax.axvline(chosen, color="#d62728", linewidth=2, label=f"chosen k = {chosen}")
    ax.set_xlabel("k")
    ax.set_ylabel("mse (features)")
    ax.set_xticks(ks)
    ax.grid(True, alpha=0.25)
    if scores:
        other = ax.twinx()
        sk = sorted(int(k) for k in scores)
        other.bar(sk, [float(scores[str(k)]) for k in sk], color="0.6", alpha=0.35,
                  label="score")
        other.set_ylabel("score")
    ax.legend(loc="upper right", fontsize=9)
    return figure_uri(fig)
