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
  batches → {index, logits, va[, aus]}; `non_finite` says what of it is NaN/inf.
- `score(targets, predictions, labels, ...)`: the `metrics.json` dict
  (`affect.metrics.compute_metrics`) for the rows that were predicted.

Around them: `collect_samples` (targets of dataset records, `affect.datasets`),
`shared_classes` (the model's classes a dataset can have: what the scores are
restricted to), `dataset_metrics` (`score` plus the notes of an evaluation
folder's metrics.json), `predicted_labels` and `predictions_csv` (the
`predictions.csv`): what `train eval` and `export calibrate --eval-dir` write.

Torch-free: a "predict" is any callable such as `Backend.predict`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from affect.labels import label_map
from affect.metrics import compute_metrics, restrict_classes
from affect.predict import Predict, au_probabilities, predict_batches, remap_targets
from affect.preprocess import expression_probabilities
from affect.spec import ModelSpec


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


def collect_samples(samples: Sequence[Any], source_labels: Sequence[str], model_labels: Sequence[str],
                    au_names: Sequence[str] = ()) -> Targets:
    """`collect` for dataset records (`affect.datasets.records.Sample`: `expression` indexes
    `source_labels`, -1 = none; `valence`, `arousal`; `aus` in `au_names` order, read when
    the model has AUs: a record without them, or with another count, is NaN = not annotated)."""
    aus = None
    if au_names:
        aus = np.array([s.aus if getattr(s, "aus", None) is not None and len(s.aus) == len(au_names)
                        else np.full(len(au_names), np.nan) for s in samples], np.float64).reshape(-1, len(au_names))
    return collect([s.expression for s in samples], source_labels, model_labels,
                   [s.valence for s in samples], [s.arousal for s in samples], aus)


def shared_classes(model_labels: Sequence[str], dataset_classes: Sequence[str] | None) -> list[str] | None:
    """The model's classes a dataset can have (what its scores are restricted to): None when
    it can have all of them or its classes are unknown (`dataset_classes` None), [] when none."""
    if dataset_classes is None:
        return None
    shared = [m for m in model_labels if label_map([m], list(dataset_classes))]
    return None if len(shared) == len(model_labels) else shared


