"""Realtime benchmark: the whole pipeline, headless, on the shared clip.

For each model it reports end-to-end FPS, per-frame latency p50/p95 and every
stage's p50/p95 (read, faces, track, crop, infer, smooth, draw, write), as a markdown
table and JSON. Targets from the realtime issue (2 CPU cores, MobileNetV2
INT8 ONNX): at least 60 FPS, p95 per-frame latency at most 25 ms.

    python bench/realtime.py --model runs/x/model.int8.onnx [--model other.onnx] \\
        [--faces auto,landmarker+fill,landmarker,detector] [--repeats 3] [--sequential] \\
        [--cores 2] [--threads 1] [--json bench.json] [--markdown bench.md]

Without --model it times the packaged file `realtime.model_choice` picks on
this machine (INT8 or FP32, by a recorded start-up timing).

A model that takes MediaPipe blendshapes gets them through the pipeline as in
the camera (the landmarker paths compute them; on the detector path such a
model reads images alone); its row says how many it takes.

A warm-up pass (MediaPipe and ONNX Runtime initialise lazily) runs first and
is not timed. The load average is recorded too: figures taken on a machine
shared with other work are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from realtime.pipeline import (  # noqa: E402
    STAGES,
    FaceFindingOptions,
    ModelOptions,
    OutputOptions,
    Pipeline,
    PipelineOptions,
    ScheduleOptions,
)

TARGET_FPS = 60.0
TARGET_P95_MS = 25.0


FACE_MODES = {  # --faces name -> (FaceFindingOptions.finder, detector_fill)
    "auto": ("auto", True),                   # realtime.cam's default: the detector unless the model needs the mesh
    "landmarker+fill": ("landmarker", True),  # --faces landmarker
    "landmarker": ("landmarker", False),      # --faces landmarker --no-detector-fill
    "detector": ("detector", False),          # --faces detector
}


def run_once(model: str, faces: str, args: argparse.Namespace) -> dict:
    face_path, fill = FACE_MODES[faces]

    def options(max_frames: int | None) -> PipelineOptions:
        return PipelineOptions(source=args.clip, model=ModelOptions(model, backend=args.backend, threads=args.threads),
                               faces=FaceFindingOptions(face_path, face_model=args.face_model, detector_fill=fill),
                               schedule=ScheduleOptions(every=args.every, max_frames=max_frames,
                                                        overlap=not args.sequential),
                               outputs=OutputOptions(draw=args.draw))

    with Pipeline(options(args.warmup)) as p:
        for _ in p:
            pass
    with Pipeline(options(args.frames)) as p:
        backend = p.backend.describe()
        blendshapes = len(p.spec.blendshapes)
        for _ in p:
            pass
    s = p.summary
    frame = s.stages_ms.get("frame", {"p50": 0.0, "p95": 0.0})
    return {
        "model": str(model), "faces": faces, "backend": backend, "blendshapes": blendshapes, "frames": s.frames,
        "frames_with_faces": s.frames_with_faces, "faces_per_frame": round(s.faces_per_frame, 3),
        "fps": s.fps, "frame_p50_ms": frame["p50"], "frame_p95_ms": frame["p95"],
        "stages_ms": {k: dict(v) for k, v in s.stages_ms.items() if k in STAGES},
    }


def median_of(runs: list[dict]) -> dict:
    """One row from repeated runs of the same model and face mode: the median
    of every figure (a shared, noisy machine makes single runs unreliable)."""
    med = lambda xs: round(float(statistics.median(xs)), 2)  # noqa: E731
    row = dict(runs[0])
    row["repeats"] = len(runs)
    row["fps_runs"] = [round(r["fps"], 1) for r in runs]
    for key in ("fps", "frame_p50_ms", "frame_p95_ms"):
        row[key] = med([r[key] for r in runs])
    row["stages_ms"] = {st: {q: med([r["stages_ms"][st][q] for r in runs if st in r["stages_ms"]]) for q in ("p50", "p95")}
                        for st in runs[0]["stages_ms"]}
    row["meets_target"] = row["fps"] >= TARGET_FPS and row["frame_p95_ms"] <= TARGET_P95_MS
    return row


def markdown(rows: list[dict], env: dict) -> str:
    head = ["model", "faces", "backend", "frames", "frames with a face", "faces/frame", "FPS", "frame p50", "frame p95",
            *(f"{s} p50/p95" for s in STAGES), f"≥{TARGET_FPS:.0f} FPS & p95≤{TARGET_P95_MS:.0f} ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        st = r["stages_ms"]
        name = Path(r["model"]).name + (f" (+{r['blendshapes']} blendshapes)" if r.get("blendshapes") else "")
        cells = [name, r["faces"], r["backend"].split(":")[0], str(r["frames"]),
                 str(r["frames_with_faces"]), f"{r['faces_per_frame']:.2f}",
                 f"{r['fps']:.1f}", f"{r['frame_p50_ms']:.1f}", f"{r['frame_p95_ms']:.1f}",
                 *(f"{st[s]['p50']:.1f}/{st[s]['p95']:.1f}" if s in st else "-" for s in STAGES),
                 "yes" if r["meets_target"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Milliseconds; medians of {env['repeats']} interleaved runs. {env['cores']} cores, {env['threads']} inference threads, "
                 f"load average at start {env['load_start']}, at end {env['load_end']}, {env['machine']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None,
                    help="model file (repeat to compare); default: the packaged file realtime.cam picks here")
    ap.add_argument("--clip", default=str(REPO.parent / "shared" / "videos" / "short_hamilton_clip.mp4"))
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--threads", type=int, default=None, help="default: the pipeline's measured default")
    ap.add_argument("--sequential", action="store_true", help="the stages on one thread (default: overlapped)")
    ap.add_argument("--cores", type=int, default=None, help="pin the process to this many CPU cores")
    ap.add_argument("--frames", type=int, default=None, help="default: the whole clip")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--faces", default="auto,landmarker+fill,detector",
                    help=f"comma-separated face paths to time: {', '.join(FACE_MODES)}")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per row; the table shows medians")
    ap.add_argument("--draw", action="store_true", help="also draw the overlay (as --video-out would)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    if not args.model:  # the INT8/FP32 choice of realtime.model_choice, measured and recorded on this machine
        from realtime.pipeline import default_model

        args.model = [str(default_model())]

    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = {"cores": cores, "threads": args.threads, "machine": f"{platform.machine()} {platform.processor()}".strip(),
           "load_start": round(os.getloadavg()[0], 2), "python": platform.python_version(),
           "clip": args.clip, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    modes = [m.strip() for m in args.faces.split(",") if m.strip()]
    unknown = [m for m in modes if m not in FACE_MODES]
    if unknown:
        ap.error(f"--faces: unknown {unknown}; choose from {list(FACE_MODES)}")
    env["repeats"] = args.repeats
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):  # interleaved, so drifting load hits every row alike
        for model in args.model:
            for mode in modes:
                runs.setdefault((model, mode), []).append(run_once(model, mode, args))
    rows = [median_of(r) for r in runs.values()]
    env["load_end"] = round(os.getloadavg()[0], 2)
    table = markdown(rows, env)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": rows}, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
