"""The realtime pipeline: frames → MediaPipe faces → crops → one batched
inference call → tracks + smoothing → overlay / recordings.

    with Pipeline(PipelineOptions(source="clip.mp4", model="model.onnx")) as p:
        for result in p:
            for face in result.faces:
                print(result.index, face.track_id, face.expression, face.valence, face.arousal)

A model whose spec lists `blendshapes` also gets each face's MediaPipe
blendshape scores (the landmarker computes them whenever such a model runs);
faces without them (the detector-only path, faces the detector filled in) get
a NaN row, and the model reads their image alone.

The command line (`python -m realtime.cam`) and the dashboard both drive it.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affect.blendshapes import blendshape_row
from affect.crop import CropBox, crop_face
from affect.face_model import resolve_face_model
from affect.preprocess import prepare_batch, softmax
from affect.spec import OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec
from realtime.backends import Backend, create_backend
from realtime.faces import Face, FaceFinder, FaceOptions
from realtime.overlay import Window, draw_face, draw_stats, draw_va_inset
from realtime.sinks import CsvSink, JsonlSink, LatencyStats, RunSummary, VideoSink
from realtime.smoothing import SmoothingOptions, TrackSmoother
from realtime.sources import Source, SourceOptions, open_source
from realtime.tracking import Tracker, TrackerOptions

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "affectcam_default.int8.onnx"
STAGES = ("read", "faces", "crop", "infer", "track", "draw", "write")


class PipelineError(RuntimeError):
    """A pipeline that cannot be set up (no model, bad options)."""


# Models already told about (the detector path gives them no blendshapes): one notice per process.
_NOTIFIED: set[str] = set()


def blendshape_rows(faces: Sequence[Face], names: Sequence[str]) -> np.ndarray:
    """float32 [len(faces), len(names)]: each face's MediaPipe scores in `names`
    order, a NaN row for a face without them (detector faces)."""
    rows = np.full((len(faces), len(names)), np.nan, np.float32)
    for k, face in enumerate(faces):
        rows[k] = blendshape_row(face.blendshapes, names)
    return rows


@dataclass
class PipelineOptions:
    source: str | int | Path | Source = 0
    model: str | Path | None = None  # None: the packaged default model
    backend: str | None = None  # None: by the model file's extension
    providers: list[str] | None = None  # ONNX Runtime execution providers
    threads: int | None = None
    face_model: str | Path | None = None  # None: env var, cache, download
    download_face_model: bool = True
    landmarks: bool = True  # False: the lighter FaceDetector path (no mesh, no blendshapes)
    # MediaPipe blendshapes on FaceResult (and in the JSONL with jsonl_landmarks); a model
    # that takes blendshapes gets them either way (the landmarker then computes them).
    blendshapes: bool = True
    detector_fill: bool = True  # landmarker path: also run the detector for faces the landmarker misses
    max_faces: int = 10
    min_face_confidence: float = 0.5
    every: int = 1  # run the model every Nth frame; faces and tracks every frame
    max_frames: int | None = None
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    tracking: TrackerOptions = field(default_factory=TrackerOptions)
    source_options: SourceOptions = field(default_factory=SourceOptions)
    csv: str | Path | None = None
    jsonl: str | Path | None = None
    jsonl_landmarks: bool = False  # landmarks and blendshapes in the JSONL (large)
    video_out: str | Path | None = None
    show: bool = False  # an OpenCV window (q quits, space pauses, s saves a snapshot)
    draw: bool | None = None  # annotate frames; None: when there is a window or a video
    trail_length: int = 45  # frames of V-A trail per track in the inset
    snapshot_dir: str | Path = "."


@dataclass
class FaceResult:
    track_id: int
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    det_score: float
    crop_box: CropBox
    expression: str
    confidence: float
    probabilities: np.ndarray  # smoothed, in spec.labels order
    valence: float  # smoothed
    arousal: float
    raw_probabilities: np.ndarray  # this frame's (or the carried) model output
    raw_valence: float
    raw_arousal: float
    inferred: bool  # False when carried from an earlier frame (--every N)
    landmarks: np.ndarray | None = None
    blendshapes: dict[str, float] | None = None
    crop: np.ndarray | None = None  # the RGB model input crop


@dataclass
class FrameResult:
    index: int
    t_ms: float
    image: np.ndarray  # the frame, BGR
    faces: list[FaceResult]
    timings: dict[str, float]  # milliseconds per stage, and `frame` for the total
    fps: float
    annotated: np.ndarray | None = None


def default_model() -> Path:
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise PipelineError(f"no model given and the packaged default {DEFAULT_MODEL} is not installed: "
                        "pass --model PATH (an exported .onnx, .engine or .pt)")


class Pipeline:
    def __init__(self, options: PipelineOptions):
        self.options = o = options
        if o.every < 1:
            raise PipelineError(f"--every must be at least 1, got {o.every}")
        self._stack = ExitStack()
        try:
            self.backend: Backend = self._stack.enter_context(
                create_backend(o.model or default_model(), o.backend, o.threads, o.providers))
            self.spec: ModelSpec = self.backend.spec
            face_model = resolve_face_model(o.face_model, download=o.download_face_model)
            self.source: Source = o.source if isinstance(o.source, Source) else open_source(
                o.source, o.source_options)
            self._stack.callback(self.source.close)
            mode = "image" if self.source.kind == "folder" else "video"
            self.finder = self._stack.enter_context(FaceFinder(FaceOptions(
                face_model, max_faces=o.max_faces, landmarks=o.landmarks,
                blendshapes=o.blendshapes or bool(self.spec.blendshapes),
                fill_with_detector=o.detector_fill, min_detection_confidence=o.min_face_confidence, mode=mode)))
            self.tracker = Tracker(o.tracking)
            self.csv = CsvSink(o.csv, self.spec.labels) if o.csv else None
            self.jsonl = JsonlSink(o.jsonl, self.spec.labels, o.jsonl_landmarks, o.jsonl_landmarks) \
                if o.jsonl else None
            self.video = VideoSink(o.video_out, self.source.fps) if o.video_out else None
            for sink in (self.csv, self.jsonl, self.video):
                if sink is not None:
                    self._stack.callback(sink.close)
            self.window = Window(snapshot_dir=o.snapshot_dir) if o.show else None
            if self.window is not None:
                self._stack.callback(self.window.close)
        except BaseException:
            self._stack.close()
            raise
        if self.spec.blendshapes and not o.landmarks and str(self.backend.path) not in _NOTIFIED:
            _NOTIFIED.add(str(self.backend.path))
            print(f"affectcam: note: {self.backend.path.name} takes MediaPipe blendshapes, which the "
                  "detector-only path does not give; it reads the face images alone", file=sys.stderr)
        self.draw = o.draw if o.draw is not None else bool(o.show or o.video_out)
        self.latency = LatencyStats()
        self.summary = RunSummary()
        self._seen_tracks: set[int] = set()
        self._stop = False
        self._closed = False
        self._t_start: float | None = None
        self._last_timings: dict[str, float] = {}

    # --- running ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the current frame and end the iteration (safe from a signal handler)."""
        self._stop = True

    def __iter__(self) -> Iterator[FrameResult]:
        frames = iter(self.source)
        self._t_start = time.perf_counter()
        n = 0
        while not self._stop and (self.options.max_frames is None or n < self.options.max_frames):
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            read_ms = (time.perf_counter() - t0) * 1000
            result = self._process(frame.index, frame.t_ms, frame.image, n, read_ms)
            n += 1
            yield result

    def run(self) -> RunSummary:
        """Consume the whole source (Ctrl-C ends it cleanly); returns the summary."""
        try:
            for _ in self:
                pass
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.close()
        return self.summary

    def _process(self, index: int, t_ms: float, image: np.ndarray, n: int, read_ms: float) -> FrameResult:
        o, spec = self.options, self.spec
        timings = {"read": read_ms}
        tic = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal tic
            now = time.perf_counter()
            timings[stage] = (now - tic) * 1000
            tic = now

        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        faces = self.finder.find(rgb, t_ms)
        lap("faces")

        tracks = self.tracker.update([f.box for f in faces])
        boxes = [f.crop_box(spec.crop) for f in faces]
        # Faces whose track has no reading yet are always read, whatever --every says.
        todo = [i for i, t in enumerate(tracks) if n % o.every == 0 or "reading" not in t.state]
        crops = {i: crop_face(rgb, boxes[i], spec.input_size) for i in todo}
        batch = prepare_batch([crops[i] for i in todo], spec)
        shapes = blendshape_rows([faces[i] for i in todo], spec.blendshapes) if spec.blendshapes else None
        lap("crop")

        out = self.backend.predict(batch, shapes)
        probs = softmax(out[OUTPUT_EXPRESSION].astype(np.float64), axis=1) if todo else None
        va = np.clip(out[OUTPUT_VA].astype(np.float64), -1, 1) if todo else None
        lap("infer")

        results = []
        for i, (face, track) in enumerate(zip(faces, tracks)):
            if i in crops:
                k = todo.index(i)
                raw_p, raw_va, inferred = probs[k], va[k], True
                smoother = track.state.setdefault("smoother", TrackSmoother(o.smoothing))
                p, v = smoother.update(raw_p, raw_va, t_ms / 1000.0)
                track.state["reading"] = (raw_p, raw_va, p, v)
            else:
                raw_p, raw_va, p, v = track.state["reading"]
                inferred = False
            trail = track.state.setdefault("trail", deque(maxlen=o.trail_length))
            trail.append((float(v[0]), float(v[1])))
            best = int(np.argmax(p))
            results.append(FaceResult(
                track.id, face.box, face.score, boxes[i], spec.labels[best], float(p[best]), p,
                float(v[0]), float(v[1]), raw_p, float(raw_va[0]), float(raw_va[1]), inferred,
                face.landmarks, face.blendshapes if o.blendshapes else None, crops.get(i)))
            self._seen_tracks.add(track.id)
        lap("track")

        elapsed = time.perf_counter() - (self._t_start or time.perf_counter())
        fps = (n + 1) / elapsed if elapsed > 0 else 0.0
        annotated = None
        if self.draw:
            annotated = image.copy()
            for r in results:
                draw_face(annotated, r, spec.labels)
            draw_va_inset(annotated, {tid: t.state["trail"] for tid, t in self.tracker.tracks.items()
                                      if "trail" in t.state})
            draw_stats(annotated, fps, self._last_timings)
        lap("draw")

        result = FrameResult(index, t_ms, image, results, timings, fps, annotated)
        if self.csv:
            self.csv.write(result)
        if self.jsonl:
            self.jsonl.write(result)
        if self.video and annotated is not None:
            self.video.write(annotated)
        if self.window is not None and annotated is not None and not self.window.show(annotated, index):
            self._stop = True
        lap("write")
        timings["frame"] = sum(timings[s] for s in STAGES)
        self._last_timings = {s: timings[s] for s in ("faces", "crop", "infer", "draw")}
        self.latency.add(timings)
        s = self.summary
        s.frames += 1
        s.faces += len(results)
        s.frames_with_faces += bool(results)
        s.max_faces = max(s.max_faces, len(results))
        return result

    # --- closing --------------------------------------------------------------------------------
    def close(self) -> RunSummary:
        """Close sinks, tasks, the source and the backend (idempotent); returns the summary."""
        if self._closed:
            return self.summary
        self._closed = True
        s = self.summary
        if self._t_start is not None:
            s.wall_s = time.perf_counter() - self._t_start
        s.tracks = len(self._seen_tracks)
        s.stages_ms = self.latency.percentiles()
        stats = self.source.stats
        s.corrupt_frames, s.dropped_frames, s.reconnects = stats.corrupt, stats.dropped, stats.reconnects
        s.source_error = self.source.error
        self._stack.close()
        return s

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is KeyboardInterrupt:
            self.summary.interrupted = True
        self.close()
