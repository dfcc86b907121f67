"""Does the realtime path cost accuracy? A video of known faces, read by
`python -m realtime.cam`, against the same model offline on the same faces.

The faces are the held-out 20 % of the AffectNet part (`train.data.assembly.build_splits`
with `configs/default.yaml`: never trained on), in a seeded random order; with
`--source rafdb` the held-out 20 % of RAF-DB instead (aligned 100-px faces: a
tighter framing than AffectNet's, which the camera's crop rule follows). `--split val`
takes the part's validation faces: what a change to the live path is chosen on,
so the held-out rows stay an independent check. Each
is pasted, with a soft edge, on a smooth random background at a random place
in the left, middle or right third in turn (so that every face gets a new
track: the tracker retires a track 15 frames after its face went, and no
smoothing state carries from one face to the next), and shown
for `--frames-per-face` frames (15 = half a second at 30 FPS). The video is
written as the camera's own recordings are (mp4v), then read with

    python -m realtime.cam --source known_faces.mp4 --headless --csv known_faces.csv [--model M] [flags]

A face counts as found when the CSV has a face whose box centre lies inside
the pasted face in at least half of its frames; its realtime reading is the
mean of the (smoothed) probabilities over those frames. Offline: the same
model on the original image (the training framing, `resize_square`); a model
that takes blendshapes gets the training cache's scores (as `train eval`)
when the realtime path gives them too (the landmarker), else none (the
detector path reads images alone, so the offline row does as well).

    python bench/known_faces.py [--faces 300] [--source affectnet|rafdb] [--split test|val] \\
        [--model realtime/models/affectcam_default.onnx] [--cam-flags "--faces detector"] [--json known_faces.json]

Pass (issue 26): faces found >= 98 % and realtime accuracy within 1.5 points of offline.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from affect.preprocess import resize_square, to_rgb  # noqa: E402

FACE_MODEL = REPO.parent / "shared" / "models" / "face_landmarker.task"
FRAME_W, FRAME_H, FPS = 640, 360, 30.0
MIN_FOUND, MAX_GAP = 0.98, 0.015


def held_out_faces(config: str = str(REPO / "configs" / "default.yaml"), limit: int | None = None,
                   seed: int = 0, source: str = "affectnet", split: str = "test") -> tuple[list, list[str]]:
    """(samples, labels): the `source` dataset's (affectnet, rafdb) `split` part of the
    config's seeded split (test: held out; val: for choosing), shuffled."""
    from train.config import load_config
    from train.data.assembly import build_splits

    cfg = load_config(config)
    # Only that entry: each dataset is split on its own, so the others change nothing here.
    cfg["data"]["datasets"] = [d for d in cfg["data"]["datasets"]
                               if d.get("type") == source and d.get("role", "auto") == "auto"]
    if not cfg["data"]["datasets"]:
        raise SystemExit(f"{config}: no {source} entry split into train/val/test")
    splits = build_splits(cfg)
    samples = [s for part in getattr(splits, split) for s in part.samples if s.expression >= 0]
    order = np.random.default_rng(seed).permutation(len(samples))
    samples = [samples[i] for i in order]
    return (samples[:limit] if limit else samples), list(cfg["labels"])


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field with a little grain (BGR)."""
    small = rng.integers(30, 226, (4, 6, 3)).astype(np.uint8)
    img = cv2.resize(small, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, face_bgr: np.ndarray, x: int, y: int, side: int) -> None:
    face = cv2.resize(face_bgr, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    edge = max(2, side // 16)  # a soft edge: no hard square border for the detector to lock on
    ramp = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    a = np.clip(ramp / edge, 0, 1)
    alpha = np.minimum(a[:, None], a[None, :])[:, :, None]
    region = canvas[y:y + side, x:x + side].astype(np.float32)
    canvas[y:y + side, x:x + side] = (alpha * face + (1 - alpha) * region).astype(np.uint8)


def build_video(samples: list, path: Path, frames_per_face: int = 15, side: tuple[int, int] = (150, 205),
                seed: int = 0, stills: list | None = None) -> list[dict]:
    """Write the video; returns one record per face (image, label, frames, pasted box).
    `stills`: a list that receives each face's frame before compression."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (FRAME_W, FRAME_H))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot open a video writer (mp4v)")
    manifest, frame = [], 0
    try:
        for k, s in enumerate(samples):
            img = cv2.imread(s.path, cv2.IMREAD_COLOR)
            if img is None:
                raise OSError(f"{s.path}: unreadable image")
            size = int(rng.integers(side[0], side[1] + 1))
            third = FRAME_W // 3
            x0 = (k % 3) * third  # thirds in turn: a new track for every face
            x = int(rng.integers(x0, x0 + third - size + 1))
            y = int(rng.integers(0, FRAME_H - size + 1))
            canvas = background(rng)
            paste(canvas, img, x, y, size)
            if stills is not None:
                stills.append(canvas)
            for _ in range(frames_per_face):
                writer.write(canvas)
            manifest.append({"path": s.path, "label": int(s.expression), "first": frame,
                             "last": frame + frames_per_face - 1, "box": [x, y, size, size]})
            frame += frames_per_face
    finally:
        writer.release()
    return manifest


