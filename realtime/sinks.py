"""Where results go. Every output is a sink: an object with

    write(result: FrameResult) -> None   # once per frame, in frame order
    close() -> None                      # once, at the end (also after an error or Ctrl-C)

and, when it needs to know the run (the model's labels, the source's fps, the
final summary), an optional

    start(context: SinkContext) -> None  # once, after the model and source are open

The pipeline takes a list of them (`OutputOptions.sinks`; `csv=`, `jsonl=`,
`video_out=` build the three file sinks here), starts them in order, writes
each frame to each in order, and closes all of them in order even when one
fails (the first error is raised after the rest closed). A sink that wants
annotated frames says `draws = True` (then the pipeline draws, and
`result.annotated` holds the overlay). Adding an output is one class here (or
in the caller's code) plus its test.

Files are written to a temporary name next to the target and moved into
place on close (`affect.files.PendingFile`, mode 0644), so a reader never sees
half a file; closing on Ctrl-C flushes everything and finishes the video
container (mp4v), so the recording and the video stay usable. The CSV/JSONL
format is `affect.recording`'s.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from affect.files import NotWritable, PendingFile, atomic_write_json, check_writable
from affect.recording import FaceRow, write_csv_header
from affect.spec import ModelSpec
from realtime.results import FaceResult, FrameResult, RunSummary


@runtime_checkable
class Sink(Protocol):
    """An output of the pipeline (see the module's docstring for `start` and `draws`)."""

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need to know about the run, given to `start()`."""
    spec: ModelSpec  # the model's contract: labels, AU names, blendshape names
    fps: float  # the source's frame rate (30 when unknown, or frames pushed through process())
    source: str  # the source's name ("" for frames pushed through process())
    model: Path  # the model file
    summary: RunSummary  # the run's summary, complete by the time close() is called
    au_names: tuple[str, ...] = ()  # the AU columns (affect.aus.AU_NAMES) when the run reads AUs, else ()

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)


def start_sinks(sinks: Sequence[Sink], context: SinkContext) -> None:
    for sink in sinks:
        start = getattr(sink, "start", None)
        if start is not None:
            start(context)


def close_sinks(sinks: Sequence[Sink]) -> None:
    """Close every sink in order; the first error is raised once all were closed
    (later ones are added to it as notes)."""
    first: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except BaseException as exc:  # noqa: BLE001 - the others must still close
            if first is None:
                first = exc
            else:
                first.add_note(f"closing {type(sink).__name__} also failed: {exc}")
    if first is not None:
        raise first


def sinks_draw(sinks: Sequence[Sink]) -> bool:
    return any(getattr(sink, "draws", False) for sink in sinks)


def _face_row(result: FrameResult, face: FaceResult) -> FaceRow:
    x, y, w, h = face.box
    aus = getattr(face, "aus", None)
    return FaceRow(result.index, result.t_ms, face.track_id, x, y, w, h, face.det_score, face.expression,
                   face.confidence, list(face.probabilities), face.valence, face.arousal,
                   None if aus is None else list(aus))

class OutputError(ValueError):
    """An output path that cannot be written; checked before the run starts."""


def _strerror(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def check_output(path: str | os.PathLike, flag: str) -> Path:
    """Before the run (`affect.files.check_writable`): the folder exists (created if need be),
    the name is not a folder, and a file can be written there, so a long run never ends in a
    traceback or with its results left under a hidden `.NAME.partial.*` name."""
    try:
        return check_writable(path)
    except NotWritable as exc:
        hint = f"; give a file name, e.g. {exc.path / ('out' + _SUFFIX.get(flag, ''))}" if exc.kind == "folder" else ""
        raise OutputError(f"{flag} {exc}{hint}") from None


_SUFFIX = {"--csv": ".csv", "--jsonl": ".jsonl", "--video-out": ".mp4", "--summary-json": ".json"}


def check_video_output(path: str | os.PathLike, flag: str = "--video-out") -> Path:
    """check_output, and that OpenCV opens an mp4v writer for this name (its
    suffix picks the container): the writer that would fail is named now."""
    path = check_output(path, flag)
    probe = path.with_name(f".{path.stem}.probe{path.suffix}")
    writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (16, 16))
    try:
        if not writer.isOpened():
            raise OutputError(f"{flag} {path}: OpenCV cannot open an mp4v video writer for "
                              f"'{path.suffix or 'no suffix'}' files; use .mp4 (or .avi, .mkv)")
    finally:
        writer.release()
        probe.unlink(missing_ok=True)
    return path


def _move_into_place(pending: PendingFile) -> None:
    try:
        pending.commit()
    except OSError as exc:
        raise OSError(f"{pending.path}: cannot move the finished file into place ({_strerror(exc)}); "
                      f"it is kept as {pending.tmp}") from None


class _AtomicText:
    """A text file opened at start() under a temporary name, moved into place at close()."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.pending: PendingFile | None = None
        self.fh = None

    def start(self, context: SinkContext) -> None:
        self.pending = PendingFile(self.path)
        self.fh = open(self.pending.tmp, "w", newline="", encoding="utf-8")

    @property
    def tmp(self) -> Path | None:
        return self.pending.tmp if self.pending is not None else None

    def close(self) -> None:
        if self.fh is None:
            return
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.fh = None
        _move_into_place(self.pending)


class CsvSink(_AtomicText):
    """One row per face per frame: `affect.recording.csv_columns(labels, au_names)`."""

    def start(self, context: SinkContext) -> None:
        super().start(context)
        self.au_names = tuple(context.au_names)
        self.writer = write_csv_header(self.fh, context.labels, self.au_names)

    def write(self, result: FrameResult) -> None:
        for f in result.faces:
            self.writer.writerow(_face_row(result, f).as_csv_row(self.au_names))


class JsonlSink(_AtomicText):
    """One JSON object per face per frame with the CSV's keys, plus landmarks
    ([[x, y, z], …] in pixels) and blendshapes when asked."""

    def __init__(self, path: str | os.PathLike, landmarks: bool = True, blendshapes: bool = True):
        super().__init__(path)
        self.landmarks, self.blendshapes = landmarks, blendshapes

    def start(self, context: SinkContext) -> None:
        super().start(context)
        self.labels = context.labels
        self.au_names = tuple(context.au_names)

    def write(self, result: FrameResult) -> None:
        for f in result.faces:
            obj = _face_row(result, f).as_json(self.labels, f.landmarks if self.landmarks else None,
                                               f.blendshapes if self.blendshapes else None, self.au_names)
            self.fh.write(json.dumps(obj) + "\n")


class VideoSink:
    """Annotated frames into an mp4 (mp4v) at the source's fps (or `fps`); the size is fixed by
    the first frame. A frame the run did not draw is not written."""

    draws = True

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        self.path = Path(path)
        self.fps = fps
        self.pending: PendingFile | None = None
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def start(self, context: SinkContext) -> None:
        fps = self.fps or context.fps
        self.fps = fps if fps and fps > 0 else 30.0

    @property
    def tmp(self) -> Path | None:
        return self.pending.tmp if self.pending is not None else None

    def write(self, result: FrameResult) -> None:
        image = result.annotated
        if image is None:
            return
        h, w = image.shape[:2]
        if self.writer is None:
            self.pending = PendingFile(self.path)  # its name keeps the suffix last: cv2 picks the container from it
            self.size = (w, h)
            self.writer = cv2.VideoWriter(str(self.pending.tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                          self.fps or 30.0, self.size)
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: cannot open a video writer (mp4v)")
        if (w, h) != self.size:  # sources whose size changes (image folders)
            image = cv2.resize(image, self.size)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # writes the moov atom: the file is playable
            self.writer = None
            if not self.pending.tmp.is_file():
                raise OSError(f"{self.path}: the video writer (mp4v) wrote nothing to {self.path.parent}")
            _move_into_place(self.pending)


class SummaryJsonSink:
    """The end-of-run summary (`RunSummary.as_dict()`) as JSON, written atomically at close."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.context: SinkContext | None = None

    def start(self, context: SinkContext) -> None:
        self.context = context

    def write(self, result: FrameResult) -> None:
        pass

    def close(self) -> None:
        if self.context is not None:
            atomic_write_json(self.path, self.context.summary.as_dict())
            self.context = None


class LatencyStats:
    """Per-stage milliseconds with bounded memory: a reservoir sample of
    `capacity` values per stage (exact until then), so long runs stay flat."""

    def __init__(self, capacity: int = 20000, seed: int = 0):
        self.capacity = capacity
        self.samples: dict[str, list[float]] = {}
        self.counts: dict[str, int] = {}
        self._rng = random.Random(seed)

    def add(self, timings: dict[str, float]) -> None:
        for stage, ms in timings.items():
            values = self.samples.setdefault(stage, [])
            n = self.counts.get(stage, 0) + 1
            self.counts[stage] = n
            if len(values) < self.capacity:
                values.append(ms)
            else:
                j = self._rng.randrange(n)
                if j < self.capacity:
                    values[j] = ms

    def percentiles(self) -> dict[str, dict[str, float]]:
        return {stage: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
                        "mean": float(np.mean(v))}
                for stage, v in self.samples.items() if v}
