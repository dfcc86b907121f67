"""bench/split_dir.py writes the folder `train eval --run-dir` and `export calibrate --run-dir`
read: a config's seeded split, path for path what `train fit` writes into its run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_split_dir_writes_the_fits_split(tmp_path, affectnet_root, capsys):
    from train.config import load_config
    from train.fit import build_splits

    spec = importlib.util.spec_from_file_location("split_dir", REPO / "bench" / "split_dir.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"datasets": [
        {"type": "affectnet", "root": str(affectnet_root), "limit": 40, "fractions": [0.6, 0.2, 0.2]}]}}))
    assert module.main([str(config), str(tmp_path / "run")]) == 0
    assert "splits.json" in capsys.readouterr().out
    written = json.loads((tmp_path / "run" / "splits.json").read_text())
    splits = build_splits(load_config(config))
    for part in ("train", "val", "test"):
        assert written[part] == [s.path for p in getattr(splits, part) for s in p.samples]
    assert written["val"] and written["test"] and not set(written["val"]) & set(written["test"])
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["datasets"][0]["limit"] == 40
