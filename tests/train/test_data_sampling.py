"""Per-dataset shares, class-balancing oversampling and class weights."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import torch

from affect.datasets.records import DataError, Sample
from affect.labels import EXPRESSIONS
from train.data import AffectDataset, MixedDataset, build_sampler, class_weights, sample_weights


def _ds(counts: dict[int, int], tag: str) -> AffectDataset:
    # Samplers only read labels: the paths are never opened.
    samples = [Sample(f"{tag}/{c}_{i}.jpg", c) for c, n in counts.items() for i in range(n)]
    return AffectDataset(samples, 32, [0.5] * 3, [0.5] * 3, EXPRESSIONS)


def test_dataset_weights_set_each_dataset_s_share():
    a, b = _ds({0: 90, 1: 10}, "a"), _ds({2: 20}, "b")
    w = sample_weights([a, b], dataset_weights=[1.0, 3.0])
    assert w[:100].sum() / w.sum() == pytest.approx(0.25) and np.allclose(w[:100], w[0])
    natural = sample_weights(MixedDataset([a, b]))
    assert np.allclose(natural, natural[0])  # no weights, no balance: every sample alike


def test_oversampling_draws_classes_evenly():
    a, b = _ds({0: 90, 1: 10}, "a"), _ds({2: 20}, "b")
    sampler = build_sampler([a, b], dataset_weights=[1, 1], balance="oversample", num_samples=6000,
                            generator=torch.Generator().manual_seed(0))
    assert len(sampler) == 6000
    labels = [s.expression for s in a.samples + b.samples]
    drawn = Counter(labels[i] for i in sampler)
    assert abs(drawn[0] / 6000 - 0.25) < 0.03 and abs(drawn[1] / 6000 - 0.25) < 0.03
    assert abs(drawn[2] / 6000 - 0.5) < 0.03
    plain = build_sampler([a], generator=torch.Generator().manual_seed(0))
    assert Counter(labels[i] for i in plain)[1] < 30  # without balance the rare class stays rare
    with pytest.raises(DataError, match="balance 'undersample'"):
        build_sampler([a], balance="undersample")
    with pytest.raises(DataError, match="1 dataset weights for 2"):
        build_sampler([a, b], dataset_weights=[1])


def test_class_weights_are_inverse_frequency_and_zero_for_absent(caplog):
    samples = [Sample("x", 0)] * 60 + [Sample("y", 1)] * 20 + [Sample("z", 3)] * 20 + [Sample("u", -1)] * 5
    with caplog.at_level(logging.WARNING):
        w = class_weights(samples, 8, labels=EXPRESSIONS)
    assert w.dtype == torch.float32 and w.shape == (8,)
    assert w[1] / w[0] == pytest.approx(3.0) and w[1] == w[3]
    assert (w[0] * 60 + w[1] * 20 + w[3] * 20).item() / 100 == pytest.approx(1.0)
    assert (w[[2, 4, 5, 6, 7]] == 0).all()
    assert "Sad" in caplog.text and "Contempt" in caplog.text
