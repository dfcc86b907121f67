"""The browser's webcam on the Live page (streamlit-webrtc, optional).

streamlit-webrtc hands us one frame at a time on its own thread and wants the
annotated frame back; realtime.Pipeline pulls frames from a Source. PushSource
bridges the two: each callback pushes a frame, then pulls exactly one
FrameResult, so the pipeline (tracking, smoothing, overlay) is used unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import pandas as pd

from dashboard.live import FACE_COLUMNS, LiveOptions, face_table, pipeline_options
from realtime import FrameResult, Pipeline
from realtime.sources import Frame, Source, SourceOptions

HISTORY_FRAMES = 90  # face rows kept for the plane's trails (about 3 s at 30 fps)


class PushSource(Source):
    """A live source whose frames are pushed in by the caller, one at a time."""

    live = True
    kind = "webcam"

    def __init__(self, name: str = "browser webcam"):
        super().__init__(name, SourceOptions())
        self.fps = 30.0
        self._pending: np.ndarray | None = None
        self._index = 0
        self._t0 = time.monotonic()
        self._closed = False

    def push(self, image_bgr: np.ndarray) -> None:
        self._pending = image_bgr

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed and self._pending is not None:
            image, self._pending = self._pending, None
            self.stats.frames += 1
            yield Frame(self._index, (time.monotonic() - self._t0) * 1000.0, image)
            self._index += 1
            # The caller pushes the next frame before asking for the next result.

    def close(self) -> None:
        self._closed = True


class FrameStepper:
    """One frame in, one FrameResult out, through a realtime.Pipeline."""

    def __init__(self, options: LiveOptions):
        self.source = PushSource()
        self.pipeline = Pipeline(pipeline_options(self.source, options))
        self.labels = list(self.pipeline.spec.labels)
        self._results: Iterator[FrameResult] | None = None
        self._lock = threading.Lock()
        self.recent: deque[pd.DataFrame] = deque(maxlen=HISTORY_FRAMES)

    def step(self, image_bgr: np.ndarray) -> FrameResult:
        with self._lock:  # webrtc may call from more than one worker thread
            self.source.push(image_bgr)
            if self._results is None:
                self._results = iter(self.pipeline)
            result = next(self._results)
            self.recent.append(face_table(result, self.labels))
            return result

    def faces(self) -> pd.DataFrame:
        with self._lock:
            tables = list(self.recent)
        if not tables:
            return pd.DataFrame(columns=[*FACE_COLUMNS, *(f"p_{lab}" for lab in self.labels)])
        return pd.concat(tables, ignore_index=True)

    def close(self) -> None:
        self.pipeline.close()


def webcam_stream(options: LiveOptions) -> None:
    """The webrtc widget; the plane and bars below refresh while it plays."""
    import av
    import streamlit as st
    from streamlit_webrtc import webrtc_streamer

    from dashboard import charts
    from dashboard.live import first_line

    key = "live_stepper"
    if key not in st.session_state:
        try:
            st.session_state[key] = FrameStepper(options)
        except Exception as exc:  # model or face model missing: one line, the page goes on
            st.error(first_line(exc))
            return
    stepper: FrameStepper = st.session_state[key]

    def callback(frame: av.VideoFrame) -> av.VideoFrame:
        result = stepper.step(frame.to_ndarray(format="bgr24"))
        image = result.annotated if result.annotated is not None else result.image
        return av.VideoFrame.from_ndarray(image, format="bgr24")

    ctx = webrtc_streamer(key="webcam", video_frame_callback=callback,
                          media_stream_constraints={"video": True, "audio": False})
    plane_col, bars_col = st.columns(2)
    plane_slot, bars_slot = plane_col.empty(), bars_col.empty()
    n = 0
    while ctx.state.playing:
        faces = stepper.faces()
        current = faces.sort_values("frame").groupby("track_id").tail(1)
        plane_slot.plotly_chart(charts.va_plane(faces, current), key=f"webcam_plane_{n}")
        bars_slot.plotly_chart(charts.probability_bars(stepper.labels, current.set_index("track_id")),
                               key=f"webcam_bars_{n}")
        n += 1
        time.sleep(0.5)
