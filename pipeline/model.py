"""A fitted model: centres plus everything needed to apply them to another image.

``kmseg fit`` writes one; ``kmseg segment --model`` applies it without fitting. The file is
small JSON, versioned and self-describing: the centres in input units and in feature units, the
feature space and its scaling, the channels and dtype it was fitted on, k, the engine and where it
came from. Applying it to an image of another dtype, number of channels or colour model is
refused with one line naming the image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, InputError
from pipeline.features import FeatureSpec

#: The ``format`` field of every model file.
MODEL_FORMAT = "kmseg-model"
#: Version of the model file layout; files of a newer version are refused.
MODEL_VERSION = 1


def is_model_file(path: str | os.PathLike) -> bool:
    """True for a regular file that holds a kmseg model (its ``format`` field says so)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MODEL_FORMAT


@dataclass(frozen=True)
class Model:
    """K-Means centres fitted on one or more images, and how pixels become features.

    Attributes
    ----------
    centres : ndarray, shape (k, n_value_features), float64
        Centres in input units (the values a pixel holds).
    centres_features : ndarray, shape (k, n_features), float64
        Centres in feature units (see :mod:`pipeline.features`).
    dtype : str
        Input dtype the model was fitted on.
    n_channels : int
        Channels of the input, alpha included.
    has_alpha : bool
        Whether the last channel was alpha (not a feature).
    channels : tuple of int
        Input channels used as features.
    low, high : float
        The value range mapped to [0, 1] (for floats and wide integers, the pooled data range).
    colour_space : {"rgb", "lab"}
    spatial_weight : float
    engine : str
        Engine that fitted it.
    label_order : str
        Rule the classes are numbered by (see :mod:`pipeline.order`).
    provenance : dict
        Inputs, pixels fitted, mse, inertia, kmseg version, creation time and config.
    """

    centres: np.ndarray
    centres_features: np.ndarray
    dtype: str
    n_channels: int
    has_alpha: bool
    channels: tuple[int, ...]
    low: float
    high: float
    colour_space: str
    spatial_weight: float
    engine: str
    label_order: str = "luminance"
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.centres_features)

    def feature_spec(self, spatial_shape: tuple[int, ...]) -> FeatureSpec:
        """The model's feature space for an image of ``spatial_shape`` (model's scaling)."""
        return FeatureSpec(
            dtype=self.dtype,
            channels=tuple(self.channels),
            low=self.low,
            high=self.high,
            colour_space=self.colour_space,  # type: ignore[arg-type]
            spatial_weight=self.spatial_weight,
            spatial_shape=tuple(int(s) for s in spatial_shape),
        )

    def check_fits(self, path: str, dtype: np.dtype, n_channels: int, has_alpha: bool) -> None:
        """Raise :class:`InputError` naming ``path`` when the model cannot apply to it."""
        problems = []
        if np.dtype(dtype) != np.dtype(self.dtype):
            problems.append(f"its dtype is {np.dtype(dtype)}, the model's {self.dtype}")
        if n_channels != self.n_channels or has_alpha != self.has_alpha:
            def describe(n: int, alpha: bool) -> str:
                return f"{n} channel(s){' with alpha' if alpha else ''}"

            problems.append(
                f"it has {describe(n_channels, has_alpha)}, the model "
                f"{describe(self.n_channels, self.has_alpha)}"
            )
        if problems:
            raise InputError(path, "the model does not fit this image: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form written by :meth:`save`."""
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "k": self.k,
            "engine": self.engine,
            "label_order": self.label_order,
            "centres": np.asarray(self.centres, dtype=np.float64).tolist(),
            "centres_features": np.asarray(self.centres_features, dtype=np.float64).tolist(),
            "input": {
                "dtype": self.dtype,
                "n_channels": self.n_channels,
                "has_alpha": self.has_alpha,
            },
            "features": {
                "channels": list(self.channels),
                "scaled_from": [self.low, self.high],
                "colour_space": self.colour_space,
                "spatial_weight": self.spatial_weight,
            },
            "provenance": self.provenance,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as JSON; an existing file is never replaced.

        Raises
        ------
        OutputError
            If ``path`` exists or cannot be written.
        """
        from pipeline.errors import OutputError

        try:
            with open(path, "x", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=1, allow_nan=False)
                fh.write("\n")
        except FileExistsError:
            raise OutputError(f"{path}: the model file already exists") from None
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the model ({exc.strerror})") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str = "model") -> Model:
        """Build a model from its JSON form; :class:`ConfigError` naming ``path`` if invalid."""
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ConfigError(f"{path}: not a kmseg model file")
        version = data.get("version")
        if not isinstance(version, int) or version > MODEL_VERSION:
            raise ConfigError(
                f"{path}: model file version {version!r} is not supported "
                f"(this kmseg reads up to {MODEL_VERSION})"
            )
        try:
            features = data["features"]
            source = data["input"]
            centres_features = np.asarray(data["centres_features"], dtype=np.float64)
            centres = np.asarray(data["centres"], dtype=np.float64)
            low, high = (float(v) for v in features["scaled_from"])
            model = cls(
                centres=centres,
                centres_features=centres_features,
                dtype=str(np.dtype(source["dtype"])),
                n_channels=int(source["n_channels"]),
                has_alpha=bool(source["has_alpha"]),
                channels=tuple(int(c) for c in features["channels"]),
                low=low,
                high=high,
                colour_space=str(features["colour_space"]),
                spatial_weight=float(features["spatial_weight"]),
                engine=str(data["engine"]),
                label_order=str(data.get("label_order", "none")),
                provenance=dict(data.get("provenance") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: invalid model file ({type(exc).__name__}: {exc})") from None
        problem = _inconsistency(model, data)
        if problem:
            raise ConfigError(f"{path}: invalid model file ({problem})")
        return model

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """Read a model file written by :meth:`save`.

        Raises
        ------
        ConfigError
            If the file is missing, not JSON, not a kmseg model, or of a newer version.
        """
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the model ({exc.strerror})") from None
        except ValueError:
            raise ConfigError(f"{path}: not a kmseg model file (not JSON)") from None
        return cls.from_dict(data, str(path))


def _inconsistency(model: Model, data: dict[str, Any]) -> str | None:
    """What makes a model file contradict itself, or None."""
    from pipeline.order import LABEL_ORDERS

    features, centres = model.centres_features, model.centres
    n_value = max(1, len(model.channels))
    if features.ndim != 2 or len(features) < 1:
        return "centres_features must be a non-empty list of rows"
    if data.get("k") != len(features):
        return f"k is {data.get('k')!r} but it holds {len(features)} centres"
    if features.shape[1] < n_value:
        return (f"centres_features have {features.shape[1]} values, the feature channels "
                f"{list(model.channels)} need at least {n_value}")
    if model.spatial_weight == 0 and features.shape[1] != n_value:
        return f"centres_features have {features.shape[1]} values, not {n_value}"
    if centres.shape != (len(features), n_value):
        return f"centres must be {len(features)} rows of {n_value} values"
    if not (np.isfinite(features).all() and np.isfinite(centres).all()):
        return "centres must be finite numbers"
    if model.colour_space not in ("rgb", "lab"):
        return f"unknown colour_space {model.colour_space!r}"
    if model.label_order not in (*LABEL_ORDERS, "model"):
        return f"unknown label_order {model.label_order!r}"
    if not model.n_channels >= 1 or any(not 0 <= c < model.n_channels for c in model.channels):
        return "channels do not fit n_channels"
    if not model.low <= model.high:
        return "scaled_from must be [low, high]"
    return None
