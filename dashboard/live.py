"""Glue between the realtime Pipeline and the Live page: run a video through
`realtime.Pipeline`, turn each FrameResult into recording rows (the same
FaceRow the realtime CSV sink writes), and draw boxes for display."""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from affect.recording import FaceRow, csv_columns, write_csv_header
from dashboard.config import DashboardError


@dataclass
class LiveOptions:
    model: Path
    backend: str | None = None  # None: by the model file's extension
    smoothing: bool = True
    max_frames: int = 300
    every: int = 1


@dataclass
class LiveFrame:
    index: int
    t_ms: float
    image_bgr: np.ndarray | None
    rows: list[FaceRow]


def video_frame_count(path: Path) -> int:
    """Frames in the file (container metadata), or DashboardError if OpenCV cannot decode it."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok = cap.isOpened() and cap.read()[0]
        if not ok:
            raise DashboardError(f"{path.name}: cannot be decoded as a video")
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()


def pipeline_available() -> str | None:
    """None when realtime.Pipeline can be used, else why not (one line)."""
    try:
        import realtime

        realtime.Pipeline, realtime.PipelineOptions  # noqa: B018  (attribute check)
    except (ImportError, AttributeError) as exc:
        return f"the realtime pipeline is not available ({exc})"
    return None


def _options(source: str | int, options: LiveOptions) -> Any:
    from realtime import PipelineOptions

    wanted = {"source": source, "model": str(options.model), "backend": options.backend,
              "smoothing": options.smoothing, "max_frames": options.max_frames, "every": options.every,
              "headless": True}
    # Pass what this version of PipelineOptions knows; source and model always exist.
    known = {f.name for f in dataclasses.fields(PipelineOptions)} if dataclasses.is_dataclass(PipelineOptions) \
        else set(wanted)
    return PipelineOptions(**{k: v for k, v in wanted.items() if k in known or k in ("source", "model")})


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def _xywh(face: Any) -> tuple[float, float, float, float]:
    box = _get(face, "box", "bbox")
    if box is None:
        return tuple(float(_get(face, k, default=0.0)) for k in ("x", "y", "w", "h"))  # type: ignore[return-value]
    if hasattr(box, "as_xywh"):
        return tuple(float(v) for v in box.as_xywh())  # type: ignore[return-value]
    if all(hasattr(box, k) for k in ("x", "y", "w", "h")):
        return float(box.x), float(box.y), float(box.w), float(box.h)
    x, y, w, h = (float(v) for v in list(box)[:4])
    return x, y, w, h


def face_rows(result: Any, labels: list[str]) -> list[FaceRow]:
    """Recording rows for one FrameResult, in the realtime CSV's format."""
    frame = int(_get(result, "frame", "index", "frame_index", default=0))
    t_ms = float(_get(result, "t_ms", default=0.0))
    rows = []
    for face in _get(result, "faces", default=[]) or []:
        probs = np.asarray(_get(face, "probabilities", "probs"), dtype=float).ravel()
        best = int(probs.argmax()) if probs.size else 0
        x, y, w, h = _xywh(face)
        rows.append(FaceRow(
            frame=frame, t_ms=t_ms, track_id=int(_get(face, "track_id", "id", default=0)),
            x=x, y=y, w=w, h=h,
            det_score=float(_get(face, "det_score", "score", default=float("nan"))),
            expression=str(_get(face, "expression", default=labels[best] if labels else "")),
            confidence=float(_get(face, "confidence", default=probs[best] if probs.size else float("nan"))),
            probabilities=[float(p) for p in probs], valence=float(_get(face, "valence")),
            arousal=float(_get(face, "arousal"))))
    return rows


def run_video(path: Path, options: LiveOptions, labels: list[str]) -> Iterator[LiveFrame]:
    """Frames of a video file through realtime.Pipeline, as LiveFrames."""
    from realtime import Pipeline

    pipeline = Pipeline(_options(str(path), options))
    try:
        for i, result in enumerate(pipeline):
            if i >= options.max_frames:
                break
            image = _get(result, "annotated", "image")
            yield LiveFrame(int(_get(result, "frame", "index", "frame_index", default=i)),
                            float(_get(result, "t_ms", default=0.0)), image, face_rows(result, labels))
    finally:
        close = getattr(pipeline, "close", None)
        if close is not None:
            close()


def draw_faces(image_bgr: np.ndarray, rows: list[FaceRow]) -> np.ndarray:
    """Boxes with track id and expression, in each track's colour (display only)."""
    import cv2

    from dashboard.charts import track_colour

    out = image_bgr.copy()
    for row in rows:
        hex_colour = track_colour(row.track_id).lstrip("#")
        r, g, b = (int(hex_colour[i:i + 2], 16) for i in (0, 2, 4))
        p1, p2 = (int(row.x), int(row.y)), (int(row.x + row.w), int(row.y + row.h))
        cv2.rectangle(out, p1, p2, (b, g, r), 2)
        cv2.putText(out, f"#{row.track_id} {row.expression} {row.confidence:.2f}", (p1[0], max(p1[1] - 6, 12)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (b, g, r), 1, cv2.LINE_AA)
    return out


def rows_frame(rows: list[FaceRow], labels: list[str]) -> pd.DataFrame:
    """Rows as the DataFrame a recording reads back into (same columns, same types)."""
    return pd.read_csv(io.StringIO(recording_csv(rows, labels)))


def recording_csv(rows: list[FaceRow], labels: list[str]) -> str:
    buf = io.StringIO()
    writer = write_csv_header(buf, labels)
    for row in rows:
        writer.writerow(row.as_csv_row())
    return buf.getvalue() if rows else ",".join(csv_columns(labels)) + "\n"


def save_recording(text: str, path: Path) -> Path:
    """Atomic write: a half-written recording never appears on the Session page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
