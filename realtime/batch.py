"""`python -m realtime.batch`: read facial affect from a corpus of recorded videos.

    python -m realtime.batch videos/ -o corpus_out
    python -m realtime.batch manifest.csv -o corpus_out --workers 2 --write-video
    python -m realtime.batch videos/ -o /shared/corpus_out --ray auto

INPUT is video files, folders (searched recursively by video extension) or manifest
CSVs (a `path` column; every other column is metadata carried into the corpus table).
Each video gets what `python -m realtime.cam` writes (the CSV recording, optionally the
JSONL and the annotated video) and a summary, in `OUT/sessions/<name>-<digest>/`; the
corpus table (`OUT/corpus.parquet`, `OUT/corpus.csv`) has one row per video. Every model,
face and smoothing option means what it means for the camera command; only the defaults of
how each worker runs differ when there are several: each of several workers (or Ray tasks)
runs its stages one after another (`--sequential`) with one inference thread and one OpenCV
thread, so that the workers share the cores without oversubscribing them; one worker alone
overlaps its stages as the camera does. `--overlap`, `--threads` or `$OPENCV_FOR_THREADS_NUM`
name them instead, and the end-of-run summary says which were used.

Rerunning the same command skips the videos already done (same file size and mtime, same
options) and redoes the rest; Ctrl-C or a kill loses at most the videos being read. A
video that cannot be read is one failure line; the exit code is 1 when any failed.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from realtime.cam import USER_ERRORS, ArgumentError, add_pipeline_arguments, checked_options
from realtime.corpus.inputs import InputError, VideoInput, collect_inputs
from realtime.corpus.runners import (
    LocalRunner,
    RayMissing,
    available_cores,
    default_workers,
    run_ray,
    worker_settings,
)
from realtime.corpus.table import TableError, check_metadata_columns, corpus_frame, write_table
from realtime.corpus.video import (
    SESSIONS,
    VideoOutcome,
    VideoTask,
    camera_args,
    is_done,
    options_digest,
    remove_partials,
)

BATCH_ONLY = ("inputs", "out", "workers", "ray", "no_progress")
# How a worker runs, not what it writes (the overlapped and sequential results are the same): not
# in the options digest, so a rerun with another --workers (and so other per-worker defaults) skips
# the videos done. --threads stays in it when named.
RUN_ONLY = ("sequential",)
LOCK = ".affectcam-corpus.lock"


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m realtime.batch", description=__doc__.splitlines()[0],
                                 epilog="Every model, face and smoothing option is the camera command's "
                                        "(python -m realtime.cam --help).")
    ap.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders of videos or manifest CSVs")
    ap.add_argument("-o", "--out", required=True, help="output folder (on a Ray cluster: one every node can write)")
    ap.add_argument("--workers", type=int, default=None,
                    help=f"worker processes (default: from the cores and the measured load of one worker; "
                         f"{default_workers()} here). Each of several runs --sequential with one inference and "
                         f"one OpenCV thread unless --overlap, --threads or $OPENCV_FOR_THREADS_NUM say otherwise")
    ap.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                    help="run each video as a Ray task on an existing cluster (needs affectcam[ray] on every "
                         "node; the videos, OUT, --model and --face-model must be at the same paths there)")
    ap.add_argument("--write-jsonl", action="store_true", help="also write each video's JSONL recording")
    ap.add_argument("--write-video", action="store_true", help="also write each video's annotated MP4")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_pipeline_arguments(ap)
    return ap


class Progress:
    """Two tqdm bars: videos and frames (frame totals grow as workers open their videos)."""

    def __init__(self, videos: int, enabled: bool):
        from tqdm import tqdm

        self.tqdm = tqdm
        disable = None if enabled else True  # None: on a terminal only
        self.videos = tqdm(total=videos, desc="videos", unit="video", position=0, disable=disable)
        self.frames = tqdm(total=0, desc="frames", unit="frame", position=1, disable=disable)

    def event(self, kind: str, payload: Any) -> None:
        _key, n = payload
        if kind == "start" and n:
            self.frames.total = (self.frames.total or 0) + n
            self.frames.refresh()
        elif kind == "frames":
            self.frames.update(n)

    def outcome(self, _outcome: VideoOutcome) -> None:
        self.videos.update(1)

    def close(self) -> None:
        self.frames.close()
        self.videos.close()


def _error(message: str) -> int:
    print(f"affectcam: error: {message}", file=sys.stderr)
    return 2


def _file_identity(path: str | os.PathLike | None) -> Any:
    if not path:
        return None
    try:
        st = os.stat(path)
        return [str(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return str(path)


def _pipeline_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in BATCH_ONLY}


def _resolved_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options every worker gets; the model is resolved once here (and checked: a bad model
    or face model is one line before any video starts)."""
    from realtime.pipeline import Pipeline

    options = _pipeline_options(args)
    pipeline = Pipeline(checked_options(camera_args(options, None)))
    try:
        options["model"] = str(pipeline.backend.path)
    finally:
        pipeline.close()
    return options


