"""Glue between realtime.Pipeline and the Live page: run a video through the
pipeline (its own CSV sink writes the recording, its own overlay draws the
frames) and keep the per-face numbers the plane and the bars need."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dashboard.config import DEFAULT_MAX_VIDEO_SIDE, DashboardError
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

FACE_COLUMNS = ["frame", "t_ms", "track_id", "expression", "confidence", "valence", "arousal"]


@dataclass
class LiveOptions:
    model: Path | None = None  # None: the packaged default model
    backend: str | None = None  # None: by the model file's extension
    smoothing: bool = True
    max_frames: int = 300
    every: int = 1
    face_model: Path | None = None  # None: $AFFECTCAM_FACE_MODEL, the user cache, a download


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


# --- what FFmpeg may open ------------------------------------------------------------
# FFmpeg picks a demuxer from the file's content, not its name: a text file saved as .mp4
# can be a concat list or an HLS playlist that names other files (through a symlinked
# folder, anywhere on the disk), and the path check on the .mp4 itself would not see them.
# So a file is opened only when its first bytes are one of these self-contained containers.
CONTAINERS = (
    ("MP4/MOV", lambda h: h[4:8] == b"ftyp"),
    ("QuickTime", lambda h: h[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip")),
    ("AVI", lambda h: h[:4] == b"RIFF" and h[8:12] == b"AVI "),
    ("Matroska/WebM", lambda h: h[:4] == b"\x1aE\xdf\xa3"),
)
REFERENCE_FORMATS = (b"ffconcat", b"#EXTM3U", b"#EXT-X", b"<?xml", b"<MPD", b"[playlist]", b"file ")


def video_container(path: Path, shown: str | None = None) -> str:
    """The container the file's magic bytes name, or DashboardError (one line) for anything
    else: concat lists, playlists, text, images, unknown formats."""
    name = shown or path.name
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise DashboardError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    for kind, matches in CONTAINERS:
        if len(head) >= 12 and matches(head):
            return kind
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if any(text.startswith(m) for m in REFERENCE_FORMATS):
        raise DashboardError(f"{name}: a playlist or FFmpeg concat list, not a video file; refused "
                             "(it could name files outside the scanned directories)")
    raise DashboardError(f"{name}: not a video container the dashboard opens (MP4/MOV, AVI, MKV/WebM); refused")


def video_frame_count(path: Path, max_side: int = DEFAULT_MAX_VIDEO_SIDE, shown: str | None = None) -> int:
    """Frames in the file (container metadata), or DashboardError when it is not a video
    container (see video_container), OpenCV cannot decode it, or its frames are larger than
    `max_side` on their longest side (checked from the stream's header, before a frame is decoded)."""
    import cv2

    name = shown or path.name
    video_container(path, name)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise DashboardError(f"{name}: cannot be decoded as a video")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_frame_size(width, height, max_side, name)
        if not cap.read()[0]:
            raise DashboardError(f"{name}: cannot be decoded as a video")
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()


def check_frame_size(width: int, height: int, max_side: int, name: str) -> None:
    if max(width, height) > max_side:
        raise DashboardError(f"{name}: {width}×{height} frames are larger than the dashboard's limit of "
                             f"{max_side} px on the longest side; scale the video down first "
                             "(the owner sets max_video_side)")


def release_memory() -> None:
    """Hand freed frame buffers back to the OS (glibc keeps them otherwise), so a
    processed video does not leave the server's memory raised."""
    name = ctypes.util.find_library("c")
    if os.name == "posix" and name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to trim
            pass


def run_video(path: Path, options: LiveOptions, csv: Path | None = None) -> Iterator[tuple[FrameResult, list[str]]]:
    """(FrameResult, model labels) for each frame of a video file; `csv` gets the
    realtime CSV sink's recording, closed (flushed) when the iteration ends."""
    with Pipeline(pipeline_options(str(path), options, csv)) as pipeline:
        labels = list(pipeline.spec.labels)
        yield from ((result, labels) for result in pipeline)


# --- saving a recording into the owner's directories ------------------------------------

SAVE_SUFFIXES = (".csv", ".jsonl")


def check_save_name(name: str) -> str:
    """The file name a visitor typed, or DashboardError (one line, no server path): a
    recording suffix, no folder, no hidden file, no control characters."""
    name = name.strip()
    if not name:
        raise DashboardError("give a file name for the recording (e.g. session.csv); nothing saved")
    shown = name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
    if not name.isprintable():
        raise DashboardError(f"{shown}: control characters (NUL, newlines) in the file name; nothing saved")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise DashboardError(f"{shown}: a file name only, without folders; nothing saved")
    if name.startswith("."):
        raise DashboardError(f"{shown}: hidden file names are refused; nothing saved")
    if Path(name).suffix.lower() not in SAVE_SUFFIXES or not Path(name).stem:
        raise DashboardError(f"{shown}: a recording is saved as .csv or .jsonl; nothing saved")
    return name


def recording_bytes(csv_text: str, suffix: str) -> bytes:
    """The recording in the format its suffix names (the realtime sink writes CSV)."""
    if suffix.lower() == ".jsonl":
        import io

        df = pd.read_csv(io.StringIO(csv_text))
        return df.to_json(orient="records", lines=True).encode("utf-8")
    return csv_text.encode("utf-8")


def save_recording(text: str, path: Path, overwrite: bool = False) -> Path:
    """Write atomically (a half-written recording never appears on the Session page); an
    existing file is replaced only with `overwrite`, and never silently: without it the
    new file is linked into place, which fails if the name was taken meanwhile."""
    path = Path(path)
    data = recording_bytes(text, path.suffix)
    from affect.files import PendingFile

    pending = PendingFile(path)
    try:
        pending.tmp.write_bytes(data)
        if overwrite:
            return pending.commit()
        os.chmod(pending.tmp, 0o644)
        try:
            os.link(pending.tmp, path)  # atomic, and refuses an existing name
        except FileExistsError:
            raise DashboardError(f"{path.name}: exists already; tick \"Replace an existing file\" to "
                                 "replace it; nothing saved") from None
        return path
    finally:
        pending.discard()
