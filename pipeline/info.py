"""Describe what an output store holds (``kmseg info``, ``kmseg info --csv``)."""

from __future__ import annotations

import csv
import io
import os
import warnings
from typing import Any

import zarr

from pipeline.errors import InputError, KmsegWarning
from pipeline.lock import current_holder
from pipeline.measure import round_size, voxel_size
from pipeline.outputs import is_zarr_store, output_name

#: Leading columns of ``kmseg info --csv``; per-channel columns (``centre_R``, ``mean_R``,
#: ``min_R``, ``max_R``, ...) follow.
CSV_COLUMNS = (
    "image", "label", "pixels", "fraction", "size", "size_unit", "area_mm2", "volume_ml"
)
#: Per-class statistics written per channel, in this order.
CSV_STATISTICS = ("centre", "mean", "min", "max")


def open_output(path: str) -> tuple[zarr.Group, dict[str, Any], list[tuple[str, zarr.Group]]]:
    """Open a kmseg output store: its root group, root ``kmseg`` metadata and image groups.

    Returns
    -------
    root : zarr.Group
    meta : dict
        The root's ``kmseg`` attributes.
    images : list of (str, zarr.Group)
        ``(name, group)`` of each image: the group names of a multi-input output, else one
        entry ``("", root)``.

    Raises
    ------
    InputError
        If ``path`` is not a Zarr store or not a kmseg output.
    """
    root, meta = _open_root(path)
    return root, meta, _images(path, root, meta)


def _open_root(path: str) -> tuple[zarr.Group, dict[str, Any]]:
    if not is_zarr_store(path):
        raise InputError(path, "no such output store (no Zarr metadata there)")
    try:
        root = zarr.open_group(path, mode="r")
    except Exception as exc:  # zarr raises several types for non-stores
        raise InputError(path, f"not a Zarr group ({type(exc).__name__})") from None
    meta = root.attrs.get("kmseg")
    if not isinstance(meta, dict):
        raise InputError(path, "not a kmseg output (no 'kmseg' metadata)")
    return root, meta


def _images(path: str, root: zarr.Group, meta: dict[str, Any]) -> list[tuple[str, zarr.Group]]:
    names = meta.get("outputs")
    images = []
    # A batch root lists its images (perhaps none, if all failed); a single image is the root.
    for name in names if isinstance(names, list) else [""]:
        try:
            group = root[name] if name else root
        except KeyError:
            group = None
        if not isinstance(group, zarr.Group):
            raise InputError(path, f"the output lists {name!r} but holds no such group")
        images.append((name, group))
    return images


def describe_output(path: str) -> str:
    """A human-readable summary of a kmseg output store.

    An output whose root metadata does not say ``"status": "complete"`` (written last, once
    everything else is) is reported as INCOMPLETE and nothing of it is described.

    Raises
    ------
    InputError
        If ``path`` is not a kmseg output.
    """
    root, meta = _open_root(path)
    status = meta.get("status", "?")
    lines = [f"{path}: kmseg {meta.get('version', '?')} output, status {status}"]
    holder = current_holder(path)
    if holder is not None:
        lines.append(f"being written now by {holder.describe()}")
    if status == "partial":
        # A batch that went on past failing inputs (on_error: continue): the finished images
        # are described, the failed ones listed.
        failed = meta.get("failed") or []
        lines.append(f"PARTIAL: {len(failed)} input(s) failed; rerun the same command to retry "
                     "them")
        lines += [f"  failed: {failure_line(f)}" for f in failed if isinstance(f, dict)]
    elif status != "complete":
        # Only the root's status, written last, says the whole output is finished; groups
        # that say "complete" in an unfinished output may still miss the root's final write.
        lines.append("INCOMPLETE: the job did not finish; rerun the same command to redo it")
        return "\n".join(lines)
    for name, group in _images(path, root, meta):
        lines += _describe_image(name, group)
    return "\n".join(lines)


def failure_line(failure: dict[str, Any]) -> str:
    """One line for an entry of a partial batch's ``failed`` list: the input and its error
    (the error names the input already when it comes from kmseg's own checks)."""
    where = str(failure.get("path") or failure.get("input"))
    error = str(failure.get("error"))
    return error if error.startswith(where) else f"{where}: {error}"


def image_name(name: str, meta: dict[str, Any]) -> str:
    """The name of an image of an output: its group name, else the input's file name."""
    return name or output_name(str(meta.get("input", {}).get("path") or "image"))


