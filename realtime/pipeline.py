"""The realtime pipeline: frames → MediaPipe faces → tracks → crops → one
batched inference call → smoothing → overlay → sinks (recordings, video, …).

    with Pipeline(PipelineOptions(source="clip.mp4", model="model.onnx")) as p:
        for result in p:
            for face in result.faces:
                print(result.index, face.track_id, face.expression, face.valence, face.arousal)

    p = Pipeline(PipelineOptions(source=None))   # frames pushed in by the caller
    result = p.process(image_bgr, t_ms)

Faces: by default YuNet (`realtime.yunet`: small faces of wide shots too, at
the frame's resolution; five keypoints, the eyes give the roll for the crop)
with the IoU tracker; `faces="detector"` is MediaPipe's short-range
FaceDetector (faster, blind to faces under about 100 px in 1280×720); the Face Landmarker (478 points, 52
blendshapes, several times slower on a small CPU) runs only when something
needs it: a model whose spec takes blendshapes, `jsonl_landmarks`, or
`faces="landmarker"`. Faces without blendshapes get a NaN row, and a model
that takes them reads their image alone.

Action units (`ModelOptions(aus=True)`, `--aus`): every face gets a probability
for each of the 15 AUs of `affect.aus.AU_NAMES` (`FaceResult.aus`, the
recordings' `AU1` … `AU27` columns): from the model's `action_units` output
when its file has one, else from the face's blendshapes through the packaged
map (which turns the landmarker on); a face without blendshapes gets none.

Options come in groups (`realtime.options`: model, faces, schedule,
outputs), checked when they are made. Outputs are sinks (`realtime.sinks`):
the pipeline starts each once the model and source are open, writes every
frame's `FrameResult` to each in order, and closes them all at the end.

Stages overlap (`schedule.overlap=True`, the default for sources): reading,
finding faces and running the model each have a thread, joined by small
bounded queues, and the consumer's thread smooths, draws and writes. Each stage is one
thread and the queues are FIFO, so results come out in frame order and equal
the sequential path's (`overlap=False`) figure for figure; for files nothing
is dropped (a full queue makes the stage before it wait); live sources keep
newest-frame semantics with one drop-oldest queue, the source's own (its
reading thread is the first stage). Tracking
runs in the faces stage, before the model, because `--every N` decides from
the tracks which faces the model reads.

The command line (`python -m realtime.cam`) and the dashboard both drive it.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affect.blendshapes import blendshape_row
from affect.crop import CropBox, crop_face
from affect.face_model import resolve_face_model
from affect.preprocess import prepare_batch
from affect.spec import ModelSpec
from inference.backends import Backend
from realtime.faces import Face, FaceFinder, FaceOptions
from realtime.model_choice import PACKAGED_DIR, ModelChoiceError
from realtime.model_choice import default_model as choose_packaged_model
from realtime.options import (
    FACE_PATHS,
    FaceFindingOptions,
    ModelOptions,
    OptionError,
    OutputOptions,
    PipelineOptions,
    ScheduleOptions,
)
from realtime.overlay import Window, draw_overlay
from realtime.reader import AffectReader
from realtime.results import FaceResult, FrameResult, RunSummary
from realtime.sinks import LatencyStats, Sink, SinkContext, close_sinks, sinks_draw, start_sinks
from realtime.smoothing import TrackSmoother
from realtime.sources import Source, open_source
from realtime.tracking import Tracker

__all__ = ["Pipeline", "PipelineError", "PipelineOptions", "ModelOptions", "FaceFindingOptions", "ScheduleOptions",
           "OutputOptions", "OptionError", "FaceResult", "FrameResult", "RunSummary", "STAGES", "FACE_PATHS",
           "DEFAULT_MODEL", "default_model", "blendshape_rows"]

DEFAULT_MODEL = PACKAGED_DIR / "affectcam_default.int8.onnx"  # one of the two packaged files (model_choice)
# Stage timings, each named for what it times (before session 9 "crop" held tracking and
# cropping and "track" the smoothing; docs/BENCHMARKS.md says which rows use the old names).
STAGES = ("read", "faces", "track", "crop", "infer", "smooth", "draw", "write")
# ONNX Runtime's threads while MediaPipe runs beside it, measured on 2 cores with the stages
# overlapped (bench/peers.py --no-fer --variant …; docs/BENCHMARKS.md): spinning threads took
# 20-30 % of the frame rate (they hold a core MediaPipe needs), and a second intra-op thread
# gained nothing over one while its p95 grew. MediaPipe Tasks' Python API sets no thread count.
DEFAULT_THREADS: int | None = 1
DEFAULT_SPINNING: bool | None = False


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


def default_model(threads: int | None = None, spinning: bool | None = None) -> Path:
    """The packaged model file that runs here (INT8 or FP32: `realtime.model_choice`)."""
    try:
        return choose_packaged_model(DEFAULT_MODEL.parent, threads, spinning)
    except ModelChoiceError as exc:
        raise PipelineError(str(exc)) from None


@dataclass
class _Work:
    """One frame on its way through the stages."""
    index: int
    t_ms: float
    image: np.ndarray
    t_start: float  # perf_counter when its reading began
    timings: dict[str, float]
    n: int = 0  # position among the frames the pipeline processed (for --every)
    faces: list[Face] = field(default_factory=list)
    tracks: list[Any] = field(default_factory=list)
    live_tracks: dict[int, Any] = field(default_factory=dict)  # the tracker's tracks after this frame
    boxes: list[CropBox] = field(default_factory=list)
    todo: list[int] = field(default_factory=list)
    crops: dict[int, np.ndarray] = field(default_factory=dict)
    batch: np.ndarray | None = None
    shapes: np.ndarray | None = None
    probs: np.ndarray | None = None
    aus: np.ndarray | None = None  # [faces, 15] from blendshapes (all faces) or the model (todo faces)
    va: np.ndarray | None = None
    lap_t: float = 0.0

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = (now - self.lap_t) * 1000
        self.lap_t = now


_END = object()  # end of the stream, passed down the queues


class _Stages:
    """The threads of an overlapped run and the queues between them."""

    def __init__(self, size: int):
        self.stop = threading.Event()
        self.read_q: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.faces_q: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.model_q: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def put(self, q: queue.Queue, item: Any) -> bool:
        """Blocking put that gives up when the run stops."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def put_end(self, q: queue.Queue) -> None:
        """The end marker: waits for room like any frame (nothing is dropped at the end of a
        file); once the run is stopping, makes room instead (the consumer may read no more)."""
        while True:
            if self.stop.is_set():
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
            try:
                q.put(_END, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue) -> Any:
        """The next item, or the end once the run stops: a stopping run may have dropped
        frames upstream (`put_end`), so nothing taken after the stop goes on."""
        while not self.stop.is_set():
            try:
                item = q.get(timeout=0.05)
            except queue.Empty:
                continue
            return _END if self.stop.is_set() else item
        return _END

    def start(self, name: str, body: Callable[[], None], out: queue.Queue | None) -> None:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # handed to the consumer, which raises it
                self.errors.append(exc)
                self.stop.set()
            finally:
                if out is not None:
                    self.put_end(out)

        thread = threading.Thread(target=run, name=f"affectcam-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()


class Pipeline:
    def __init__(self, options: PipelineOptions):
        self.options = o = options  # checked when it was made (PipelineOptions.__post_init__)
        m, f, out = self._groups(o)
        threads, spinning = self._thread_settings(m)
        self._stack = ExitStack()
        self.summary = RunSummary()
        try:
            self.reader: AffectReader = self._stack.enter_context(AffectReader(
                m.path or default_model(threads, spinning), m.backend, threads, m.providers, spinning, aus=m.aus))
            self.backend: Backend = self.reader.backend
            self.spec: ModelSpec = self.backend.spec
            au_blendshapes = self.reader.au_source == "blendshapes"
            self.face_path = o.face_path(bool(self.spec.blendshapes) or au_blendshapes)
            if au_blendshapes and self.face_path != "landmarker":
                raise PipelineError("AUs from blendshapes need the landmarker (faces 'landmarker' or 'auto'), "
                                    f"not {self.face_path!r}; or a model with an action_units output")
            # YuNet alone needs no MediaPipe bundle (it is packaged): offline runs start without one
            if self.face_path == "yunet":
                # YuNet needs no MediaPipe bundle; one named explicitly is still checked, so a
                # wrong path is said, not silently ignored
                face_model = None
                if f.face_model:
                    resolve_face_model(f.face_model, download=False)
            else:
                face_model = resolve_face_model(f.face_model, download=f.download_face_model)
            self.source: Source | None = None
            if isinstance(o.source, Source):
                self.source = o.source
            elif o.source is not None:
                self.source = open_source(o.source, o.source_options)
            if self.source is not None:
                self._stack.callback(self.source.close)
            mode = "image" if self.source is not None and self.source.kind == "folder" else "video"
            self.finder = self._stack.enter_context(FaceFinder(FaceOptions(
                face_model, max_faces=f.max_faces, landmarks=self.face_path == "landmarker",
                detector="yunet" if self.face_path == "yunet" else "mediapipe",
                blendshapes=f.blendshapes or bool(self.spec.blendshapes) or au_blendshapes,
                fill_with_detector=f.detector_fill, min_detection_confidence=f.min_face_confidence, mode=mode)))
            self.tracker = Tracker(o.tracking)
            self.window = Window(snapshot_dir=out.snapshot_dir) if out.show else None
            if self.window is not None:
                self._stack.callback(self.window.close)
            # Closed before the window, the finder, the source and the backend (the stack unwinds).
            self.sinks: list[Sink] = out.all_sinks()
            self._stack.callback(close_sinks, self.sinks)
            start_sinks(self.sinks, SinkContext(
                self.spec, self.source.fps if self.source is not None and self.source.fps else 30.0,
                self.source.name if self.source is not None else "", Path(self.backend.path), self.summary,
                self.reader.au_names, self.reader.au_thresholds if self.reader.au_names else ()))
        except BaseException:
            self._stack.close()
            raise
        if self.spec.blendshapes and self.face_path != "landmarker" and str(self.backend.path) not in _NOTIFIED:
            _NOTIFIED.add(str(self.backend.path))
            print(f"affectcam: note: {self.backend.path.name} takes MediaPipe blendshapes, which the "
                  "detector-only path does not give; it reads the face images alone", file=sys.stderr)
        self.draw = out.draw if out.draw is not None else bool(out.show or sinks_draw(self.sinks))
        self.latency = LatencyStats()
        self._seen_tracks: set[int] = set()
        self._stop = False
        self._closed = False
        self._t_start: float | None = None
        self._last_timings: dict[str, float] = {}
        self._n = 0  # frames through the faces stage
        self._stages: _Stages | None = None

    @staticmethod
    def _groups(o: PipelineOptions) -> tuple[ModelOptions, FaceFindingOptions, OutputOptions]:
        if not isinstance(o, PipelineOptions):
            raise PipelineError(f"Pipeline takes PipelineOptions, got {type(o).__name__}")
        if not (isinstance(o.model, ModelOptions) and isinstance(o.faces, FaceFindingOptions)):
            # __post_init__ turned a path / finder name into its group: only a later assignment gets here
            raise PipelineError("options.model and options.faces must be ModelOptions and FaceFindingOptions "
                                "(a path or a finder name is turned into one only when PipelineOptions is made)")
        return o.model, o.faces, o.outputs

    @staticmethod
    def _thread_settings(o: ModelOptions) -> tuple[int | None, bool | None]:
        from inference.backends import SPINNING_ENV, THREADS_ENV

        threads = o.threads if o.threads is not None else (None if os.environ.get(THREADS_ENV) else DEFAULT_THREADS)
        spinning = o.spinning if o.spinning is not None else (
            None if os.environ.get(SPINNING_ENV) else DEFAULT_SPINNING)
        return threads, spinning

    # --- running ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the current frame and end the iteration (safe from a signal handler)."""
        self._stop = True
        if self._stages is not None:
            self._stages.stop.set()

    def _limit_reached(self, n: int) -> bool:
        limit = self.options.schedule.max_frames
        return limit is not None and n >= limit

    def __iter__(self) -> Iterator[FrameResult]:
        if self.source is None:
            raise PipelineError("this pipeline has no source: pass frames to process(image, t_ms)")
        self._t_start = self._t_start or time.perf_counter()
        if self.options.schedule.overlap:
            yield from self._overlapped()
            return
        frames = iter(self.source)
        n = 0
        while not self._stop and not self._limit_reached(n):
            work = self._read(frames)
            if work is None:
                break
            n += 1
            yield self._finish(self._infer(self._find(work)))

    def process(self, image: np.ndarray, t_ms: float | None = None, index: int | None = None) -> FrameResult:
        """One BGR frame through every stage, in the caller's thread (the dashboard's webcam
        pushes frames this way); `t_ms` must increase from call to call (default: wall time)."""
        now = time.perf_counter()
        self._t_start = self._t_start or now
        t = (now - self._t_start) * 1000 if t_ms is None else float(t_ms)
        work = _Work(self._n if index is None else index, t, image, now, {"read": 0.0}, lap_t=now)
        return self._finish(self._infer(self._find(work)))

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

    # --- the stages ------------------------------------------------------------------------------
    @staticmethod
    def _read(frames: Iterator[Any]) -> _Work | None:
        t0 = time.perf_counter()
        frame = next(frames, None)
        if frame is None:
            return None
        now = time.perf_counter()
        return _Work(frame.index, frame.t_ms, frame.image, t0, {"read": (now - t0) * 1000}, lap_t=now)

    def _find(self, w: _Work) -> _Work:
        """Faces, tracks and the model's input for one frame."""
        spec = self.spec
        w.lap_t = time.perf_counter()
        w.n, self._n = self._n, self._n + 1
        # the finder converts what it needs (MediaPipe: the whole frame to RGB; YuNet: nothing),
        # and the crops are cut from the BGR frame and turned to RGB, small
        w.faces = self.finder.find(w.image, w.t_ms, bgr=True)
        w.lap("faces")
        w.tracks = self.tracker.update([f.box for f in w.faces])
        w.live_tracks = dict(self.tracker.tracks)
        w.lap("track")
        w.boxes = [f.crop_box(spec.crop) for f in w.faces]
        # Faces whose track has never been read are read whatever --every says. "scheduled" is
        # set here, not when the reading lands, so the overlapped run decides as the sequential one.
        w.todo = [i for i, t in enumerate(w.tracks)
                  if "scheduled" not in t.state or (w.n + t.id) % self._read_every(w.boxes[i].side) == 0]
        for i in w.todo:
            w.tracks[i].state["scheduled"] = True
        w.crops = {i: cv2.cvtColor(crop_face(w.image, w.boxes[i], spec.input_size), cv2.COLOR_BGR2RGB)
                   for i in w.todo}
        w.batch = prepare_batch([w.crops[i] for i in w.todo], spec)
        w.shapes = blendshape_rows([w.faces[i] for i in w.todo], spec.blendshapes) if spec.blendshapes else None
        if self.reader.au_source == "blendshapes":  # every face, every frame: a small matrix product
            w.aus = self.reader.blendshape_aus([f.blendshapes for f in w.faces])
        w.lap("crop")
        return w

    def _read_every(self, crop_side: float) -> int:
        """How often (in frames) a face with this crop side is read: `every`, or at most every
        `small_face_every`-th frame for a small face."""
        o = self.options.schedule
        small = self.spec.input_size if o.small_face_side is None else o.small_face_side
        return o.every if crop_side >= small else max(o.every, o.small_face_every)

    def _infer(self, w: _Work) -> _Work:
        w.lap_t = time.perf_counter()
        probs, va, aus = self.reader.read_batch_aus(w.batch, w.shapes)
        w.probs, w.va = (probs, va) if w.todo else (None, None)
        if aus is not None:
            w.aus = aus
        w.batch = None  # not needed any more; frees memory while the frame waits
        w.lap("infer")
        return w

    def _face_aus(self, w: _Work, i: int, track: Any) -> np.ndarray | None:
        """Face i's AU probabilities: its blendshapes' (this frame), or the model's (this frame's
        reading, or the one carried with its track under --every N); None without."""
        source = self.reader.au_source
        if source is None or w.aus is None:
            return track.state.get("aus") if source == "model" else None
        row = w.aus[i] if source == "blendshapes" else (w.aus[w.todo.index(i)] if i in w.crops else None)
        if row is None:
            return track.state.get("aus")
        aus = row if np.isfinite(row).any() else None  # an AU the model lacks stays NaN (empty)
        if source == "model":
            track.state["aus"] = aus
        return aus

    def _finish(self, w: _Work) -> FrameResult:
        """Smoothing, the overlay and the sinks, in frame order."""
        o, spec = self.options, self.spec
        w.lap_t = time.perf_counter()
        results = []
        for i, (face, track) in enumerate(zip(w.faces, w.tracks)):
            if i in w.crops:
                k = w.todo.index(i)
                raw_p, raw_va, inferred = w.probs[k], w.va[k], True
                if not (np.isfinite(raw_p).all() and np.isfinite(raw_va).all()):
                    # The model gave NaN/inf for this face: counted and said (summary), never written
                    # as numbers, never fed to the smoother (it would stay NaN); read again next frame.
                    self.summary.nonfinite_faces += 1
                    track.state.pop("scheduled", None)
                    continue
                smoother = track.state.setdefault("smoother", TrackSmoother(o.smoothing))
                p, v = smoother.update(raw_p, raw_va, w.t_ms / 1000.0)
                track.state["reading"] = (raw_p, raw_va, p, v)
            elif "reading" in track.state:
                raw_p, raw_va, p, v = track.state["reading"]
                inferred = False
            else:  # carried, but its only reading was not finite
                continue
            face_aus = self._face_aus(w, i, track)
            trail = track.state.setdefault("trail", deque(maxlen=o.outputs.trail_length))
            trail.append((float(v[0]), float(v[1])))
            best = int(np.argmax(p))
            results.append(FaceResult(
                track.id, face.box, face.score, w.boxes[i], spec.labels[best], float(p[best]), p,
                float(v[0]), float(v[1]), raw_p, float(raw_va[0]), float(raw_va[1]), inferred,
                face.landmarks, face.blendshapes if o.faces.blendshapes else None, w.crops.get(i), face_aus))
            self._seen_tracks.add(track.id)
        w.lap("smooth")

        elapsed = time.perf_counter() - (self._t_start or time.perf_counter())
        fps = (self.summary.frames + 1) / elapsed if elapsed > 0 else 0.0
        annotated = None
        if self.draw:
            annotated = w.image.copy()
            # laid out so that no panel covers a face (realtime.overlay.layout_panels)
            draw_overlay(annotated, results, spec.labels, {tid: t.state["trail"] for tid, t in
                                                           w.live_tracks.items() if "trail" in t.state},
                         fps, self._last_timings, au_thresholds=self.reader.au_thresholds)
        w.lap("draw")

        timings = w.timings
        result = FrameResult(w.index, w.t_ms, w.image, results, timings, fps, annotated)
        for sink in self.sinks:
            sink.write(result)
        if self.window is not None and annotated is not None and not self.window.show(annotated, w.index):
            self.stop()
        w.lap("write")
        timings["frame"] = sum(timings[s] for s in STAGES)
        timings["latency"] = (time.perf_counter() - w.t_start) * 1000
        self._last_timings = {s: timings[s] for s in ("faces", "track", "crop", "infer", "draw")}
        self.latency.add(timings)
        s = self.summary
        s.frames += 1
        s.faces += len(results)
        s.frames_with_faces += bool(results)
        s.max_faces = max(s.max_faces, len(results))
        return result

    def _overlapped(self) -> Iterator[FrameResult]:
        """Reader, faces and model threads; this generator is the last stage. A live source
        reads on its own thread into its own drop-oldest queue (`LiveSource`): the faces stage
        takes its frames from there, so a camera has one queue that drops, not two."""
        live = bool(self.source.live)
        # A camera's frames should wait as little as possible: one slot per queue.
        st = self._stages = _Stages(1 if live else self.options.schedule.queue_size)
        if self._stop:
            st.stop.set()

        def read() -> None:
            frames = iter(self.source)
            n = 0
            while not st.stop.is_set() and not self._limit_reached(n):
                work = self._read(frames)
                if work is None or not st.put(st.read_q, work):
                    return
                n += 1

        def read_live() -> Iterator[_Work]:
            frames = iter(self.source)
            while (work := self._read(frames)) is not None:
                yield work

        def stage(inbox: queue.Queue | None, fn: Callable[[_Work], _Work], out: queue.Queue,
                  count: bool = False) -> Callable[[], None]:
            def body() -> None:
                done = 0
                items = read_live() if inbox is None else None
                while not (count and self._limit_reached(done)) and not st.stop.is_set():
                    work = st.get(inbox) if items is None else next(items, _END)
                    if work is _END or not st.put(out, fn(work)):
                        return
                    done += 1
            return body

        try:
            if not live:
                st.start("read", read, st.read_q)
            st.start("faces", stage(None if live else st.read_q, self._find, st.faces_q, count=True), st.faces_q)
            st.start("model", stage(st.faces_q, self._infer, st.model_q), st.model_q)
            while not self._stop:
                work = st.get(st.model_q)
                if work is _END:
                    break
                yield self._finish(work)
            if st.errors:
                raise st.errors[0]
        finally:
            self._end_stages()

    def _end_stages(self) -> None:
        st = self._stages
        if st is None:
            return
        st.stop.set()
        self._stages = None
        if not st.threads:
            return
        # The stages use the finder and the backend, which close after this: wait for them (each
        # ends after its current call). The thread that takes frames from the source (the reader
        # for files; the faces stage for a live source, from the source's own queue) may be
        # waiting on a camera: closing the source frees it.
        feeder, *others = st.threads
        for thread in others:
            thread.join(30.0)
        live = self.source is not None and self.source.live
        feeder.join(0.2 if live else 5.0)
        if feeder.is_alive() and self.source is not None:
            self.source.close()
            feeder.join(30.0)
        alive = [t.name for t in st.threads if t.is_alive()]
        if alive:
            print(f"affectcam: warning: stage threads still running at close: {alive}", file=sys.stderr)

    # --- closing --------------------------------------------------------------------------------
    def close(self) -> RunSummary:
        """Stop the stage threads, then close sinks, tasks, the source and the backend
        (idempotent); returns the summary."""
        if self._closed:
            return self.summary
        self._closed = True
        try:
            self._end_stages()
        finally:
            s = self.summary
            if self._t_start is not None:
                s.wall_s = time.perf_counter() - self._t_start
            s.tracks = len(self._seen_tracks)
            s.stages_ms = self.latency.percentiles()
            if self.source is not None:
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
