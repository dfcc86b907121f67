"""The browser's webcam on the Live page (streamlit-webrtc, optional).

streamlit-webrtc hands us one frame at a time on its own thread and wants the
annotated frame back: each callback hands the frame to `Pipeline.process`,
which runs every stage (faces, model, tracking, smoothing, overlay) on it.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import pandas as pd

from dashboard.live import FACE_COLUMNS, LiveOptions, face_table, pipeline_options
from realtime import FrameResult, Pipeline

HISTORY_FRAMES = 90  # face rows kept for the plane's trails (about 3 s at 30 fps)


class FrameStepper:
    """One frame in, one FrameResult out, through a realtime.Pipeline."""

    def __init__(self, options: LiveOptions):
        self.pipeline = Pipeline(pipeline_options(None, options))
        self.labels = list(self.pipeline.spec.labels)
        self._lock = threading.Lock()
        self.recent: deque[pd.DataFrame] = deque(maxlen=HISTORY_FRAMES)

    def step(self, image_bgr: np.ndarray) -> FrameResult:
        with self._lock:  # webrtc may call from more than one worker thread
            result = self.pipeline.process(image_bgr)
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


def webcam_stream(options: LiveOptions, face_model_message=None) -> None:
    """The webrtc widget; the plane and bars below refresh while it plays."""
    import av
    import streamlit as st
    from streamlit_webrtc import webrtc_streamer

    from affect.errors import first_line
    from dashboard import charts

    key = "live_stepper"
    if key not in st.session_state:
        try:
            st.session_state[key] = FrameStepper(options)
        except Exception as exc:  # model or face model missing: one line, the page goes on
            from affect.face_model import FaceModelError

            st.error(face_model_message(exc) if face_model_message and isinstance(exc, FaceModelError)
                     else first_line(exc))
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
