"""Corpus mode: throughput of 1 vs N workers, per-video overhead, and cores per worker.

    python bench/corpus_throughput.py --clips 20 --frames 100 --rounds 3 -o runs/bench_corpus
    python bench/corpus_throughput.py --variants 2 2:--overlap "2:--overlap OPENCV_FOR_THREADS_NUM=2" ...

Makes `--clips` clips of `--frames` frames from the shared video (looping it), then runs
the real command (`python -m realtime.batch CLIPS -o OUT --workers W [OPTIONS]`, a fresh
OUT each time) for each variant (`W` or `W:OPTIONS`, where an option NAME=VALUE is an
environment variable for that run) in turn, rounds alternating, and reports the median
throughput (video-seconds per wall-second, the command's own figure), the ratio to the first
variant and the per-worker settings the command said it used. The default variants: the
command's defaults with 1 and 2 workers (one worker overlaps its stages; each of two runs
sequential stages with one ONNX Runtime and one OpenCV thread), and 1 worker with the two
workers' settings. Then, on one clip of `--overhead-frames` frames (10 s at 30 fps by default),
with the settings of one worker alone and of each of two, reads the per-video set-up time
(source, model, face finder) against the whole video's time from `process_video`'s outcome, and
the threads one worker keeps busy (the CPU time of all its threads over the busiest one's:
`realtime.corpus.runners.THREADS_PER_WORKER`).
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
# The command's defaults with one and two workers, and one worker with the settings each of two gets
# (realtime.corpus.runners.worker_settings): the ratio of defaults, and the ratio at equal settings.
DEFAULT_VARIANTS = ("1", "2", "1:--sequential OPENCV_FOR_THREADS_NUM=1")
ENV_TOKEN = re.compile(r"^[A-Z][A-Z0-9_]*=")  # a variant's NAME=VALUE: an environment variable for its run


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


def run_command(clips: Path, out: Path, variant: str, extra: list[str]) -> dict:
    workers, _, more = variant.partition(":")
    tokens = more.split()
    env = {**os.environ, **dict(t.split("=", 1) for t in tokens if ENV_TOKEN.match(t))}
    cmd = [sys.executable, "-m", "realtime.batch", str(clips), "-o", str(out), "--workers", workers,
           "--no-progress", "--face-model", str(FACE_MODEL), *[t for t in tokens if not ENV_TOKEN.match(t)], *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    match = re.search(r"throughput: ([0-9.]+) video-seconds per wall-second \(([0-9.]+) s of video in ([0-9.]+) s",
                      proc.stdout)
    settings = re.search(r"^per worker: (.*)$", proc.stdout, re.M)
    return {"variant": variant, "throughput": float(match.group(1)), "video_s": float(match.group(2)),
            "run_s": float(match.group(3)), "command_s": wall, "per_worker": settings.group(1) if settings else None}


def _thread_cpu() -> dict[int, float]:
    """CPU seconds so far of each thread of this process (utime + stime from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return out


def overhead(clip: Path, out: Path, extra: list[str], workers: int) -> dict:
    """process_video on one clip, three times (the first warms the caches), with the settings each
    of `workers` workers gets (`realtime.corpus.runners.worker_settings`): set-up vs the whole
    call, and how many threads of the worker were busy: the CPU time of all its threads over
    that of the busiest one (sampled from /proc while it runs; the stage threads end with the
    video). On a shared CPU that ratio holds where CPU time over wall time does not."""
    import threading

    import cv2

    from realtime.batch import _resolved_options, get_args_parser
    from realtime.corpus.runners import worker_settings
    from realtime.corpus.video import VideoTask, options_digest, process_video

    args = get_args_parser().parse_args([str(clip), "-o", str(out), "--face-model", str(FACE_MODEL), *extra])
    options = _resolved_options(args)
    settings = worker_settings(options, workers)
    options = settings.apply(options)
    cv_before = cv2.getNumThreads()
    outcomes, busy = [], []
    for i in range(3):
        task = VideoTask(str(clip), f"overhead{workers}w{i}", str(out), options, options_digest(options),
                         cv_threads=settings.cv_threads)
        start = _thread_cpu()
        peak: dict[int, float] = {}
        result = []
        worker = threading.Thread(target=lambda t=task, r=result: r.append(process_video(t)))
        worker.start()
        while worker.is_alive():
            for tid, cpu in _thread_cpu().items():
                peak[tid] = max(peak.get(tid, 0.0), cpu - start.get(tid, 0.0))
            time.sleep(0.05)
        worker.join()
        outcomes.append(result[0])
        used = [c for c in peak.values() if c > 0]
        busy.append(sum(used) / max(used) if used else 0.0)
    cv2.setNumThreads(cv_before)  # process_video set this process's pool for the worker's settings
    o = outcomes[-1]
    return {"workers": workers, "settings": settings.describe(), "video_s": o.duration_s, "wall_s": o.wall_s, "setup_s": o.setup_s, "cpu_s": o.cpu_s,
            "setup_share": o.setup_s / o.wall_s, "cpu_over_wall": o.cpu_s / o.wall_s,
            "busy_threads": statistics.median(busy[1:]),
            "setup_s_all": [round(x.setup_s, 3) for x in outcomes], "busy_threads_all": [round(b, 2) for b in busy],
            "wall_s_all": [round(x.wall_s, 2) for x in outcomes]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--frames", type=int, default=100, help="frames per clip of the throughput corpus")
    ap.add_argument("--overhead-frames", type=int, default=300, help="frames of the overhead clip (300 = 10 s)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                    help="worker counts, each optionally with options and NAME=VALUE environment variables: "
                         "'2:--overlap', '1:--sequential OPENCV_FOR_THREADS_NUM=1' (default: %(default)s)")
    ap.add_argument("--extra", default="", help="more options for every run, e.g. '--sequential'")
    ap.add_argument("-o", "--out", default="runs/bench_corpus")
    args = ap.parse_args()
    extra = args.extra.split()
    root = Path(args.out)
    clips = root / f"clips_{args.clips}x{args.frames}"
    make_clips(clips, args.clips, args.frames)
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        for i, v in enumerate(args.variants):
            out = root / f"out_r{r}_v{i}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            res = run_command(clips, out, v, extra)
            results[v].append(res)
            print(json.dumps({"round": r, **res}), flush=True)
    base = statistics.median(x["throughput"] for x in results[args.variants[0]])
    print("\nvariant           throughput (video-s / wall-s, median)  ratio")
    summary = {}
    for v in args.variants:
        med = statistics.median(x["throughput"] for x in results[v])
        summary[v] = {"throughput": med, "ratio": med / base, "rounds": [x["throughput"] for x in results[v]]}
        print(f"{v:16s}  {med:10.3f}  {med / base:6.2f}x   rounds {summary[v]['rounds']}\n"
              f"    per worker: {results[v][-1]['per_worker']}")
    one = make_clips(root / f"clip_{args.overhead_frames}", 1, args.overhead_frames)[0]
    if (root / "overhead").exists():
        import shutil

        shutil.rmtree(root / "overhead")
    ov = {}
    for workers in (1, 2):  # one worker alone, and each of several (their settings differ)
        o = ov[workers] = overhead(one, root / "overhead", extra, workers)
        print(f"\n{workers} worker(s), each {o['settings']}:\n  per-video set-up {o['setup_s']:.2f} s of a "
              f"{o['video_s']:.1f}-s clip read in {o['wall_s']:.1f} s = {100 * o['setup_share']:.1f} %; "
              f"a worker's busy threads {o['busy_threads']:.2f} (CPU/wall {o['cpu_over_wall']:.2f} on this "
              "machine's load)")
    (root / "results.json").write_text(json.dumps({"throughput": summary, "overhead": ov,
                                                   "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
