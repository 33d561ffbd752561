"""The report page: one self-contained HTML document built with the standard library.

Every picture is embedded as a ``data:`` URI and the style sheet is inline, so the page can be
mailed or archived alone: it refers to no file and no network address.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from pipeline.info import failure_line
from pipeline.report.data import ImageData, Plane
from pipeline.report.plots import colour_projections, k_curve, value_histogram
from pipeline.report.render import (
    class_colours,
    hex_colour,
    overlay,
    paint_labels,
    physical_shape,
    png_data_uri,
    to_display,
)

#: Marker in every page kmseg writes (a page with it may be replaced by a new report).
GENERATOR = "kmseg report"
#: Longest side of the pictures on the page, in pixels.
DISPLAY_MAX = 720
#: Pictures smaller than this are enlarged (by a whole factor) to about this size.
DISPLAY_MIN = 360
#: Longest side of the thumbnails of a multi-image page.
THUMB_MAX = 120

_STYLE = """
:root { --ink:#1d2329; --muted:#5d6b78; --line:#dde3e9; --panel:#f5f7f9; --accent:#2f6db5; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
header { background: #1f3447; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; color: #c5d3e0; font-size: 13px; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 32px 48px; }
section.image { margin-top: 28px; padding-top: 8px; }
section.image + section.image { border-top: 1px solid var(--line); }
main > section.image:first-child { margin-top: 0; }
h2 { font-size: 20px; margin: 16px 0 4px; }
h3 { font-size: 15px; margin: 22px 0 8px; color: var(--accent); text-transform: uppercase;
     letter-spacing: .04em; }
p.source { color: var(--muted); margin: 0 0 10px; word-break: break-all; }
.facts { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.fact { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
        padding: 6px 12px; min-width: 110px; }
.fact b { display: block; font-size: 16px; }
.fact span { color: var(--muted); font-size: 12px; }
.views { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
figure { margin: 0; background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
         padding: 8px; text-align: center; }
figure img { max-width: 100%; height: auto; image-rendering: auto; }
figure.plot img { width: 100%; }
figure.plot.narrow img { width: auto; max-width: 100%; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
.unavailable { display: flex; align-items: center; justify-content: center; min-height: 160px;
               color: var(--muted); font-style: italic; padding: 12px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: right;
         vertical-align: middle; white-space: nowrap; }
th { background: var(--panel); font-weight: 600; font-size: 12px; color: var(--muted);
     text-align: right; }
th:first-child, td:first-child, td.left, th.left { text-align: left; }
.swatch { display: inline-block; width: 16px; height: 16px; border-radius: 3px;
          border: 1px solid rgba(0,0,0,.25); vertical-align: -3px; margin-right: 6px; }
.bar { display: inline-block; height: 9px; background: var(--accent); border-radius: 2px;
       vertical-align: 0; margin-right: 6px; }
.stack { display: flex; height: 14px; width: 260px; border-radius: 3px; overflow: hidden;
         border: 1px solid var(--line); }
.stack span { display: block; height: 100%; }
.small { font-size: 12px; color: var(--muted); }
.notes { background: #fff8e6; border: 1px solid #f0d9a0; border-radius: 6px;
         padding: 8px 12px; margin: 10px 0; }
.notes li { margin: 2px 0; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
      padding: 10px; overflow-x: auto; font-size: 12px; }
td img.thumb { border-radius: 3px; border: 1px solid var(--line); }
"""


def e(value: Any) -> str:
    """HTML-escaped text of a value."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ``digits`` significant digits, thousands separated."""
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    value = float(value)
    if not np.isfinite(value):
        return "–"
    if value != 0 and (abs(value) >= 1e7 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    if float(value).is_integer() and abs(value) < 1e7:
        return f"{int(value):,}"
    return f"{value:,.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"


def display_window(image: ImageData) -> tuple[list[tuple[float, float]], list[int]]:
    """Value window of each displayed channel and which channels are displayed.

    Colour images show their first three feature channels over the full range (the dtype's
    for integers, the data's for floats), so colours are true. One channel is shown in grey
    over the 0.5–99.5 percentiles of the input preview, or the centres' range without it.
    """
    meta = image.meta
    dtype = np.dtype(meta.get("input", {}).get("dtype", "float64"))
    scaled = meta.get("features", {}).get("scaled_from") or [0.0, 1.0]
    if image.colour:
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            full = (float(info.min), float(info.max))
        else:
            full = (float(scaled[0]), float(scaled[1]))
        return [full] * 3, image.channels[:3]
    channel = image.channels[0] if image.channels else 0
    samples = [
        _channel(p.input, channel)[p.labels > 0] for p in image.planes if p.input is not None
    ]
    values = np.concatenate(samples).astype(np.float64) if samples else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size:
        low, high = np.percentile(values, [0.5, 99.5])
    else:
        centres = np.asarray(meta.get("centres", [[0.0]]), dtype=np.float64)[:, 0]
        low, high = float(centres.min()), float(centres.max())
        pad = (high - low) * 0.1
        low, high = low - pad, high + pad
    if high <= low:
        high = low + 1.0
    return [(float(low), float(high))], [channel]


def _channel(values: np.ndarray, channel: int) -> np.ndarray:
    return values if values.ndim == 2 else values[..., channel]


def _recoloured_channels(image: ImageData, plane: Plane, channels: list[int]) -> list[int]:
    # The recoloured image keeps the input's channels; without a channel axis, channel 0.
    return channels if plane.recoloured.ndim == 3 else [0]


def _fit(rgb: np.ndarray, plane: Plane, longest: int, smooth: bool) -> np.ndarray:
    """Resize a picture to its physical aspect ratio, its longer side at most ``longest``.

    Small pictures are enlarged by a whole factor to about :data:`DISPLAY_MIN` pixels, pixel for
    pixel; ``smooth`` (Lanczos) applies only when a picture is reduced, so that an enlarged
    input shows the same pixels as the recoloured image and labels beside it.
    """
    side = max(rgb.shape[:2])
    if side < DISPLAY_MIN and longest > DISPLAY_MIN:
        side *= -(-DISPLAY_MIN // side)
    shape = physical_shape(rgb.shape[:2], plane.spacing, min(longest, side))
    if shape == rgb.shape[:2]:
        return rgb
    reducing = shape[0] < rgb.shape[0] or shape[1] < rgb.shape[1]
    method = Image.Resampling.LANCZOS if smooth and reducing else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]), method))


def _jpeg_uri(rgb: np.ndarray) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=85, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(uri: str, alt: str, css: str = "") -> str:
    return f'<img src="{uri}" alt="{e(alt)}"{f" class={css!r}" if css else ""}>'


def plane_views(image: ImageData, plane: Plane, colours: np.ndarray) -> str:
    """Input, recoloured image and labels over the input, side by side."""
    window, channels = display_window(image)
    recoloured = to_display(
        plane.recoloured, window, _recoloured_channels(image, plane, channels)
    )
    # No data (label 0: transparent, NaN, outside valid_range) white, as in the labels picture,
    # not the black its recoloured value (0 or NaN) would give.
    no_data = plane.labels == 0
    recoloured[no_data] = 255
    recoloured_caption = "recoloured (each pixel its class centre" + (
        "; white: no data)" if no_data.any() else ")"
    )
    cells = []
    if plane.input is not None:
        base = to_display(plane.input, window, channels)
        cells.append(
            f"<figure>{_img(_jpeg_uri(_fit(base, plane, DISPLAY_MAX, True)), 'input')}"
            f"<figcaption>input</figcaption></figure>"
        )
        over = overlay(base, plane.labels, colours)
        labelled = _img(_jpeg_uri(_fit(over, plane, DISPLAY_MAX, False)), "labels over input")
        label_caption = "labels over the input"
    else:
        cells.append(
            f'<figure><div class="unavailable">input unavailable: '
            f"{e(image.input_note or 'unknown reason')}</div>"
            f"<figcaption>input</figcaption></figure>"
        )
        painted = paint_labels(plane.labels, colours)
        labelled = _img(png_data_uri(_fit(painted, plane, DISPLAY_MAX, False)), "labels")
        label_caption = "labels (white: no data)"
    cells.append(
        f"<figure>{_img(png_data_uri(_fit(recoloured, plane, DISPLAY_MAX, False)), 'recoloured')}"
        f"<figcaption>{recoloured_caption}</figcaption></figure>"
    )
    cells.append(f"<figure>{labelled}<figcaption>{label_caption}</figcaption></figure>")
    title = "" if plane.title == "image" else f'<p class="small">{e(plane.title)}</p>'
    return f'{title}<div class="views">{"".join(cells)}</div>'


def centre_display(image: ImageData) -> np.ndarray:
    """The centres' colours on screen, (k, 3) uint8, with the page's display window."""
    window, channels = display_window(image)
    centres = np.asarray(image.meta.get("centres", []), dtype=np.float64)
    if not len(centres):
        return np.zeros((0, 3), np.uint8)
    # Centres hold the feature channels only: channel j of the display is centre column j.
    columns = list(range(len(channels))) if image.colour else [0]
    return to_display(centres[None, :, :], window, columns)[0]


def _per_channel(values: dict[str, Any] | None) -> str:
    if not values:
        return "–"
    return " · ".join(fmt(v) for v in values.values())


def class_table(image: ImageData, colours: np.ndarray) -> str:
    """The palette: class colour, centre colour and values, pixels, fraction, size, values."""
    centre_rgb = centre_display(image)
    dims = len(image.meta.get("input", {}).get("spacing", [])) or 2
    extra_key, extra_head = ("volume_ml", "mL") if dims == 3 else ("area_mm2", "mm²")
    has_extra = any(extra_key in r for r in image.classes)
    units = {r.get("size_unit") for r in image.classes if r.get("size_unit")}
    size_head = f"size ({next(iter(units))})" if len(units) == 1 else "size"
    has_size = bool(units)
    head = ["class", "centre", "pixels", "fraction"]
    head += [size_head] if has_size else []
    head += [extra_head] if has_extra and extra_head not in size_head else []
    names = list(next(iter(image.classes), {}).get("centre", {}) or {})
    suffix = f" ({' · '.join(names)})" if len(names) > 1 else ""
    head += [f"{s}{suffix}" for s in ("mean", "min", "max")]
    head[1] += suffix
    rows = []
    biggest = max((r.get("fraction") or 0 for r in image.classes), default=0) or 1
    for i, record in enumerate(image.classes):
        fraction = record.get("fraction")
        width = 0 if fraction is None else round(80 * fraction / biggest)
        centre_hex = hex_colour(centre_rgb[i]) if i < len(centre_rgb) else "#ffffff"
        cells = [
            f'<td><span class="swatch" style="background:{hex_colour(colours[i])}"></span>'
            f"{record['label']}</td>",
            f'<td class="left"><span class="swatch" style="background:{centre_hex}"></span>'
            f"{_per_channel(record.get('centre'))}</td>",
            f"<td>{fmt(record.get('pixels'))}</td>",
            f'<td><span class="bar" style="width:{width}px"></span>'
            f"{'–' if fraction is None else f'{100 * fraction:.2f} %'}</td>",
        ]
        if has_size:
            cells.append(f"<td>{fmt(record.get('size'))}</td>")
        if has_extra and extra_head not in size_head:
            cells.append(f"<td>{fmt(record.get(extra_key))}</td>")
        cells += [f"<td>{_per_channel(record.get(s))}</td>" for s in ("mean", "min", "max")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{e(h)}</th>" for h in head)
    note = (
        "" if has_size else
        '<p class="small">The input has no physical pixel size: sizes are in pixels only.</p>'
    )
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>{note}"


def distribution(image: ImageData, colours: np.ndarray) -> str:
    """The colour distribution plot, or why there is none."""
    planes = [p for p in image.planes if p.input is not None]
    if not planes:
        return '<p class="small">Needs the input, which is unavailable.</p>'
    window, channels = display_window(image)
    centres = np.asarray(image.meta.get("centres", []), dtype=np.float64)
    values, labels = [], []
    for plane in planes:
        inside = plane.labels > 0
        values.append(
            plane.input[inside] if plane.input.ndim == 3 else plane.input[inside][:, None]
        )
        labels.append(plane.labels[inside])
    pixels = np.concatenate(values)
    classes = np.concatenate(labels).astype(np.intp)
    if not len(pixels):
        return '<p class="small">No pixels with data in the preview.</p>'
    names = list(next(iter(image.classes), {}).get("centre", {}).keys()) or ["value"]
    if image.colour:
        uri = colour_projections(
            pixels[:, channels], classes, colours, centres[:, :3], centre_display(image),
            names[:3], window,
        )
        caption = (
            f"Distinct colours of {len(pixels):,} input pixels (the preview), each drawn in its "
            "class's colour with an area proportional to its pixel count; large rimmed discs "
            "are the centres."
        )
    else:
        source = image.meta.get("input", {}).get("metadata", {})
        unit = "(HU)" if source.get("modality") == "CT" and "rescale_slope" in source else ""
        uri = value_histogram(
            pixels[:, channels[0]], classes, colours, centres[:, 0],
            f"{names[0]} {unit}".strip(),
        )
        caption = (
            f"Values of {len(pixels):,} input pixels (the preview) stacked by class; dashed "
            "lines are the class boundaries, solid lines the centres."
        )
    return f'<figure class="plot">{_img(uri, "colour distribution")}' \
           f"<figcaption>{e(caption)}</figcaption></figure>"


def k_choice(image: ImageData) -> str:
    """The objective curve of an automatically chosen k (``kmseg.k_auto``), or nothing."""
    auto = image.meta.get("k_auto")
    if not isinstance(auto, dict) or not auto.get("curve"):
        return ""
    uri = k_curve(auto["curve"], image.k, auto.get("scores"))
    rule = auto.get("rule", "?")
    caption = f"k = {image.k} chosen automatically by the rule {rule} (a heuristic)."
    return (
        f'<h3>Choice of k</h3><figure class="plot narrow">{_img(uri, "k curve")}'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


def facts(image: ImageData) -> str:
    """Key numbers of an image: k, engine, mse, pixels with and without data."""
    meta = image.meta
    with_data = sum(int(r.get("pixels") or 0) for r in image.classes)
    engine = str(meta.get("engine", "?")) + (" (proven optimal)" if meta.get("optimal") else "")
    items = [
        ("k", meta.get("k")),
        ("engine", engine),
        ("mse (features)", fmt(meta.get("mse"))),
        ("pixels with data", fmt(with_data)),
        ("pixels without data", fmt(meta.get("pixels_without_data", 0))),
        ("total time", f"{fmt(meta.get('timings', {}).get('total_s'), 3)} s"),
    ]
    return '<div class="facts">' + "".join(
        f'<div class="fact"><b>{e(v)}</b><span>{e(k)}</span></div>' for k, v in items
    ) + "</div>"


def source_line(image: ImageData) -> str:
    inp = image.meta.get("input", {})
    spacing = inp.get("spacing") or []
    unit = inp.get("unit")
    spacing_text = (
        "pixel size " + " × ".join(fmt(s) for s in spacing) + f" {unit}"
        if unit else "no physical pixel size"
    )
    shape = " × ".join(str(s) for s in inp.get("shape", []))
    return (
        f'<p class="source">{e(inp.get("path"))} · {e(inp.get("format"))} · axes '
        f"{e(inp.get('axes'))} · {e(shape)} · {e(inp.get('dtype'))} · {e(spacing_text)}"
        "</p>"
    )


def run_details(image: ImageData, notes: Sequence[str]) -> str:
    """Timings, warnings, engine details and the full config."""
    meta = image.meta
    timings = meta.get("timings", {})
    timing_rows = "".join(
        f"<tr><td>{e(k.removesuffix('_s'))}</td><td>{fmt(v, 3)} s</td></tr>"
        for k, v in timings.items()
    )
    warnings = list(meta.get("warnings") or []) + list(notes)
    warning_html = (
        '<div class="notes"><b>Warnings</b><ul>'
        + "".join(f"<li>{e(w)}</li>" for w in warnings)
        + "</ul></div>"
        if warnings
        else '<p class="small">No warnings were recorded.</p>'
    )
    level = (
        f"Pictures from output level {image.level} "
        f"({' × '.join(str(s) for s in image.level_shape)} px)."
    )
    engine = json.dumps(meta.get("engine_info", {}), indent=2, default=str)
    config = json.dumps(meta.get("config", {}), indent=2, default=str)
    return (
        f"{warning_html}"
        f'<table style="width:auto"><tr><th>stage</th><th>time</th></tr>{timing_rows}</table>'
        f'<p class="small">{e(level)} kmseg {e(meta.get("version", "?"))}, random_state '
        f"{e(meta.get('random_state'))}, inertia {fmt(meta.get('inertia'))}.</p>"
        f"<details><summary>engine details</summary><pre>{e(engine)}</pre></details>"
        f"<details><summary>configuration</summary><pre>{e(config)}</pre></details>"
    )


def colours_of(image: ImageData) -> np.ndarray:
    """Class colours 1..k: the output's ``image-label`` colours (what napari shows), else
    distinct ones (:func:`class_colours`)."""
    return image.label_rgb if image.label_rgb is not None else class_colours(image.k)


def image_section(image: ImageData, anchor: str) -> str:
    """One image's section: pictures, palette, distribution, run details."""
    colours = colours_of(image)
    notes = [image.input_note] if image.input_note else []
    views = "".join(plane_views(image, plane, colours) for plane in image.planes)
    return (
        f'<section class="image" id="{e(anchor)}"><h2>{e(image.name)}</h2>'
        f"{source_line(image)}{facts(image)}"
        f"<h3>Images</h3>{views}"
        f"<h3>Classes</h3>{class_table(image, colours)}"
        f"<h3>Colour distribution</h3>{distribution(image, colours)}{k_choice(image)}"
        f"<h3>Run</h3>{run_details(image, notes)}</section>"
    )


def _thumbnail(image: ImageData) -> str:
    plane = image.planes[0]
    window, channels = display_window(image)
    rgb = to_display(plane.recoloured, window, _recoloured_channels(image, plane, channels))
    return _img(png_data_uri(_fit(rgb, plane, THUMB_MAX, False)), image.name, "thumb")


def summary_table(images: Sequence[ImageData], anchors: Sequence[str]) -> str:
    """A table of the images of a multi-input output: thumbnail, size, k, class fractions."""
    rows = []
    for image, anchor in zip(images, anchors, strict=True):
        colours = colours_of(image)
        parts = "".join(
            f'<span style="width:{100 * (r.get("fraction") or 0):.3f}%;'
            f'background:{hex_colour(colours[i])}" title="class {r["label"]}: '
            f'{100 * (r.get("fraction") or 0):.1f} %"></span>'
            for i, r in enumerate(image.classes)
        )
        shape = " × ".join(str(s) for s in image.meta.get("input", {}).get("shape", []))
        name = f'<a href="#{e(anchor)}">{e(image.name)}</a>' if image.full else e(image.name)
        rows.append(
            f"<tr><td>{_thumbnail(image)}</td>"
            f'<td class="left">{name}</td>'
            f"<td>{e(shape)}</td><td>{e(image.k)}</td><td>{e(image.meta.get('engine'))}</td>"
            f"<td>{fmt(image.meta.get('mse'))}</td>"
            f'<td class="left"><div class="stack">{parts}</div></td></tr>'
        )
    return (
        "<h3>Images</h3><table><tr><th>thumbnail</th><th class='left'>image</th>"
        "<th>shape</th><th>k</th><th>engine</th><th>mse</th><th class='left'>class fractions"
        f"</th></tr>{''.join(rows)}</table>"
    )


def build_page(store: str, root_meta: dict[str, Any], images: Sequence[ImageData]) -> str:
    """The whole HTML document of an output store."""
    anchors = [f"image-{i}" for i in range(len(images))]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = summary_table(images, anchors) if len(images) > 1 else ""
    sections = "".join(
        image_section(image, anchor)
        for image, anchor in zip(images, anchors, strict=True) if image.full
    )
    shown = sum(image.full for image in images)
    if shown < len(images):
        summary += (
            f'<p class="notes">The first {shown} of the {len(images)} images are shown in full '
            f"below; for any other, <code>kmseg report {e(store)}/NAME</code> writes its own page."
            "</p>"
        )
    count = f"{len(images)} images" if len(images) > 1 else "1 image"
    failed = [f for f in root_meta.get("failed") or [] if isinstance(f, dict)]
    if failed:  # a partial batch (on_error: continue)
        items = "".join(f"<li>{e(failure_line(f))}</li>" for f in failed)
        summary = (f"<section><h2>{len(failed)} input(s) failed</h2><ul>{items}</ul>"
                   f"</section>{summary}")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f'<meta name="generator" content="{GENERATOR} {e(root_meta.get("version", ""))}">'
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>kmseg report – {e(store)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>kmseg report</h1><p>{e(store)} · {count} · written {e(now)}</p></header>"
        f"<main>{summary}{sections}</main></body></html>\n"
    )
