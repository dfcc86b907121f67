"""Fit the runtime crop rule to the training framing.

The training images are AffectNet's 224×224 face crops: the whole image is the
framing the model learns. This script runs MediaPipe on a sample of them
(each pasted in the middle of a black canvas so the face is not cut at the
border, which the detector dislikes), and finds the crop rule under which
`affect.crop` cuts exactly the original image back out:

- mesh path (`scale`, `shift_y`): measured on the box of all 478 landmarks in
  the eye-levelled frame, as `affect.crop.box_from_points` does at runtime;
- detector path (`box_scale`, `box_shift_y`): measured on the FaceDetector box;
- YuNet path (`yunet_scale`, `yunet_shift_y`): measured on YuNet's box.

Only faces outside the held-out AffectNet part are sampled (`--all` samples
every image, as the rule's first fit did), so figures reported on held-out
faces were not fitted on.

Per image the exact scale and vertical shift are solved in closed form; the
rule takes their medians. It prints the median IoU between the runtime crop
and the original image, for the current `DEFAULT_CROP` and for the fitted
rule, and the JSON to put into `affect.crop.DEFAULT_CROP`.

    python bench/calibrate_crop.py [--n 100] [--root ../shared/data/affectnet] [--all]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from affect.crop import DEFAULT_CROP, CropBox, _rotate  # noqa: E402
from affect.face_model import resolve_face_model  # noqa: E402
from realtime.faces import Face, FaceFinder, FaceOptions  # noqa: E402

PAD = 0.5  # canvas = image + PAD * side on each side


def square_polygon(box: CropBox) -> np.ndarray:
    half = box.side / 2
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]]) + [box.cx, box.cy]
    return _rotate(corners, np.array([box.cx, box.cy]), box.angle).astype(np.float32)


def iou(a: CropBox, b: CropBox) -> float:
    pa, pb = square_polygon(a), square_polygon(b)
    inter, _ = cv2.intersectConvexConvex(pa, pb)
    union = a.side ** 2 + b.side ** 2 - inter
    return float(inter / union) if union > 0 else 0.0


def unit_fit(face: Face, target: CropBox, rule: dict, scale_key: str, shift_key: str) -> tuple[float, float]:
    """The scale and shift_y that would map this face exactly onto `target`."""
    b0 = face.crop_box(dict(rule, **{scale_key: 1.0, shift_key: 0.0}))
    d = np.array([target.cx - b0.cx, target.cy - b0.cy])
    if face.landmarks is not None:
        # box_from_points shifts the centre in the eye-levelled frame
        t = math.radians(b0.angle)
        dy = -math.sin(t) * d[0] + math.cos(t) * d[1]
    else:  # box_from_xywh shifts it along the image's vertical
        dy = d[1]
    return target.side / b0.side, dy / target.side


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "affectnet"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--json", default=None, help="write the figures here too")
    ap.add_argument("--all", action="store_true", help="sample held-out faces too")
    args = ap.parse_args(argv)

    images = sorted((Path(args.root) / "images").glob("*.jpg"))
    if not args.all:
        from bench.known_faces import held_out_faces

        held_out = {Path(s.path).name for s in held_out_faces()[0]}
        images = [p for p in images if p.name not in held_out]
    rng = np.random.default_rng(0)
    images = [images[i] for i in sorted(rng.choice(len(images), size=min(args.n, len(images)), replace=False))]
    model = resolve_face_model(args.face_model)
    mesh_faces, det_faces, yunet_faces, targets = [], [], [], []
    with FaceFinder(FaceOptions(model, max_faces=1, mode="image", blendshapes=False, fill_with_detector=False)) as mesh, \
         FaceFinder(FaceOptions(model, max_faces=1, mode="image", landmarks=False)) as det, \
         FaceFinder(FaceOptions(None, max_faces=1, mode="image", landmarks=False, detector="yunet")) as yunet:
        for path in images:
            bgr = cv2.imread(str(path))
            if bgr is None:
                continue
            side = bgr.shape[0]
            pad = int(PAD * side)
            canvas = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
            targets.append(CropBox(pad + side / 2, pad + side / 2, float(side)))
            m, d, y = mesh.find(rgb), det.find(rgb), yunet.find(rgb)
            mesh_faces.append(m[0] if m else None)
            det_faces.append(d[0] if d else None)
            yunet_faces.append(y[0] if y else None)

    rule = dict(DEFAULT_CROP)
    report: dict = {"images": len(targets), "current_rule": dict(DEFAULT_CROP)}
    for name, faces, keys in (("mesh", mesh_faces, ("scale", "shift_y")),
                              ("detector", det_faces, ("box_scale", "box_shift_y")),
                              ("yunet", yunet_faces, ("yunet_scale", "yunet_shift_y"))):
        pairs = [(f, t) for f, t in zip(faces, targets) if f is not None]
        fits = np.array([unit_fit(f, t, rule, *keys) for f, t in pairs])
        scale, shift = float(np.median(fits[:, 0])), float(np.median(fits[:, 1]))
        before = [iou(f.crop_box(rule), t) for f, t in pairs]
        rule[keys[0]], rule[keys[1]] = round(scale, 3), round(shift, 3)
        after = [iou(f.crop_box(rule), t) for f, t in pairs]
        report[name] = {
            "found": len(pairs), keys[0]: rule[keys[0]], keys[1]: rule[keys[1]],
            "scale_iqr": [float(v) for v in np.percentile(fits[:, 0], [25, 75])],
            "shift_iqr": [float(v) for v in np.percentile(fits[:, 1], [25, 75])],
            "median_iou_current": float(np.median(before)), "median_iou_fitted": float(np.median(after)),
            "p10_iou_fitted": float(np.percentile(after, 10)),
            # AffectNet's crops are not roll-levelled: how much of the gap is the alignment
            "median_iou_fitted_no_align": float(np.median(
                [iou(f.crop_box(dict(rule, align=False)), t) for f, t in pairs])),
        }
    report["fitted_rule"] = rule
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
