"""One video of a corpus: the camera command's pipeline over the file, its recordings and
summary written into a session folder that appears whole or not at all.

The work happens in `OUT/sessions/.<key>.partial-<random>/` (each file there is itself
written atomically by the sinks); when everything is written, including the done record,
the folder is renamed to `OUT/sessions/<key>/`. So a session folder with a `done.json`
is complete, a kill leaves only a hidden partial folder (removed by the next run), and a
rerun skips a video whose done record matches the input file (size, mtime) and the options.

`process_video` is the one per-video function: the local worker processes and Ray tasks
both call it, and it never raises for a bad video: the outcome says what went wrong.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affect.errors import first_line
from affect.files import atomic_write_json

SESSIONS = "sessions"
RECORDING = "recording.csv"
JSONL = "recording.jsonl"
VIDEO = "annotated.mp4"
SUMMARY = "summary.json"
DONE = "done.json"
PARTIAL_MARK = ".partial-"
PROGRESS_EVERY = 25  # frames between progress reports


@dataclass
class VideoTask:
    """Everything a worker (a local process or a Ray task) needs: plain, picklable values."""
    path: str
    key: str
    out_dir: str  # OUT, a path every worker can write
    args: dict[str, Any]  # the command's parsed options (vars of the Namespace)
    options_digest: str
    metadata: dict[str, Any] = field(default_factory=dict)
    write_jsonl: bool = False
    write_video: bool = False
    cv_threads: int | None = None  # OpenCV's threads in the worker (runners.worker_settings); None: as it is

    @property
    def session_dir(self) -> Path:
        return Path(self.out_dir) / SESSIONS / self.key


@dataclass
class VideoOutcome:
    key: str
    path: str
    ok: bool
    error: str | None = None
    duration_s: float = 0.0  # seconds of video read
    frames: int = 0
    wall_s: float = 0.0  # the whole call, model loading included
    setup_s: float = 0.0  # opening the source, the model and the face finder
    cpu_s: float = 0.0  # CPU time of the worker process over the call, all its threads


def input_identity(path: str | os.PathLike) -> dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def options_digest(options: dict[str, Any]) -> str:
    """A short digest of every option that shapes the outputs (a changed one redoes the video)."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_done(session_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((session_dir / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_done(task: VideoTask) -> bool:
    """The session folder holds a done record for this very input file and these options."""
    done = read_done(task.session_dir)
    if done is None:
        return False
    try:
        identity = input_identity(task.path)
    except OSError:
        return False
    return (done.get("input") == task.path and done.get("options") == task.options_digest
            and all(done.get(k) == v for k, v in identity.items()))


def remove_partials(out_dir: Path) -> int:
    """Hidden partial session folders a killed run left behind."""
    sessions = out_dir / SESSIONS
    removed = 0
    if sessions.is_dir():
        for entry in sessions.iterdir():
            if entry.name.startswith(".") and PARTIAL_MARK in entry.name and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished folder into place; an older one (other options, a changed file)
    is moved aside first and removed after."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}{PARTIAL_MARK}old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def camera_args(options: dict[str, Any], source: str | None, csv: str | None = None, jsonl: str | None = None,
                video_out: str | None = None) -> argparse.Namespace:
    """The camera command's arguments for one video: the corpus command's model, face and
    smoothing options (`realtime.cam.add_pipeline_arguments`) plus the camera-only ones."""
    return argparse.Namespace(**{**options, "source": source, "csv": csv, "jsonl": jsonl, "video_out": video_out,
                                 "summary_json": None, "headless": True, "width": None, "height": None,
                                 "fps": None})


