"""The expression temperature end to end: fitted on a run's validation part
(`export calibrate`, `export onnx --calibrate`) → `affect.temperature` in the ONNX
metadata → the probabilities the camera's reader gives equal softmax(graph
logits / T) and what `train eval` of that file writes; a file without the key
loads as before. On the packaged model and ~40 real AffectNet / RAF-DB faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from affect.preprocess import softmax
from affect.spec import INPUT_NAME, OUTPUT_EXPRESSION, ModelSpec, SpecError

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from export.calibrate import calibrate_onnx  # noqa: E402
from export.common import ExportError  # noqa: E402
from realtime.reader import AffectReader  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "realtime" / "models" / "affectcam_default.onnx"


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, affectnet_root) -> Path:
    """A run folder whose val split is 24 AffectNet and 16 RAF-DB faces (what calibrate reads)."""
    from affect.datasets.loaders import load_dataset

    rafdb_root = affectnet_root.parent / "rafdb"
    if not rafdb_root.is_dir():
        pytest.skip(f"{rafdb_root} not found: this test needs the project's ../shared data")
    entries = [{"type": "affectnet", "root": str(affectnet_root), "limit": 24, "name": "affectnet"},
               {"type": "rafdb", "root": str(rafdb_root), "limit": 16, "name": "rafdb"}]
    run = tmp_path_factory.mktemp("run")
    val = [s.path for e in entries for s in load_dataset(e).samples]
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"datasets": entries}}))
    (run / "splits.json").write_text(json.dumps({"train": [], "val": val, "test": []}))
    return run


@pytest.fixture(scope="module")
def calibrated(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "model.calibrated.onnx"
    return calibrate_onnx(PACKAGED, run_dir, out, eval_dir=out.parent / "evals"), out


def test_a_file_without_a_temperature_loads_as_the_plain_softmax():
    assert "affect.temperature" not in _props(PACKAGED)
    with AffectReader(PACKAGED) as reader:
        assert reader.spec.temperature == 1.0
        x = np.random.default_rng(0).normal(size=(3, 3, 112, 112)).astype(np.float32)
        probs, _ = reader.read_batch(x)
        raw = reader.backend.predict(x)[OUTPUT_EXPRESSION]
    np.testing.assert_allclose(probs, softmax(raw.astype(np.float64)), rtol=1e-12)


def test_calibrate_writes_the_temperature_and_lowers_validation_nll(calibrated):
    result, out = calibrated
    props = _props(out)
    assert float(props["affect.temperature"]) == pytest.approx(result.temperature, rel=1e-12)
    assert result.temperature != pytest.approx(1.0, abs=1e-3)
    assert [p.name for p in result.parts] == ["affectnet", "rafdb"] and [p.n for p in result.parts] == [24, 16]
    # The objective: the mean of the parts' NLL cannot rise (T = 1 was a candidate).
    assert np.mean([p.nll_after for p in result.parts]) <= np.mean([p.nll_before for p in result.parts]) + 1e-9
    # Everything but the temperature is the original file's: same graph, same other metadata.
    original = onnx.load(str(PACKAGED))
    assert onnx.load(str(out)).graph == original.graph
    assert {k: v for k, v in props.items() if k != "affect.temperature"} == _props(PACKAGED)


def test_runtime_probabilities_equal_the_graph_and_train_eval(calibrated, run_dir, tmp_path):
    """What the camera shows (AffectReader: overlay, CSV, JSONL) equals softmax of the
    exported graph's logits over the metadata's T and equals `train eval` of the file."""
    import onnxruntime as ort

    from affect.datasets.loaders import load_dataset
    from train.data import AffectDataset
    from train.evaluate import evaluate

    result, out = calibrated
    evaluate(out, None, tmp_path / "eval", split="val", run_dir=run_dir, source="rafdb", bootstrap=0, n_examples=0)
    rows = _csv_rows(tmp_path / "eval" / "predictions.csv")
    # The same faces as eval read them (the training pipeline's eval crop and normalisation).
    entry = next(e for e in yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["datasets"]
                 if e["name"] == "rafdb")
    info = load_dataset(entry)
    by_path = {s.path: s for s in info.samples}
    with AffectReader(out) as reader:
        spec = reader.spec
        assert spec.temperature == pytest.approx(result.temperature, rel=1e-12)
        ds = AffectDataset([by_path[r["path"]] for r in rows], size=spec.input_size, mean=spec.mean, std=spec.std,
                           labels=info.label_set)
        batch = np.stack([ds[i]["image"].numpy() for i in range(len(ds))]).astype(np.float32)
        probs, _ = reader.read_batch(batch)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run([OUTPUT_EXPRESSION], {INPUT_NAME: batch})[0].astype(np.float64)
    np.testing.assert_allclose(probs, softmax(logits / result.temperature), rtol=1e-9, atol=1e-12)
    assert not np.allclose(probs, softmax(logits), atol=1e-4)  # the temperature did something
    written = np.array([[float(r[f"p_{x}"]) for x in spec.labels] for r in rows])
    np.testing.assert_allclose(written, probs, rtol=1e-5, atol=1e-7)


def test_calibrate_reads_each_part_as_train_eval_does(calibrated, run_dir, tmp_path):
    """Without the training code (affect.datasets and inference), the faces of a part are read
    and run exactly as `train eval --split val --source PART` reads them: what --eval-dir keeps
    is what eval of the same file writes."""
    from train.evaluate import evaluate

    evaluate(PACKAGED, None, tmp_path / "eval", split="val", run_dir=run_dir, source="affectnet", bootstrap=0,
             n_examples=0)
    _, out = calibrated
    kept = out.parent / "evals" / "val_affectnet"
    assert (kept / "predictions.csv").read_text() == (tmp_path / "eval" / "predictions.csv").read_text()
    assert json.loads((kept / "metrics.json").read_text()) == json.loads((tmp_path / "eval" / "metrics.json").read_text())


def _csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_calibrated_file_calibrated_again_keeps_its_temperature(calibrated, run_dir, tmp_path):
    """Fitting on the same faces again finds T already right (the scale on top is ~1)."""
    result, out = calibrated
    again = calibrate_onnx(out, run_dir, tmp_path / "again.onnx")
    assert again.temperature_before == pytest.approx(result.temperature, rel=1e-12)
    assert again.temperature == pytest.approx(result.temperature, rel=1e-3)


def test_calibrate_refuses_what_it_cannot_fit_on(run_dir, tmp_path):
    with pytest.raises(ExportError, match="no val part named \\['ferplus'\\]"):
        calibrate_onnx(PACKAGED, run_dir, tmp_path / "x.onnx", sources=["ferplus"])
    with pytest.raises(ExportError, match="give a .onnx file"):
        calibrate_onnx(REPO / "README.md", run_dir, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_calibrate_cli_says_a_run_folder_without_splits_in_one_line(tmp_path, capsys):
    from export.__main__ import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: {datasets: []}\n")
    assert main(["calibrate", str(PACKAGED), "--run-dir", str(run), "-o", str(tmp_path / "x.onnx")]) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == [f"error: {run / 'splits.json'}: not found; pass --data TYPE:ROOT or --run-dir of the training run"]
    assert not (tmp_path / "x.onnx").exists()


def test_export_onnx_with_calibrate_writes_the_temperature(run_dir, tmp_path, affectnet_root):
    import torch

    from affect.labels import EXPRESSIONS
    from export.onnx_export import export_onnx
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", pretrained="none", input_size=64, hidden=32).eval()
    checkpoint = save_checkpoint(tmp_path / "small.pt", model=model, spec=spec_for(model, list(EXPRESSIONS), "test"),
                                 model_args=model_args(model, 32, 0.1))
    out = export_onnx(checkpoint, tmp_path / "small.onnx", parity_data=affectnet_root, calibrate_run=run_dir)
    with AffectReader(out) as reader:
        assert reader.spec.temperature == pytest.approx(float(_props(out)["affect.temperature"]))


@pytest.mark.parametrize("value", ["0", "-1", "nan", "warm"])
def test_a_bad_temperature_in_the_metadata_is_one_clear_error(value):
    props = {**ModelSpec(input_size=112).to_metadata(), "affect.temperature": value}
    with pytest.raises(SpecError, match="model.onnx: "):
        ModelSpec.from_metadata(props, source="model.onnx")


def test_the_temperature_round_trips_through_metadata_and_checkpoint_dicts():
    spec = ModelSpec(input_size=112, temperature=0.75)
    assert ModelSpec.from_metadata(spec.to_metadata()).temperature == 0.75
    assert ModelSpec.from_dict(spec.to_dict()).temperature == 0.75
    old = {k: v for k, v in ModelSpec(input_size=112).to_dict().items() if k != "temperature"}
    assert ModelSpec.from_dict(old).temperature == 1.0
    assert "affect.temperature" not in ModelSpec(input_size=112).to_metadata()
