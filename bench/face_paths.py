"""Accuracy of the model through each realtime face path, on labelled face crops.

`bench/realtime.py` says how fast each face path is; this says what each one
costs in accuracy. Every labelled image (e.g. the held-out AffectNet part:
AffectNet layout, or a run's `splits.json` test list) is pasted in the middle
of a grey canvas, as a face in a camera frame would be, and read the way
`realtime.cam` reads a frame: MediaPipe finds the face (the landmarker's mesh,
or the detector's box), `affect.crop` cuts the model's crop by the model's
crop rule, and the model predicts. The reference row feeds the original
image straight to the model (the training framing).

    python bench/face_paths.py --model realtime/models/affectcam_default.int8.onnx \\
        --data runs/default/splits.json [--limit 640]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from affect.blendshapes import LANDMARKER_CROP, CropBlendshapes, blendshape_row  # noqa: E402
from affect.crop import crop_face  # noqa: E402
from affect.face_model import resolve_face_model  # noqa: E402
from affect.metrics import expression_metrics, regression_metrics  # noqa: E402
from affect.preprocess import expression_probabilities, prepare_batch, resize_square, to_rgb  # noqa: E402
from inference.backends import create_backend  # noqa: E402
from realtime.faces import FaceFinder, FaceOptions  # noqa: E402

PAD = 0.5  # canvas side = image side × (1 + 2·PAD)


def labelled_images(data: str, limit: int | None):
    """(path, expression, valence, arousal) rows from an AffectNet folder or a run's splits.json (test part)."""
    from affect.datasets.loaders import load_affectnet

    path = Path(data)
    if path.suffix == ".json":
        wanted = {p for p in json.loads(path.read_text())["test"] if "/affectnet/" in p}
        roots = {str(Path(p).parent.parent) for p in wanted}
        samples = [s for r in sorted(roots) for s in load_affectnet(r).samples if s.path in wanted]
    else:
        samples = load_affectnet(path).samples
    return samples[:limit] if limit else samples


def main(argv: list[str] | None = None) -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "realtime" / "models" / "affectcam_default.int8.onnx"))
    ap.add_argument("--data", required=True, help="AffectNet-layout folder or a run's splits.json")
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    samples = labelled_images(args.data, args.limit)
    face_model = resolve_face_model(args.face_model)
    paths = {"mesh (landmarker)": FaceOptions(face_model, max_faces=1, mode="image", fill_with_detector=False),
             "box (detector)": FaceOptions(face_model, max_faces=1, mode="image", landmarks=False)}
    backend = create_backend(args.model, threads=2)
    spec = backend.spec
    finders = {name: FaceFinder(opts) for name, opts in paths.items()}
    crops: dict[str, list] = {"original image": [], **{name: [] for name in paths}}
    # A model that takes blendshapes gets what each path gives: the training cache's scores of the
    # crop for the original image, the landmarker's for the mesh path, none (NaN) for the detector.
    names = list(spec.blendshapes)
    scores: dict[str, list] = {name: [] for name in crops}
    training_scores = CropBlendshapes(face_model) if names else None
    try:
        for s in samples:
            rgb = to_rgb(cv2.cvtColor(cv2.imread(s.path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            crops["original image"].append(resize_square(rgb, spec.input_size))  # as in training
            if training_scores is not None:
                scores["original image"].append(training_scores(resize_square(rgb, LANDMARKER_CROP)))
            pad = int(PAD * max(rgb.shape[:2]))
            canvas = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
            for name, finder in finders.items():
                faces = finder.find(canvas)
                crops[name].append(crop_face(canvas, faces[0].crop_box(spec.crop), spec.input_size) if faces else None)
                scores[name].append(faces[0].blendshapes if faces else None)
    finally:
        for finder in finders.values():
            finder.close()
        if training_scores is not None:
            training_scores.close()

    y = np.array([s.expression for s in samples])
    va = np.array([[s.valence, s.arousal] for s in samples], np.float64)
    found_all = np.array([all(crops[n][i] is not None for n in paths) for i in range(len(samples))])
    rows = []
    for name, items in crops.items():
        found = np.array([c is not None for c in items])
        keep = found_all  # the same images for every row
        picked = np.flatnonzero(keep)
        rows_b = np.stack([blendshape_row(scores[name][i], names) for i in picked]) if names else None
        out = backend.predict(prepare_batch([items[i] for i in picked], spec), rows_b)
        probs = expression_probabilities(out["expression"], spec.temperature)
        exp = expression_metrics(spec.labels, y[keep], probs)
        v = regression_metrics(va[keep, 0], out["valence_arousal"][:, 0], "valence")
        a = regression_metrics(va[keep, 1], out["valence_arousal"][:, 1], "arousal")
        rows.append({"path": name, "found": int(found.sum()), "n": int(keep.sum()), "accuracy": exp["accuracy"],
                     "macro_f1": exp["macro_f1"], "valence_ccc": v["ccc"], "arousal_ccc": a["ccc"]})
    backend.close()

    print(f"{Path(args.model).name} on {len(samples)} images ({args.data}); metrics over the "
          f"{int(found_all.sum())} images where every path found the face\n")
    print("| face path | faces found | accuracy | macro-F1 | valence CCC | arousal CCC |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['path']} | {r['found']}/{len(samples)} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
              f"{r['valence_ccc']:.3f} | {r['arousal_ccc']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
