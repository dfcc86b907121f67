"""One prediction core for evaluation: `python -m train eval`, `python -m export
bench` and fit's validation run a model over batches the same way.

- test-time mirroring: the face flipped left-right, its blendshapes swapped
  left/right to match (`affect.blendshapes.mirror_order`); expression logits and
  valence/arousal averaged with the mirrored face's, other outputs kept;
- action-unit logits → probabilities by the sigmoid;
- dataset labels remapped onto the model's own label order (`affect.labels.label_map`).

Torch-free: a "predict" is any callable (images NCHW float32, blendshapes
[N, B] or None) → {contract output name: array}, such as `Backend.predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from affect.blendshapes import mirror_order
from affect.labels import label_map
from affect.spec import OUTPUT_AUS, OUTPUT_EXPRESSION, OUTPUT_VA

Predict = Callable[[np.ndarray, np.ndarray | None], Mapping[str, Any]]
TTA_AVERAGED = (OUTPUT_EXPRESSION, OUTPUT_VA)  # mirroring changes neither; landmarks and AUs it would


def tta_average(pred: Mapping[str, Any], flipped: Mapping[str, Any]) -> dict[str, Any]:
    """`pred` with its expression and valence/arousal averaged with the mirrored face's
    (numpy arrays or torch tensors alike)."""
    return {k: (v + flipped[k]) / 2 if k in TTA_AVERAGED else v for k, v in pred.items()}


def mirrored(x: np.ndarray, blendshapes: np.ndarray | None, names: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """The batch flipped left-right (NCHW), its blendshape columns swapped to match."""
    flipped = np.ascontiguousarray(x[..., ::-1])
    return flipped, None if blendshapes is None else blendshapes[:, mirror_order(names)]


def predict_batches(predict: Predict, batches: Iterable[tuple[np.ndarray, np.ndarray | None, np.ndarray]],
                    tta: bool = False, blendshape_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Run `predict` over (images, blendshapes or None, dataset indices) batches:
    {index, logits, va[, aus]} as float64 arrays in batch order; {} for no batches."""
    out: dict[str, list[np.ndarray]] = {"index": [], "logits": [], "va": [], "aus": []}
    for x, b, index in batches:
        x = np.ascontiguousarray(x, dtype=np.float32)
        b = None if b is None else np.asarray(b, np.float32)
        pred = predict(x, b)
        if tta:
            pred = tta_average(pred, predict(*mirrored(x, b, blendshape_names)))
        out["index"].append(np.asarray(index, np.int64))
        out["logits"].append(np.asarray(pred[OUTPUT_EXPRESSION], np.float64))
        out["va"].append(np.asarray(pred[OUTPUT_VA], np.float64))
        if OUTPUT_AUS in pred:
            out["aus"].append(np.asarray(pred[OUTPUT_AUS], np.float64))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def au_probabilities(logits: Any) -> Any:
    """Action-unit logits → independent probabilities (the sigmoid)."""
    return 1 / (1 + np.exp(-logits))


def remap_targets(expression: Iterable[int], source_labels: Sequence[str], model_labels: Sequence[str]
                  ) -> tuple[np.ndarray, dict[str, int]]:
    """Dataset class indices (into `source_labels`, -1 = none) → indices into the
    model's labels (-1 = none), and the count per class of labelled faces whose
    class the model lacks (left out of its metrics)."""
    mapping = label_map(list(source_labels), list(model_labels))
    expression = [int(e) for e in expression]
    y = np.full(len(expression), -1, np.int64)
    lacking: dict[str, int] = {}
    for i, e in enumerate(expression):
        if e < 0:
            continue
        if e in mapping:
            y[i] = mapping[e]
        else:
            name = source_labels[e] if e < len(source_labels) else str(e)
            lacking[name] = lacking.get(name, 0) + 1
    return y, lacking
