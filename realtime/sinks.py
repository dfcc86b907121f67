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

import io
import json
import os
import queue
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from affect.files import NotWritable, PendingFile, atomic_write_json, check_writable
from affect.recording import FaceRow, au_thresholds_path, write_au_thresholds, write_csv_header
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
    # one decision threshold per AU column (the model's `affect.au_thresholds`); () = 0.5 for every AU
    au_thresholds: tuple[float, ...] = ()

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


def _own_au_thresholds(context: SinkContext) -> dict[str, float]:
    """{AU: threshold} when the run's AU reader has thresholds of its own (not all 0.5), else {}."""
    from affect.aus import AU_THRESHOLD

    given = dict(zip(context.au_names, context.au_thresholds))
    return given if any(t != AU_THRESHOLD for t in given.values()) else {}


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


class OutputFailed(OSError):
    """An output that failed during the run (a full disk): the message names the file, the
    reason and what of it was kept."""


def _move_into_place(pending: PendingFile) -> None:
    try:
        pending.commit()
    except OSError as exc:
        raise OutputFailed(f"{pending.path}: cannot move the finished file into place ({_strerror(exc)}); "
                           f"it is kept as {pending.tmp}") from None


class _AtomicText:
    """A text file opened at start() under a temporary name, moved into place at close().

    Each frame's lines go to the file in one write: when the disk fills, the file is cut back
    to the last whole frame, moved into place all the same (a shorter recording, never a torn
    one), and the failure is raised naming the file and the frames kept."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.pending: PendingFile | None = None
        self.fd: int | None = None
        self.complete = 0  # bytes in the file that end with a whole frame's lines
        self.last_frame: int | None = None  # the last frame wholly in the file
        self.failure: str | None = None
        self.rows = 0  # face rows written (the header not counted)
        self.closed_whole = False  # moved into place whole: what `wrote()` reports

    def start(self, context: SinkContext) -> None:
        self.pending = PendingFile(self.path, hold=True)  # held: a killed run's file is told from ours
        self.fd = os.open(self.pending.tmp, os.O_WRONLY | os.O_TRUNC)
        self.au_thresholds = _own_au_thresholds(context)

    @property
    def tmp(self) -> Path | None:
        return self.pending.tmp if self.pending is not None else None

    def _append(self, text: str, frame: int | None = None) -> None:
        """Write one frame's lines (`frame` None: the header) in one go, or remember the failure."""
        if self.fd is None or self.failure is not None:
            return
        encoded = text.encode("utf-8")
        data = memoryview(encoded)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError as exc:
            self.failure = f"{_strerror(exc)}) " + ("before the first frame" if frame is None else f"at frame {frame}")
            raise OutputFailed(self._message()) from None
        self.complete += len(encoded)
        if frame is not None:
            self.last_frame = frame

    def wrote(self) -> str | None:
        """What a whole run wrote here, for the command's last lines; None before or after a failure."""
        return f"{self.path} ({self.rows:,} rows)" if self.closed_whole else None

    def _message(self) -> str:
        # self.failure: "<reason>) <where>", so the line reads "cannot write it (<reason>) <where>; <kept>"
        return f"{self.path}: cannot write it ({self.failure}; {self._kept()}"

    def _kept(self) -> str:
        if self.last_frame is not None:
            return f"its lines up to frame {self.last_frame} are kept in {self.path}"
        return f"only its header is kept in {self.path}" if self.complete else "nothing of it is kept"

    def close(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if self.failure is not None:
                os.ftruncate(fd, self.complete)  # back to the last whole frame (frees the torn tail)
            os.fsync(fd)
        except OSError as exc:
            self.failure = self.failure or f"{_strerror(exc)}) at the end"
        finally:
            os.close(fd)
        if self.failure is not None and not self.complete:
            self.pending.discard()
        else:
            _move_into_place(self.pending)
            self.closed_whole = self.failure is None
        if self.failure is not None:
            raise OutputFailed(self._message())
        # The AU reader's own thresholds beside the recording; an earlier run's file there (the
        # recording was overwritten by a run without them) would misread this one: removed.
        side = au_thresholds_path(self.path)
        try:
            if getattr(self, "au_thresholds", None):
                write_au_thresholds(self.path, self.au_thresholds, "model")
            else:
                side.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputFailed(f"{side}: cannot write or remove it ({_strerror(exc)}); {self.path} is kept; "
                               "its AUs read as active at that file's thresholds, or at 0.5 without it") from None


class CsvSink(_AtomicText):
    """One row per face per frame: `affect.recording.csv_columns(labels, au_names)`."""

    def start(self, context: SinkContext) -> None:
        super().start(context)
        self.au_names = tuple(context.au_names)
        self._buffer = io.StringIO()
        self.writer = write_csv_header(self._buffer, context.labels, self.au_names)
        self._flush(None)

    def _flush(self, frame: int | None) -> None:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        self._append(text, frame)

    def write(self, result: FrameResult) -> None:
        for f in result.faces:
            self.writer.writerow(_face_row(result, f).as_csv_row(self.au_names))
        self._flush(result.index)
        self.rows += len(result.faces)


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
        lines = [json.dumps(_face_row(result, f).as_json(self.labels, f.landmarks if self.landmarks else None,
                                                         f.blendshapes if self.blendshapes else None,
                                                         self.au_names)) + "\n"
                 for f in result.faces]
        self._append("".join(lines), result.index)
        self.rows += len(lines)


# Fragmented MP4 (an empty index, then a fragment per key frame, written as it goes): what a run
# wrote stays playable when it is killed or the disk fills, where a plain MP4 needs the index
# written at the very end. OpenCV's writer cannot ask FFmpeg for it (its muxer options are not
# passed on), so MP4 files are written with PyAV, the same codec (MPEG-4 part 2, "mp4v"), which
# also reports a full disk instead of writing nothing silently. Other containers (.avi, .mkv)
# and an install without PyAV use OpenCV's writer.
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
_MP4_SUFFIXES = (".mp4", ".mov", ".m4v")


class _FragmentedMp4:
    """cv2.VideoWriter's write/release/isOpened over PyAV, writing a fragmented MP4. Frames are
    converted and encoded on a thread of their own (PyAV lets go of the GIL while it encodes), so
    a 1280x720 frame's ~5 ms of encoding overlaps the next frame's drawing; a failure there (a
    full disk) is raised by the next `write` or by `release`."""

    QUEUE = 4  # frames waiting for the encoder: a few frames' memory, enough to even out the work

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        import av

        self.container = av.open(str(path), "w", options=dict(FRAGMENTED_MP4))
        self.stream = self.container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        # OpenCV's rate for mp4v (one bit per pixel per frame), and a key frame (a new fragment)
        # every second: a killed run loses at most the last second.
        self.stream.bit_rate = int(min(fps * size[0] * size[1], 2**31 - 1))
        self.stream.codec_context.gop_size = max(1, round(fps))
        self._frame_type = av.VideoFrame
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode_all, name="affectcam-video", daemon=True)
        self._thread.start()

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoWriter's name
        return True

    def _encode(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if h % 2 == 0 and w % 2 == 0:  # OpenCV's BGR → I420 is several times faster than PyAV's swscale
            frame = self._frame_type.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        else:
            frame = self._frame_type.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def _encode_all(self) -> None:
        while True:
            image = self._queue.get()
            if image is None:
                return
            if self._error is None:
                try:
                    self._encode(image)
                except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, image: np.ndarray) -> None:
        self._raise()
        self._queue.put(image)

    def release(self) -> None:
        try:
            self._queue.put(None)
            self._thread.join()
            self._raise()
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()


