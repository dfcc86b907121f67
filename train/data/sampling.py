"""Drawing from mixed datasets: per-dataset shares, class balancing by
oversampling, and inverse-frequency class weights for the loss."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import ConcatDataset, WeightedRandomSampler

from affect.datasets.records import DataError, Sample

log = logging.getLogger(__name__)

BALANCE_MODES = (None, "oversample")


def sample_weights(datasets: Sequence | ConcatDataset, dataset_weights: Sequence[float] | None = None,
                   balance: str | None = None) -> np.ndarray:
    """Per-sample draw weights over the concatenated datasets.

    Each dataset's total weight is its `dataset_weights` entry (default: its
    size, i.e. every sample equally likely); with `balance="oversample"` it
    is split equally between the classes it has (unlabelled samples form one
    more group), so rare classes are drawn as often as common ones.
    """
    parts = list(datasets.datasets) if isinstance(datasets, ConcatDataset) else list(datasets)
    if balance not in BALANCE_MODES:
        raise DataError(f"balance {balance!r} is unknown; use one of {list(BALANCE_MODES)}")
    if dataset_weights is not None and len(dataset_weights) != len(parts):
        raise DataError(f"{len(dataset_weights)} dataset weights for {len(parts)} datasets")
    out = []
    for i, d in enumerate(parts):
        n = len(d)
        if n == 0:
            raise DataError(f"dataset {i} is empty")
        total = float(n if dataset_weights is None else dataset_weights[i])
        if total < 0:
            raise DataError(f"dataset weight {total} is negative")
        if balance == "oversample":
            y = np.array([s.expression for s in d.samples])
            classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
            per = 1.0 / (counts[inverse] * len(classes))
        else:
            per = np.full(n, 1.0 / n)
        out.append(per * total)
    weights = np.concatenate(out)
    if not weights.sum() > 0:
        raise DataError("all dataset weights are zero")
    return weights


def build_sampler(datasets: Sequence | ConcatDataset, dataset_weights: Sequence[float] | None = None,
                  balance: str | None = None, num_samples: int | None = None,
                  generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """A with-replacement sampler over `datasets` (the parts of a
    MixedDataset, in order, or the MixedDataset itself); one epoch draws
    `num_samples` items (default: all samples)."""
    weights = sample_weights(datasets, dataset_weights, balance)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                 num_samples=int(num_samples or len(weights)), replacement=True,
                                 generator=generator)


def class_weights(samples: Sequence[Sample], num_classes: int,
                  labels: Sequence[str] | None = None) -> torch.Tensor:
    """Inverse-frequency loss weights [C], scikit-learn's "balanced" rule
    n / (k · count) over the k classes present (the average weight per labelled
    sample is 1); a class with no samples gets 0 and a warning naming it."""
    y = np.array([s.expression for s in samples if s.expression >= 0], dtype=np.int64)
    if y.size and y.max() >= num_classes:
        raise DataError(f"expression {int(y.max())} is outside {num_classes} classes")
    present = np.bincount(y, minlength=num_classes) > 0
    weights = np.zeros(num_classes)
    if present.any():
        classes = np.flatnonzero(present)
        weights[classes] = compute_class_weight("balanced", classes=classes, y=y)
    absent = [labels[i] if labels else f"class {i}" for i in np.flatnonzero(~present)]
    if absent:
        log.warning("no training samples for %s: their class weight is 0", ", ".join(map(str, absent)))
    return torch.as_tensor(weights, dtype=torch.float32)