def realtime_readings(csv_path: Path, manifest: list[dict], labels: list[str]) -> list[dict]:
    """Per face: frames where it was found and the mean probabilities over them."""
    from affect.recording import read_csv

    df = read_csv(str(csv_path))
    cols = [f"p_{lab}" for lab in labels]
    cx, cy = df["x"] + df["w"] / 2, df["y"] + df["h"] / 2
    out = []
    for m in manifest:
        x, y, w, h = m["box"]
        rows = df[df["frame"].between(m["first"], m["last"]) & cx.between(x, x + w) & cy.between(y, y + h)]
        rows = rows.drop_duplicates("frame")  # one reading per frame
        n = m["last"] - m["first"] + 1
        found = len(rows) >= n / 2
        probs = rows[cols].to_numpy().mean(axis=0) if found else None
        out.append({"found": found, "frames_found": len(rows), "frames": n,
                    "pred": int(np.argmax(probs)) if found else -1,
                    "probabilities": None if probs is None else probs.tolist()})
    return out


def offline_readings(model: str, manifest: list[dict], face_model: str, blendshapes: bool = True) -> list[int]:
    """The model on each original image, as training and `train eval` frame it (with the
    training cache's blendshapes when the model takes them and `blendshapes`)."""
    from affect.blendshapes import LANDMARKER_CROP, CropBlendshapes
    from realtime.reader import AffectReader

    with AffectReader(model) as reader:
        rgbs = [to_rgb(cv2.cvtColor(cv2.imread(m["path"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)) for m in manifest]
        crops = [resize_square(rgb, reader.spec.input_size) for rgb in rgbs]
        shapes = None
        if reader.takes_blendshapes and blendshapes:
            with CropBlendshapes(face_model) as scores:
                shapes = [scores(resize_square(rgb, LANDMARKER_CROP)) for rgb in rgbs]
        preds = []
        for i in range(0, len(crops), 32):
            batch = reader.predict_many(crops[i:i + 32], None if shapes is None else shapes[i:i + 32])
            preds += [int(np.argmax(r.probabilities)) for r in batch]
    return preds


def still_readings(model: str, stills: list, face_model: str, landmarker: bool) -> list[int]:
    """Each face's uncompressed frame, found (IMAGE mode) and cropped as the camera does, read
    once: what the realtime framing costs before the video codec, tracking and smoothing."""
    from affect.crop import crop_face
    from realtime.faces import FaceFinder, FaceOptions
    from realtime.reader import AffectReader

    preds = []
    with AffectReader(model) as reader, FaceFinder(FaceOptions(
            face_model, max_faces=1, mode="image", landmarks=landmarker, fill_with_detector=True)) as finder:
        for img in stills:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            faces = finder.find(rgb)
            if not faces:
                preds.append(-1)
                continue
            crop = crop_face(rgb, faces[0].crop_box(reader.spec.crop), reader.spec.input_size)
            r = reader.predict(crop, faces[0].blendshapes if landmarker else None)
            preds.append(int(np.argmax(r.probabilities)))
    return preds


def compare(manifest: list[dict], live: list[dict], offline: list[int]) -> dict:
    y = np.array([m["label"] for m in manifest])
    found = np.array([r["found"] for r in live])
    rt = np.array([r["pred"] for r in live])
    off = np.array(offline)
    acc_rt = float((rt[found] == y[found]).mean()) if found.any() else 0.0
    acc_off_found = float((off[found] == y[found]).mean()) if found.any() else 0.0
    return {"faces": len(manifest), "found": int(found.sum()), "found_share": float(found.mean()),
            "frames_found_share": float(sum(r["frames_found"] for r in live) / sum(r["frames"] for r in live)),
            "realtime_accuracy": acc_rt, "offline_accuracy": float((off == y).mean()),
            "offline_accuracy_found": acc_off_found, "gap": acc_rt - acc_off_found,
            "agreement": float((rt[found] == off[found]).mean()) if found.any() else 0.0,
            "passes": bool(found.mean() >= MIN_FOUND and abs(acc_rt - acc_off_found) <= MAX_GAP)}


def run_cam(video: Path, csv_path: Path, model: str | None, face_model: str, flags: str = "") -> str:
    """Runs realtime.cam; returns the face path it used ("detector" or "landmarker")."""
    cmd = [sys.executable, "-m", "realtime.cam", "--source", str(video), "--headless", "--csv", str(csv_path),
           "--face-model", face_model, "--overwrite", *(["--model", model] if model else []), *shlex.split(flags)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    if out.returncode != 0:
        raise SystemExit(f"realtime.cam failed: {out.stderr.strip().splitlines()[-1:]}")
    print(out.stdout.strip().splitlines()[0], file=sys.stderr)
    said = next(ln for ln in out.stderr.splitlines() if "; faces: " in ln)
    return said.split("; faces: ")[1].split(",")[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=300, help="how many held-out faces (default 300)")
    ap.add_argument("--frames-per-face", type=int, default=15)
    ap.add_argument("--model", default=None, help="default: the packaged model realtime.cam picks")
    ap.add_argument("--face-model", default=str(FACE_MODEL))
    ap.add_argument("--cam-flags", default="", help="extra realtime.cam flags, e.g. '--faces landmarker'")
    ap.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    ap.add_argument("--source", default="affectnet", choices=["affectnet", "rafdb"],
                    help="whose faces (the config's entry of that type)")
    ap.add_argument("--split", default="test", choices=["test", "val"],
                    help="test: the held-out part (report); val: the validation part (choose changes on it)")
    ap.add_argument("--out", default=None, help="keep the video and CSV in this folder")
    ap.add_argument("--stills", action="store_true",
                    help="also read each face's uncompressed frame once through the camera's crop "
                         "(where a gap comes from: the framing, or the video path)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from realtime.pipeline import DEFAULT_SPINNING, DEFAULT_THREADS, default_model

    # One file both ways: the packaged one realtime.cam would pick here, unless --model says.
    model = args.model or str(default_model(DEFAULT_THREADS, DEFAULT_SPINNING))
    samples, labels = held_out_faces(args.config, args.faces, source=args.source, split=args.split)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        video, csv_path = out / "known_faces.mp4", out / "known_faces.csv"
        stills: list | None = [] if args.stills else None
        manifest = build_video(samples, video, args.frames_per_face, stills=stills)
        path = run_cam(video, csv_path, model, args.face_model, args.cam_flags)
        live = realtime_readings(csv_path, manifest, labels)
    offline = offline_readings(model, manifest, args.face_model, blendshapes=path == "landmarker")
    result = compare(manifest, live, offline)
    result.update(model=Path(model).name, cam_flags=args.cam_flags, face_path=path, source=args.source,
                  split=args.split,
                  frames_per_face=args.frames_per_face)
    if stills is not None:
        y = np.array([m["label"] for m in manifest])
        still = np.array(still_readings(model, stills, args.face_model, path == "landmarker"))
        result.update(stills_found_share=float((still >= 0).mean()), stills_accuracy=float((still == y).mean()),
                      stills_agreement=float((still == np.array(offline)).mean()))
        print(f"stills (uncompressed frames, the camera's crop, read once): found {result['stills_found_share']:.1%}, "
              f"accuracy {result['stills_accuracy']:.3f}, same label as offline {result['stills_agreement']:.1%}")
    print("| model, flags (face path) | faces found | realtime accuracy | offline accuracy (same faces) "
          "| realtime − offline, points | same label | pass |\n| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {result['model']} {args.cam_flags or '(default)'} ({path}), {args.source} {args.split} | {result['found']}/{result['faces']} "
          f"({result['found_share']:.1%}) | {result['realtime_accuracy']:.3f} | "
          f"{result['offline_accuracy_found']:.3f} | {result['gap'] * 100:+.1f} | {result['agreement']:.1%} | "
          f"{'yes' if result['passes'] else 'no'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["passes"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
