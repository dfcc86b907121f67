"""Issue 24 item 9 (training side): a pooled held-out evaluation counts each
face once, and a model's `trained_on` names only what it was trained on."""

from __future__ import annotations

import json

import pytest
import yaml

from train.config import DEFAULTS

torch = pytest.importorskip("torch")


def _fer_test(root, name):
    return {"type": "fer2013", "root": str(root), "usage": "PublicTest", "name": name, "role": "test", "limit": 6}


def test_pooled_test_split_counts_a_face_listed_by_two_parts_once(tmp_path, affectnet_root, fer2013_root, caplog):
    """FER2013 PublicTest is held out twice in the default recipe (FER+ votes and folder
    labels); pooling every part used to count those faces twice."""
    from affect.datasets.loaders import load_dataset
    from affect.labels import EXPRESSIONS
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.evaluate import evaluate
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", pretrained="none", input_size=64, hidden=32).eval()
    run = tmp_path / "run"
    ckpt = save_checkpoint(run / "checkpoint.pt", model=model, spec=spec_for(model, list(EXPRESSIONS)),
                           model_args=model_args(model, 32, 0.3))
    a, b = _fer_test(fer2013_root, "ferplus_test"), _fer_test(fer2013_root, "fer2013_test")
    paths = [s.path for s in load_dataset({k: v for k, v in a.items() if k != "role"}).samples]
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"datasets": [a, b]}}))
    (run / "splits.json").write_text(json.dumps({"train": [], "val": [], "test": paths + paths}))
    caplog.set_level("WARNING")
    metrics = evaluate(ckpt, None, run / "eval_test", bootstrap=10)
    assert metrics["n"] == len(set(paths)) == 6
    assert "6 of fer2013_test counted earlier" in metrics["dataset"]
    assert "--source fer2013_test" in caplog.text


def test_trained_on_lists_the_parts_trained_on_and_not_the_held_out_only_ones(affectnet_root, fer2013_root):
    from train.fit import build_splits, trained_on_text

    cfg = {**DEFAULTS, "seed": 0, "labels": DEFAULTS.get("labels"),
           "data": {**DEFAULTS["data"], "datasets": [
               {"type": "affectnet", "root": str(affectnet_root), "limit": 40, "fractions": [0.6, 0.2, 0.2]},
               _fer_test(fer2013_root, "fer2013_test")]}}
    cfg["train"] = {**DEFAULTS["train"], "train_on_val": False}
    splits = build_splits(cfg)
    assert trained_on_text(cfg, splits) == "affectnet:affectnet"
