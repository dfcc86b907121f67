"""affectcam against a peer on the same clip: the `fer` package (Haar cascade
+ a small Keras CNN) and each face path of `python -m realtime.cam`.

Every run is a fresh process, and the runs alternate (fer, ours, ours, …,
fer, ours, …) so that a drifting load — this machine may share its CPU with a
training job — hits every row alike; the table shows medians over the
repeats and, per round, our FPS over fer's FPS of the same round.

    python3 -m venv /work/fervenv && /work/fervenv/bin/pip install fer "opencv-python<5" "setuptools<80"
    python bench/peers.py --fer-python /work/fervenv/bin/python [--repeats 3] [--json peers.json]
    python bench/peers.py --no-fer --variant "1 thread=--threads 1" --variant "2 threads=--threads 2"
    python bench/peers.py --clip-variants --fer-on clip mosaic --variant "default=" --variant "detector=--faces detector"

`--clip-variants` runs every row on the clip and on `bench/clip_variants.py`'s
2×2 mosaic (1280×720, four copies of the clip's faces at their pixel size),
darkened (35 %) and noisy (σ 18) clips, in the same alternating rounds; each
clip's table adds faces per frame and, per path, its faces per frame over
the same path's on the clip (per-round median).

Ours run exactly as the README's first command does (headless, `--csv` and
`--video-out`, so drawing and writing the video count), plus the variant's
flags. fer runs `FER(mtcnn=False).detect_emotions(frame)` on every frame and
writes nothing. Per-frame latency: fer's is the time of its call on a frame;
ours is `latency` (a frame read → its result written, queue waits included)
and `frame` (the sum of the stages' work). A benchmark, not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO.parent / "shared" / "videos" / "short_hamilton_clip.mp4"
FACE_MODEL = REPO.parent / "shared" / "models" / "face_landmarker.task"
OURS = {  # name -> realtime.cam flags on top of the README command
    "affectcam default (README command)": "",
    "affectcam --faces detector": "--faces detector",
    "affectcam --faces landmarker": "--faces landmarker",
}


def fer_worker(clip: str) -> dict:
    """Runs inside the fer venv: every frame through FER(mtcnn=False).detect_emotions."""
    import cv2
    import numpy as np
    from fer.fer import FER

    detector = FER(mtcnn=False)
    cap = cv2.VideoCapture(clip)
    times, with_face, frames, found = [], 0, 0, 0
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            break
        faces = detector.detect_emotions(frame)
        times.append((time.perf_counter() - t0) * 1000)
        frames += 1
        with_face += bool(faces)
        found += len(faces)
    wall = time.perf_counter() - t_start
    return {"frames": frames, "frames_with_faces": with_face, "faces": found, "fps": frames / wall,
            "latency_p50": float(np.percentile(times, 50)), "latency_p95": float(np.percentile(times, 95))}


def run_fer(python: str, clip: str) -> dict:
    out = subprocess.run([python, __file__, "--fer-worker", clip], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"fer run failed ({python}): {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


NO_VIDEO = "--no-video-out"  # a variant flag of this script: the README command without its annotated MP4


def run_ours(flags: str, clip: str, face_model: str, work: Path) -> dict:
    summary = work / "summary.json"
    extra = shlex.split(flags)
    # fer draws and writes nothing: a variant may drop the README command's video to compare like with like
    video = [] if NO_VIDEO in extra else ["--video-out", str(work / "demo.mp4")]
    cmd = [sys.executable, "-m", "realtime.cam", "--source", clip, "--face-model", face_model, "--headless",
           "--csv", str(work / "demo.csv"), *video,
           "--summary-json", str(summary), "--overwrite", *[f for f in extra if f != NO_VIDEO]]  # rounds reuse names
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    if out.returncode != 0:
        raise SystemExit(f"realtime.cam failed ({' '.join(cmd)}): {out.stderr.strip().splitlines()[-1:]}")
    s = json.loads(summary.read_text())
    st = s["stages_ms"]
    described = next((ln for ln in out.stderr.splitlines() if ln.startswith("affectcam: onnxruntime")), "")
    return {"frames": s["frames"], "frames_with_faces": s["frames_with_faces"], "faces": s["faces"], "fps": s["fps"],
            "latency_p50": st["latency"]["p50"], "latency_p95": st["latency"]["p95"],
            "work_p50": st["frame"]["p50"], "work_p95": st["frame"]["p95"],
            "faces_p50": st["faces"]["p50"], "infer_p50": st["infer"]["p50"], "described": described}


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--face-model", default=str(FACE_MODEL))
    ap.add_argument("--fer-python", default="/work/fervenv/bin/python", help="python of the venv with fer")
    ap.add_argument("--no-fer", action="store_true", help="only our variants (e.g. to compare thread settings)")
    ap.add_argument("--variant", action="append", default=None, metavar="NAME=FLAGS",
                    help="one of ours: realtime.cam flags on top of the README command (repeat; "
                         f"{NO_VIDEO} drops its annotated video); "
                         "default: the default path, --faces detector, --faces landmarker")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clip-variants", nargs="*", default=None, metavar="VARIANT",
                    help="also the clip's 2x2 mosaic, darkened and noisy versions (bench/clip_variants.py; "
                         "no name: all three)")
    ap.add_argument("--fer-on", nargs="+", default=None, metavar="CLIP",
                    help="run fer only on these of clip, mosaic, dark, noisy (default: all)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--fer-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fer_worker:
        print(json.dumps(fer_worker(args.fer_worker)))
        return 0

    ours = dict(v.split("=", 1) for v in args.variant) if args.variant else dict(OURS)
    env = {"cpu": lscpu_model(), "cores": os.cpu_count(), "load_start": os.getloadavg(),
           "time": time.strftime("%Y-%m-%d %H:%M:%S"), "clip": args.clip, "repeats": args.repeats}
    # rows[clip][path] = one result per round
    rows: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = {"clip": args.clip}
        if args.clip_variants is not None:
            sys.path.insert(0, str(REPO))
            from bench.clip_variants import VARIANTS, write_variants

            chosen = args.clip_variants or list(VARIANTS)
            clips.update({k: str(v) for k, v in write_variants(Path(tmp) / "clips", args.clip, chosen).items()})
        for r in range(args.repeats):
            for clip_name, clip in clips.items():
                runs = rows.setdefault(clip_name, {})
                if not args.no_fer and (not args.fer_on or clip_name in args.fer_on):
                    runs.setdefault("fer (FER(mtcnn=False))", []).append(run_fer(args.fer_python, clip))
                for name, flags in ours.items():
                    runs.setdefault(name, []).append(run_ours(flags, clip, args.face_model, Path(tmp)))
                print(f"round {r + 1}/{args.repeats} {clip_name}: "
                      + ", ".join(f"{k} {v[-1]['fps']:.1f}" for k, v in runs.items()), file=sys.stderr)
    env["load_end"] = os.getloadavg()
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    tables, lines = {}, []
    for clip_name, clip_rows in rows.items():
        fer_key = next((k for k in clip_rows if k.startswith("fer")), None)
        table = []
        for name, runs in clip_rows.items():
            row = {"path": name, "fps": med([x["fps"] for x in runs]), "fps_runs": [round(x["fps"], 1) for x in runs],
                   "frames": runs[0]["frames"], "frames_with_faces": med([x["frames_with_faces"] for x in runs]),
                   "faces_per_frame": med([x["faces"] / max(1, x["frames"]) for x in runs]),
                   "latency_p50": med([x["latency_p50"] for x in runs]),
                   "latency_p95": med([x["latency_p95"] for x in runs])}
            for key in ("work_p50", "work_p95", "faces_p50", "infer_p50"):
                if key in runs[0]:
                    row[key] = med([x[key] for x in runs])
            if "described" in runs[0]:
                row["described"] = runs[0]["described"]
            if fer_key and name != fer_key:  # our FPS over fer's, round by round
                row["ratio_vs_fer"] = med([a["fps"] / b["fps"] for a, b in zip(runs, clip_rows[fer_key])])
            if clip_name != "clip" and name in rows["clip"]:  # faces per frame over the clip's, round by round
                row["faces_vs_clip"] = med([(a["faces"] / a["frames"]) / max(1e-9, b["faces"] / b["frames"])
                                            for a, b in zip(runs, rows["clip"][name])])
            table.append(row)
        tables[clip_name] = table
        lines += [f"{clip_name} ({clips[clip_name] if clip_name == 'clip' else Path(clips[clip_name]).name}):",
                  "| path | FPS (median) | × fer (per-round median) | frames with a face | faces / frame "
                  "| × the clip's faces | latency p50 / p95 ms | work p50 / p95 ms | faces p50 ms | model p50 ms |",
                  "|" + " --- |" * 10]
        for row in table:
            work = f"{row['work_p50']:.1f} / {row['work_p95']:.1f}" if "work_p50" in row else ""
            lines.append(f"| {row['path']} | {row['fps']:.1f} | "
                         + (f"{row['ratio_vs_fer']:.2f}×" if "ratio_vs_fer" in row else "1") + " | "
                         f"{row['frames_with_faces']:.0f} / {row['frames']} | {row['faces_per_frame']:.2f} | "
                         + (f"{row['faces_vs_clip']:.2f}×" if "faces_vs_clip" in row else "") + " | "
                         f"{row['latency_p50']:.1f} / {row['latency_p95']:.1f} | {work} | "
                         + (f"{row['faces_p50']:.1f}" if "faces_p50" in row else "") + " | "
                         + (f"{row['infer_p50']:.1f}" if "infer_p50" in row else "") + " |")
        lines.append("")
    lines.append(f"{env['cpu']}, {env['cores']} cores; medians of {args.repeats} alternating rounds; "
                 f"load average {env['load_start'][0]:.2f} at start, {env['load_end'][0]:.2f} at end.")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "tables": tables, "runs": rows}, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
