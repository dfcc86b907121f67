"""Live action units measured end to end: CK+ faces the map never saw, pasted into video
frames, run through `python -m realtime.cam --aus`, read per face back from the CSV and
scored against CK+'s FACS codes; and the cost of `--aus` against the default path.

Accuracy: for each of the GroupKFold folds of train.au_map (subjects, 5 folds) the map is
fitted on the other folds' faces only (their crop blendshapes, as `python -m train au-map`
does) and written to a file of its own; the fold's faces (48-px crops upscaled to
FACE_SIDE px, one at a time on a grey 640x480 frame, HOLD frames each) make a video; the
camera runs on it with `--aus --au-map FOLD_MAP --csv`. Each face is read from the CSV
row of its last frame; a face with no row or empty AU columns counts as "no AU present"
(and is counted). Pooled over folds: micro-/macro-F1, binary accuracy over the 15 AUs.

Cost: the same video (fold 0) with the default path and with `--aus`, ROUNDS rounds
alternating, one process per round; the ratio of median seconds per frame (wall) and of
median `frame` stage time (p50).

    nice -n 10 python bench/au_live.py --out ~/affectcam-runs/au_live
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from affect.aus import AU_NAMES, fit_au_map, save_au_map  # noqa: E402
from affect.images import read_image_file  # noqa: E402
from affect.metrics import au_metrics  # noqa: E402
from train.au_map import MAP_BLENDSHAPES, ckplus_faces, subject_folds, summary  # noqa: E402

FRAME_W, FRAME_H, FACE_SIDE, HOLD, FPS = 640, 480, 224, 3, 15.0
PACKAGED = REPO / "realtime" / "models" / "affectcam_default.int8.onnx"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_video(paths: list[str], out: Path) -> None:
    """Each face, upscaled, centred on a grey frame for HOLD frames."""
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (FRAME_W, FRAME_H))
    x0, y0 = (FRAME_W - FACE_SIDE) // 2, (FRAME_H - FACE_SIDE) // 2
    for path in paths:
        face = read_image_file(path)
        face = face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
        big = cv2.resize(face, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
        frame = np.full((FRAME_H, FRAME_W, 3), 128, np.uint8)
        frame[y0:y0 + FACE_SIDE, x0:x0 + FACE_SIDE] = big[:, :, None]
        for _ in range(HOLD):
            writer.write(frame)
    writer.release()


def cam(video: Path, face_model: str, extra: list[str], summary_json: Path) -> dict:
    cmd = [sys.executable, "-m", "realtime.cam", "--source", str(video), "--model", str(PACKAGED),
           "--face-model", face_model, "--headless", "--summary-json", str(summary_json), "--overwrite", *extra]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(summary_json.read_text())


def read_faces(csv_path: Path, n: int) -> tuple[np.ndarray, int]:
    """[n, 15] AU probabilities per face (its last frame's row); 0 where none; and how many had AUs."""
    df = pd.read_csv(csv_path)
    probs = np.zeros((n, len(AU_NAMES)))
    read = 0
    for k in range(n):
        rows = df[df["frame"] == (k + 1) * HOLD - 1]
        rows = rows[rows[list(AU_NAMES)].notna().all(axis=1)]
        if len(rows):
            probs[k] = rows.iloc[0][list(AU_NAMES)].to_numpy(float)
            read += 1
    return probs, read


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ckplus")
    p.add_argument("--face-model", default=str(REPO.parent / "shared" / "models" / "face_landmarker.task"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip-cost", action="store_true")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    faces = ckplus_faces(args.data, args.face_model)
    folds = subject_folds(faces.subjects, args.folds)
    probs = np.zeros(faces.targets.shape)
    read_total = 0
    for j in range(args.folds):
        fit = (folds != j) & faces.found
        fold_map = args.out / f"map_fold{j}.json"
        save_au_map(fit_au_map(faces.rows[fit], faces.targets[fit], MAP_BLENDSHAPES), fold_map)
        test = np.flatnonzero(folds == j)
        video = args.out / f"fold{j}.mp4"
        write_video([faces.paths[i] for i in test], video)
        csv_path = args.out / f"fold{j}.csv"
        cam(video, args.face_model, ["--aus", "--au-map", str(fold_map), "--csv", str(csv_path), "--sequential"],
            args.out / f"fold{j}_summary.json")
        probs[test], read = read_faces(csv_path, len(test))
        read_total += read
        print(f"fold {j + 1}/{args.folds}: {len(test)} faces of {len(set(faces.subjects[test]))} unseen subjects, "
              f"{read} read with AUs", flush=True)
    m = au_metrics(AU_NAMES, faces.targets, probs)
    results = {"faces": len(folds), "read_with_aus": read_total, "folds": args.folds, "face_side": FACE_SIDE,
               **summary(m), "per_au": {a: {k: round(v[k], 3) for k in ("precision", "recall", "f1")}
                                        | {"support": v["support"]} for a, v in m["per_au"].items()}}
    print(f"live, per face from the CSV: micro-F1 {m['f1_micro']:.3f}, macro-F1 {m['f1_macro']:.3f}, "
          f"binary accuracy {m['binary_accuracy']:.3f} ({read_total} of {len(folds)} faces read with AUs)")

    if not args.skip_cost:
        video = args.out / "fold0.mp4"
        runs: dict[str, list[dict]] = {"default": [], "aus": []}
        for r in range(args.rounds):
            for name, extra in (("default", []), ("aus", ["--aus"])) if r % 2 == 0 else \
                    (("aus", ["--aus"]), ("default", [])):
                runs[name].append(cam(video, args.face_model, extra, args.out / f"cost_{name}.json"))
        per_frame = {k: statistics.median(s["wall_s"] / s["frames"] for s in v) for k, v in runs.items()}
        frame_p50 = {k: statistics.median(s["stages_ms"]["frame"]["p50"] for s in v) for k, v in runs.items()}
        results["cost"] = {"rounds": args.rounds, "video_frames": runs["default"][0]["frames"],
                           "wall_ms_per_frame": {k: round(v * 1000, 2) for k, v in per_frame.items()},
                           "frame_p50_ms": {k: round(v, 2) for k, v in frame_p50.items()},
                           "ratio_wall": round(per_frame["aus"] / per_frame["default"], 3),
                           "ratio_frame_p50": round(frame_p50["aus"] / frame_p50["default"], 3),
                           "cpu": cpu_model()}
        print(f"cost of --aus: {results['cost']['ratio_wall']:.2f}x the default path's wall time per frame "
              f"({results['cost']['ratio_frame_p50']:.2f}x the median frame time), {args.rounds} rounds alternating")
    out = args.out / "au_live.json"
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
