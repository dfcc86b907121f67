"""Distillation: a trained model (the teacher — usually the ONNX graph that
averages several fits) labels every training face once, and the student
learns from it as well as from the datasets' own labels:

- its class probabilities, softened by a temperature, on every face
  (`distill.weight`): the small AffectNet part is where single fits differ,
  and the teacher's soft labels carry what an ensemble agrees on;
- its valence/arousal on faces whose dataset has none (`distill.va_weight`):
  FER2013's 28,709 faces get arousal and valence targets, which otherwise
  come from the AffectNet part alone.

The teacher's outputs depend on the teacher file and the face (and its
blendshapes), not on the run: they are cached like blendshapes, so a second
student (another seed) reads them back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from affect.datasets.blendshapes import read_rows, sample_key, write_rows
from affect.datasets.records import Sample
from affect.files import cache_root, sha256_of
from affect.preprocess import expression_probabilities

log = logging.getLogger(__name__)


class DistillError(ValueError):
    """A teacher that cannot label this run's faces; one line naming the file."""


def attach_teacher(samples: Sequence[Sample], teacher: str | os.PathLike, labels: Sequence[str],
                   blendshapes: Sequence[str] = (), cache_dir: str | os.PathLike | None = None,
                   batch_size: int = 64, progress: bool = True) -> dict[str, int]:
    """Set `sample.teacher` = [p_1..p_C, valence, arousal] (float32; NaN for an
    unreadable image) on every sample from the teacher model (.onnx or .pt,
    any backend `train eval` can run). Its labels must be the run's `labels`;
    a teacher that takes blendshapes needs them on the samples, in
    `blendshapes` order. Returns {faces, computed}."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from train import data as tdata
    from train.evaluate import open_backend, predict

    path = Path(teacher)
    if not path.is_file():
        raise DistillError(f"{path}: teacher model not found")
    cache = (Path(cache_dir) if cache_dir else cache_root("teacher")) / f"teacher-{sha256_of(path)[:12]}.npz"
    table = read_rows(cache)
    todo = [s for s in samples if sample_key(s) not in table]
    if todo:
        backend = open_backend(path)
        try:
            spec = backend.spec
            temperature = spec.temperature  # the teacher's probabilities as any reader of it sees them
            if list(spec.labels) != list(labels):
                raise DistillError(f"{path}: the teacher's labels {list(spec.labels)} are not the run's "
                                   f"{list(labels)}")
            if spec.blendshapes and list(spec.blendshapes) != list(blendshapes):
                raise DistillError(f"{path}: the teacher takes blendshapes; train the student with "
                                   "model.blendshapes: true (the same 52 MediaPipe scores)")
            ds = tdata.AffectDataset(todo, size=spec.input_size, mean=spec.mean, std=spec.std, labels=labels,
                                     blendshapes=spec.blendshapes)
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=tdata.collate_skip_bad)
            log.info("teacher %s: labelling %d faces", path, len(todo))
            raw = predict(backend, tqdm(loader, desc="teacher", disable=not progress, leave=False), tta=False,
                           model_path=path)
        finally:
            close = getattr(backend, "close", None)
            if close:
                close()
        probs = expression_probabilities(raw["logits"], temperature)
        rows = np.full((len(todo), len(labels) + 2), np.nan, np.float32)
        rows[raw["index"]] = np.concatenate([probs, raw["va"]], axis=1)
        for s, row in zip(todo, rows):
            table[sample_key(s)] = row
        write_rows(cache, table)
    for s in samples:
        s.teacher = np.asarray(table[sample_key(s)], np.float32)
    return {"faces": len(samples), "computed": len(todo)}


def distillation_loss(logits, va_pred, teacher, va_mask, temperature: float, va_kind: str):
    """(soft-label KL on every face with a teacher row, the teacher's valence/arousal
    loss on faces without their own) — torch scalars. `teacher` is [B, C + 2] with
    NaN rows for faces the teacher did not see."""
    import torch
    import torch.nn.functional as F

    from train.losses import va_loss

    n_classes = logits.shape[1]
    probs, va_teacher = teacher[:, :n_classes], teacher[:, n_classes:n_classes + 2]
    has = torch.isfinite(probs).all(dim=1)
    kl = logits.sum() * 0.0
    if has.any():
        t = float(temperature)
        # Softening probabilities by T is softmax(logits / T) of the teacher's logits.
        soft = probs[has].clamp_min(1e-8) ** (1.0 / t)
        soft = soft / soft.sum(dim=1, keepdim=True)
        log_student = F.log_softmax(logits[has].float() / t, dim=1)
        kl = (soft * (soft.log() - log_student)).sum(dim=1).mean() * t * t  # T² keeps gradients comparable
    pseudo = ~va_mask.bool() & torch.isfinite(va_teacher)
    va = va_loss(va_pred, torch.nan_to_num(va_teacher), pseudo, va_kind)
    return kl, va