def _lock(out: Path):
    """One run per output folder at a time."""
    fh = open(out / LOCK, "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise InputError(f"{out}: another corpus run is writing to this folder") from None
    return fh


def quiet_mediapipe() -> None:
    """MediaPipe's (glog/LiteRT) start-up lines, once per video, would drown the report."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    quiet_mediapipe()
    try:
        checked_options(camera_args(_pipeline_options(args), None))  # a value out of range: one line
        if args.workers is not None and args.workers < 1:
            raise ArgumentError(f"--workers {args.workers}: must be a whole number of at least 1")
        videos = collect_inputs(args.inputs)
        check_metadata_columns(videos)
        out = Path(args.out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        lock = _lock(out)
    except (ArgumentError, InputError, TableError, OSError) as exc:
        return _error(str(exc))
    try:
        return _run(args, videos, out)
    finally:
        lock.close()


def _run(args: argparse.Namespace, videos: list[VideoInput], out: Path) -> int:
    ray_mod = None
    if args.ray:
        try:
            from realtime.corpus.runners import import_ray

            ray_mod = import_ray()
        except RayMissing as exc:
            return _error(str(exc))
    try:
        options = _resolved_options(args)
    except USER_ERRORS as exc:
        return _error(str(exc))
    digest = options_digest({**{k: v for k, v in options.items() if k not in RUN_ONLY},
                             "model_file": _file_identity(options["model"]),
                             "face_model_file": _file_identity(options.get("face_model"))})
    removed = remove_partials(out)
    tasks = [VideoTask(str(v.path), v.key, str(out.resolve()), options, digest, v.metadata,
                       args.write_jsonl, args.write_video) for v in videos]
    done = {t.key for t in tasks if is_done(t)}
    todo = [t for t in tasks if t.key not in done]
    workers = args.workers or default_workers()
    running = max(1, min(workers, len(todo)))  # workers started: one per video at most
    settings = worker_settings(options, running, ray=bool(args.ray))
    for task in todo:
        task.args, task.cv_threads = settings.apply(task.args), settings.cv_threads
    where = f"Ray ({args.ray})" if args.ray else f"{min(workers, len(todo)) or workers} worker(s) on " \
                                                 f"{available_cores()} cores"
    print(f"affectcam: {len(videos)} videos: {len(done)} done already, {len(todo)} to read with {where}"
          + (f"; {removed} partial folder(s) of an interrupted run removed" if removed else ""), file=sys.stderr)

    errors: dict[str, str] = {}
    read_s, t0, interrupted = 0.0, time.perf_counter(), False
    progress = Progress(len(todo), enabled=not args.no_progress)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    outcomes = run_ray(todo, args.ray, progress.event) if ray_mod else LocalRunner(workers).run(todo, progress.event)
    try:
        for outcome in outcomes:
            progress.outcome(outcome)
            if outcome.ok:
                done.add(outcome.key)
                read_s += outcome.duration_s
            else:
                errors[outcome.key] = outcome.error or "failed"
    except KeyboardInterrupt:
        interrupted = True
    except RayMissing as exc:
        return _error(str(exc))
    finally:
        outcomes.close()  # ends the workers (or cancels the Ray tasks) still holding a video
        signal.signal(signal.SIGTERM, old_term)
        progress.close()
    wall = time.perf_counter() - t0

    written = write_table(corpus_frame(out, videos, done, errors), out)
    for error in errors.values():
        print(f"affectcam: failed: {error}", file=sys.stderr)
    n_read = len(done & {t.key for t in todo})
    print(f"wrote {written[0]} and {written[1]} ({len(videos)} rows); "
          f"{len(done)} session folders under {out / SESSIONS}")
    print(f"{n_read} videos read, {len(errors)} failed, {len(videos) - len(todo)} skipped (done already)"
          + (", interrupted: rerun the same command to go on" if interrupted else ""))
    if todo:
        print(f"per {'Ray task' if args.ray else 'worker'}: {settings.describe()}")
    if wall > 0 and read_s > 0:
        print(f"throughput: {read_s / wall:.2f} video-seconds per wall-second "
              f"({read_s:.1f} s of video in {wall:.1f} s)")
    if interrupted:
        return 130
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