def class_records(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-class records of an image's ``kmseg`` metadata (``kmseg.classes``).

    Outputs written before ``classes`` existed get the records their metadata allows:
    pixels, fraction, size and centre.
    """
    if meta.get("classes"):
        return list(meta["classes"])
    counts = [int(c) for c in meta.get("pixels_per_cluster", [])]
    total = sum(counts)
    inp = meta.get("input", {})
    size, size_unit, _ = voxel_size(inp.get("spacing") or (), inp.get("unit"))
    names = list(inp.get("channel_names") or [])
    records = []
    for i, (count, centre) in enumerate(zip(counts, meta.get("centres", []), strict=False)):
        if len(names) >= len(centre):
            labels = names[: len(centre)]
        else:
            labels = ["value"] if len(centre) == 1 else [f"c{j}" for j in range(len(centre))]
        records.append(
            {
                "label": i + 1,
                "pixels": count,
                "fraction": count / total if total else None,
                "size": round_size(count * size) if size is not None else None,
                "size_unit": size_unit,
                "centre": dict(zip(labels, centre, strict=True)),
            }
        )
    return records


def size_text(record: dict[str, Any]) -> str:
    """``", 171.4 µm² (0.0001714 mm²)"``: a class's physical size for ``kmseg info``.

    The size in the input's unit, then in mm² (2-D) or mL (3-D) when the unit is another
    known length; empty for an input without a physical pixel size (a photo).
    """
    size, unit = record.get("size"), record.get("size_unit")
    if size is None or not unit:
        return ""
    text = f", {size:.4g} {unit}"
    if record.get("volume_ml") is not None:
        text += f" ({record['volume_ml']:.4g} mL)"
    elif record.get("area_mm2") is not None and unit != "mm²":
        text += f" ({record['area_mm2']:.4g} mm²)"
    return text


def classes_csv(path: str) -> str:
    """``kmseg info --csv``: one row per image and class of an output store.

    Columns: :data:`CSV_COLUMNS`, then ``centre_C``, ``mean_C``, ``min_C`` and ``max_C`` for
    each measured channel ``C`` (``R``, ``G``, ``B``; ``value`` for one channel). Cells
    without a value (a size without a physical pixel size, a class without pixels) are empty.

    A ``partial`` batch (inputs failed with ``on_error: continue``) gives the rows of its
    finished images, with one :class:`~pipeline.errors.KmsegWarning` naming the failed inputs.

    Raises
    ------
    InputError
        If the output is missing, not a kmseg output or unfinished.
    """
    _, meta, groups = open_output(path)
    status = meta.get("status")
    if status == "partial":
        failed = [f for f in meta.get("failed") or [] if isinstance(f, dict)]
        names = ", ".join(str(f.get("path") or f.get("input")) for f in failed)
        warnings.warn(f"{path}: a partial batch; {len(failed)} input(s) failed and have no rows: "
                      f"{names}", KmsegWarning, stacklevel=2)
    elif status != "complete":
        raise InputError(path, f"the job did not finish (status {status}); no measurements")
    rows: list[dict[str, Any]] = []
    channels: list[str] = []
    for name, group in groups:
        image_meta = dict(group.attrs.get("kmseg", {}))
        if image_meta.get("status") != "complete":
            raise InputError(os.path.join(path, name), "the job did not finish for this image")
        for record in class_records(image_meta):
            row = {key: record.get(key) for key in CSV_COLUMNS[1:]}
            row["image"] = image_name(name, image_meta)
            for statistic in CSV_STATISTICS:
                for channel, value in (record.get(statistic) or {}).items():
                    if channel not in channels:
                        channels.append(channel)
                    row[f"{statistic}_{channel}"] = value
            rows.append(row)
    columns = list(CSV_COLUMNS) + [f"{s}_{c}" for c in channels for s in CSV_STATISTICS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def _describe_image(name: str, group: zarr.Group) -> list[str]:
    meta = group.attrs.get("kmseg", {})
    prefix = f"[{name}] " if name else ""
    if meta.get("status") != "complete":
        return [f"{prefix}INCOMPLETE: the job did not finish; rerun the same command to redo it"]
    inp = meta.get("input", {})
    ome = group.attrs.get("ome", {})
    levels = [d["path"] for d in ome.get("multiscales", [{}])[0].get("datasets", [])]
    shapes = [tuple(group[p].shape) for p in levels]
    unit = inp.get("unit") or "pixel"
    lines = [
        f"{prefix}input: {inp.get('path')} ({inp.get('format')}, axes {inp.get('axes')}, "
        f"shape {tuple(inp.get('shape', []))}, {inp.get('dtype')}, "
        f"spacing {tuple(inp.get('spacing', []))} {unit})",
        f"{prefix}k={meta['k']} engine={meta['engine']}"
        + (" (proven optimal)" if meta.get("optimal") else "")
        + f" mse={meta['mse']:.6g} inertia={meta['inertia']:.6g}"
        f" random_state={meta.get('random_state')}",
        f"{prefix}recoloured image levels: {', '.join(str(s) for s in shapes)}",
        f"{prefix}labels: labels/clusters (0 = no data, {meta.get('pixels_without_data', 0)} px)",
    ]
    records = {r.get("label"): r for r in class_records(meta)}
    for i, (centre, count) in enumerate(
        zip(meta["centres"], meta["pixels_per_cluster"], strict=True), start=1
    ):
        values = ", ".join(f"{v:.4g}" for v in centre)
        size = size_text(records.get(i, {}))
        lines.append(f"{prefix}  cluster {i}: {count} px{size}, centre [{values}]")
    mask = meta.get("mask")
    if isinstance(mask, dict):
        fraction = mask.get("fraction")
        inside = f", {fraction:.1%} of the pixels inside" if isinstance(fraction, float) else ""
        lines.append(f"{prefix}mask: {mask.get('method')} {mask.get('source') or ''}{inside}; "
                     "labels/mask")
    k_auto = meta.get("k_auto")
    if isinstance(k_auto, dict):
        lines.append(f"{prefix}k chosen automatically: {k_auto.get('k')} of "
                     f"{k_auto.get('k_min')}..{k_auto.get('k_max')} (a heuristic)")
    timings = meta.get("timings", {})
    if timings:
        lines.append(prefix + "timings: " + ", ".join(f"{k}={v:.2f}" for k, v in timings.items()))
    return lines
