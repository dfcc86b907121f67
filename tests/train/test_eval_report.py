"""train.evaluate end to end: a small random-init ONNX model (made once per
session) on ~40 real AffectNet / FER2013 images; outputs exist, agree with each
other, and bad inputs fail with one clear error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from affect.labels import EXPRESSIONS
from affect.spec import INPUT_NAME, OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
tvm = pytest.importorskip("torchvision.models")

from train.evaluate import EvalError, evaluate, predictions_to_metrics, write_curves  # noqa: E402

SIZE = 64
N = 40


class _TinyAffect(torch.nn.Module):
    """MobileNetV2 features + the contract's two heads (random init)."""

    def __init__(self, nan: bool = False):
        super().__init__()
        self.features = tvm.mobilenet_v2(weights=None).features
        self.expression = torch.nn.Linear(1280, len(EXPRESSIONS))
        self.va = torch.nn.Linear(1280, 2)
        self.nan = nan

    def forward(self, x):
        h = self.features(x).mean(dim=(2, 3))
        logits = self.expression(h)
        if self.nan:
            logits = logits * torch.tensor(float("nan"))
        return logits, torch.tanh(self.va(h))


def _export(path: Path, nan: bool = False) -> Path:
    torch.manual_seed(0)
    model = _TinyAffect(nan).eval()
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(path), input_names=[INPUT_NAME],
                      output_names=[OUTPUT_EXPRESSION, OUTPUT_VA], dynamic_axes={INPUT_NAME: {0: "n"}},
                      opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    spec = ModelSpec(labels=list(EXPRESSIONS), input_size=SIZE, mean=[0.5] * 3, std=[0.5] * 3,
                     backbone="mobilenet_v2-test", trained_on="nothing (random init)")
    for key, value in spec.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def affectnet_eval(onnx_model, affectnet_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_affectnet")
    metrics = evaluate(onnx_model, {"type": "affectnet", "root": str(affectnet_root)}, out, limit=N,
                       batch_size=16, bootstrap=200)
    return out, metrics


def test_eval_writes_every_output(affectnet_eval):
    out, metrics = affectnet_eval
    for name in ("metrics.json", "predictions.csv", "confusion.png", "va_scatter.png", "examples_correct.png",
                 "examples_incorrect.png", "report.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.partial*"))
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["n"] == N and on_disk["expression"]["labels"] == list(EXPRESSIONS)
    assert {"valence", "arousal", "ci"} <= set(on_disk)
    report = (out / "report.md").read_text()
    assert f"{on_disk['expression']['accuracy']:.3f}" in report and "confusion.png" in report


def test_predictions_csv_recomputes_metrics_json(affectnet_eval):
    out, metrics = affectnet_eval
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == N
    assert all(Path(r["path"]).is_file() for r in rows)
    acc = np.mean([r["true_label"] == r["pred_label"] for r in rows])
    assert acc == pytest.approx(metrics["expression"]["accuracy"])
    again = predictions_to_metrics(out / "predictions.csv", bootstrap=200)
    for key in ("accuracy", "macro_f1", "cohen_kappa", "roc_auc_macro", "pr_auc_macro", "ece"):
        assert again["expression"][key] == pytest.approx(metrics["expression"][key], abs=1e-5), key
    assert again["expression"]["confusion"] == metrics["expression"]["confusion"]
    for sec in ("valence", "arousal"):
        for key in ("rmse", "mae", "ccc", "sagr"):
            assert again[sec][key] == pytest.approx(metrics[sec][key], abs=1e-5), (sec, key)
    assert again["ci"]["accuracy"] == pytest.approx(metrics["ci"]["accuracy"], abs=1e-9)


def test_eval_on_fer2013_restricts_to_shared_classes(onnx_model, fer2013_root, tmp_path):
    metrics = evaluate(onnx_model, {"type": "fer2013", "root": str(fer2013_root), "usage": "PublicTest"},
                       tmp_path, limit=28, batch_size=28, bootstrap=50)
    assert "Contempt" not in metrics["expression"]["labels"] and len(metrics["expression"]["labels"]) == 7
    assert "Contempt" in metrics["note"]
    assert "valence" not in metrics  # FER2013 has none
    with open(tmp_path / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["pred_label"] != "Contempt" for r in rows)  # argmax over the shared classes
    assert "p_Contempt" in rows[0]  # the model's full softmax is kept
    again = predictions_to_metrics(tmp_path / "predictions.csv", bootstrap=50)
    assert again["expression"]["macro_f1"] == pytest.approx(metrics["expression"]["macro_f1"])
    assert "Contempt" in (tmp_path / "report.md").read_text()


def test_eval_errors_are_clear(onnx_model, affectnet_root, tmp_path):
    with pytest.raises(EvalError, match="empty"):
        evaluate(onnx_model, [], tmp_path / "a")
    with pytest.raises(EvalError, match="model file not found"):
        evaluate(tmp_path / "missing.onnx", [], tmp_path / "b")
    from affect.datasets.loaders import load_affectnet

    samples = load_affectnet(affectnet_root, limit=4).samples
    nan_model = _export(tmp_path / "nan.onnx", nan=True)
    with pytest.raises(EvalError, match=r"nan\.onnx: the model produced NaN"):
        evaluate(nan_model, samples, tmp_path / "c")
    assert not (tmp_path / "c" / "metrics.json").exists()


