"""Per-AU decision thresholds: chosen on a run's validation part, stored with the model
(checkpoint spec and ONNX `affect.au_thresholds`), loaded and applied by `train eval`; a model
without thresholds reads every AU at 0.5 as before. The round trip runs on real CK+ faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from affect.aus import AU_NAMES, AU_THRESHOLD, active_aus, choose_au_thresholds, threshold_array
from affect.metrics import MetricsError, au_metrics
from affect.spec import ModelSpec, SpecError
from train.__main__ import main as train_main
from train.au_thresholds import THRESHOLDS_FILE, AuThresholdError, choose_for_run, val_au_predictions
from train.config import load_config

REPO = Path(__file__).resolve().parents[2]


# --- choosing ----------------------------------------------------------------------------------

def test_each_au_gets_the_threshold_that_maximises_its_f1_and_rare_aus_keep_0_5():
    rng = np.random.default_rng(0)
    n = 60
    y = np.zeros((n, 3))
    y[:20, 0] = 1  # AU a: positives at 0.70-0.90, negatives at 0.52-0.62: 0.5 over-calls every negative
    y[:3, 1] = 1  # AU b: 3 positives, too few to fit a threshold to
    y[:30, 2] = 1  # AU c: no threshold separates them (random probabilities)
    p = np.empty((n, 3))
    p[:, 0] = np.where(y[:, 0] > 0, rng.uniform(0.70, 0.90, n), rng.uniform(0.52, 0.62, n))
    p[:, 1] = rng.uniform(0, 1, n)
    p[:, 2] = rng.uniform(0, 1, n)
    t, why = choose_au_thresholds(y, p, "f1")
    assert 0.62 < t[0] <= 0.70 and why[0] == "f1"  # inside the gap: F1 1.0
    assert t[1] == AU_THRESHOLD and why[1].startswith("default (3 positives")
    at = au_metrics(["a", "b", "c"], y, p, t)
    at_half = au_metrics(["a", "b", "c"], y, p, 0.5)
    assert at["per_au"]["a"]["f1"] == 1.0 > at_half["per_au"]["a"]["f1"]
    assert at["binary_accuracy"] > at_half["binary_accuracy"]
    # balanced accuracy: the same gap for AU a; an unknown rule is refused
    assert 0.62 < choose_au_thresholds(y, p, "balanced_accuracy")[0][0] <= 0.70
    with pytest.raises(ValueError, match="choose one of f1, balanced_accuracy"):
        choose_au_thresholds(y, p, "accuracy")


def test_au_metrics_apply_one_threshold_per_au_and_default_to_0_5():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], float)
    p = np.array([[0.6, 0.3], [0.4, 0.8], [0.45, 0.35], [0.2, 0.1]])
    plain = au_metrics(["AU1", "AU2"], y, p)
    assert plain["threshold"] == 0.5 and "thresholds" not in plain
    assert plain == au_metrics(["AU1", "AU2"], y, p, None) == au_metrics(["AU1", "AU2"], y, p, [0.5, 0.5])
    own = au_metrics(["AU1", "AU2"], y, p, [0.42, 0.3])
    # AU1 at 0.42: present for rows 0, 2 (not 1: 0.40); AU2 at 0.3: rows 0, 1, 2
    assert own["threshold"] == "per AU" and own["thresholds"] == [0.42, 0.3]
    assert own["per_au"]["AU1"]["threshold"] == 0.42
    assert own["binary_accuracy"] == pytest.approx((2 + 3) / 8)  # AU1: rows 0, 3 right; AU2: rows 1, 2, 3
    assert plain["binary_accuracy"] == pytest.approx((3 + 3) / 8)
    with pytest.raises(MetricsError, match="3 AU thresholds for 2 AUs"):
        au_metrics(["AU1", "AU2"], y, p, [0.5, 0.5, 0.5])
    assert active_aus([0.45, 0.2], ["AU1", "AU2"], {"AU1": 0.4}) == ["AU1"]
    assert active_aus([0.45, 0.2], ["AU1", "AU2"]) == []
    assert threshold_array([], AU_NAMES).tolist() == [0.5] * 15


def test_the_spec_carries_thresholds_through_checkpoint_dicts_and_onnx_metadata():
    names = ["AU1", "AU12", "AU25"]
    spec = ModelSpec(au_names=names, au_thresholds=[0.3, 0.7, 0.55])
    meta = spec.to_metadata()
    assert json.loads(meta["affect.au_thresholds"]) == [0.3, 0.7, 0.55]
    assert ModelSpec.from_metadata(meta).au_thresholds == [0.3, 0.7, 0.55]
    assert ModelSpec.from_dict(spec.to_dict()).au_decision_thresholds == [0.3, 0.7, 0.55]
    old = ModelSpec(au_names=names)  # a file from before thresholds: no key, 0.5 for every AU
    assert "affect.au_thresholds" not in old.to_metadata()
    assert ModelSpec.from_metadata(old.to_metadata()).au_decision_thresholds == [0.5, 0.5, 0.5]
    for bad in ([0.3, 0.7], [0.3, 0.7, 1.0], [0.3, 0.7, "x"]):
        with pytest.raises(SpecError, match="au_thresholds"):
            ModelSpec(au_names=names, au_thresholds=bad).validate()


# --- the round trip on real CK+ faces ----------------------------------------------------------

@pytest.fixture(scope="module")
def ck_run(ckplus_root, tmp_path_factory) -> Path:
    """A tiny CK+ run (groups + 15 AUs, a few steps) whose config asks for thresholds: fit chooses
    them on its validation subjects at the end."""
    run = tmp_path_factory.mktemp("ck") / "run"
    cfg = load_config(REPO / "configs" / "reference" / "ref5_ckplus_aus.yaml",
                      [f"run_dir={run}", f"data.datasets.0.root={ckplus_root}", "model.pretrained=none",
                       "model.input_size=48", "train.epochs=2", "train.max_steps=6", "train.batch_size=32",
                       "train.stop_when={}", "train.lr=0.003"])
    from train.fit import fit

    assert cfg["train"]["au_thresholds"] == "f1"
    fit(cfg)
    return run


def test_fit_chooses_thresholds_on_val_stores_them_and_eval_applies_them(ck_run, tmp_path, capsys):
    ckpt = torch.load(ck_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    stored = ckpt["spec"]["au_thresholds"]
    record = json.loads((ck_run / THRESHOLDS_FILE).read_text())
    assert len(stored) == 15 and record["thresholds"] == dict(zip(AU_NAMES, stored))
    assert record["rule"] == "f1" and record["chosen_on"].endswith(":val")
    # the same thresholds again from the validation part's predictions (the run's own val subjects)
    y, p, names, _ = val_au_predictions(ck_run / "checkpoint.pt")
    assert names == list(AU_NAMES) and choose_au_thresholds(y, p, "f1")[0] == stored
    assert any(t != 0.5 for t in stored)
    val_subjects = {Path(f).name.split("_")[0] for f in json.loads((ck_run / "splits.json").read_text())["val"]}
    test_subjects = {Path(f).name.split("_")[0] for f in json.loads((ck_run / "splits.json").read_text())["test"]}
    assert val_subjects and test_subjects and not val_subjects & test_subjects

    # train eval reads them from the checkpoint: its binary metrics are those at the stored thresholds
    out = tmp_path / "eval"
    assert train_main(["eval", str(ck_run / "checkpoint.pt"), "--split", "test", "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["action_units"]
    df = pd.read_csv(out / "predictions.csv", keep_default_na=False, na_values=[""])
    yt, pt = (df[[f"{k}_{a}" for a in AU_NAMES]].to_numpy(float) for k in ("true", "p"))
    assert metrics["thresholds"] == stored
    assert metrics["binary_accuracy"] == pytest.approx(au_metrics(AU_NAMES, yt, pt, stored)["binary_accuracy"])
    at_half = au_metrics(AU_NAMES, yt, pt, 0.5)
    moved = ((pt >= np.array(stored)) != (pt >= 0.5)).any()
    assert moved == (metrics["binary_accuracy"] != at_half["binary_accuracy"]
                     or metrics["f1_macro"] != at_half["f1_macro"])
    assert "the model's threshold for that AU" in (out / "report.md").read_text()
    from train.evaluate import predictions_to_metrics

    again = predictions_to_metrics(out / "predictions.csv", bootstrap=0)["action_units"]
    assert again["binary_accuracy"] == pytest.approx(metrics["binary_accuracy"])


def test_thresholds_travel_into_onnx_and_a_model_without_them_reads_at_0_5(ck_run, tmp_path):
    from export.onnx_export import export_onnx
    from realtime.reader import AffectReader

    onnx_path = tmp_path / "ck.onnx"
    export_onnx(ck_run / "checkpoint.pt", onnx_path)
    stored = torch.load(ck_run / "checkpoint.pt", map_location="cpu", weights_only=True)["spec"]["au_thresholds"]
    with AffectReader(onnx_path, aus=True) as reader:
        assert reader.au_source == "model" and reader.spec.au_thresholds == pytest.approx(stored)
        assert reader.au_thresholds == pytest.approx(tuple(stored)) and reader.au_thresholds_own

    # the same checkpoint without thresholds: 0.5 everywhere, metrics at 0.5
    plain = tmp_path / "plain.pt"
    ckpt = torch.load(ck_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    ckpt["spec"].pop("au_thresholds")
    torch.save(ckpt, plain)
    out = tmp_path / "eval_plain"
    assert train_main(["eval", str(plain), "--run-dir", str(ck_run), "--split", "test", "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["action_units"]
    assert metrics["threshold"] == 0.5 and "thresholds" not in metrics
    with AffectReader(plain, aus=True) as reader:
        assert reader.au_thresholds == (0.5,) * 15 and not reader.au_thresholds_own


def test_the_cli_chooses_into_a_copy_and_refuses_what_it_cannot_threshold(ck_run, tmp_path, capsys):
    copy = tmp_path / "copy.pt"
    assert train_main(["au-thresholds", str(ck_run / "checkpoint.pt"), "--rule", "balanced_accuracy",
                       "--run-dir", str(ck_run), "-o", str(copy)]) == 0
    line = capsys.readouterr().out
    assert "AU thresholds (balanced_accuracy" in line and str(copy) in line
    assert json.loads((tmp_path / THRESHOLDS_FILE).read_text())["rule"] == "balanced_accuracy"
    with pytest.raises(AuThresholdError, match="checkpoint not found"):
        choose_for_run(tmp_path / "nothing.pt")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(AuThresholdError, match="give the run's checkpoint.pt"):
        choose_for_run(onnx_file)
    with pytest.raises(SystemExit):  # argparse: an unknown rule
        train_main(["au-thresholds", str(ck_run / "checkpoint.pt"), "--rule", "accuracy"])
