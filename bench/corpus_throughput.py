"""Corpus mode: throughput of 1 vs N workers, per-video overhead, and cores per worker.

    python bench/corpus_throughput.py --clips 20 --frames 100 --rounds 2 --workers 1 2 -o runs/bench_corpus

Makes `--clips` clips of `--frames` frames from the shared video (looping it), then runs
the real command (`python -m realtime.batch CLIPS -o OUT --workers W`, a fresh OUT each
time) for each worker count in turn, rounds alternating (1 2 1 2 …), and reports the
median throughput (video-seconds per wall-second, the command's own figure) and the
ratio to the first count. Then, on one clip of `--overhead-frames` frames (10 s at 30 fps
by default), reads the per-video set-up time (source, model, face finder) against the whole
video's time from `process_video`'s outcome, and the cores one worker keeps busy
(CPU time / wall time: `realtime.corpus.runners.CORES_PER_WORKER`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)  # not bench/: bench/realtime.py would shadow the realtime package
SHARED = Path(os.environ.get("AFFECTCAM_SHARED", REPO.parent / "shared"))
CLIP = SHARED / "videos" / "short_hamilton_clip.mp4"
FACE_MODEL = SHARED / "models" / "face_landmarker.task"


def make_clips(folder: Path, n: int, frames: int) -> list[Path]:
    cap = cv2.VideoCapture(str(CLIP))
    images = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    cap.release()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    h, w = images[0].shape[:2]
    for i in range(n):
        path = folder / f"clip{i:03d}.mp4"
        if not path.exists():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
            start = (i * 37) % len(images)  # each clip starts elsewhere in the looped video
            for k in range(frames):
                writer.write(images[(start + k) % len(images)])
            writer.release()
        paths.append(path)
    return paths


def run_command(clips: Path, out: Path, workers: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "realtime.batch", str(clips), "-o", str(out), "--workers", str(workers),
           "--no-progress", "--face-model", str(FACE_MODEL), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    match = re.search(r"throughput: ([0-9.]+) video-seconds per wall-second \(([0-9.]+) s of video in ([0-9.]+) s",
                      proc.stdout)
    return {"workers": workers, "throughput": float(match.group(1)), "video_s": float(match.group(2)),
            "run_s": float(match.group(3)), "command_s": wall}


def overhead(clip: Path, out: Path, extra: list[str]) -> dict:
    """process_video on one clip, twice (the first warms the caches): set-up vs the whole call."""
    from realtime.batch import _resolved_options, get_args_parser
    from realtime.corpus.video import VideoTask, options_digest, process_video

    args = get_args_parser().parse_args([str(clip), "-o", str(out), "--face-model", str(FACE_MODEL), *extra])
    options = _resolved_options(args)
    outcomes = []
    for i in range(3):
        task = VideoTask(str(clip), f"overhead{i}", str(out), options, options_digest(options))
        outcomes.append(process_video(task))
    o = outcomes[-1]
    return {"video_s": o.duration_s, "wall_s": o.wall_s, "setup_s": o.setup_s, "cpu_s": o.cpu_s,
            "setup_share": o.setup_s / o.wall_s, "cores_per_worker": o.cpu_s / o.wall_s,
            "setup_s_all": [round(x.setup_s, 3) for x in outcomes],
            "cores_all": [round(x.cpu_s / x.wall_s, 3) for x in outcomes]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--frames", type=int, default=100, help="frames per clip of the throughput corpus")
    ap.add_argument("--overhead-frames", type=int, default=300, help="frames of the overhead clip (300 = 10 s)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--extra", default="", help="more options for every run, e.g. '--sequential'")
    ap.add_argument("-o", "--out", default="runs/bench_corpus")
    args = ap.parse_args()
    extra = args.extra.split()
    root = Path(args.out)
    clips = root / f"clips_{args.clips}x{args.frames}"
    make_clips(clips, args.clips, args.frames)
    results: dict[int, list[dict]] = {w: [] for w in args.workers}
    for r in range(args.rounds):
        for w in args.workers:
            out = root / f"out_r{r}_w{w}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            res = run_command(clips, out, w, extra)
            results[w].append(res)
            print(json.dumps({"round": r, **res}), flush=True)
    base = statistics.median(x["throughput"] for x in results[args.workers[0]])
    print("\nworkers  throughput (video-s / wall-s, median)  ratio")
    summary = {}
    for w in args.workers:
        med = statistics.median(x["throughput"] for x in results[w])
        summary[w] = {"throughput": med, "ratio": med / base, "rounds": [x["throughput"] for x in results[w]]}
        print(f"{w:7d}  {med:10.3f}  {med / base:6.2f}x   rounds {summary[w]['rounds']}")
    one = make_clips(root / f"clip_{args.overhead_frames}", 1, args.overhead_frames)[0]
    ov = overhead(one, root / "overhead", extra)
    print(f"\nper-video set-up {ov['setup_s']:.2f} s of a {ov['video_s']:.1f}-s clip read in {ov['wall_s']:.1f} s "
          f"= {100 * ov['setup_share']:.1f} %; one worker keeps {ov['cores_per_worker']:.2f} cores busy")
    (root / "results.json").write_text(json.dumps({"throughput": summary, "overhead": ov,
                                                   "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
