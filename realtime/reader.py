"""Read affect from face crops, as small an API as HSEmotion's:

    from realtime import AffectReader
    reader = AffectReader()                      # the packaged model (INT8 or FP32, whichever runs faster here)
    r = reader.predict(face_rgb)                 # r.expression, r.probabilities, r.valence, r.arousal
    rs = reader.predict_many([face1, face2])     # one batched model call

`face_rgb` is an RGB uint8 crop of one face (any size: it is resized to the
model's input). A model that takes MediaPipe blendshapes can be given them
(`blendshapes=` dicts of name → score, or None); without them it reads the
image alone. Built on `realtime.backends`; the pipeline's model stage calls
`read_batch` with the crops and blendshape rows it has already prepared.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affect.blendshapes import blendshape_row
from affect.preprocess import expression_probabilities, prepare_batch
from affect.spec import OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec
from realtime.backends import Backend, create_backend


@dataclass
class Reading:
    expression: str
    confidence: float
    probabilities: np.ndarray  # float64, in `labels` order
    valence: float  # [-1, 1]
    arousal: float
    labels: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"expression": self.expression, "confidence": self.confidence,
                "probabilities": dict(zip(self.labels, map(float, self.probabilities))),
                "valence": self.valence, "arousal": self.arousal}


class AffectReader:
    """A loaded model that turns face crops into readings; close it (or use `with`)."""

    def __init__(self, model: str | os.PathLike | None = None, backend: str | None = None,
                 threads: int | None = None, providers: Sequence[str] | None = None,
                 spinning: bool | None = None):
        # Imported here: realtime.pipeline imports this module, and the default model lives there.
        from realtime.model_choice import default_model

        self.backend: Backend = create_backend(model or default_model(), backend, threads, providers,
                                               spinning=spinning)
        self.spec: ModelSpec = self.backend.spec
        self.labels = tuple(self.spec.labels)

    @property
    def path(self) -> Path:
        return self.backend.path

    @property
    def takes_blendshapes(self) -> bool:
        return bool(self.spec.blendshapes)

    def read_batch(self, batch: np.ndarray, blendshape_rows: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """A prepared NCHW batch (and blendshape rows, NaN = none) → probabilities [N, C]
        (float64, softmax of the logits over the model's temperature) and valence-arousal [N, 2]
        clipped to [-1, 1]: what the overlay, CSV, JSONL and dashboard show."""
        out = self.backend.predict(batch, blendshape_rows)
        probs = expression_probabilities(out[OUTPUT_EXPRESSION], self.spec.temperature)
        va = np.clip(out[OUTPUT_VA].astype(np.float64), -1, 1)
        return probs, va

    def predict_many(self, faces: Sequence[np.ndarray],
                     blendshapes: Sequence[Mapping[str, float] | None] | None = None) -> list[Reading]:
        rows = None
        if self.spec.blendshapes:
            given = list(blendshapes) if blendshapes is not None else [None] * len(faces)
            if len(given) != len(faces):
                raise ValueError(f"{len(faces)} faces but {len(given)} blendshape entries")
            rows = np.stack([blendshape_row(b, self.spec.blendshapes) for b in given]) if given else None
        probs, va = self.read_batch(prepare_batch(list(faces), self.spec), rows)
        readings = []
        for p, (v, a) in zip(probs, va):
            best = int(np.argmax(p))
            readings.append(Reading(self.labels[best], float(p[best]), p, float(v), float(a), self.labels))
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
