"""One evaluator, in three steps (as torchvision's one `evaluate`): `collect`
the targets, `predict` over batches, `score` the predictions against the
targets. Fit's validation (`train.fit`), `python -m train eval` and `python -m
export bench` all run these three; only where the batches come from differs
(a torch DataLoader, a model file's backend, a folder of faces).

- `collect(...)` → `Targets`: each face's expression as an index into the
  model's labels (-1 = none, or a class the model lacks, counted in
  `lacking`), valence/arousal [N, 2] and action units [N, A] (NaN = none).
- `predict(...)`: the one prediction core, `affect.predict.predict_batches`
  (test-time mirroring, blendshape rows), over (images, blendshapes, index)
  batches → {index, logits, va[, aus]}.
- `score(targets, predictions, labels, ...)`: the `metrics.json` dict
  (`affect.metrics.compute_metrics`) for the rows that were predicted.

Torch-free: a "predict" is any callable such as `Backend.predict`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from affect.metrics import compute_metrics
from affect.predict import Predict, au_probabilities, predict_batches, remap_targets
from affect.preprocess import expression_probabilities


@dataclass
class Targets:
    """What the evaluated faces are, one row per face."""
    expression: np.ndarray  # int64 [N]: index into the model's labels, -1 = none
    va: np.ndarray  # float64 [N, 2]: valence, arousal; NaN = none
    aus: np.ndarray | None = None  # float64 [N, A] 0/1, NaN = not annotated; None: no AU targets
    lacking: dict[str, int] = field(default_factory=dict)  # labelled faces whose class the model lacks

    def __len__(self) -> int:
        return len(self.expression)

    def take(self, rows: np.ndarray) -> Targets:
        """The targets of `rows` (a prediction's `index`), in that order."""
        rows = np.asarray(rows, np.int64)
        return replace(self, expression=self.expression[rows], va=self.va[rows],
                       aus=None if self.aus is None else self.aus[rows])


def collect(expression: Iterable[int], source_labels: Sequence[str], model_labels: Sequence[str],
            valence: Iterable[float], arousal: Iterable[float], aus: np.ndarray | None = None) -> Targets:
    """Targets from dataset labels: `expression` indexes `source_labels` (-1 = none) and is
    mapped by name onto `model_labels`; NaN valence/arousal/AU values mean "none"."""
    y, lacking = remap_targets(expression, source_labels, model_labels)
    va = np.stack([np.asarray(list(valence), np.float64), np.asarray(list(arousal), np.float64)], axis=1) \
        if len(y) else np.zeros((0, 2), np.float64)
    return Targets(y, va.reshape(-1, 2), None if aus is None else np.asarray(aus, np.float64), lacking)


def predict(predict_fn: Predict, batches: Iterable[tuple[np.ndarray, np.ndarray | None, np.ndarray]],
            tta: bool = False, blendshape_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Run `predict_fn` over (images NCHW float32, blendshapes [N, B] or None, dataset
    indices) batches: {index, logits, va[, aus]} (float64), {} for no batches."""
    return predict_batches(predict_fn, batches, tta, blendshape_names)


def score(targets: Targets, predictions: dict[str, np.ndarray], labels: Sequence[str],
          au_names: Sequence[str] = (), *, temperature: float = 1.0, restrict_to: Sequence[str] | None = None,
          dataset: str = "", model: str = "", bootstrap: int = 0) -> dict[str, Any]:
    """The metrics.json dict of `predictions` against `targets` (already aligned: row i of
    each is the same face, e.g. `targets.take(predictions["index"])`). Action units are scored
    when the model has them and some face is annotated. Expression probabilities are
    `affect.preprocess.expression_probabilities(logits, temperature)` (the model's
    `ModelSpec.temperature`; 1 = the plain softmax). Raises affect.metrics.MetricsError."""
    aus_true = aus_prob = None
    if au_names and "aus" in predictions and targets.aus is not None and np.isfinite(targets.aus).any():
        aus_true, aus_prob = targets.aus, au_probabilities(predictions["aus"])
    return compute_metrics(list(labels), targets.expression,
                           expression_probabilities(predictions["logits"], temperature), targets.va,
                           predictions["va"], aus_true=aus_true, aus_prob=aus_prob,
                           au_names=list(au_names) if aus_prob is not None else None, dataset=dataset,
                           model=model, restrict_to=restrict_to, bootstrap=bootstrap)
