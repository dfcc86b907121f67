"""Frame sources behind one interface: webcam index, video file, RTSP/HTTP
URL, a folder of images, or a GStreamer pipeline string.

`open_source(spec)` → a `Source` that iterates `Frame`s (BGR, as OpenCV reads
them) and is closed with `close()` / `with`.

- Live sources (cameras, URLs, GStreamer) are read on their own thread into a
  bounded queue that drops the oldest frame when full: a slow consumer sees
  the newest frames rather than an ever-growing backlog.
- Files and folders are read in the consumer's thread, without dropping.
- URLs and GStreamer pipelines reconnect with exponential back-off when the
  stream drops; files end cleanly.
- Corrupt frames (empty, wrong shape or type, undecodable images, decode
  errors in the middle of a file) are skipped and counted in `stats`.

Every source is built through a capture factory (default `cv2.VideoCapture`)
so that the camera path can be tested with a fake capture object.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affect.checks import is_finite, require, whole_at_least
from affect.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
PROBE_INDICES = range(10)

CaptureFactory = Callable[..., Any]


class SourceError(RuntimeError):
    """A source that cannot be opened or read."""


@dataclass
class Frame:
    index: int  # position in the source (counts dropped and corrupt frames too)
    t_ms: float  # media time for files, wall time since start for live sources
    image: np.ndarray  # HxWx3 uint8 BGR


@dataclass
class SourceOptions:
    width: int | None = None  # camera resolution request
    height: int | None = None
    fps: float | None = None  # camera FPS request; frame rate of image folders
    queue_size: int = 2  # live sources: frames held before the oldest is dropped
    reconnect_tries: int = 5  # URLs/GStreamer: attempts after a drop before giving up
    backoff_s: tuple[float, float] = (0.5, 8.0)  # first and largest wait between attempts
    max_bad_reads: int = 25  # consecutive failed reads that end a file or camera

    def __post_init__(self) -> None:
        whole_at_least(self, "width", 1, optional=True)
        whole_at_least(self, "height", 1, optional=True)
        require(self.fps is None or (is_finite(self.fps) and self.fps > 0), self, "fps", "must be above 0")
        whole_at_least(self, "queue_size", 1)
        whole_at_least(self, "reconnect_tries", 0)
        whole_at_least(self, "max_bad_reads", 1)


@dataclass
class SourceStats:
    frames: int = 0  # frames delivered
    dropped: int = 0  # stale live frames dropped from the queue
    corrupt: int = 0  # frames skipped as unreadable
    reconnects: int = 0


def valid_frame(image: Any) -> bool:
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0)


def _quiet_opencv() -> None:
    # Probing camera indices makes OpenCV log a warning per missing device.
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass


class Source:
    """Base: iterate frames; `live`, `kind`, `name`, `stats`, `fps`, `error`."""

    live = False
    kind = "source"

    def __init__(self, name: str, options: SourceOptions):
        self.name = name
        self.options = options
        self.stats = SourceStats()
        self.fps: float = 0.0
        self.error: str | None = None  # why a live source ended early

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _why_unreadable(path: Path) -> str:
    """An MP4/MOV that starts like one but does not open has lost its index (the
    moov box, written last): the file ended early."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return ""
    if head[4:8] == b"ftyp":
        return " (an MP4/MOV container without its index: the file ended early, truncated or still being written?)"
    return ""


class FileSource(Source):
    """A video file, read in order without dropping."""

    kind = "file"

    def __init__(self, path: Path, options: SourceOptions, factory: CaptureFactory = cv2.VideoCapture):
        super().__init__(str(path), options)
        self.cap = factory(str(path))
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"{path}: not a readable video file{_why_unreadable(path)}")
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def __iter__(self) -> Iterator[Frame]:
        index, bad = 0, 0
        while self.cap is not None:
            ok, image = self.cap.read()
            if ok and valid_frame(image):
                bad = 0
                self.stats.frames += 1
                yield Frame(index, index * 1000.0 / self.fps, image)
                index += 1
                continue
            # A failed read before the known end is a decode error: skip it and go on.
            if self.frame_count and index < self.frame_count - 1 and bad < self.options.max_bad_reads:
                bad += 1
                self.stats.corrupt += 1
                index += 1
                continue
            if ok:  # a frame that decoded to something unusable, past the known end
                self.stats.corrupt += 1
            self._note_early_end(index, bad)
            return

    def _note_early_end(self, index: int, bad: int) -> None:
        """Failed reads that ran on to the end (or to the read budget) are a file
        that stops early (truncated, or a copy still being written), not a
        run of corrupt frames: say so, and do not count them as corrupt."""
        last_good = index - bad  # frames before the failures started
        if not bad or not self.frame_count or last_good >= self.frame_count - 1:
            return
        self.stats.corrupt -= bad
        self.error = (f"{self.name}: the file ended early: {self.stats.frames} frames read, the header says "
                      f"{self.frame_count} (truncated or still being written?)")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class FolderSource(Source):
    """A folder of images in name order (each an independent picture)."""

    kind = "folder"

    def __init__(self, path: Path, options: SourceOptions):
        super().__init__(str(path), options)
        self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        self.fps = float(options.fps or 30.0)

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if not valid_frame(image):
                self.stats.corrupt += 1
                log.warning("%s: unreadable image, skipped", path)
                continue
            self.stats.frames += 1
            yield Frame(index, index * 1000.0 / self.fps, image)


