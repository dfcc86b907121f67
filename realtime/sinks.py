"""Where results go: the CSV and JSONL recordings (format in
`affect.recording`), an annotated video, and the end-of-run summary.

Files are written to a temporary name next to the target and moved into
place on close (`affect.files.PendingFile`), so a reader never sees half a file; closing
on Ctrl-C flushes everything and finishes the video container (mp4v), so the
recording and the video stay usable.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affect.files import PendingFile
from affect.recording import FaceRow, write_csv_header


def _face_row(result: Any, face: Any) -> FaceRow:
    x, y, w, h = face.box
    return FaceRow(result.index, result.t_ms, face.track_id, x, y, w, h, face.det_score, face.expression,
                   face.confidence, list(face.probabilities), face.valence, face.arousal)


class OutputError(ValueError):
    """An output path that cannot be written; checked before the run starts."""


def _strerror(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def check_output(path: str | os.PathLike, flag: str) -> Path:
    """Before the run: the folder exists (created if need be), the name is not a
    folder, and a file can be written there, so a long run never ends in a
    traceback or with its results left under a hidden `.NAME.partial.*` name."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name, e.g. {path / ('out' + _SUFFIX[flag])}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot create the folder {parent} ({_strerror(exc)})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot write in {parent} ({_strerror(exc)})") from None
    return path


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
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.pending = PendingFile(self.path)
        self.tmp = self.pending.tmp
        self.fh = open(self.tmp, "w", newline="", encoding="utf-8")

    def close(self) -> None:
        if self.fh is None:
            return
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.fh = None
        _move_into_place(self.pending)


class CsvSink(_AtomicText):
    """One row per face per frame: `affect.recording.csv_columns(labels)`."""

    def __init__(self, path: str | os.PathLike, labels: Sequence[str]):
        super().__init__(path)
        self.writer = write_csv_header(self.fh, labels)

    def write(self, result: Any) -> None:
        for f in result.faces:
            self.writer.writerow(_face_row(result, f).as_csv_row())


class JsonlSink(_AtomicText):
    """One JSON object per face per frame with the CSV's keys, plus landmarks
    ([[x, y, z], …] in pixels) and blendshapes when asked."""

    def __init__(self, path: str | os.PathLike, labels: Sequence[str], landmarks: bool = True,
                 blendshapes: bool = True):
        super().__init__(path)
        self.labels, self.landmarks, self.blendshapes = list(labels), landmarks, blendshapes

    def write(self, result: Any) -> None:
        for f in result.faces:
            obj = _face_row(result, f).as_json(self.labels, f.landmarks if self.landmarks else None,
                                               f.blendshapes if self.blendshapes else None)
            self.fh.write(json.dumps(obj) + "\n")


class VideoSink:
    """Annotated frames into an mp4 (mp4v); the size is fixed by the first frame."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.pending = PendingFile(self.path)  # its name keeps the suffix last: cv2 picks the container from it
        self.tmp = self.pending.tmp
        self.fps = fps if fps and fps > 0 else 30.0
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self.writer is None:
            self.size = (w, h)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
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
            if not self.tmp.is_file():
                raise OSError(f"{self.path}: the video writer (mp4v) wrote nothing to {self.tmp.parent}")
            _move_into_place(self.pending)


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


@dataclass
class RunSummary:
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    max_faces: int = 0
    tracks: int = 0
    wall_s: float = 0.0
    corrupt_frames: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    interrupted: bool = False
    source_error: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def faces_per_frame(self) -> float:
        return self.faces / self.frames if self.frames else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "frames_with_faces": self.frames_with_faces, "faces": self.faces,
                "faces_per_frame": round(self.faces_per_frame, 3), "max_faces": self.max_faces,
                "tracks": self.tracks, "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 2),
                "corrupt_frames": self.corrupt_frames, "dropped_frames": self.dropped_frames,
                "reconnects": self.reconnects, "interrupted": self.interrupted,
                "source_error": self.source_error,
                "stages_ms": {k: {m: round(x, 3) for m, x in v.items()} for k, v in self.stages_ms.items()}}

    def format(self) -> str:
        lines = [f"frames {self.frames} ({self.frames_with_faces} with faces), "
                 f"{self.faces_per_frame:.2f} faces/frame, {self.tracks} tracks, "
                 f"{self.fps:.1f} FPS over {self.wall_s:.1f} s"
                 + (f", {self.corrupt_frames} corrupt frames skipped" if self.corrupt_frames else "")
                 + (f", {self.dropped_frames} stale frames dropped" if self.dropped_frames else "")
                 + (" (interrupted)" if self.interrupted else "")]
        if self.source_error:
            lines.append(f"source: {self.source_error}")
        if self.stages_ms:
            lines.append("stage      p50 ms   p95 ms")
            lines += [f"{k:<9} {v['p50']:7.2f}  {v['p95']:7.2f}" for k, v in self.stages_ms.items()]
        return "\n".join(lines)
