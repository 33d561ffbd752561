"""Describe what an output store holds (``kmseg info``)."""

from __future__ import annotations

import zarr

from pipeline.errors import InputError
from pipeline.lock import current_holder
from pipeline.outputs import is_zarr_store


def describe_output(path: str) -> str:
    """A human-readable summary of a kmseg output store.

    An output whose root metadata does not say ``"status": "complete"`` (written last, once
    everything else is) is reported as INCOMPLETE and nothing of it is described.

    Raises
    ------
    InputError
        If ``path`` is not a kmseg output.
    """
    if not is_zarr_store(path):
        raise InputError(path, "no such output store (no Zarr metadata there)")
    try:
        root = zarr.open_group(path, mode="r")
    except Exception as exc:  # zarr raises several types for non-stores
        raise InputError(path, f"not a Zarr group ({type(exc).__name__})") from None
    meta = root.attrs.get("kmseg")
    if meta is None:
        raise InputError(path, "not a kmseg output (no 'kmseg' metadata)")
    status = meta.get("status", "?") if isinstance(meta, dict) else "?"
    lines = [f"{path}: kmseg {meta.get('version', '?')} output, status {status}"]
    holder = current_holder(path)
    if holder is not None:
        lines.append(f"being written now by {holder.describe()}")
    if status != "complete":
        # Only the root's status, written last, says the whole output is finished; groups
        # that say "complete" in an unfinished output may still miss the root's final write.
        lines.append("INCOMPLETE: the job did not finish; rerun the same command to redo it")
        return "\n".join(lines)
    names = meta.get("outputs")
    for name in names or [""]:
        try:
            group = root[name] if name else root
        except KeyError:
            group = None
        if not isinstance(group, zarr.Group):
            raise InputError(path, f"the output lists {name!r} but holds no such group")
        lines += _describe_image(name, group)
    return "\n".join(lines)


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
    for i, (centre, count) in enumerate(
        zip(meta["centres"], meta["pixels_per_cluster"], strict=True), start=1
    ):
        values = ", ".join(f"{v:.4g}" for v in centre)
        lines.append(f"{prefix}  cluster {i}: {count} px, centre [{values}]")
    timings = meta.get("timings", {})
    if timings:
        lines.append(prefix + "timings: " + ", ".join(f"{k}={v:.2f}" for k, v in timings.items()))
    return lines
