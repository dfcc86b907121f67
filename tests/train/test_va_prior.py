"""Valence/arousal for faces without it (issue 26, part 2): the class means of the
run's training faces that have both, given to faces that have only an expression
(`loss.va_prior`), on a tiny real mix of AffectNet (V/A), RAF-DB (labels) and FER+
(vote distributions)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from test_fit import tiny_config

from affect.datasets.loaders import load_dataset
from affect.labels import EXPRESSIONS
from train.config import ConfigError, check_config, load_config
from train.data import AffectDataset, remap_labels
from train.data.assembly import Part, attach_va_prior
from train.fit import compute_loss, fit


def _part(entry: dict) -> Part:
    info = load_dataset(entry)
    samples = remap_labels(info.samples, info.label_set, list(EXPRESSIONS))
    return Part(samples, info.class_mask(list(EXPRESSIONS)), info)


@pytest.fixture
def mix(affectnet_root):
    rafdb = affectnet_root.parent / "rafdb"
    fer = affectnet_root.parent / "fer2013"
    if not rafdb.is_dir() or not fer.is_dir():
        pytest.skip("needs ../shared/data/rafdb and fer2013")
    return [_part({"type": "affectnet", "root": str(affectnet_root), "limit": 48}),
            _part({"type": "rafdb", "root": str(rafdb), "limit": 14}),
            _part({"type": "fer2013", "root": str(fer), "usage": "Training", "ferplus": True, "limit": 14})]


def test_faces_without_va_get_their_class_mean_and_faces_with_it_keep_none(mix):
    affectnet, rafdb, ferplus = mix
    counts = attach_va_prior(mix, list(EXPRESSIONS))
    va = np.array([[s.valence, s.arousal] for s in affectnet.samples])
    y = np.array([s.expression for s in affectnet.samples])
    means = {c: va[y == c].mean(axis=0) for c in set(y.tolist())}
    assert all(s.va_prior is None for s in affectnet.samples)
    assert counts["own"] == len(affectnet.samples)
    for s in rafdb.samples:
        if s.expression in means:
            np.testing.assert_allclose(s.va_prior, means[s.expression], rtol=1e-6)
        else:
            assert s.va_prior is None
    for s in ferplus.samples:  # the votes' mixture over the classes the AffectNet faces have
        w = np.array([s.soft[c] if c in means else 0.0 for c in range(len(EXPRESSIONS))])
        expected = sum(w[c] * means[c] for c in means) / w.sum()
        np.testing.assert_allclose(s.va_prior, expected, rtol=1e-5)
    assert counts["prior"] == sum(s.va_prior is not None for p in (rafdb, ferplus) for s in p.samples) > 20


def test_the_prior_loss_counts_only_faces_without_their_own_va(mix):
    attach_va_prior(mix, list(EXPRESSIONS))
    samples = mix[0].samples[:4] + mix[1].samples[:4]
    ds = AffectDataset(samples, size=32, mean=[0.5] * 3, std=[0.5] * 3, labels=EXPRESSIONS, va_prior=True)
    batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ("expression", "va", "va_mask", "va_prior",
                                                                          "class_mask", "soft", "smoothing")}
    assert torch.isnan(batch["va_prior"][:4]).all() and torch.isfinite(batch["va_prior"][4:]).all()
    cfg = load_config(None, ["loss.va_prior=0.5", "loss.va_loss=mse", "loss.va=0", "loss.expression=0"])
    pred = batch["va_prior"].clone()
    pred[:4] = 0.9  # the AffectNet faces' predictions are far from any prior: they must not count
    out = {"expression": torch.zeros(8, 8), "valence_arousal": torch.nan_to_num(pred)}
    _, parts = compute_loss(out, batch, cfg, None)
    assert parts["va_prior"] == pytest.approx(0.0, abs=1e-9)
    out["valence_arousal"] = out["valence_arousal"].clone()
    out["valence_arousal"][4:] += 0.3
    _, parts = compute_loss(out, batch, cfg, None)
    assert parts["va_prior"] == pytest.approx(0.5 * 0.3 ** 2 * 2, rel=1e-4)  # MSE per dimension, summed


def test_a_fit_with_the_prior_trains_on_it_and_a_bad_weight_is_refused(tmp_path, affectnet_root):
    rafdb = affectnet_root.parent / "rafdb"
    if not rafdb.is_dir():
        pytest.skip("needs ../shared/data/rafdb")
    cfg = tiny_config(tmp_path, affectnet_root, epochs=1, max_steps=2)
    cfg["data"]["datasets"].append({"type": "rafdb", "root": str(rafdb), "limit": 16, "role": "train"})
    cfg["loss"]["va_prior"] = 0.5
    run = fit(cfg)
    with open(run / "history.csv") as fh:
        assert float(next(csv.DictReader(fh))["train_loss_va_prior"]) > 0
    cfg["loss"]["va_prior"] = -1
    with pytest.raises(ConfigError, match="loss.va_prior must be a non-negative number"):
        check_config(cfg)