def predict(predict_fn: Predict, batches: Iterable[tuple[np.ndarray, np.ndarray | None, np.ndarray]],
            tta: bool = False, blendshape_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Run `predict_fn` over (images NCHW float32, blendshapes [N, B] or None, dataset
    indices) batches: {index, logits, va[, aus]} (float64), {} for no batches."""
    return predict_batches(predict_fn, batches, tta, blendshape_names)



def non_finite(predictions: dict[str, np.ndarray]) -> str | None:
    """What of `predict`'s output is NaN/inf ("NaN/inf logits for 3 of 40 images"), None when
    nothing: an evaluation stops there rather than score a broken model."""
    for key in ("logits", "va", "aus"):
        values = predictions.get(key)
        if values is not None and not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).reshape(len(values), -1).any(axis=1).sum())
            return f"NaN/inf {key} for {bad} of {len(values)} images"
    return None

def score(targets: Targets, predictions: dict[str, np.ndarray], labels: Sequence[str],
          au_names: Sequence[str] = (), *, temperature: float = 1.0, restrict_to: Sequence[str] | None = None,
          dataset: str = "", model: str = "", bootstrap: int = 0,
          au_thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """The metrics.json dict of `predictions` against `targets` (already aligned: row i of
    each is the same face, e.g. `targets.take(predictions["index"])`). Action units are scored
    when the model has them and some face is annotated. Expression probabilities are
    `affect.preprocess.expression_probabilities(logits, temperature)` (the model's
    `ModelSpec.temperature`; 1 = the plain softmax); an AU is present at probability ≥ its
    `au_thresholds` entry (the model's `ModelSpec.au_thresholds`; None or [] = 0.5).
    Raises affect.metrics.MetricsError."""
    aus_true = aus_prob = None
    if au_names and "aus" in predictions and targets.aus is not None and np.isfinite(targets.aus).any():
        aus_true, aus_prob = targets.aus, au_probabilities(predictions["aus"])
    return compute_metrics(list(labels), targets.expression,
                           expression_probabilities(predictions["logits"], temperature), targets.va,
                           predictions["va"], aus_true=aus_true, aus_prob=aus_prob,
                           au_names=list(au_names) if aus_prob is not None else None, dataset=dataset,
                           model=model, restrict_to=restrict_to, bootstrap=bootstrap,
                           au_thresholds=au_thresholds)



def dataset_metrics(targets: Targets, predictions: dict[str, np.ndarray], spec: ModelSpec, *,
                    restrict_to: Sequence[str] | None = None, dataset: str = "", model: str = "",
                    bootstrap: int = 0, skipped: int = 0, blendshapes: str | None = None) -> dict[str, Any]:
    """`score` with the model's labels, AUs, AU thresholds and temperature (its `ModelSpec`), plus what an
    evaluation folder's metrics.json says beside the figures: what was left out (labelled
    faces whose class the model lacks, `targets.lacking`; `skipped` unreadable images), the
    classes scored (`restricted_to`), the model's backbone and input size and how its
    blendshapes were read. `train eval` and `export calibrate --eval-dir` write it.
    Raises affect.metrics.MetricsError."""
    metrics = score(targets, predictions, spec.labels, spec.au_names, temperature=spec.temperature,
                    restrict_to=restrict_to, dataset=dataset, model=model, bootstrap=bootstrap,
                    au_thresholds=spec.au_thresholds)
    notes = [metrics["note"]] if metrics.get("note") else []
    if targets.lacking:
        notes.append(f"{sum(targets.lacking.values())} samples labelled {sorted(targets.lacking)} "
                     "(not a model class) left out")
    if skipped:
        notes.append(f"{int(skipped)} unreadable images skipped")
    if notes:
        metrics["note"] = "; ".join(notes)
    if restrict_to:
        metrics["restricted_to"] = list(restrict_to)
    metrics["skipped_images"] = int(skipped)
    metrics["backbone"] = spec.backbone
    if blendshapes:
        metrics["blendshapes"] = blendshapes
    metrics["input_size"] = int(spec.input_size)
    return metrics

def predicted_labels(probs: np.ndarray, labels: Sequence[str], restrict_to: Sequence[str] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Each face's predicted class (an index into `labels`) and its probability: the argmax
    over the classes the metrics are computed on (`restrict_to`; None = all), renormalised."""
    labels = list(labels)
    pred_labels = labels if restrict_to is None else list(restrict_to)
    _, _, p_eval = restrict_classes(labels, np.full(len(probs), -1), probs, pred_labels)
    pred = np.array([labels.index(pred_labels[j]) for j in p_eval.argmax(axis=1)], np.int64)
    return pred, p_eval.max(axis=1)


def predictions_csv(paths: Sequence[str], labels: Sequence[str], targets: Targets, predictions: dict[str, np.ndarray],
                    *, temperature: float = 1.0, restrict_to: Sequence[str] | None = None,
                    au_names: Sequence[str] = (), aus: bool = False) -> str:
    """The `predictions.csv` text: one row per predicted face (`paths`, `targets` aligned with
    `predictions` as for `score`): path, true and predicted label, `p_<label>` (the probabilities
    at `temperature`), true and predicted valence/arousal, and with `aus` `true_<AU>`/`p_<AU>`.
    `train eval`'s `predictions_to_metrics` recomputes metrics.json from it."""
    labels = list(labels)
    probs = expression_probabilities(predictions["logits"], temperature)
    pred, _ = predicted_labels(probs, labels, restrict_to)
    y, va_true, va_pred = targets.expression, targets.va, predictions["va"]
    aus_true = targets.aus if aus else None
    aus_prob = au_probabilities(predictions["aus"]) if aus else None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["path", "true_label", "pred_label", *[f"p_{x}" for x in labels],
              "true_valence", "true_arousal", "pred_valence", "pred_arousal"]
    if aus:
        header += [f"true_{a}" for a in au_names] + [f"p_{a}" for a in au_names]
    w.writerow(header)

    # Full precision (round-trip): predictions_to_metrics must reproduce metrics.json exactly,
    # and near-tied probabilities would otherwise change rankings (ROC-AUC).
    def num(v: float) -> str:
        return "" if not math.isfinite(v) else f"{v:.17g}"

    for i, path in enumerate(paths):
        row = [path, labels[y[i]] if y[i] >= 0 else "", labels[pred[i]],
               *[f"{p:.17g}" for p in probs[i]], num(va_true[i, 0]), num(va_true[i, 1]),
               num(va_pred[i, 0]), num(va_pred[i, 1])]
        if aus:
            row += [num(v) for v in aus_true[i]] + [f"{v:.17g}" for v in aus_prob[i]]
        w.writerow(row)
    return buf.getvalue()
