"""Write a run folder that holds only a config's split: config.yaml + splits.json, what
`python -m train eval --run-dir DIR --split val|test --source PART` and
`python -m export calibrate --run-dir DIR` read. The split is seeded, so the
shipped model's parts come back from its recipe without its (unshipped) run folder:

    python bench/split_dir.py configs/default.yaml ~/affectcam-runs/default_splits

(`train fit` writes the same two files, path for path, into every run of that config.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, help="training config (its data entries and split seed)")
    p.add_argument("out", type=Path, help="folder to write config.yaml and splits.json into")
    args = p.parse_args(argv)

    from affect.files import atomic_write_json
    from train.config import dump_config, load_config
    from train.data.assembly import build_splits

    cfg = load_config(args.config)
    splits = build_splits(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, args.out / "config.yaml")
    atomic_write_json(args.out / "splits.json", {
        split: [s.path for part in getattr(splits, split) for s in part.samples] for split in ("train", "val", "test")})
    counts = ", ".join(f"{split} {splits.count(split)}" for split in ("train", "val", "test"))
    print(f"wrote {args.out / 'config.yaml'} and {args.out / 'splits.json'} ({counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
