"""Subject-grouped cross-validation of the two AU readers on CK+: the CNN's AU head
(configs/reference/ref5_ckplus_aus.yaml, fitted once per fold) and the blendshape map
(train.au_map), on the same GroupKFold folds (train.au_map.subject_folds).

Each fold: the other folds' subjects are written as a CK+ table of their own (labels.csv
rows + a link to the images folder), the CNN is fitted on it (its own subject split
85/15 picks the epoch), then `python -m train eval --data ckplus:FOLD` scores the fold's
unseen subjects (at the fold model's own AU thresholds, chosen on its validation subjects when
the config says `train.au_thresholds`); the map is fitted on the same subjects' blendshapes.
Pooled out-of-fold figures: per-AU F1, micro-/macro-F1, binary accuracy, mAP, group accuracy.

    nice -n 10 python bench/au_cv.py --data ../shared/data/ckplus --out ~/affectcam-runs/au_cv
    nice -n 10 python bench/au_cv.py --data ../shared/data/ckplus --out OUT --map-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from affect.aus import AU_NAMES, fit_au_map  # noqa: E402
from affect.metrics import au_metrics  # noqa: E402
from train.au_map import MAP_BLENDSHAPES, ckplus_faces, subject_folds, summary  # noqa: E402


def write_table(rows: pd.DataFrame, images: Path, folder: Path) -> Path:
    """A CK+ table of `rows` in `folder` (labels.csv + images/ linked to the source images)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / "labels.csv", index=False)
    link = folder / "images"
    if not link.exists():
        link.symlink_to(images.resolve(), target_is_directory=True)
    return folder


def run(cmd: list[str], log: Path) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)


def cnn_fold(data: Path, table: pd.DataFrame, test_mask: np.ndarray, out: Path, config: Path,
             threads: int) -> pd.DataFrame:
    fold_train = write_table(table[~test_mask], data / "images", out / "train_data")
    fold_test = write_table(table[test_mask], data / "images", out / "test_data")
    run_dir, eval_dir = out / "run", out / "eval"
    py = sys.executable
    if not (run_dir / "run.json").is_file():  # written when a fit ends (checkpoint.pt appears at its first epoch)
        run([py, "-m", "train", "fit", "--config", str(config), "--run-dir", str(run_dir),
             "--set", f"data.datasets.0.root={fold_train}", "--set", "data.split.fractions=[0.85, 0.15]",
             "--threads", str(threads)], out / "log.txt")
    if not (eval_dir / "predictions.csv").is_file():
        run([py, "-m", "train", "eval", str(run_dir / "checkpoint.pt"), "--data", f"ckplus:{fold_test}",
             "-o", str(eval_dir)], out / "log.txt")
    pred = pd.read_csv(eval_dir / "predictions.csv", keep_default_na=False, na_values=[""])
    # The fold's model's own AU thresholds (chosen on its validation subjects; none: 0.5), per face
    aus = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8")).get("action_units") or {}
    thresholds = aus.get("thresholds") or [float(aus.get("threshold", 0.5))] * len(AU_NAMES)
    for a, t in zip(AU_NAMES, thresholds):
        pred[f"threshold_{a}"] = t
    return pred


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ckplus")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "reference" / "ref5_ckplus_aus.yaml")
    p.add_argument("--face-model", default=None)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--map-only", action="store_true")
    p.add_argument("--only", type=int, nargs="+", metavar="J",
                   help="fit/evaluate only these folds (0-based; to run folds in parallel processes), no pooling")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    faces = ckplus_faces(args.data, args.face_model)
    folds = subject_folds(faces.subjects, args.folds)
    table = pd.read_csv(args.data / "labels.csv", dtype=str, keep_default_na=False)
    if list(table["file"]) != [Path(x).name for x in faces.paths]:
        raise SystemExit(f"{args.data / 'labels.csv'}: rows and loaded faces differ in order")
    results: dict = {"folds": args.folds, "faces": len(folds), "subjects": int(len(set(faces.subjects)))}

    # The blendshape map, fitted on each fold's other subjects.
    probs = np.zeros(faces.targets.shape)
    for j in range(args.folds):
        fit = (folds != j) & faces.found
        model = fit_au_map(faces.rows[fit], faces.targets[fit], MAP_BLENDSHAPES)
        test = folds == j
        probs[test] = np.nan_to_num(model.predict(faces.rows[test]), nan=0.0)
    m = au_metrics(AU_NAMES, faces.targets, probs)
    results["map"] = {**summary(m), "per_au_f1": {a: round(v["f1"], 3) for a, v in m["per_au"].items()},
                      "found": int(faces.found.sum())}

    if not args.map_only:
        parts = []
        for j in (args.only if args.only else range(args.folds)):
            print(f"fold {j + 1}/{args.folds}: fitting the CNN on {int((folds != j).sum())} faces", flush=True)
            parts.append(cnn_fold(args.data, table, folds == j, args.out / f"fold{j}", args.config, args.threads))
        if args.only:
            return 0
        pred = pd.concat(parts, ignore_index=True)
        true = pred[[f"true_{a}" for a in AU_NAMES]].to_numpy(float)
        prob = pred[[f"p_{a}" for a in AU_NAMES]].to_numpy(float)
        # Decisions at each fold's own thresholds (F1, binary accuracy); mAP from the raw probabilities.
        present = (prob >= pred[[f"threshold_{a}" for a in AU_NAMES]].to_numpy(float)).astype(float)
        m = {**au_metrics(AU_NAMES, true, present), "map": au_metrics(AU_NAMES, true, prob)["map"]}
        results["cnn"] = {**summary(m), "per_au_f1": {a: round(v["f1"], 3) for a, v in m["per_au"].items()},
                          "group_accuracy": round(float((pred["true_label"] == pred["pred_label"]).mean()), 4)}
    out = args.out / "au_cv.json"
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    for reader in ("map", "cnn"):
        if reader in results:
            r = results[reader]
            print(f"{reader}: micro-F1 {r['f1_micro']:.3f}, macro-F1 {r['f1_macro']:.3f}, "
                  f"binary accuracy {r['binary_accuracy']:.3f}, mAP {r['map']:.3f}"
                  + (f", group accuracy {r['group_accuracy']:.3f}" if "group_accuracy" in r else ""))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