class LiveSource(Source):
    """Camera, URL or GStreamer pipeline, read on a thread into a drop-oldest queue."""

    live = True

    def __init__(self, name: str, kind: str, open_args: tuple, options: SourceOptions,
                 factory: CaptureFactory = cv2.VideoCapture, reconnect: bool = False):
        super().__init__(name, options)
        self.kind = kind
        self._open_args, self._factory, self._reconnect = open_args, factory, reconnect
        self.cap = self._open()
        if self.cap is None:
            raise SourceError(self._open_error())
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0) or float(options.fps or 30.0)
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=max(1, options.queue_size))
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._read_loop, name=f"source-{kind}", daemon=True)
        self._thread.start()

    def _open(self) -> Any | None:
        cap = self._factory(*self._open_args)
        if not cap.isOpened():
            cap.release()
            return None
        o = self.options
        if self.kind == "camera":
            if o.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, o.width)
            if o.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, o.height)
            if o.fps:
                cap.set(cv2.CAP_PROP_FPS, o.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's own backlog short too
        return cap

    def _open_error(self) -> str:
        if self.kind != "camera":
            return f"{self.name}: cannot open the {self.kind} source"
        index = self._open_args[0]
        _quiet_opencv()
        found = []
        for i in PROBE_INDICES:
            if i == index:
                continue
            cap = self._factory(i)
            if cap.isOpened():
                found.append(str(i))
            cap.release()
        which = f"cameras that open: {', '.join(found)}" if found else \
            f"no camera opens at indices {PROBE_INDICES.start}-{PROBE_INDICES.stop - 1}"
        return f"no camera at index {index} ({which})"

    def _put(self, frame: Frame | None) -> None:
        while True:
            try:
                self._queue.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def _read_loop(self) -> None:
        index, bad = 0, 0
        try:
            while not self._stop.is_set():
                ok, image = self.cap.read()
                if ok and valid_frame(image):
                    bad = 0
                    self._put(Frame(index, (time.monotonic() - self._t0) * 1000.0, image))
                    index += 1
                    continue
                if ok:  # delivered but unusable
                    self.stats.corrupt += 1
                    index += 1
                    continue
                bad += 1
                if self._reconnect:
                    if not self._reconnect_with_backoff():
                        return
                    bad = 0
                elif bad >= self.options.max_bad_reads:
                    self.error = f"{self.name}: the {self.kind} stopped delivering frames"
                    return
                else:  # a camera hiccup: wait a little and read again
                    time.sleep(0.01)
        finally:
            self._put(None)  # end marker

    def _reconnect_with_backoff(self) -> bool:
        delay, cap_delay = self.options.backoff_s
        for attempt in range(1, self.options.reconnect_tries + 1):
            self.cap.release()
            log.warning("%s: stream dropped, reconnect %d/%d in %.1fs", self.name, attempt,
                        self.options.reconnect_tries, delay)
            if self._stop.wait(delay):
                return False
            cap = self._open()
            if cap is not None:
                self.cap = cap
                self.stats.reconnects += 1
                return True
            delay = min(delay * 2, cap_delay)
        self.error = f"{self.name}: the stream dropped and {self.options.reconnect_tries} reconnects failed"
        return False

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            self.stats.frames += 1
            yield frame

    def close(self) -> None:
        self._stop.set()
        try:  # unblock a reader waiting on a full queue
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self.cap is not None:
            self.cap.release()


def open_source(spec: str | int | os.PathLike, options: SourceOptions | None = None,
                factory: CaptureFactory = cv2.VideoCapture) -> Source:
    """A source for a camera index, file, folder, URL or GStreamer pipeline string."""
    options = options or SourceOptions()
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        index = int(text)
        return LiveSource(f"camera {index}", "camera", (index,), options, factory)
    if text.lower().startswith(URL_SCHEMES):
        return LiveSource(text, "stream", (text, cv2.CAP_FFMPEG), options, factory, reconnect=True)
    if "!" in text:  # gst-launch syntax, e.g. "nvarguscamerasrc ! … ! appsink"
        return LiveSource(text, "gstreamer", (text, cv2.CAP_GSTREAMER), options, factory, reconnect=True)
    path = Path(text).expanduser()
    if path.is_dir():
        return FolderSource(path, options)
    if not path.exists():
        raise SourceError(f"{path}: no such file, folder or camera")
    return FileSource(path, options, factory)