def test_eval_rejects_labels_that_do_not_match(onnx_model, affectnet_root, tmp_path):
    # Same graph, metadata relabelled to classes no dataset has.
    proto = onnx.load(str(onnx_model))
    for entry in proto.metadata_props:
        if entry.key == "affect.labels":
            entry.value = json.dumps([f"thing{i}" for i in range(len(EXPRESSIONS))])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, str(foreign))
    with pytest.raises(EvalError, match="share no class"):
        evaluate(foreign, {"type": "affectnet", "root": str(affectnet_root)}, tmp_path / "out", limit=4)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_write_curves_from_history(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,train_loss,val_loss,val_accuracy,val_macro_f1,val_valence_ccc,lr\n"
                       "1,2.0,1.9,0.2,0.1,0.05,0.001\n2,1.5,1.6,0.3,0.2,,0.0005\n")
    out = write_curves(history, tmp_path / "curves.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,train_loss\n")
    from train.report import ReportError

    with pytest.raises(ReportError, match="empty.csv: no epochs"):
        write_curves(empty, tmp_path / "x.png")


def test_eval_of_a_checkpoint_on_a_run_split(tmp_path, affectnet_root, fer2013_root):
    """A .pt checkpoint through the PyTorch backend, on the test part recorded in
    the run's splits.json (no --data)."""
    import yaml

    from affect.datasets.loaders import load_affectnet, load_dataset
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("mobilenet_v2", pretrained="none", input_size=SIZE, hidden=32).eval()
    spec = spec_for(model, list(EXPRESSIONS), trained_on="test")
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint.pt", model=model, spec=spec, model_args=model_args(model, 32, 0.3))
    paths = [s.path for s in load_affectnet(affectnet_root, limit=12).samples]
    fer = {"type": "fer2013", "root": str(fer2013_root), "limit": 7, "role": "train"}
    fer_paths = [s.path for s in load_dataset({k: v for k, v in fer.items() if k != "role"}).samples]
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"datasets": [{"type": "affectnet", "root": str(affectnet_root), "limit": 12, "role": "auto"}, fer]}}))
    (run / "splits.json").write_text(json.dumps({"train": paths[:6] + fer_paths, "val": paths[6:8], "test": paths[8:]}))
    metrics = evaluate(run / "checkpoint.pt", None, run / "eval_test", batch_size=8, bootstrap=20)
    assert metrics["n"] == 4 and metrics["dataset"] == "affectnet:test"  # FER2013 only trained, so not named
    with open(run / "eval_test" / "predictions.csv", newline="") as fh:
        assert sorted(r["path"] for r in csv.DictReader(fh)) == sorted(paths[8:])
    with pytest.raises(EvalError, match="splits.json: not found"):
        (run / "splits.json").unlink()
        evaluate(run / "checkpoint.pt", None, run / "eval_again")


def test_cli_eval_prints_summary_and_one_line_errors(onnx_model, affectnet_root, tmp_path, capsys):
    from train.__main__ import main

    out = tmp_path / "cli"
    rc = main(["eval", str(onnx_model), "--data", f"affectnet:{affectnet_root}", "--limit", "8", "-o", str(out)])
    assert rc == 0 and (out / "metrics.json").is_file()
    assert "accuracy" in capsys.readouterr().out
    rc = main(["eval", str(onnx_model), "--data", "affectnet", "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "TYPE:ROOT" in err and len(err.splitlines()) == 1


def test_eval_into_an_earlier_eval_folder_needs_overwrite(onnx_model, affectnet_root, tmp_path, capsys):
    """Issue 24 item 14: `train eval -o` replaced an earlier evaluation silently."""
    from train.__main__ import main

    out = tmp_path / "eval"
    args = ["eval", str(onnx_model), "--data", f"affectnet:{affectnet_root}", "--limit", "6", "-o", str(out)]
    assert main(args) == 0
    before = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main([*args[:-3], "4", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds an evaluation" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == before
    assert main([*args[:-3], "4", "-o", str(out), "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["n"] == 4
    for limit in ("0", "-1"):
        assert main([*args[:-3], limit, "-o", str(tmp_path / "other")]) == 2
        assert f"--limit {limit}: give at least 1 image" in capsys.readouterr().err


def test_eval_of_a_checkpoint_and_its_onnx_export_agree(tmp_path, affectnet_root):
    from export.onnx_export import export_onnx
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("mobilenet_v2", pretrained="auto", input_size=SIZE, hidden=32).eval()
    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", model=model, spec=spec_for(model, list(EXPRESSIONS)),
                           model_args=model_args(model, 32, 0.3))
    onnx_path = export_onnx(ckpt, tmp_path / "model.onnx", parity_data=affectnet_root)
    data = {"type": "affectnet", "root": str(affectnet_root), "limit": 24}
    from_pt = evaluate(ckpt, data, tmp_path / "eval_pt", batch_size=8, bootstrap=0)
    from_onnx = evaluate(onnx_path, data, tmp_path / "eval_onnx", batch_size=8, bootstrap=0)
    assert from_pt["n"] == from_onnx["n"] == 24
    for section, key in (("expression", "accuracy"), ("expression", "macro_f1"), ("valence", "ccc"),
                         ("arousal", "ccc")):
        assert from_pt[section][key] == pytest.approx(from_onnx[section][key], abs=1e-6)
    with open(tmp_path / "eval_pt" / "predictions.csv") as a, open(tmp_path / "eval_onnx" / "predictions.csv") as b:
        rows_pt, rows_onnx = list(csv.DictReader(a)), list(csv.DictReader(b))
    for ra, rb in zip(rows_pt, rows_onnx, strict=True):
        assert ra["path"] == rb["path"] and ra["pred_label"] == rb["pred_label"]
