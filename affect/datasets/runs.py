"""A training run's folder as data: its `config.yaml` (the datasets it was
fitted on) and `splits.json` (which faces went into train / val / test), read
without torch, so `train eval --run-dir`, `export calibrate --run-dir` and the
blendshape fusion pick the same faces from it."""

from __future__ import annotations

import json
from pathlib import Path

from affect.datasets.loaders import load_dataset
from affect.datasets.records import DataError, DatasetInfo
from affect.errors import first_line


class RunError(DataError):
    """A run folder without a readable config.yaml or splits.json (one line naming the file)."""


def read_run(run: str | Path) -> tuple[dict, dict, list[DatasetInfo]]:
    """A training run's (config, splits, DatasetInfo per configured dataset), read
    from its config.yaml + splits.json; RunError naming a missing or unreadable file,
    DataError for a configured dataset that cannot be read."""
    import yaml

    run = Path(run)
    cfg_path, splits_path = run / "config.yaml", run / "splits.json"
    for p in (cfg_path, splits_path):
        if not p.is_file():
            raise RunError(f"{p}: not found; pass --data TYPE:ROOT or --run-dir of the training run")
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        splits = json.loads(splits_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise RunError(f"{run}: config.yaml / splits.json unreadable ({first_line(exc)})") from None
    if not isinstance(cfg, dict) or not isinstance(splits, dict):
        raise RunError(f"{run}: config.yaml and splits.json must each hold a mapping")
    infos = [load_dataset({k: v for k, v in d.items() if k != "labels"}, labels=cfg.get("labels"))
             for d in cfg.get("data", {}).get("datasets", [])]
    return cfg, splits, infos
