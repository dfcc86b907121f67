"""How much do MediaPipe's face blendshapes add to the image model?

A probe for the accuracy targets, not a shipped feature: the FaceLandmarker
that the realtime path already runs also outputs 52 blendshape scores per
face. This script measures them as expression features on a run's own split:

1. blendshapes of every AffectNet face in the run's splits.json (the tight
   AffectNet crops are padded so that the detector finds them);
2. logistic regression on the training part's blendshapes (C chosen on val),
   ridge regression for valence/arousal: held-out accuracy and CCC;
3. late fusion with the image model's class probabilities (from `train eval`
   predictions.csv on val and test): a weighted sum of log-probabilities, the
   weight chosen on val, reported on the held-out test part.

    python bench/blendshape_probe.py --run runs/default \\
        --val-predictions runs/default/eval_val_model/predictions.csv \\
        --test-predictions runs/default/eval_test_model/predictions.csv \\
        --face-model ../shared/models/face_landmarker.task -o runs/blendshape_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from affect.datasets.loaders import load_dataset  # noqa: E402
from affect.labels import EXPRESSIONS  # noqa: E402
from affect.metrics import ccc  # noqa: E402

PAD = 0.3  # context added around each tight crop, as a fraction of its side
N_BLENDSHAPES = 52


def blendshapes(paths: list[str], face_model: Path) -> np.ndarray:
    """[N, 52] blendshape scores; NaN rows where no face was found."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(face_model)),
                                           output_face_blendshapes=True, num_faces=1,
                                           min_face_detection_confidence=0.3, min_face_presence_confidence=0.3)
    out = np.full((len(paths), N_BLENDSHAPES), np.nan, np.float32)
    landmarker = vision.FaceLandmarker.create_from_options(options)
    try:
        for i, path in enumerate(paths):
            image = Image.open(path).convert("RGB")
            w, h = image.size
            canvas = Image.new("RGB", (int(w * (1 + 2 * PAD)), int(h * (1 + 2 * PAD))))
            canvas.paste(image, (int(w * PAD), int(h * PAD)))
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(np.asarray(canvas)))
            result = landmarker.detect(frame)
            if result.face_blendshapes:
                out[i] = [c.score for c in result.face_blendshapes[0]]
    finally:
        landmarker.close()
    return out


def model_probabilities(csv_path: Path, paths: list[str]) -> np.ndarray:
    table = pd.read_csv(csv_path)
    table.index = [Path(p).name for p in table["path"]]
    return table.loc[[Path(p).name for p in paths], [f"p_{c}" for c in EXPRESSIONS]].to_numpy(np.float64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="run directory with splits.json")
    ap.add_argument("--affectnet", type=Path, default=Path("../shared/data/affectnet"))
    ap.add_argument("--face-model", type=Path, default=Path("../shared/models/face_landmarker.task"))
    ap.add_argument("--val-predictions", type=Path, help="train eval predictions.csv on the val part")
    ap.add_argument("--test-predictions", type=Path, help="train eval predictions.csv on the test part")
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args(argv)

    labels = {Path(s.path).name: s for s in load_dataset({"type": "affectnet", "root": str(args.affectnet)}).samples}
    splits = json.loads((args.run / "splits.json").read_text())
    parts = {}
    for name in ("train", "val", "test"):
        paths = [p for p in splits[name] if Path(p).name in labels and "affectnet" in p]
        samples = [labels[Path(p).name] for p in paths]
        x = blendshapes(paths, args.face_model)
        parts[name] = dict(paths=paths, x=np.nan_to_num(x, nan=0.0), found=float(np.isfinite(x[:, 0]).mean()),
                           y=np.array([s.expression for s in samples]),
                           va=np.array([[s.valence, s.arousal] for s in samples], np.float64))
    tr, va, te = parts["train"], parts["val"], parts["test"]
    result: dict = {"faces_found": {k: round(v["found"], 4) for k, v in parts.items()},
                    "n": {k: len(v["y"]) for k, v in parts.items()}}

    best = max((make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(tr["x"], tr["y"])
                for c in (0.03, 0.1, 0.3, 1.0, 3.0)), key=lambda m: (m.predict(va["x"]) == va["y"]).mean())
    result["blendshapes_only"] = {"C": best[-1].C, "val_accuracy": float((best.predict(va["x"]) == va["y"]).mean()),
                                  "test_accuracy": float((best.predict(te["x"]) == te["y"]).mean())}
    for j, name in enumerate(("valence", "arousal")):
        ok = np.isfinite(tr["va"][:, j]) & (np.abs(tr["va"][:, j]) <= 1)
        reg = make_pipeline(StandardScaler(), Ridge(alpha=10.0)).fit(tr["x"][ok], tr["va"][ok, j])
        ok_te = np.isfinite(te["va"][:, j])
        result["blendshapes_only"][f"test_{name}_ccc"] = float(
            ccc(te["va"][ok_te, j], np.clip(reg.predict(te["x"][ok_te]), -1, 1)))

    if args.val_predictions and args.test_predictions:
        pv, pt = model_probabilities(args.val_predictions, va["paths"]), model_probabilities(args.test_predictions, te["paths"])
        bv, bt = best.predict_proba(va["x"]), best.predict_proba(te["x"])

        def fused(p, b, w):
            return ((1 - w) * np.log(p + 1e-6) + w * np.log(b + 1e-6)).argmax(1)

        weights = np.round(np.arange(0.0, 0.81, 0.05), 2)
        val_acc = [float((fused(pv, bv, w) == va["y"]).mean()) for w in weights]
        w = float(weights[int(np.argmax(val_acc))])
        result["fusion"] = {"weight_chosen_on_val": w, "val_accuracy": max(val_acc),
                            "test_accuracy_model": float((pt.argmax(1) == te["y"]).mean()),
                            "test_accuracy_fused": float((fused(pt, bt, w) == te["y"]).mean())}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
