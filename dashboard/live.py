"""Glue between realtime.Pipeline and the Live page: run a video through the
pipeline (its own CSV sink writes the recording, its own overlay draws the
frames) and keep the per-face numbers the plane and the bars need."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from affect.files import atomic_write_text
from dashboard.config import DashboardError

try:  # the realtime room; the Live page says so when it is missing
    from realtime import (
        FaceFindingOptions,
        FrameResult,
        ModelOptions,
        OutputOptions,
        Pipeline,
        PipelineOptions,
        ScheduleOptions,
    )
    from realtime.smoothing import SmoothingOptions
except ImportError as exc:  # pragma: no cover - only without the realtime package
    Pipeline = None  # type: ignore[assignment,misc]
    _REALTIME_MISSING = f"the realtime pipeline is not available ({exc})"
else:
    _REALTIME_MISSING = ""

FACE_COLUMNS = ["frame", "t_ms", "track_id", "expression", "confidence", "valence", "arousal"]


@dataclass
class LiveOptions:
    model: Path | None = None  # None: the packaged default model
    backend: str | None = None  # None: by the model file's extension
    smoothing: bool = True
    max_frames: int = 300
    every: int = 1
    face_model: Path | None = None  # None: $AFFECTCAM_FACE_MODEL, the user cache, a download


def pipeline_available() -> str | None:
    """None when realtime.Pipeline can be used, else why not (one line)."""
    return _REALTIME_MISSING or None


def pipeline_options(source, options: LiveOptions, csv: Path | None = None) -> PipelineOptions:
    return PipelineOptions(
        source=source, model=ModelOptions(options.model, backend=options.backend),
        faces=FaceFindingOptions(face_model=options.face_model),
        schedule=ScheduleOptions(every=options.every, max_frames=options.max_frames),
        outputs=OutputOptions(csv=csv, draw=True),
        smoothing=SmoothingOptions(ema=options.smoothing, one_euro=options.smoothing))


def face_table(result: FrameResult, labels: list[str]) -> pd.DataFrame:
    """One row per face of a FrameResult: what the plane and the bars draw."""
    rows = [{"frame": result.index, "t_ms": result.t_ms, "track_id": f.track_id, "expression": f.expression,
             "confidence": f.confidence, "valence": f.valence, "arousal": f.arousal,
             **{f"p_{lab}": float(p) for lab, p in zip(labels, f.probabilities, strict=True)}}
            for f in result.faces]
    return pd.DataFrame(rows, columns=[*FACE_COLUMNS, *(f"p_{lab}" for lab in labels)])


def video_frame_count(path: Path) -> int:
    """Frames in the file (container metadata), or DashboardError when OpenCV cannot decode it."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not (cap.isOpened() and cap.read()[0]):
            raise DashboardError(f"{path.name}: cannot be decoded as a video")
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()


def run_video(path: Path, options: LiveOptions, csv: Path | None = None) -> Iterator[tuple[FrameResult, list[str]]]:
    """(FrameResult, model labels) for each frame of a video file; `csv` gets the
    realtime CSV sink's recording, closed (flushed) when the iteration ends."""
    if Pipeline is None:
        raise DashboardError(_REALTIME_MISSING)
    with Pipeline(pipeline_options(str(path), options, csv)) as pipeline:
        labels = list(pipeline.spec.labels)
        yield from ((result, labels) for result in pipeline)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def save_recording(text: str, path: Path) -> Path:
    """Atomic write: a half-written recording never appears on the Session page."""
    return atomic_write_text(path, text)