def open_video_writer(path: Path, fps: float, size: tuple[int, int]):
    """A writer for `path` (its suffix picks the container): a fragmented MP4 through PyAV for
    .mp4/.mov/.m4v (FRAGMENTED_MP4), else OpenCV's mp4v writer."""
    if path.suffix.lower() in _MP4_SUFFIXES:
        try:
            return _FragmentedMp4(path, fps, size)
        except ImportError:
            pass
    return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)


def playable_frames(path: Path, expected: int) -> int:
    """How many frames of the video at `path` decode: `expected` when its last frame does and
    no frame follows (one seek), else counted from the start (only after a failure)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        if expected > 0 and cap.set(cv2.CAP_PROP_POS_FRAMES, expected - 1) and cap.read()[0] \
                and not cap.read()[0]:
            return expected
        cap.release()
        cap = cv2.VideoCapture(str(path))
        n = 0
        while cap.read()[0]:
            n += 1
        return n
    finally:
        cap.release()


class VideoSink:
    """Annotated frames into a video at the source's fps (or `fps`): a fragmented MP4 (mp4v)
    for .mp4 names, OpenCV's mp4v writer for others; the size is fixed by the first frame. A
    frame the run did not draw is not written. The file is read back at close: what plays of
    it is kept after a failure (a full disk), with an error that says how much."""

    draws = True

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        self.path = Path(path)
        self.fps = fps
        self.pending: PendingFile | None = None
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.failure: str | None = None
        self.closed_whole = False

    def wrote(self) -> str | None:
        """What a whole run wrote here (None before or after a failure)."""
        return f"{self.path} ({self.frames:,} frames)" if self.closed_whole else None

    def start(self, context: SinkContext) -> None:
        fps = self.fps or context.fps
        self.fps = fps if fps and fps > 0 else 30.0

    @property
    def tmp(self) -> Path | None:
        return self.pending.tmp if self.pending is not None else None

    def write(self, result: FrameResult) -> None:
        image = result.annotated
        if image is None or self.failure is not None:
            return
        h, w = image.shape[:2]
        try:
            if self.writer is None:
                # its name keeps the suffix last: the container is picked from it; held: see orphaned_partials
                self.pending = PendingFile(self.path, hold=True)
                self.size = (w, h)
                self.writer = open_video_writer(self.pending.tmp, self.fps or 30.0, self.size)
                if not self.writer.isOpened():
                    raise OSError(0, "the video writer (mp4v) does not open")
            if (w, h) != self.size:  # sources whose size changes (image folders)
                image = cv2.resize(image, self.size)
            self.writer.write(image)
        except OSError as exc:
            self.failure = f"{_strerror(exc) if exc.strerror else exc}) at frame {result.index}"
            raise OutputFailed(f"{self.path}: cannot write it ({self.failure}; what plays of the "
                               f"{self.frames} frames before it is kept") from None
        self.frames += 1

    def close(self) -> None:
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            writer.release()  # the last fragment (a plain MP4: its index)
        except OSError as exc:
            self.failure = self.failure or f"{_strerror(exc)}) at the end"
        if not self.pending.tmp.is_file() or not self.pending.tmp.stat().st_size:
            self.pending.discard()
            raise OutputFailed(f"{self.path}: the video writer wrote nothing to {self.path.parent}")
        played = playable_frames(self.pending.tmp, self.frames)
        if played == self.frames and self.failure is None:
            _move_into_place(self.pending)
            self.closed_whole = True
            return
        reason = self.failure or (("no space left on device" if _disk_full(self.pending.tmp)
                                   else "the video writer failed") + ")")
        if played == 0:
            self.pending.discard()
            raise OutputFailed(f"{self.path}: cannot write it ({reason}; none of its {self.frames} frames "
                               "plays, nothing of it is kept")
        _move_into_place(self.pending)
        raise OutputFailed(f"{self.path}: cannot write it ({reason}; the first {played} of its "
                           f"{self.frames} frames are kept in {self.path}")


def _disk_full(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20  # under 1 MiB free: a frame no longer fits


class SummaryJsonSink:
    """The end-of-run summary (`RunSummary.as_dict()`) as JSON, written atomically at close."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.context: SinkContext | None = None
        self.written = False

    def wrote(self) -> str | None:
        return f"{self.path} (the run's summary)" if self.written else None

    def start(self, context: SinkContext) -> None:
        self.context = context

    def write(self, result: FrameResult) -> None:
        pass

    def close(self) -> None:
        if self.context is not None:
            summary, self.context = self.context.summary, None
            try:
                atomic_write_json(self.path, summary.as_dict())
                self.written = True
            except OSError as exc:
                raise OutputFailed(f"{self.path}: cannot write the summary ({_strerror(exc)}); "
                                   "it is printed instead") from None


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