def _run_pipeline(task: VideoTask, tmp: Path, progress: Callable[[str, int, int], None] | None):
    """The camera command's pipeline over the file, built by the camera's own option reader."""
    from realtime.cam import options_from_args
    from realtime.pipeline import Pipeline

    ns = camera_args(task.args, task.path, str(tmp / RECORDING), str(tmp / JSONL) if task.write_jsonl else None,
                     str(tmp / VIDEO) if task.write_video else None)
    t0 = time.perf_counter()
    pipeline = Pipeline(options_from_args(ns))
    setup_s = time.perf_counter() - t0
    source = pipeline.source
    total = int(getattr(source, "frame_count", 0) or 0)
    if task.args.get("max_frames"):
        total = min(total, task.args["max_frames"]) if total else task.args["max_frames"]
    if progress:
        progress("start", task.key, total)
    n = 0
    try:
        for _ in pipeline:
            n += 1
            if progress and n % PROGRESS_EVERY == 0:
                progress("frames", task.key, PROGRESS_EVERY)
    finally:
        summary = pipeline.close()
    if progress and n % PROGRESS_EVERY:
        progress("frames", task.key, n % PROGRESS_EVERY)
    return pipeline, summary, setup_s


def worker_run_settings(pipeline: Any) -> dict[str, Any]:
    """How this worker ran the video, as it was (summary.json's run.worker): the stages, ONNX
    Runtime's intra-op threads (None: its own default, or a backend without them) and OpenCV's."""
    import cv2

    return {"stages": "overlapped" if pipeline.options.schedule.overlap else "sequential",
            "inference_threads": getattr(pipeline.backend, "threads", None),
            "opencv_threads": cv2.getNumThreads()}


def process_video(task: VideoTask, progress: Callable[[str, int, int], None] | None = None) -> VideoOutcome:
    """Read one video into its session folder; never raises for a bad video."""
    from affect.recording import read_au_thresholds, read_recording
    from affect.session_stats import session_stats

    t0, cpu0 = time.perf_counter(), time.process_time()
    outcome = VideoOutcome(task.key, task.path, ok=False)
    if task.cv_threads:
        import cv2

        cv2.setNumThreads(task.cv_threads)  # this worker process's OpenCV pool (resizing, colour conversion)
    sessions = Path(task.out_dir) / SESSIONS
    tmp: Path | None = None
    try:
        sessions.mkdir(parents=True, exist_ok=True)
        identity = input_identity(task.path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{task.key}{PARTIAL_MARK}", dir=sessions))
        pipeline, summary, outcome.setup_s = _run_pipeline(task, tmp, progress)
        outcome.frames = summary.frames
        fps = float(pipeline.source.fps or 0.0) or 30.0
        outcome.duration_s = summary.frames / fps
        if summary.source_error:
            raise RuntimeError(summary.source_error)
        if summary.frames == 0:
            raise RuntimeError(f"{task.path}: no frame could be decoded")
        labels = list(pipeline.spec.labels)
        frame = read_recording(tmp / RECORDING) if summary.faces else None
        run = {**summary.as_dict(), "worker": worker_run_settings(pipeline)}
        files = {"csv": RECORDING, **({"jsonl": JSONL} if task.write_jsonl else {}),
                 **({"video": VIDEO} if task.write_video else {})}
        atomic_write_json(tmp / SUMMARY, {
            "video": task.path, "session": task.key, "metadata": task.metadata, "labels": labels,
            "fps": fps, "frames": summary.frames, "duration_s": outcome.duration_s,
            "corrupt_frames": summary.corrupt_frames, "files": files,
            "stats": session_stats(frame, labels, read_au_thresholds(tmp / RECORDING)), "run": run})
        atomic_write_json(tmp / DONE, {"input": task.path, **identity, "options": task.options_digest,
                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _publish(tmp, task.session_dir)
        tmp = None
        outcome.ok = True
    except Exception as exc:  # one bad video is one failure line, never the end of the corpus
        outcome.error = first_line(exc, None)
        if task.path not in outcome.error:
            outcome.error = f"{task.path}: {outcome.error}"
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        outcome.wall_s = time.perf_counter() - t0
        outcome.cpu_s = time.process_time() - cpu0
    return outcome
