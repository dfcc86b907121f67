"""Distillation: a teacher model labels the training faces once (cached), and
the student's loss adds its softened class probabilities and, where a dataset
has none, its valence/arousal."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from test_fit import tiny_config

from affect.datasets.loaders import load_dataset
from train.distill import DistillError, attach_teacher, distillation_loss
from train.fit import TrainError, fit


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, affectnet_root) -> Path:
    """A real (tiny) fit's checkpoint: any model `train eval` runs can teach."""
    tmp = tmp_path_factory.mktemp("teacher")
    return fit(tiny_config(tmp, affectnet_root, epochs=1, max_steps=2)) / "checkpoint.pt"


def test_teacher_rows_are_probabilities_and_va_and_come_back_from_the_cache(tmp_path, teacher, affectnet_root,
                                                                            fer2013_root):
    from affect.labels import EXPRESSIONS

    samples = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 6}).samples
    samples += load_dataset({"type": "fer2013", "root": str(fer2013_root), "usage": "Training", "limit": 4}).samples
    counts = attach_teacher(samples, teacher, EXPRESSIONS, cache_dir=tmp_path)
    assert counts == {"faces": 10, "computed": 10}
    rows = np.stack([s.teacher for s in samples])
    assert rows.shape == (10, 10) and np.isfinite(rows).all()
    assert np.allclose(rows[:, :8].sum(axis=1), 1.0, atol=1e-4) and (rows[:, :8] >= 0).all()
    assert (np.abs(rows[:, 8:]) <= 1.0).all()  # the valence/arousal head is bounded
    assert len(list(tmp_path.glob("teacher-*.npz"))) == 1
    for s in samples:
        s.teacher = None
    assert attach_teacher(samples, teacher, EXPRESSIONS, cache_dir=tmp_path)["computed"] == 0
    assert np.array_equal(np.stack([s.teacher for s in samples]), rows)


def test_a_teacher_with_other_labels_or_no_file_is_refused(tmp_path, teacher, affectnet_root):
    samples = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 2}).samples
    with pytest.raises(DistillError, match="labels"):
        attach_teacher(samples, teacher, ["Neutral", "Happy"], cache_dir=tmp_path)
    with pytest.raises(DistillError, match="teacher model not found"):
        attach_teacher(samples, tmp_path / "missing.onnx", ["Neutral"], cache_dir=tmp_path)


def test_the_loss_is_zero_when_the_student_matches_the_teacher_and_skips_faces_without_one():
    torch.manual_seed(0)
    logits = torch.randn(4, 8)
    teacher = torch.cat([torch.softmax(logits, dim=1), torch.rand(4, 2) * 2 - 1], dim=1)
    teacher[3] = float("nan")  # a face the teacher could not read
    va_mask = torch.tensor([[True, True], [False, False], [False, False], [False, False]])
    kl, _ = distillation_loss(logits, torch.zeros(4, 2), teacher, va_mask, temperature=2.0, va_kind="mse")
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    other = logits.clone()
    other[3] += torch.randn(8) * 5  # only the teacher-less face changes: still no loss
    assert distillation_loss(other, torch.zeros(4, 2), teacher, va_mask, 2.0, "mse")[0].item() == pytest.approx(
        0.0, abs=1e-6)
    other[0] = -other[0]
    assert distillation_loss(other, torch.zeros(4, 2), teacher, va_mask, 2.0, "mse")[0].item() > 0.01
    # valence/arousal: faces 1 and 2 (no own labels, a teacher row) are pulled to the teacher's values
    va_pred = teacher[:, 8:].clone()
    va_pred[0] = 5.0  # face 0 has its own labels: the teacher's do not count there
    assert distillation_loss(logits, torch.nan_to_num(va_pred), teacher, va_mask, 2.0, "mse")[1].item() == 0.0
    va_pred[1] += 0.5
    assert distillation_loss(logits, torch.nan_to_num(va_pred), teacher, va_mask, 2.0, "mse")[1].item() > 0.0


def test_a_fit_with_a_teacher_trains_on_its_outputs(tmp_path, teacher, affectnet_root, fer2013_root):
    cfg = tiny_config(tmp_path, affectnet_root, epochs=1, max_steps=2)
    cfg["data"]["datasets"].append({"type": "fer2013", "root": str(fer2013_root), "usage": "Training",
                                    "limit": 16, "role": "train"})
    cfg["distill"].update(teacher=str(teacher), cache=str(tmp_path / "cache"))
    run = fit(cfg)
    with open(run / "history.csv") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["train_loss_distill"]) > 0 and float(row["train_loss_distill_va"]) > 0


@pytest.mark.parametrize("key,value,message", [
    ("teacher", "missing.onnx", "teacher model not found"),
    ("temperature", 0, "distill.temperature must be a positive number"),
    ("weight", "lots", "distill.weight must be a non-negative number"),
])
def test_bad_distill_settings_are_one_line_errors(tmp_path, teacher, affectnet_root, key, value, message):
    cfg = tiny_config(tmp_path, affectnet_root, epochs=1, max_steps=1)
    cfg["distill"].update(teacher=str(teacher), cache=str(tmp_path / "cache"))
    cfg["distill"][key] = str(tmp_path / value) if key == "teacher" else value
    with pytest.raises(TrainError, match=message):
        fit(cfg)
