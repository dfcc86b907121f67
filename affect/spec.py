"""The model spec: what a model file says about itself.

The same keys travel in a checkpoint (`checkpoint["spec"]`, plain types) and
in ONNX `metadata_props` (all strings, JSON where structured), so nothing
downstream hard-codes labels, input size, normalisation or the crop rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from affect import __version__
from affect.labels import EXPRESSIONS

PREFIX = "affect."

# ONNX graph names of the model contract.
INPUT_NAME = "image"
# Optional second input: MediaPipe face blendshape scores [N, B] in the order of
# `affect.blendshapes`; a row of NaN means "no blendshapes for this face" (the
# FaceDetector path, a missed landmarker), and the model then reads the image alone.
INPUT_BLENDSHAPES = "blendshapes"
OUTPUT_EXPRESSION = "expression"
OUTPUT_VA = "valence_arousal"
OUTPUT_LANDMARKS = "landmarks"
OUTPUT_AUS = "action_units"
MAX_INPUT_SIZE = 1024  # pixels; the contract's models take 48-448

from affect.crop import DEFAULT_CROP  # noqa: E402  (the crop rule lives with the crop code)


class SpecError(ValueError):
    """A model file lacks the contract metadata or carries malformed values."""


@dataclass
class ModelSpec:
    labels: list[str] = field(default_factory=lambda: list(EXPRESSIONS))
    input_size: int = 224
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    crop: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CROP))
    backbone: str = "unknown"
    version: str = __version__
    trained_on: str = ""
    au_names: list[str] = field(default_factory=list)
    num_landmarks: int = 0  # K points; the `landmarks` output has 2K values
    blendshapes: list[str] = field(default_factory=list)  # names of the `blendshapes` input; [] = image only
    # Expression probabilities are softmax(logits / temperature) (`affect.preprocess.expression_probabilities`),
    # T fitted on a run's validation parts (`python -m export calibrate`); 1 = the plain softmax. The graph's
    # `expression` output stays the raw logits, so an old file (no `affect.temperature`) reads as before.
    temperature: float = 1.0
    # Per-AU decision thresholds in `au_names` order: an AU is "active"/present when its
    # probability reaches its threshold (metrics, overlay, dashboard); chosen on a run's validation
    # part (`python -m train au-thresholds`). [] = affect.aus.AU_THRESHOLD (0.5) for every AU, so an
    # old file (no `affect.au_thresholds`) reads as before. The `action_units` output stays raw.
    au_thresholds: list[float] = field(default_factory=list)

    # --- plain dict (checkpoints) -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        missing = {"labels", "input_size", "mean", "std"} - set(data)
        if missing:
            raise SpecError(f"model spec lacks {sorted(missing)}")
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.validate()
        return spec

    # --- ONNX metadata_props --------------------------------------------------------
    def to_metadata(self) -> dict[str, str]:
        meta = {
            "labels": json.dumps(list(self.labels)),
            "input_size": str(int(self.input_size)),
            "mean": json.dumps([float(v) for v in self.mean]),
            "std": json.dumps([float(v) for v in self.std]),
            "crop": json.dumps(self.crop),
            "backbone": self.backbone,
            "version": self.version,
            "trained_on": self.trained_on,
        }
        if self.au_names:
            meta["au_names"] = json.dumps(list(self.au_names))
        if self.num_landmarks:
            meta["num_landmarks"] = str(int(self.num_landmarks))
        if self.blendshapes:
            meta["blendshapes"] = json.dumps(list(self.blendshapes))
        if float(self.temperature) != 1.0:
            meta["temperature"] = repr(float(self.temperature))
        if self.au_thresholds:
            meta["au_thresholds"] = json.dumps([float(v) for v in self.au_thresholds])
        return {PREFIX + k: v for k, v in meta.items()}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], source: str = "model") -> ModelSpec:
        """Parse `affect.*` metadata; `source` names the file in errors."""
        if PREFIX + "labels" not in props:
            raise SpecError(
                f"{source}: no affect.* metadata (labels, input size, normalisation); "
                "export it with `python -m export onnx CHECKPOINT`"
            )
        try:
            data: dict[str, Any] = {
                "labels": json.loads(props[PREFIX + "labels"]),
                "input_size": int(props[PREFIX + "input_size"]),
                "mean": json.loads(props[PREFIX + "mean"]),
                "std": json.loads(props[PREFIX + "std"]),
                "crop": json.loads(props.get(PREFIX + "crop", json.dumps(DEFAULT_CROP))),
                "backbone": props.get(PREFIX + "backbone", "unknown"),
                "version": props.get(PREFIX + "version", ""),
                "trained_on": props.get(PREFIX + "trained_on", ""),
                "au_names": json.loads(props.get(PREFIX + "au_names", "[]")),
                "num_landmarks": int(props.get(PREFIX + "num_landmarks", "0")),
                "blendshapes": json.loads(props.get(PREFIX + "blendshapes", "[]")),
                "temperature": float(props.get(PREFIX + "temperature", "1")),
                "au_thresholds": json.loads(props.get(PREFIX + "au_thresholds", "[]")),
            }
        except (KeyError, ValueError) as exc:
            raise SpecError(f"{source}: malformed affect.* metadata ({exc})") from None
        spec = cls(**data)
        try:
            spec.validate()
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None
        return spec

    def validate(self) -> None:
        if not self.labels or not all(isinstance(x, str) for x in self.labels):
            raise SpecError("spec labels must be a non-empty list of names")
        if int(self.input_size) < 16:
            raise SpecError(f"spec input_size {self.input_size} is too small")
        if int(self.input_size) > MAX_INPUT_SIZE:
            # A face crop this large is no model's input; a batch of them would need petabytes.
            raise SpecError(f"spec input_size {self.input_size} is absurd (a face model takes at most "
                            f"{MAX_INPUT_SIZE} px)")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3:
                raise SpecError(f"spec {name} must have 3 values, got {values}")
        if any(float(s) <= 0 for s in self.std):
            raise SpecError(f"spec std must be positive, got {self.std}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature > 0):
            raise SpecError(f"spec temperature must be a positive number, got {self.temperature!r}")
        if self.au_thresholds:
            values = self.au_thresholds
            if not isinstance(values, (list, tuple)) or len(values) != len(self.au_names):
                raise SpecError(f"spec au_thresholds must hold one threshold per AU ({len(self.au_names)}), "
                                f"got {values!r}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 for v in values):
                raise SpecError(f"spec au_thresholds must be numbers in (0, 1), got {values!r}")
        if not all(isinstance(x, str) for x in self.blendshapes) or len(set(self.blendshapes)) != len(self.blendshapes):
            raise SpecError("spec blendshapes must be a list of distinct names")

    @property
    def au_decision_thresholds(self) -> list[float]:
        """One threshold per AU of `au_names`: the model's own, or 0.5 (affect.aus.AU_THRESHOLD)."""
        from affect.aus import AU_THRESHOLD

        return [float(v) for v in self.au_thresholds] if self.au_thresholds else [AU_THRESHOLD] * len(self.au_names)

    @property
    def input_names(self) -> list[str]:
        return [INPUT_NAME, INPUT_BLENDSHAPES] if self.blendshapes else [INPUT_NAME]

    @property
    def output_names(self) -> list[str]:
        names = [OUTPUT_EXPRESSION, OUTPUT_VA]
        if self.num_landmarks:
            names.append(OUTPUT_LANDMARKS)
        if self.au_names:
            names.append(OUTPUT_AUS)
        return names


def read_json_spec(path: str) -> ModelSpec:
    """Read a spec written next to an engine (`model.engine.json`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found (expected next to the engine)") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON ({exc})") from None
    return ModelSpec.from_dict(data)
