"""`python -m realtime.cam`: read facial affect live from a camera, file or stream.

    python -m realtime.cam --source 0 --model model.int8.onnx
    python -m realtime.cam --source clip.mp4 --model model.onnx --headless --csv out.csv --video-out out.mp4

Ctrl-C (or q in the window) ends the run cleanly: recordings are flushed and
closed, the video stays playable, and a summary is printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from affect.aus import AuMapError
from affect.checks import OptionError
from affect.face_model import FaceModelError
from affect.spec import SpecError
from inference.backends import BACKENDS, BackendError
from realtime.options import (
    FACE_PATHS,
    MAX_FACES_LIMIT,
    FaceFindingOptions,
    ModelOptions,
    OutputOptions,
    PipelineOptions,
    ScheduleOptions,
)
from realtime.pipeline import Pipeline, PipelineError
from realtime.recovery import recover
from realtime.sinks import OutputError, OutputFailed, SummaryJsonSink, check_output, check_video_output
from realtime.smoothing import SmoothingOptions
from realtime.sources import SourceError, SourceOptions

USER_ERRORS = (SourceError, BackendError, SpecError, FaceModelError, PipelineError, OutputError, OSError,
               AuMapError)
# The flag that sets each checked option (affect.checks.OptionError.option), for one-line errors.
FLAGS = {"ModelOptions.threads": "--threads", "FaceFindingOptions.max_faces": "--max-faces",
         "FaceFindingOptions.min_face_confidence": "--min-face-confidence", "FaceFindingOptions.finder": "--faces",
         "ScheduleOptions.every": "--every", "ScheduleOptions.max_frames": "--max-frames",
         "ScheduleOptions.small_face_every": "--small-face-every",
         "ScheduleOptions.small_face_side": "--small-face-side",
         "SourceOptions.width": "--width", "SourceOptions.height": "--height", "SourceOptions.fps": "--fps",
         "SmoothingOptions.ema_alpha": "--ema-alpha", "SmoothingOptions.min_cutoff": "--euro-min-cutoff",
         "SmoothingOptions.beta": "--euro-beta"}
__all__ = ["main", "get_args_parser", "add_pipeline_arguments", "check_args", "checked_options",
           "options_from_args", "MAX_FACES_LIMIT"]


class ArgumentError(ValueError):
    """A command-line value out of range; one line naming the flag."""


def checked_options(args: argparse.Namespace) -> PipelineOptions:
    """`options_from_args`, with a value out of range refused in one line naming its flag (the
    options check themselves: `affect.checks`; MediaPipe would fail with a traceback on
    --max-faces 0, and the detector would silently find no face)."""
    if args.au_map and not args.aus:
        raise ArgumentError("--au-map is for --aus: add --aus to read action units")
    try:
        return options_from_args(args)
    except OptionError as exc:
        raise ArgumentError(f"{FLAGS.get(exc.option, exc.option)} {exc.value}: {exc.problem}") from None


def check_args(args: argparse.Namespace) -> PipelineOptions:
    """The run's options, refused before anything is opened when a value is out of range
    (`checked_options`) or when two outputs are one file."""
    options = checked_options(args)
    outputs = [(flag, value) for flag, value in (("--csv", args.csv), ("--jsonl", args.jsonl),
                                                 ("--video-out", args.video_out),
                                                 ("--summary-json", args.summary_json)) if value]
    seen: dict[str, str] = {}
    for flag, value in outputs:
        key = os.path.realpath(os.path.expanduser(value))
        if key in seen:
            raise ArgumentError(f"{flag} {value}: the same file as {seen[key]}")
        seen[key] = flag
    return options


def _outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(flag, value) for flag, value in (("--csv", args.csv), ("--jsonl", args.jsonl),
                                              ("--video-out", args.video_out),
                                              ("--summary-json", args.summary_json)) if value]


def check_outputs(args: argparse.Namespace) -> None:
    """Every output checked (folder created, not a folder, writable) at start-up; then an
    output that exists is refused unless --overwrite (the rule of every command: an existing
    result is never replaced silently)."""
    for flag, value in _outputs(args):
        if flag == "--video-out":
            check_video_output(value)
        else:
            check_output(value, flag)
    for flag, value in _outputs(args):
        if os.path.exists(os.path.expanduser(value)):
            if not getattr(args, "overwrite", False):
                raise ArgumentError(f"{flag} {value}: already exists; pass --overwrite to replace it, or give "
                                    "another name")
            print(f"affectcam: {flag} {value} exists and will be replaced (--overwrite)", file=sys.stderr)


def recover_outputs(args: argparse.Namespace) -> int:
    """Recover what a killed run left for these outputs (`realtime.recovery`); how many files."""
    n = 0
    for flag, value in _outputs(args):
        if flag == "--summary-json":
            continue  # written at the very end in one go (atomic): a killed run has none to recover
        for line in recover(value):
            print(f"affectcam: {line}", file=sys.stderr)
            n += 1
    return n


def _error_lines(exc: BaseException) -> list[str]:
    """The error and the ones raised while closing after it (each names its file), oldest first."""
    chain = _chain(exc)
    lines = []
    for e in reversed(chain):
        if isinstance(e, (*USER_ERRORS, ArgumentError)):
            lines.append(str(e))
            lines += [note.split(" also failed: ", 1)[-1] for note in getattr(e, "__notes__", [])]
    return list(dict.fromkeys(lines))


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m realtime.cam", description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="0",
                    help="camera index, video file, image folder, rtsp/http URL or GStreamer pipeline (default 0)")
    add_pipeline_arguments(ap)
    ap.add_argument("--headless", action="store_true", help="no window")
    ap.add_argument("--csv", default=None, help="write the per-face CSV recording here")
    ap.add_argument("--jsonl", default=None, help="write the per-face JSONL recording here")
    ap.add_argument("--video-out", default=None, help="write the annotated video here (.mp4)")
    ap.add_argument("--summary-json", default=None, help="write the end-of-run summary here as JSON")
    ap.add_argument("--overwrite", action="store_true", help="replace outputs that already exist (else refused)")
    ap.add_argument("--recover", action="store_true",
                    help="only recover what a killed run left for the given outputs (hidden .partial files "
                         "become NAME.recovered-TIME.SUFFIX), then exit; a normal run does this at start-up")
    ap.add_argument("--width", type=int, default=None, help="camera resolution request")
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--fps", type=float, default=None, help="camera FPS request")
    return ap


def add_pipeline_arguments(ap: argparse.ArgumentParser) -> None:
    """The model, face, schedule and smoothing options: one meaning in every command that reads
    video (`realtime.cam`, `realtime.batch`); `options_from_args` reads them."""
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
    ap.add_argument("--faces", default="auto", choices=list(FACE_PATHS),
                    help="what finds the faces: yunet (packaged YuNet: faces from about 20 px, at the "
                         "frame's resolution), detector (MediaPipe's short-range FaceDetector: faster, "
                         "blind to faces under ~100 px in 1280x720), landmarker (478 points and "
                         "blendshapes, several times slower), or auto (default): yunet unless the model "
                         "takes blendshapes or --jsonl-landmarks asks for the mesh")
    ap.add_argument("--detector-only", action="store_true",
                    help="the same as --faces detector (MediaPipe's detector; no mesh or blendshapes; "
                         "a model that takes blendshapes then reads the face images alone)")
    stages = ap.add_mutually_exclusive_group()
    stages.add_argument("--sequential", dest="sequential", action="store_const", const=True, default=None,
                        help="run the stages one after another on one thread (the results are the same). "
                             "Default: --overlap, except for each of several corpus workers "
                             "(realtime.batch with 2+ workers or --ray), which run --sequential")
    stages.add_argument("--overlap", dest="sequential", action="store_false",
                        help="reading, faces and the model overlap on their own threads")
    ap.add_argument("--no-detector-fill", action="store_true",
                    help="landmarker only: skip the detector pass that adds faces the landmarker misses "
                         "(profiles, small faces; about 3 ms a frame)")
    ap.add_argument("--max-faces", type=int, default=FaceFindingOptions.max_faces,
                    help=f"most faces read in a frame (default {FaceFindingOptions.max_faces}: a classroom)")
    ap.add_argument("--min-face-confidence", type=float, default=FaceFindingOptions.min_face_confidence, metavar="P",
                    help="the face finder's detection threshold in (0, 1) (default 0.4, measured: "
                         "docs/BENCHMARKS.md; lower finds more faces in dim or small footage, and "
                         "more false ones)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--every", type=int, default=1,
                    help="read each face every Nth frame (faces in turn), carrying its reading between (default 1)")
    ap.add_argument("--small-face-every", type=int, default=ScheduleOptions.small_face_every, metavar="N",
                    help="read faces whose crop is under --small-face-side px every Nth frame at most often "
                         f"(default {ScheduleOptions.small_face_every}; 1: every frame; measured: docs/BENCHMARKS.md)")
    ap.add_argument("--small-face-side", type=int, default=None, metavar="PX",
                    help="a face whose crop side is under this is small for --small-face-every (default: the "
                         "model's input size, so a face the model sees upscaled)")
    ap.add_argument("--jsonl-landmarks", action="store_true", help="add landmarks and blendshapes to the JSONL")
    ap.add_argument("--aus", action="store_true",
                    help="action units: a probability per face for each of 15 FACS AUs (AU1 … AU27 columns), from "
                         "the model's action_units output, else from MediaPipe blendshapes (turns the landmarker on)")
    ap.add_argument("--au-map", default=None, metavar="JSON",
                    help="with --aus: read AUs from blendshapes with this map file (python -m train au-map) "
                         "instead of the packaged one")
    smooth = ap.add_argument_group("smoothing")
    smooth.add_argument("--no-smoothing", action="store_true", help="switch both filters off")
    smooth.add_argument("--ema-alpha", type=float, default=SmoothingOptions.ema_alpha,
                        help="weight of the newest expression probabilities (1 = off)")
    smooth.add_argument("--no-ema", action="store_true")
    smooth.add_argument("--euro-min-cutoff", type=float, default=SmoothingOptions.min_cutoff)
    smooth.add_argument("--euro-beta", type=float, default=SmoothingOptions.beta)
    smooth.add_argument("--no-one-euro", action="store_true")


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    """The pipeline's options for these arguments; raises OptionError for a value out of range."""
    smoothing = SmoothingOptions(ema=not (args.no_smoothing or args.no_ema), ema_alpha=args.ema_alpha,
                                 one_euro=not (args.no_smoothing or args.no_one_euro),
                                 min_cutoff=args.euro_min_cutoff, beta=args.euro_beta)
    return PipelineOptions(
        source=args.source,
        model=ModelOptions(args.model, backend=args.backend, threads=args.threads, spinning=args.spinning,
                           aus=(args.au_map or True) if args.aus else False),
        faces=FaceFindingOptions("detector" if args.detector_only else args.faces, face_model=args.face_model,
                                 detector_fill=not args.no_detector_fill, max_faces=args.max_faces,
                                 min_face_confidence=args.min_face_confidence),
        schedule=ScheduleOptions(every=args.every, small_face_every=args.small_face_every,
                                 small_face_side=args.small_face_side, max_frames=args.max_frames,
                                 overlap=not args.sequential),
        outputs=OutputOptions(csv=args.csv, jsonl=args.jsonl, jsonl_landmarks=args.jsonl_landmarks,
                              video_out=args.video_out, show=not args.headless,
                              sinks=[SummaryJsonSink(args.summary_json)] if args.summary_json else []),
        smoothing=smoothing, source_options=SourceOptions(width=args.width, height=args.height, fps=args.fps))


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.recover:
        if not _outputs(args):
            print("affectcam: error: --recover needs the outputs to look for (--csv, --jsonl, --video-out)",
                  file=sys.stderr)
            return 2
        if not recover_outputs(args):
            print("affectcam: nothing to recover for these outputs", file=sys.stderr)
        return 0
    try:
        options = check_args(args)
        recover_outputs(args)
        check_outputs(args)
        pipeline = Pipeline(options)
    except (*USER_ERRORS, ArgumentError) as exc:
        print(f"affectcam: error: {exc}", file=sys.stderr)
        return 2

    stopping = []

    def on_signal(signum: int, _frame: Any) -> None:
        # The first Ctrl-C / SIGTERM finishes this frame and closes everything; a second one
        # must not break that shutdown half-way (a video without its end, a summary never
        # written): it is told that the shutdown is under way, and the shutdown goes on.
        if stopping:
            if len(stopping) == 1:
                # os.write, not print: a handler may run while the main thread is inside a print
                os.write(2, b"affectcam: stopping already: finishing the recordings and the video\n")
            stopping.append(signum)
            return
        stopping.append(signum)
        pipeline.stop()
        pipeline.summary.interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stages = "one thread" if args.sequential else "overlapped stages"
    aus = {"model": "; AUs: the model's action_units output",
           "blendshapes": f"; AUs: blendshapes through {Path(getattr(pipeline.reader.au_map, 'path', '')).name}"
           }.get(pipeline.reader.au_source or "", "")
    print(f"affectcam: {pipeline.backend.describe()} on {pipeline.source.name}; faces: {pipeline.face_path}, "
          f"{stages}{aus}", file=sys.stderr)
    try:
        summary = pipeline.run()  # closing it writes the recordings, the video and the summary JSON
    except USER_ERRORS as exc:
        try:
            pipeline.close()
        except USER_ERRORS as later:
            exc.add_note(str(later))
        for line in _error_lines(exc):
            print(f"affectcam: error: {line}", file=sys.stderr)
        if pipeline.summary.frames:
            print(pipeline.summary.format())  # the run happened: its summary is not lost with a file
        return 1 if isinstance(exc, OutputFailed) or any(
            isinstance(e, OutputFailed) for e in _chain(exc)) else 2
    if summary.nonfinite_faces:
        print(f"affectcam: warning: {pipeline.backend.path}: the model gave NaN/inf for {summary.nonfinite_faces} "
              "faces; they are left out of the recordings (a broken model file?)", file=sys.stderr)
    print(summary.format())
    for sink in pipeline.sinks:  # what the run wrote, in the order of the options
        wrote = getattr(sink, "wrote", None)
        if callable(wrote) and wrote():
            print(f"affectcam: wrote {wrote()}", file=sys.stderr)
    return 0


def _chain(exc: BaseException | None) -> list[BaseException]:
    """`exc` and the errors it was raised while handling (`raise … from None` ends the chain)."""
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = None if exc.__suppress_context__ else exc.__context__
    return out


if __name__ == "__main__":
    raise SystemExit(main())
