"""Late fusion with a linear classifier over MediaPipe blendshapes.

A model that takes blendshapes may still underuse them: mixing its expression
log-probabilities 50/50 with those of a plain logistic regression over the
standardised blendshapes moved the shipped graph's held-out AffectNet accuracy
up and its FER2013 accuracy down (docs/BENCHMARKS.md, "Session 4"), so it is
an export option, off by default. Export can wrap a model (or an ensemble)
in `BlendshapeFusion`: the classifier is fitted with scikit-learn
on the run's own training faces, stored as tensors, and becomes part of the
ONNX graph. Faces without blendshapes (NaN rows) keep the model's output;
valence/arousal are the model's (fusing them with a ridge regression lowered
CCC, so it is not done).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from affect.spec import OUTPUT_EXPRESSION
from train.models import blendshape_statistics

# The mixing weight of the classifier's log-probabilities: chosen on the
# validation part in session 2's probe (bench/blendshape_probe.py), before any
# held-out figure of a fused model was seen.
DEFAULT_WEIGHT = 0.5
# Inverse regularisation of the logistic regression (the probe's choice on val).
DEFAULT_C = 0.1


class FusionError(ValueError):
    """A run or model that cannot be given a blendshape classifier."""


class BlendshapeClassifier(nn.Module):
    """logits = W · ((scores − mean) / scale) + b: scikit-learn's StandardScaler +
    LogisticRegression as fixed tensors (buffers: nothing here is trained by torch)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: np.ndarray):
        super().__init__()
        for name, value in (("mean", mean), ("scale", scale), ("weight", weight), ("bias", bias)):
            self.register_buffer(name, torch.as_tensor(np.asarray(value, np.float32)))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return ((scores - self.mean) / self.scale) @ self.weight.T + self.bias


def fit_blendshape_classifier(scores: np.ndarray, labels: np.ndarray, num_classes: int,
                              c: float = DEFAULT_C) -> BlendshapeClassifier:
    """Fit on faces with blendshapes (finite rows) and a label; every class must occur."""
    from sklearn.linear_model import LogisticRegression

    ok = np.isfinite(scores).all(axis=1) & (labels >= 0)
    x, y = scores[ok], labels[ok]
    missing = sorted(set(range(num_classes)) - set(y.tolist()))
    if missing:
        raise FusionError(f"no training face with blendshapes for classes {missing}; cannot fit the classifier")
    # Standardised as scikit-learn's StandardScaler does, with the model branch's floor on the scale.
    mean, scale = blendshape_statistics(x)
    reg = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y)
    return BlendshapeClassifier(mean, scale, reg.coef_, reg.intercept_)


class BlendshapeFusion(nn.Module):
    """`model(x, blendshapes)` with its expression output replaced, for faces that
    have blendshapes, by (1 − w)·log_softmax(model) + w·log_softmax(classifier):
    still logits (softmax gives the normalised weighted product)."""

    def __init__(self, model: nn.Module, classifier: BlendshapeClassifier, weight: float = DEFAULT_WEIGHT):
        super().__init__()
        if not 0.0 < weight < 1.0:
            raise FusionError(f"fusion weight must be in (0, 1), got {weight}")
        self.model, self.classifier, self.weight = model, classifier, float(weight)

    def forward(self, x: torch.Tensor, blendshapes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = dict(self.model(x, blendshapes))
        if blendshapes is None:
            return out
        present = ~torch.isnan(blendshapes).any(dim=1, keepdim=True)
        clean = torch.where(present, blendshapes, torch.zeros_like(blendshapes))
        own = out[OUTPUT_EXPRESSION]
        fused = ((1 - self.weight) * torch.log_softmax(own, dim=1)
                 + self.weight * torch.log_softmax(self.classifier(clean), dim=1))
        out[OUTPUT_EXPRESSION] = torch.where(present, fused, own)
        return out


def run_training_faces(run_dir: str | Path, names: Sequence[str], face_model=None):
    """(scores [N, B], labels [N], number of run labels) of the faces a run trained on:
    its train part (and val part with train.train_on_val), datasets that can have
    every run class only (FER2013 lacks Contempt and is 48-px greyscale)."""
    from affect.datasets.blendshapes import attach_blendshapes
    from affect.datasets.records import DataError
    from affect.datasets.runs import read_run
    from affect.face_model import FaceModelError, resolve_face_model
    from train import data as tdata

    run = Path(run_dir)
    try:
        cfg, splits, infos = read_run(run)
    except DataError as exc:
        raise FusionError(f"{exc} (the classifier is fitted on the checkpoint's own training run)") from None
    seen = set(splits.get("train", []))
    if (cfg.get("train") or {}).get("train_on_val"):
        seen |= set(splits.get("val", []))
    labels = list(cfg.get("labels") or [])
    samples = []
    for info in infos:
        if info.class_mask(labels).all():
            samples += [s for s in tdata.remap_labels(info.samples, info.label_set, labels) if s.path in seen]
    if not samples:
        raise FusionError(f"{run}: no training faces from a dataset with every class {labels}")
    try:
        bundle = resolve_face_model(face_model)
    except FaceModelError as exc:
        raise FusionError(f"the run's training faces need MediaPipe's face landmarker for their blendshapes: "
                          f"{exc}") from None
    attach_blendshapes(samples, names, bundle, (cfg.get("data") or {}).get("blendshape_cache"), progress=False)
    return np.stack([s.blendshapes for s in samples]), np.array([s.expression for s in samples]), len(labels)
