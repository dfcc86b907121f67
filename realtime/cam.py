"""`python -m realtime.cam`: read facial affect live from a camera, file or stream.

    python -m realtime.cam --source 0 --model model.int8.onnx
    python -m realtime.cam --source clip.mp4 --model model.onnx --headless --csv out.csv --video-out out.mp4

Ctrl-C (or q in the window) ends the run cleanly: recordings are flushed and
closed, the video stays playable, and a summary is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from affect.face_model import FaceModelError
from affect.spec import SpecError
from realtime.backends import BACKENDS, BackendError
from realtime.pipeline import Pipeline, PipelineError, PipelineOptions
from realtime.sinks import OutputError, check_output, check_video_output
from realtime.smoothing import SmoothingOptions
from realtime.sources import SourceError, SourceOptions

USER_ERRORS = (SourceError, BackendError, SpecError, FaceModelError, PipelineError, OutputError, OSError)
MAX_FACES_LIMIT = 100  # MediaPipe's cost grows with it; more faces than this in one frame is a typo


class ArgumentError(ValueError):
    """A command-line value out of range; one line naming the flag."""


def check_args(args: argparse.Namespace) -> None:
    """Values argparse's types let through but the run cannot use, refused before
    anything is opened (MediaPipe would fail with a traceback on --max-faces 0,
    and the detector would silently find no face)."""
    def at_least(flag: str, value, low, kind: str = "whole number") -> None:
        if value is not None and value < low:
            raise ArgumentError(f"{flag} {value}: must be a {kind} of at least {low}")

    at_least("--max-faces", args.max_faces, 1)
    if args.max_faces > MAX_FACES_LIMIT:
        raise ArgumentError(f"--max-faces {args.max_faces}: at most {MAX_FACES_LIMIT}")
    if not 0.0 < args.min_face_confidence < 1.0:
        raise ArgumentError(f"--min-face-confidence {args.min_face_confidence}: must be between 0 and 1")
    at_least("--every", args.every, 1)
    at_least("--max-frames", args.max_frames, 1)
    at_least("--threads", args.threads, 1)
    at_least("--width", args.width, 1)
    at_least("--height", args.height, 1)
    if args.fps is not None and not args.fps > 0:
        raise ArgumentError(f"--fps {args.fps}: must be above 0")
    if not 0 < args.ema_alpha <= 1:
        raise ArgumentError(f"--ema-alpha {args.ema_alpha}: must be in (0, 1]")
    outputs = [(flag, value) for flag, value in (("--csv", args.csv), ("--jsonl", args.jsonl),
                                                 ("--video-out", args.video_out),
                                                 ("--summary-json", args.summary_json)) if value]
    seen: dict[str, str] = {}
    for flag, value in outputs:
        key = os.path.realpath(os.path.expanduser(value))
        if key in seen:
            raise ArgumentError(f"{flag} {value}: the same file as {seen[key]}")
        seen[key] = flag


def check_outputs(args: argparse.Namespace) -> None:
    """Every output checked (folder created, not a folder, writable) at start-up."""
    for flag, value in (("--csv", args.csv), ("--jsonl", args.jsonl), ("--summary-json", args.summary_json)):
        if value:
            check_output(value, flag)
    if args.video_out:
        check_video_output(args.video_out)


def write_summary_json(path: str, summary: dict) -> None:
    """Atomically: a reader never sees half a summary."""
    target = Path(path).expanduser()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m realtime.cam", description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="0",
                    help="camera index, video file, image folder, rtsp/http URL or GStreamer pipeline (default 0)")
    ap.add_argument("--model", default=None, help="model file: .onnx, .engine or .pt (default: the packaged model)")
    ap.add_argument("--backend", default=None, choices=sorted(BACKENDS), help="default: by the model's extension")
    ap.add_argument("--threads", type=int, default=None,
                    help="inference threads (ONNX Runtime intra-op, torch); default $AFFECTCAM_ORT_THREADS, "
                         "else the measured default for a CPU shared with MediaPipe")
    spin = ap.add_mutually_exclusive_group()
    spin.add_argument("--spinning", dest="spinning", action="store_true", default=None,
                      help="let ONNX Runtime's idle threads spin (default $AFFECTCAM_ORT_SPINNING, else off)")
    spin.add_argument("--no-spinning", dest="spinning", action="store_false")
    ap.add_argument("--face-model", default=None, help="MediaPipe face_landmarker.task (default: env, cache, download)")
    ap.add_argument("--faces", default="auto", choices=["auto", "detector", "landmarker"],
                    help="what finds the faces: the MediaPipe FaceDetector (fast; six keypoints give the "
                         "roll), the Face Landmarker (478 points and blendshapes, several times slower), "
                         "or auto (default): the detector unless the model takes blendshapes or "
                         "--jsonl-landmarks asks for the mesh")
    ap.add_argument("--detector-only", action="store_true",
                    help="the same as --faces detector (no mesh or blendshapes; "
                         "a model that takes blendshapes then reads the face images alone)")
    ap.add_argument("--sequential", action="store_true",
                    help="run the stages one after another on one thread (default: reading, faces and the "
                         "model overlap on their own threads; the results are the same)")
    ap.add_argument("--no-detector-fill", action="store_true",
                    help="landmarker only: skip the detector pass that adds faces the landmarker misses "
                         "(profiles, small faces; about 3 ms a frame)")
    ap.add_argument("--max-faces", type=int, default=10)
    ap.add_argument("--min-face-confidence", type=float, default=PipelineOptions.min_face_confidence, metavar="P",
                    help="the face finder's detection threshold in (0, 1) (default 0.4, measured: "
                         "docs/BENCHMARKS.md; lower finds more faces in dim or small footage, and "
                         "more false ones)")
    ap.add_argument("--headless", action="store_true", help="no window")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--every", type=int, default=1, help="run the model every Nth frame, carrying results between")
    ap.add_argument("--csv", default=None, help="write the per-face CSV recording here")
    ap.add_argument("--jsonl", default=None, help="write the per-face JSONL recording here")
    ap.add_argument("--jsonl-landmarks", action="store_true", help="add landmarks and blendshapes to the JSONL")
    ap.add_argument("--video-out", default=None, help="write the annotated video here (.mp4)")
    ap.add_argument("--summary-json", default=None, help="write the end-of-run summary here as JSON")
    ap.add_argument("--width", type=int, default=None, help="camera resolution request")
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--fps", type=float, default=None, help="camera FPS request")
    smooth = ap.add_argument_group("smoothing")
    smooth.add_argument("--no-smoothing", action="store_true", help="switch both filters off")
    smooth.add_argument("--ema-alpha", type=float, default=SmoothingOptions.ema_alpha,
                        help="weight of the newest expression probabilities (1 = off)")
    smooth.add_argument("--no-ema", action="store_true")
    smooth.add_argument("--euro-min-cutoff", type=float, default=SmoothingOptions.min_cutoff)
    smooth.add_argument("--euro-beta", type=float, default=SmoothingOptions.beta)
    smooth.add_argument("--no-one-euro", action="store_true")
    return ap


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    smoothing = SmoothingOptions(ema=not (args.no_smoothing or args.no_ema), ema_alpha=args.ema_alpha,
                                 one_euro=not (args.no_smoothing or args.no_one_euro),
                                 min_cutoff=args.euro_min_cutoff, beta=args.euro_beta)
    return PipelineOptions(
        source=args.source, model=args.model, backend=args.backend, threads=args.threads,
        spinning=args.spinning, face_model=args.face_model,
        faces="detector" if args.detector_only else args.faces, overlap=not args.sequential,
        detector_fill=not args.no_detector_fill, max_faces=args.max_faces,
        min_face_confidence=args.min_face_confidence,
        every=args.every, max_frames=args.max_frames, smoothing=smoothing,
        source_options=SourceOptions(width=args.width, height=args.height, fps=args.fps),
        csv=args.csv, jsonl=args.jsonl, jsonl_landmarks=args.jsonl_landmarks, video_out=args.video_out,
        show=not args.headless)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        check_args(args)
        check_outputs(args)
        pipeline = Pipeline(options_from_args(args))
    except (*USER_ERRORS, ArgumentError) as exc:
        print(f"affectcam: error: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        # First Ctrl-C: finish this frame and close everything; a second one aborts.
        pipeline.stop()
        pipeline.summary.interrupted = True
        signal.signal(signum, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stages = "one thread" if args.sequential else "overlapped stages"
    print(f"affectcam: {pipeline.backend.describe()} on {pipeline.source.name}; faces: {pipeline.face_path}, "
          f"{stages}", file=sys.stderr)
    try:
        summary = pipeline.run()
    except USER_ERRORS as exc:
        pipeline.close()
        print(f"affectcam: error: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    if args.summary_json:
        write_summary_json(args.summary_json, summary.as_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
