"""affect.compare on synthetic run dirs whose metrics.json come from compute_metrics."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from affect.compare import CompareError, compare
from affect.labels import EXPRESSIONS, FER2013_CLASSES
from affect.metrics import compute_metrics


def _run_dir(root: Path, name: str, skill: float, seed: int, restrict=None, labels_in_data=8,
             extra: dict | None = None) -> Path:
    rng = np.random.default_rng(seed)
    n = 200
    y = rng.integers(0, labels_in_data, n)
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    va = rng.uniform(-1, 1, (n, 2))
    va_pred = va * skill / 3 + rng.normal(0, 0.3, (n, 2))
    m = compute_metrics(EXPRESSIONS, y, probs, va, va_pred, dataset="synthetic", model=name,
                        restrict_to=restrict, bootstrap=100)
    d = root / name
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps(m))
    for fname, data in (extra or {}).items():
        (d / fname).write_text(data if isinstance(data, str) else json.dumps(data))
    return d


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_compare_marks_the_better_run_bold_with_cis(tmp_path):
    good = _run_dir(tmp_path, "good", skill=3.0, seed=0,
                    extra={"run.json": {"backbone": "mobilenet_v2", "parameters": 2_300_000, "input_size": 96,
                                        "train_seconds": 120.0},
                           "bench.json": {"rows": [{"format": "onnx", "latency_ms": 4.2}]}})
    weak = _run_dir(tmp_path, "weak", skill=0.5, seed=1,
                    extra={"config.yaml": "model:\n  backbone: resnet50\n  input_size: 224\n"})
    out = tmp_path / "cmp"
    markdown, csv_text = compare([good, weak], out_dir=out)
    assert (out / "compare.md").read_text() == markdown
    assert (out / "compare.csv").read_text() == csv_text
    good_m = json.loads((good / "metrics.json").read_text())
    acc = good_m["expression"]["accuracy"]
    lo, hi = good_m["ci"]["accuracy"]
    acc_line = next(line for line in markdown.splitlines() if line.startswith("| expression accuracy |"))
    assert f"**{acc:.3f}** [{lo:.3f}, {hi:.3f}]" in acc_line
    assert acc_line.count("**") == 2  # only the better run is bold
    assert "mobilenet_v2" in markdown and "resnet50" in markdown and "4.2" in markdown
    rows = _csv_rows(csv_text)
    best_acc = [r["run"] for r in rows if r["metric"] == "expression accuracy" and r["best"] == "1"]
    assert best_acc == ["good"]
    ece = {r["run"]: float(r["value"]) for r in rows if r["metric"] == "expression ece"}
    best_ece = [r["run"] for r in rows if r["metric"] == "expression ece" and r["best"] == "1"]
    assert best_ece == [min(ece, key=ece.get)]  # lower is better for calibration error
    v_ccc = [r for r in rows if r["metric"] == "valence ccc" and r["run"] == "good"][0]
    assert float(v_ccc["ci_low"]) <= float(v_ccc["value"]) <= float(v_ccc["ci_high"])


def test_compare_different_label_sets_uses_shared_classes(tmp_path):
    full = _run_dir(tmp_path, "affectnet8", skill=2.0, seed=2)
    fer = _run_dir(tmp_path, "fer7", skill=2.0, seed=3, restrict=FER2013_CLASSES, labels_in_data=7)
    markdown, csv_text = compare([full, fer])
    assert "different label sets" in markdown
    rows = _csv_rows(csv_text)
    metrics = {r["metric"] for r in rows}
    assert "expression accuracy (shared)" in metrics
    assert "F1 Contempt" not in metrics and "F1 Happy" in metrics
    # On the run that was already restricted, the shared-class accuracy equals its own accuracy.
    fer_m = json.loads((fer / "metrics.json").read_text())
    shared = [r for r in rows if r["metric"] == "expression accuracy (shared)" and r["run"] == "fer7"][0]
    assert float(shared["value"]) == pytest.approx(fer_m["expression"]["accuracy"])


def test_compare_dir_without_metrics_names_it(tmp_path):
    good = _run_dir(tmp_path, "good", skill=1.0, seed=0)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(CompareError, match="empty_run: no metrics.json"):
        compare([good, empty])


def test_compare_same_folder_names_use_paths(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    d1 = _run_dir(tmp_path / "a", "eval", skill=1.0, seed=0)
    d2 = _run_dir(tmp_path / "b", "eval", skill=1.0, seed=1)
    markdown, _ = compare([d1, d2])
    header = markdown.splitlines()[4]
    assert str(d1) in header and str(d2) in header


def test_cli_compare_writes_files_and_reports_errors_in_one_line(tmp_path, capsys):
    from train.__main__ import main

    a = _run_dir(tmp_path, "a", skill=1.0, seed=0)
    b = _run_dir(tmp_path, "b", skill=2.0, seed=1)
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "out")]) == 0
    assert "| expression accuracy |" in capsys.readouterr().out
    assert (tmp_path / "out" / "compare.csv").is_file()
    assert main(["compare", str(a), str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err.strip()
    assert "nope: no metrics.json" in err and len(err.splitlines()) == 1


def test_an_eval_directory_takes_size_and_training_time_from_its_models_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"backbone": "efficientnet_lite0", "parameters": 4_032_010,
                                              "input_size": 160, "train_seconds": 600.0}))
    ev = _run_dir(run, "eval_test", skill=2.0, seed=0)
    m = json.loads((ev / "metrics.json").read_text())
    m["model"] = str(run / "model.int8.onnx")  # what `train eval` records
    (ev / "metrics.json").write_text(json.dumps(m))
    markdown, _ = compare([ev, _run_dir(tmp_path, "other", skill=1.0, seed=1)])
    lines = {line.split(" | ")[0]: line for line in markdown.splitlines() if line.startswith("| ")}
    assert "4.03" in lines["| parameters (M)"] and "10.0" in lines["| training time (min)"]
    assert "efficientnet_lite0" in lines["| backbone"]
