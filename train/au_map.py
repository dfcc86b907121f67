"""`python -m train au-map`: fit the blendshape → action-unit map on CK+ and measure it.

Each CK+ face (48-px crop, upscaled to the landmarker's 256 px with a black
border, `affect.blendshapes.CropBlendshapes`; cached like any training
blendshapes) gets MediaPipe's 52 blendshape scores; one logistic regression
per AU (`affect.aus.fit_au_map`) reads the 15 AUs from them. The figures are
subject-grouped cross-validation (scikit-learn's GroupKFold: no person in the
fitting and the scoring part of a fold); the shipped map is then fitted on
all the faces and written as JSON (`affect.aus.save_au_map`) with those
figures inside. No torch is needed.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from affect.aus import AU_NAMES, AuMap, fit_au_map, save_au_map
from affect.blendshapes import MEDIAPIPE_BLENDSHAPES

log = logging.getLogger(__name__)

# The scores the map reads: every category but "_neutral" (1 minus the rest, in effect).
MAP_BLENDSHAPES: tuple[str, ...] = tuple(n for n in MEDIAPIPE_BLENDSHAPES if n != "_neutral")
CV_FOLDS = 5


@dataclass
class FaceTable:
    """One row per CK+ face: blendshape scores (NaN: the landmarker found no face), AU targets,
    subject, file path."""
    rows: np.ndarray  # [N, B]
    targets: np.ndarray  # [N, A]
    subjects: np.ndarray  # [N] str
    paths: list[str]

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.rows).all(axis=1)


def ckplus_faces(root: str | os.PathLike, face_model: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> FaceTable:
    """Blendshapes (cached) and AU targets of every face of a CK+ table (`labels.csv` + images/)."""
    from affect.datasets.blendshapes import attach_blendshapes
    from affect.datasets.loaders import load_ckplus_table
    from affect.face_model import resolve_face_model

    info = load_ckplus_table(root)
    attach_blendshapes(info.samples, MAP_BLENDSHAPES, resolve_face_model(face_model), cache_dir)
    return FaceTable(rows=np.stack([s.blendshapes for s in info.samples]).astype(np.float64),
                     targets=np.stack([s.aus for s in info.samples]).astype(np.float64),
                     subjects=np.array([s.subject for s in info.samples]),
                     paths=[s.path for s in info.samples])


def subject_folds(subjects: Sequence[str], k: int = CV_FOLDS) -> np.ndarray:
    """Fold index per face: scikit-learn's GroupKFold over subjects (deterministic)."""
    from sklearn.model_selection import GroupKFold

    subjects = np.asarray(subjects)
    fold = np.full(len(subjects), -1, np.int64)
    for j, (_, test) in enumerate(GroupKFold(n_splits=k).split(subjects, groups=subjects)):
        fold[test] = j
    return fold


def cross_validate(table: FaceTable, k: int = CV_FOLDS, c: float = 0.1, balanced: bool = False) -> dict[str, Any]:
    """Out-of-fold AU probabilities of the map (fitted on the other folds' subjects) and
    their metrics: over the faces the landmarker found, and over every face with "no AU"
    for the ones it missed (what a recording says then)."""
    from affect.metrics import au_metrics

    folds = subject_folds(table.subjects, k)
    probs = np.full(table.targets.shape, np.nan)
    for j in range(k):
        fit_part = (folds != j) & table.found
        test = (folds == j) & table.found
        model = fit_au_map(table.rows[fit_part], table.targets[fit_part], MAP_BLENDSHAPES, c=c, balanced=balanced)
        probs[test] = model.predict(table.rows[test])
    found = table.found
    on_found = au_metrics(AU_NAMES, table.targets[found], probs[found])
    on_all = au_metrics(AU_NAMES, table.targets, np.nan_to_num(probs, nan=0.0))
    return {"folds": k, "faces": len(found), "found": int(found.sum()), "c": c, "balanced": balanced,
            "found_faces": on_found, "all_faces": on_all, "fold": folds.tolist(), "probs": probs}


def summary(m: dict[str, Any]) -> dict[str, float]:
    return {key: round(float(m[key]), 4) for key in ("f1_micro", "f1_macro", "binary_accuracy", "map")}


def fit_and_write(table: FaceTable, out: str | os.PathLike, cv: dict[str, Any] | None = None,
                  c: float = 0.1, balanced: bool = False, source: str = "") -> tuple[AuMap, str]:
    """Fit on every found face and write the JSON map (with the CV figures); → (map, sha256)."""
    found = table.found
    training: dict[str, Any] = {"data": source, "faces": int(len(found)), "found": int(found.sum()),
                                "subjects": int(len(set(table.subjects.tolist()))),
                                "method": "per-AU logistic regression (scikit-learn, L2) "
                                          "on standardised blendshape scores"}
    if cv is not None:
        training["cross_validation"] = {
            "method": f"GroupKFold({cv['folds']}) by subject", "found_faces": summary(cv["found_faces"]),
            "all_faces": summary(cv["all_faces"]),
            "per_au_f1": {a: round(v["f1"], 4) for a, v in cv["found_faces"]["per_au"].items()}}
    model = fit_au_map(table.rows[found], table.targets[found], MAP_BLENDSHAPES, c=c, balanced=balanced,
                       training=training)
    return model, save_au_map(model, out)


def add_parser(sub) -> None:
    p = sub.add_parser("au-map", help="fit the blendshape → action-unit map on CK+ (labels.csv layout)",
                       description="Fit and cross-validate (GroupKFold by subject) the map from MediaPipe's "
                                   "blendshapes to the 15 action units; write it as JSON.")
    p.add_argument("--data", required=True, metavar="ckplus:DIR", help="CK+ table: DIR/labels.csv + DIR/images/")
    p.add_argument("-o", "--out", required=True, help="the map file to write (.json)")
    p.add_argument("--folds", type=int, default=CV_FOLDS)
    p.add_argument("--c", type=float, default=0.1, help="inverse L2 strength of each logistic regression")
    p.add_argument("--balanced", action="store_true", help="balanced class weights (more recall on rare AUs)")
    p.add_argument("--face-model", help="MediaPipe face_landmarker.task (default: the camera's resolution)")
    p.add_argument("--cache-dir", help="blendshape cache (default: <cache root>/blendshapes)")


def run(args: argparse.Namespace) -> int:
    kind, _, root = args.data.partition(":")
    if kind != "ckplus" or not root:
        raise ValueError(f"--data {args.data!r}: use ckplus:DIR (DIR/labels.csv + DIR/images/)")
    table = ckplus_faces(root, args.face_model, args.cache_dir)
    cv = cross_validate(table, args.folds, args.c, args.balanced)
    model, digest = fit_and_write(table, args.out, cv, args.c, args.balanced, source=args.data)
    s = summary(cv["found_faces"])
    print(f"{args.data}: landmarker found {cv['found']} of {cv['faces']} faces; GroupKFold({args.folds}) by subject: "
          f"micro-F1 {s['f1_micro']:.3f}, macro-F1 {s['f1_macro']:.3f}, binary accuracy {s['binary_accuracy']:.3f}, "
          f"mAP {s['map']:.3f}")
    print(f"wrote {args.out} ({len(model.au_names)} AUs from {len(model.blendshapes)} blendshapes, sha256 {digest})")
    return 0
