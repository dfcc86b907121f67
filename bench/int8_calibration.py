"""Which INT8 calibration keeps a model closest to its FP32 file?

Quantises one FP32 ONNX file with each calibration method (stem in float, the
export default otherwise) and reports, on training faces (never the held-out
part), how often the INT8 file's expression argmax agrees with FP32's and the
mean |Δ| of valence/arousal. The choice is made here, so the held-out figures
stay an honest check afterwards.

    python bench/int8_calibration.py runs/default_model/model.onnx \\
        --data runs/default_model/calibration.txt --faces 800 -o runs/int8_calibration
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from affect.spec import OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec  # noqa: E402
from export.common import ort_session  # noqa: E402
from export.faces import feeds, load_faces, score_blendshapes, with_nan_rows  # noqa: E402
from export.int8 import Int8Options, export_int8  # noqa: E402


def outputs(path: Path, xs: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    session = ort_session(path)
    runs = [session.run([OUTPUT_EXPRESSION, OUTPUT_VA], x) for x in xs]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="FP32 ONNX file")
    ap.add_argument("--data", type=Path, required=True, help="training faces: folder, .txt list or splits.json")
    ap.add_argument("--faces", type=int, default=800, help="faces the agreement is measured on")
    ap.add_argument("--methods", nargs="+", default=["minmax", "percentile"])
    ap.add_argument("-o", "--out", type=Path, default=Path("runs/int8_calibration"))
    ap.add_argument("--face-model", type=Path, help="MediaPipe face_landmarker.task, for models that take "
                    "blendshapes (default: $AFFECTCAM_FACE_MODEL, the cache, a download)")
    args = ap.parse_args(argv)

    spec = ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(args.model)).metadata_props})
    faces = load_faces(args.data, limit=args.faces, seed=7)
    if spec.blendshapes:  # real scores, and every 4th face without (the detector path)
        score_blendshapes(faces, spec.blendshapes, args.face_model)
        faces.blendshapes = with_nan_rows(faces.blendshapes)
    xs = list(feeds(faces, spec, 64, args.model))
    ref_logits, ref_va = outputs(args.model, xs)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods:
        start = time.perf_counter()
        path = export_int8(args.model, args.data, args.out / f"{args.model.stem}.{method}.int8.onnx",
                           Int8Options(calibrate_method=method, face_model=args.face_model))
        logits, va = outputs(path, xs)
        rows.append({"calibration": method, "faces": len(ref_logits),
                     "argmax_agreement": round(float((logits.argmax(1) == ref_logits.argmax(1)).mean()), 4),
                     "va_mean_abs_diff": round(float(np.abs(va - ref_va).mean()), 4),
                     "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "agreement.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
