"""Read affect from face crops, as small an API as HSEmotion's:

    from realtime import AffectReader
    reader = AffectReader()                      # the packaged model (INT8 or FP32, whichever runs faster here)
    r = reader.predict(face_rgb)                 # r.expression, r.probabilities, r.valence, r.arousal
    rs = reader.predict_many([face1, face2])     # one batched model call

`face_rgb` is an RGB uint8 crop of one face (any size: it is resized to the
model's input). A model that takes MediaPipe blendshapes can be given them
(`blendshapes=` dicts of name → score, or None); without them it reads the
image alone. Built on `inference.backends`; the packaged default model and
the INT8-or-FP32 choice live in `realtime.model_choice`; the pipeline's model stage calls
`read_batch` with the crops and blendshape rows it has already prepared.

Action units (`AffectReader(aus=True)`): a probability for each of the 15 AUs
of `affect.aus.AU_NAMES`, from the model's own `action_units` output when its
file has one, else from the face's MediaPipe blendshapes through the packaged
map (`affect.aus.load_au_map`; `aus=PATH` for another map file):

    reader = AffectReader(aus=True)
    r = reader.predict(face_rgb, blendshapes=scores)   # r.aus: {"AU1": p, …} (None without blendshapes)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affect.aus import AU_NAMES, AU_THRESHOLD, AuMap, load_au_map
from affect.blendshapes import blendshape_row
from affect.preprocess import expression_probabilities, prepare_batch
from affect.spec import OUTPUT_AUS, OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec
from inference.backends import Backend, create_backend
from realtime.model_choice import default_model


@dataclass
class Reading:
    expression: str
    confidence: float
    probabilities: np.ndarray  # float64, in `labels` order
    valence: float  # [-1, 1]
    arousal: float
    labels: tuple[str, ...]
    aus: dict[str, float] | None = None  # AU name → probability (AffectReader(aus=True)); None: none for this face

    def as_dict(self) -> dict[str, Any]:
        out = {"expression": self.expression, "confidence": self.confidence,
               "probabilities": dict(zip(self.labels, map(float, self.probabilities))),
               "valence": self.valence, "arousal": self.arousal}
        if self.aus is not None:
            out["aus"] = dict(self.aus)
        return out


class AffectReader:
    """A loaded model that turns face crops into readings; close it (or use `with`)."""

    def __init__(self, model: str | os.PathLike | None = None, backend: str | None = None,
                 threads: int | None = None, providers: Sequence[str] | None = None,
                 spinning: bool | None = None, aus: bool | str | os.PathLike = False):
        self.au_map: AuMap | None = None
        if aus and not isinstance(aus, bool):  # a map file given: check it before loading the model
            self.au_map = load_au_map(aus)
        self.backend: Backend = create_backend(model or default_model(), backend, threads, providers,
                                               spinning=spinning)
        self.spec: ModelSpec = self.backend.spec
        self.labels = tuple(self.spec.labels)
        # Where AUs come from: the model's own head when it has one (and no map file was named),
        # else MediaPipe's blendshapes through the map; None: AUs off.
        self.au_source: str | None = None
        if aus:
            if self.au_map is None and self.spec.au_names:
                self.au_source = "model"
            else:
                if self.au_map is None:
                    try:
                        self.au_map = load_au_map()
                    except Exception:
                        self.backend.close()
                        raise
                self.au_source = "blendshapes"
        # model AU order → AU_NAMES order (an AU the model lacks stays NaN)
        self._au_index = [list(self.spec.au_names).index(a) if a in self.spec.au_names else -1 for a in AU_NAMES]
        self.au_names: tuple[str, ...] = AU_NAMES if self.au_source else ()
        # [15] decision thresholds in AU_NAMES order: the model's own (`affect.au_thresholds`, chosen on
        # its validation part) when AUs come from its head, else 0.5 (the map's logistic regressions)
        thresholds = dict(zip(self.spec.au_names, self.spec.au_decision_thresholds))
        self.au_thresholds: tuple[float, ...] = tuple(
            thresholds.get(a, AU_THRESHOLD) if self.au_source == "model" else AU_THRESHOLD for a in AU_NAMES)

    @property
    def au_thresholds_own(self) -> bool:
        """True when some AU's threshold is not 0.5 (the recording then gets its thresholds file)."""
        return any(t != AU_THRESHOLD for t in self.au_thresholds)

    @property
    def path(self) -> Path:
        return self.backend.path

    @property
    def takes_blendshapes(self) -> bool:
        return bool(self.spec.blendshapes)

    @property
    def needs_blendshapes(self) -> bool:
        """True when the landmarker must run: the model takes blendshapes, or AUs come from them."""
        return bool(self.spec.blendshapes) or self.au_source == "blendshapes"

    def model_aus(self, out: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """[N, 15] AU probabilities (AU_NAMES order) from a model output with an `action_units` head."""
        if self.au_source != "model" or OUTPUT_AUS not in out:
            return None
        logits = np.asarray(out[OUTPUT_AUS], np.float64)
        probs = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        result = np.full((len(logits), len(AU_NAMES)), np.nan)
        for j, k in enumerate(self._au_index):
            if k >= 0:
                result[:, j] = probs[:, k]
        return result

    def blendshape_aus(self, blendshapes: Sequence[Mapping[str, float] | None]) -> np.ndarray | None:
        """[N, 15] AU probabilities from each face's blendshapes (NaN row: none for that face)."""
        if self.au_source != "blendshapes" or self.au_map is None:
            return None
        if not blendshapes:
            return np.zeros((0, len(AU_NAMES)))
        rows = np.stack([blendshape_row(b, self.au_map.blendshapes) for b in blendshapes])
        probs = self.au_map.predict(rows)
        index = [list(self.au_map.au_names).index(a) if a in self.au_map.au_names else -1 for a in AU_NAMES]
        return np.stack([probs[:, k] if k >= 0 else np.full(len(rows), np.nan) for k in index], axis=1)

    def read_batch(self, batch: np.ndarray, blendshape_rows: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """A prepared NCHW batch (and blendshape rows, NaN = none) → probabilities [N, C]
        (float64, softmax of the logits over the model's temperature) and valence-arousal [N, 2]
        clipped to [-1, 1]: what the overlay, CSV, JSONL and dashboard show."""
        probs, va, _ = self.read_batch_aus(batch, blendshape_rows)
        return probs, va

    def read_batch_aus(self, batch: np.ndarray, blendshape_rows: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """`read_batch`, and the model's AU probabilities [N, 15] when AUs come from its head."""
        out = self.backend.predict(batch, blendshape_rows)
        probs = expression_probabilities(out[OUTPUT_EXPRESSION], self.spec.temperature)
        va = np.clip(out[OUTPUT_VA].astype(np.float64), -1, 1)
        return probs, va, self.model_aus(out)

    def predict_many(self, faces: Sequence[np.ndarray],
                     blendshapes: Sequence[Mapping[str, float] | None] | None = None) -> list[Reading]:
        rows = None
        given = list(blendshapes) if blendshapes is not None else [None] * len(faces)
        if len(given) != len(faces):
            raise ValueError(f"{len(faces)} faces but {len(given)} blendshape entries")
        if self.spec.blendshapes:
            rows = np.stack([blendshape_row(b, self.spec.blendshapes) for b in given]) if given else None
        probs, va, aus = self.read_batch_aus(prepare_batch(list(faces), self.spec), rows)
        if aus is None:
            aus = self.blendshape_aus(given)
        readings = []
        for i, (p, (v, a)) in enumerate(zip(probs, va)):
            best = int(np.argmax(p))
            face_aus = None
            if aus is not None and np.isfinite(aus[i]).any():
                face_aus = {name: float(x) for name, x in zip(AU_NAMES, aus[i]) if np.isfinite(x)}
            readings.append(Reading(self.labels[best], float(p[best]), p, float(v), float(a), self.labels,
                                    face_aus))
        return readings

    def predict(self, face_rgb: np.ndarray, blendshapes: Mapping[str, float] | None = None) -> Reading:
        return self.predict_many([face_rgb], [blendshapes])[0]

    def describe(self) -> str:
        return self.backend.describe()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> AffectReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
