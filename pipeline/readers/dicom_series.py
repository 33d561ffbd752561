"""DICOM series integrity: which slices form one volume, in which order, how regularly spaced.

The slices of a volume are the files of a series folder or the frames of a multi-frame file.
Before they are stacked, :func:`arrange` checks them; nothing inconsistent is stacked silently:

* Localizers (scouts, ``ImageType`` containing ``LOCALIZER``) among other slices are dropped,
  with a :class:`~pipeline.errors.KmsegWarning` naming the files.
* Slice orientations (``ImageOrientationPatient``) must agree. A few single slices of another
  orientation next to an obvious majority (at most a quarter of it; a scout saved without its
  ``ImageType``) are dropped with a warning; any other mix is refused.
* Sizes (``Rows`` x ``Columns``), pixel spacings and pixel formats (samples, bits, signedness,
  photometric interpretation) must agree, else the series is refused.
* Slices are sorted by ``ImagePositionPatient`` projected on the slice normal (the cross product
  of the row and column directions). Slices sharing a position are refused (several
  acquisitions, echoes or phases in one series), except exact copies (the same
  ``SOPInstanceUID``), which are dropped with a warning.
* The spacing is the smallest step between positions when every step is a whole multiple of
  it, else the median step. Steps that differ from it by more than 10 % are missing slices (a
  step of about n spacings) or irregular spacing. Either gives one
  warning naming the folder and the gaps, or, with ``missing_slices="error"``, an
  :class:`~pipeline.errors.InputError`. The slices are then stacked one after another at the
  spacing, closing the gaps (no slice is inserted); the warning says how far slices moved.
* Without positions, slices are sorted by ``InstanceNumber`` (refused when two share one), else
  kept in file-name order with a warning.

Every refusal is one line naming the folder (or the multi-frame file) and the problem.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from pipeline.errors import InputError, KmsegWarning

#: Direction cosines closer than this are the same orientation.
_ORIENTATION_TOLERANCE = 1e-3
#: Positions closer than this (mm) along the normal are the same position.
_POSITION_TOLERANCE = 1e-3
#: A step differing from the spacing by more than this fraction is a gap.
_STEP_TOLERANCE = 0.1
#: File names listed in one message, at most.
_NAMES_SHOWN = 3


@dataclass
class Plane:
    """One slice of a DICOM image: a file of a series folder, or a frame of a multi-frame file.

    Attributes
    ----------
    name : str
        File name inside the series folder; ``""`` when the image is a single file.
    frame : int
        Frame index inside the file (0 for single-frame files).
    ds : Dataset
        The file's header (read without pixel data).
    float_dtype : numpy dtype or None
        ``float32``/``float64`` for Float Pixel Data, else None.
    multiframe : bool
        Whether the file holds several frames.
    """

    name: str
    frame: int
    ds: Dataset
    float_dtype: Any = None
    multiframe: bool = False

    @property
    def label(self) -> str:
        """How messages name this slice: its file name, or its frame number (1-based)."""
        if self.multiframe:
            return f"frame {self.frame + 1}"
        return self.name or "the file"


@dataclass
class SeriesLayout:
    """The slices of a volume in stacking order, and how they were ordered.

    Attributes
    ----------
    planes : list of Plane
        The slices kept, in order along the slice normal (z).
    sort : str
        ``"single"``, ``"position"``, ``"instance"`` or ``"file"``.
    slice_spacing : float or None
        Spacing between slices in mm, if known.
    metadata : dict
        Facts for the output metadata (dropped files, gaps found).
    """

    planes: list[Plane]
    sort: str
    slice_spacing: float | None
    metadata: dict[str, Any] = field(default_factory=dict)


def attribute(plane: Plane, sequence: str, name: str, default: Any) -> Any:
    """An attribute from the per-frame, then the shared functional groups, then the top level.

    Parameters
    ----------
    plane : Plane
        The slice.
    sequence : str
        The functional group macro holding the attribute (``"PlanePositionSequence"``, ...).
    name : str
        The attribute keyword.
    default : object
        Returned when the attribute is absent or empty.
    """
    ds = plane.ds
    for groups, index in (
        (ds.get("PerFrameFunctionalGroupsSequence"), plane.frame),
        (ds.get("SharedFunctionalGroupsSequence"), 0),
    ):
        if groups is not None and index < len(groups):
            items = groups[index].get(sequence)
            if items and name in items[0]:
                value = items[0].get(name)
                if value not in (None, ""):
                    return value
    value = ds.get(name)
    return default if value in (None, "") else value


def arrange(path: str, planes: list[Plane], *, missing_slices: str = "warn") -> SeriesLayout:
    """Check that the slices form one volume and order them.

    Parameters
    ----------
    path : str
        The series folder or multi-frame file, named in messages.
    planes : list of Plane
        Every image slice found.
    missing_slices : {"warn", "error"}
        What missing slices or irregular spacing give.

    Returns
    -------
    SeriesLayout

    Raises
    ------
    InputError
        Mixed orientations, sizes or pixel formats; several slices at one position or with one
        InstanceNumber; missing slices with ``missing_slices="error"``.
    """
    if len(planes) == 1:
        return SeriesLayout(planes, "single", None)
    metadata: dict[str, Any] = {}
    planes = _drop_localizers(path, planes, metadata)
    planes = _one_orientation(path, planes, metadata)
    _one_pixel_format(path, planes)
    if len(planes) == 1:
        return SeriesLayout(planes, "single", None, metadata)
    return _order(path, planes, metadata, missing_slices)


def _names(planes: Sequence[Plane]) -> str:
    """``a.dcm, b.dcm, c.dcm and 4 more``."""
    labels = [p.label for p in planes]
    shown = ", ".join(labels[:_NAMES_SHOWN])
    more = len(labels) - _NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _mm(value: float) -> str:
    """A length in mm as written in messages: 4, 2.5, -150.25."""
    return f"{round(float(value), 3):g}"


def _drop_localizers(path: str, planes: list[Plane], metadata: dict[str, Any]) -> list[Plane]:
    def is_localizer(plane: Plane) -> bool:
        kinds = plane.ds.get("ImageType") or []
        kinds = [kinds] if isinstance(kinds, str) else kinds
        return any(str(k).strip().upper() == "LOCALIZER" for k in kinds)

    scouts = [p for p in planes if is_localizer(p)]
    if not scouts or len(scouts) == len(planes):
        return planes
    warnings.warn(
        f"{path}: dropped {len(scouts)} localizer image(s) ({_names(scouts)}) from the series",
        KmsegWarning,
        stacklevel=4,
    )
    metadata["dropped_localizers"] = [p.label for p in scouts]
    return [p for p in planes if not is_localizer(p)]


def orientation(plane: Plane) -> np.ndarray | None:
    """The row and column direction cosines (6 floats) of a slice, or None."""
    value = attribute(plane, "PlaneOrientationSequence", "ImageOrientationPatient", None)
    if value is None or len(value) != 6:
        return None
    try:
        out = np.asarray([float(v) for v in value])
    except (TypeError, ValueError):
        return None
    return out if np.all(np.isfinite(out)) else None


def _one_orientation(path: str, planes: list[Plane], metadata: dict[str, Any]) -> list[Plane]:
    groups: list[tuple[np.ndarray | None, list[Plane]]] = []
    for plane in planes:
        cosines = orientation(plane)
        for key, members in groups:
            same = (key is None and cosines is None) or (
                key is not None
                and cosines is not None
                and float(np.max(np.abs(key - cosines))) < _ORIENTATION_TOLERANCE
            )
            if same:
                members.append(plane)
                break
        else:
            groups.append((cosines, [plane]))
    if len(groups) == 1:
        return planes
    groups.sort(key=lambda g: len(g[1]), reverse=True)
    (key, majority), others = groups[0], groups[1:]
    strays = [p for _, members in others for p in members]
    if (
        key is not None
        and len(majority) >= 2
        and all(len(members) == 1 for _, members in others)
        and len(strays) <= max(1, len(majority) // 4)
    ):
        warnings.warn(
            f"{path}: dropped {_names(strays)}: orientation differs from the other "
            f"{len(majority)} slices of the series (a localizer?)",
            KmsegWarning,
            stacklevel=4,
        )
        metadata["dropped_other_orientation"] = [p.label for p in strays]
        return [p for p in planes if any(p is m for m in majority)]

    def describe(cosines: np.ndarray | None) -> str:
        if cosines is None:
            return "none"
        return "[" + ", ".join(f"{round(float(c), 4):g}" for c in cosines) + "]"

    parts = [f"{len(members)} with {describe(c)} ({_names(members)})" for c, members in groups]
    raise InputError(
        path, "mixed slice orientations (ImageOrientationPatient): " + "; ".join(parts[:4])
    )


def _spacing_text(plane: Plane) -> str:
    value = attribute(plane, "PixelMeasuresSequence", "PixelSpacing", None)
    try:
        return "x".join(f"{round(float(v), 4):g}" for v in value) if value else "none"
    except (TypeError, ValueError):
        return str(value)


#: Attributes that must agree between the slices of a volume, with how messages name them.
_FORMAT_KEYS: tuple[tuple[str, Callable[[Plane], Hashable]], ...] = (
    ("sizes (Rows x Columns)", lambda p: f"{p.ds.get('Rows')}x{p.ds.get('Columns')}"),
    ("samples per pixel", lambda p: str(p.ds.get("SamplesPerPixel", 1))),
    ("pixel representations (0 unsigned, 1 signed)",
     lambda p: str(p.ds.get("PixelRepresentation", 0))),
    ("bits allocated", lambda p: str(p.ds.get("BitsAllocated", ""))),
    ("bits stored", lambda p: str(p.ds.get("BitsStored", ""))),
    ("photometric interpretations", lambda p: str(p.ds.get("PhotometricInterpretation", ""))),
    ("pixel data types", lambda p: str(p.float_dtype or "integer")),
    ("pixel spacings (mm)", _spacing_text),
)



def _one_pixel_format(path: str, planes: list[Plane]) -> None:
    for what, key in _FORMAT_KEYS:
        groups: dict[Hashable, list[Plane]] = {}
        for plane in planes:
            groups.setdefault(key(plane), []).append(plane)
        if len(groups) > 1:
            ordered = sorted(groups.items(), key=lambda kv: len(kv[1]), reverse=True)
            parts = [f"{value} in {len(members)} ({_names(members)})" for value, members in ordered]
            raise InputError(path, f"mixed slice {what}: " + "; ".join(parts[:4]))


def _order(
    path: str, planes: list[Plane], metadata: dict[str, Any], missing_slices: str
) -> SeriesLayout:
    positions = [
        attribute(p, "PlanePositionSequence", "ImagePositionPatient", None) for p in planes
    ]
    cosines = orientation(planes[0])
    fallback = attribute(planes[0], "PixelMeasuresSequence", "SpacingBetweenSlices", None) or (
        attribute(planes[0], "PixelMeasuresSequence", "SliceThickness", None)
    )
    fallback_spacing = float(fallback) if fallback else None
    located = [p is not None and len(p) == 3 for p in positions]
    if cosines is not None and all(located):
        normal = np.cross(cosines[:3], cosines[3:])
        depth = np.asarray([[float(v) for v in p] for p in positions]) @ normal
        order = np.argsort(depth, kind="stable")
        planes, depth = [planes[i] for i in order], depth[order]
        planes, depth = _without_copies(path, planes, depth, metadata)
        if len(planes) == 1:
            return SeriesLayout(planes, "single", None, metadata)
        spacing = _check_spacing(path, depth, metadata, missing_slices)
        return SeriesLayout(planes, "position", spacing, metadata)

    if planes[0].multiframe:  # frames of one file without positions stay in stored order
        return SeriesLayout(planes, "file", fallback_spacing, metadata)
    numbers = [_int_or_none(p.ds.get("InstanceNumber")) for p in planes]
    if None not in numbers:
        _unique_instance_numbers(path, planes, numbers)
        order = np.argsort(numbers, kind="stable")
        if any(located):
            warnings.warn(
                f"{path}: {located.count(False)} of {len(planes)} slices have no position "
                "(ImagePositionPatient); all sorted by InstanceNumber",
                KmsegWarning,
                stacklevel=4,
            )
        return SeriesLayout([planes[i] for i in order], "instance", fallback_spacing, metadata)
    warnings.warn(
        f"{path}: the slices have neither positions (ImagePositionPatient) nor instance "
        "numbers; stacked in file-name order",
        KmsegWarning,
        stacklevel=4,
    )
    return SeriesLayout(planes, "file", fallback_spacing, metadata)


def _without_copies(
    path: str, planes: list[Plane], depth: np.ndarray, metadata: dict[str, Any]
) -> tuple[list[Plane], np.ndarray]:
    """Drop exact copies of a slice; refuse distinct slices at one position."""
    runs: list[list[int]] = [[0]]
    for i in range(1, len(planes)):
        if depth[i] - depth[runs[-1][0]] < _POSITION_TOLERANCE:
            runs[-1].append(i)
        else:
            runs.append([i])
    copies: list[Plane] = []
    for run in runs:
        if len(run) == 1:
            continue
        members = [planes[i] for i in run]
        uids = {str(p.ds.get("SOPInstanceUID", "")) for p in members}
        if len(uids) == 1 and "" not in uids and not members[0].multiframe:
            copies.extend(members[1:])
            continue
        raise InputError(
            path,
            f"slices {_names(members)} share a position (z={_mm(depth[run[0]])} mm"
            f"{_what_differs(members)}): several acquisitions in one series?",
        )
    if not copies:
        return planes, depth
    warnings.warn(
        f"{path}: dropped {_names(copies)}: copies of other files (same SOPInstanceUID)",
        KmsegWarning,
        stacklevel=5,
    )
    metadata["dropped_copies"] = [p.label for p in copies]
    keep = [i for i, p in enumerate(planes) if not any(p is c for c in copies)]
    return [planes[i] for i in keep], depth[keep]


def _what_differs(members: list[Plane]) -> str:
    """``; AcquisitionNumber 1, 2`` for the first attribute telling the slices apart."""
    for name in ("AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier",
                 "TriggerTime", "SeriesTime", "AcquisitionTime", "ImageType"):
        values = [str(m.ds.get(name, "")) for m in members]
        distinct = sorted(set(values), key=_natural)
        if len(distinct) > 1:
            return f"; {name} {', '.join(distinct[:4])}"
    return ""


def _check_spacing(
    path: str, depth: np.ndarray, metadata: dict[str, Any], missing_slices: str
) -> float:
    """The median slice spacing; warn about or refuse missing slices and irregular steps."""
    steps = np.diff(depth)
    # The spacing: the smallest step when every step is a whole multiple of it (slices
    # missing), else the median step.
    multiples = steps / steps.min()
    if np.all(np.abs(multiples - np.round(multiples)) <= _STEP_TOLERANCE):
        spacing = float(np.median(steps[np.round(multiples) == 1]))
    else:
        spacing = float(np.median(steps))
    gaps: list[tuple[float, float, float]] = []
    irregular: list[tuple[float, float, float]] = []
    for i, step in enumerate(steps):
        step = float(step)
        if abs(step - spacing) <= _STEP_TOLERANCE * spacing + _POSITION_TOLERANCE:
            continue
        ratio = step / spacing
        entry = (float(depth[i]), float(depth[i + 1]), step)
        if round(ratio) >= 2 and abs(ratio - round(ratio)) <= _STEP_TOLERANCE:
            gaps.append(entry)
        else:
            irregular.append(entry)
    if not gaps and not irregular:
        return spacing
    problems = []
    if gaps:
        where = ", ".join(f"z={_mm(a)} and z={_mm(b)} mm" for a, b, _ in gaps[:_NAMES_SHOWN])
        sizes = ", ".join(_mm(g) for _, _, g in gaps[:_NAMES_SHOWN])
        more = f" and {len(gaps) - _NAMES_SHOWN} more" if len(gaps) > _NAMES_SHOWN else ""
        plural = "s" if len(gaps) > 1 else ""
        problems.append(
            f"slices missing between {where}{more}: spacing {_mm(spacing)} mm, "
            f"gap{plural} {sizes} mm"
        )
        metadata["slice_gaps_mm"] = [[a, b] for a, b, _ in gaps]
    if irregular:
        where = ", ".join(f"z={_mm(a)} and z={_mm(b)} mm" for a, b, _ in irregular[:_NAMES_SHOWN])
        steps_mm = ", ".join(_mm(s) for _, _, s in irregular[:_NAMES_SHOWN])
        more = (f" and {len(irregular) - _NAMES_SHOWN} more"
                if len(irregular) > _NAMES_SHOWN else "")
        plural = "s" if len(irregular) > 1 else ""
        problems.append(
            f"irregular slice spacing between {where}{more}: spacing {_mm(spacing)} mm, "
            f"step{plural} {steps_mm} mm"
        )
        metadata["irregular_steps_mm"] = [[a, b] for a, b, _ in irregular]
    metadata["irregular_slice_spacing"] = True
    problem = "; ".join(problems)
    if missing_slices == "error":
        raise InputError(path, f"{problem} (refused: missing_slices is 'error')")
    # The slices are stacked one after another, every step taken as one spacing: a gap is
    # closed, not filled, and each slice above it sits below its true position.
    shift = (depth - depth[0]) - spacing * np.arange(len(depth))
    first = int(np.argmax(np.abs(shift) > _POSITION_TOLERANCE))
    largest = float(np.max(np.abs(shift)))
    metadata["stacked_shift_mm"] = [float(v) for v in np.round(shift, 6)]
    warnings.warn(
        f"{path}: {problem}; the slices are stacked without the gaps, one every "
        f"{_mm(spacing)} mm (nothing inserted): slices from z={_mm(float(depth[first]))} mm on "
        f"are placed up to {_mm(largest)} mm from their true position "
        "(missing_slices: error refuses such series)",
        KmsegWarning,
        stacklevel=5,
    )
    return spacing


def _unique_instance_numbers(path: str, planes: list[Plane], numbers: list[int | None]) -> None:
    seen: dict[int | None, list[Plane]] = {}
    for plane, number in zip(planes, numbers, strict=True):
        seen.setdefault(number, []).append(plane)
    for number, members in seen.items():
        if len(members) > 1:
            raise InputError(
                path,
                f"slices {_names(members)} share InstanceNumber {number} and have no position "
                "(ImagePositionPatient): their order is unknown",
            )


def _natural(text: str) -> tuple[float, str]:
    """Sort key: numbers by value, then text."""
    try:
        return float(text), ""
    except ValueError:
        return float("inf"), text


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
