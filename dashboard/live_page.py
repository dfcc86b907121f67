"""Live page: a video (uploaded or under a scanned directory) or the browser's
webcam through realtime.Pipeline, with the plane and probability bars."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import display_path, get_config, pick_path
from dashboard.config import DashboardConfig, DashboardError
from dashboard.data import VIDEO_SUFFIXES, find_models, find_videos, read_spec
from dashboard.live import (
    LiveOptions,
    draw_faces,
    pipeline_available,
    recording_csv,
    rows_frame,
    run_video,
    save_recording,
    video_frame_count,
)

RESULT_KEY = "live_result"
TRAIL_FRAMES = 45  # about 1.5 s at 30 fps: enough to see direction, short enough to stay readable


def backend_names() -> list[str]:
    try:
        from realtime.backends import BACKENDS
    except ImportError:
        return ["auto"]
    return ["auto", *BACKENDS]


def sidebar_options(config: DashboardConfig) -> LiveOptions | None:
    st.sidebar.subheader("Live: model")
    models = find_models(config.existing_roots())
    if not models:
        st.sidebar.warning("No .onnx model under the scanned directories or realtime/models.")
        return None
    names = [display_path(p, config) for p in models]
    model = models[names.index(st.sidebar.selectbox("Model", names, key="live_model"))]
    backend = st.sidebar.selectbox("Backend", backend_names(), key="live_backend")
    smoothing = st.sidebar.checkbox("Smoothing (EMA + One-Euro)", value=True, key="live_smoothing")
    max_frames = int(st.sidebar.number_input("Max frames", 1, 100_000, 300, key="live_max_frames"))
    return LiveOptions(model, None if backend == "auto" else backend, smoothing, max_frames)


def render() -> None:
    st.title("Live")
    config = get_config()
    options = sidebar_options(config)
    source = st.radio("Source", ["Video file", "Upload a video", "Webcam (browser)"], horizontal=True,
                      key="live_source")
    if source == "Webcam (browser)":
        webcam(options)
    else:
        video = pick_video(config) if source == "Video file" else uploaded_video()
        if video is not None and options is not None:
            if st.button("Process", type="primary", key="live_process"):
                process(video, options)
    show_result()


def pick_video(config: DashboardConfig) -> Path | None:
    return pick_path("a video", find_videos(config.existing_roots()), config, key="live_video",
                     empty_hint="No videos under the scanned directories; add a directory in the sidebar "
                                "or upload one.")


def uploaded_video() -> Path | None:
    upload = st.file_uploader("Video", type=[s.lstrip(".") for s in VIDEO_SUFFIXES], key="live_upload")
    if upload is None:
        return None
    # The pipeline reads from a path; keep one temp copy per upload for the session.
    cached = st.session_state.get("live_upload_path")
    if cached and cached[0] == upload.file_id and Path(cached[1]).is_file():
        return Path(cached[1])
    suffix = Path(upload.name).suffix or ".mp4"
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
        fh.write(upload.getvalue())
    st.session_state["live_upload_path"] = (upload.file_id, fh.name)
    return Path(fh.name)


def process(video: Path, options: LiveOptions) -> None:
    reason = pipeline_available()
    if reason:
        st.error(reason)
        return
    try:
        total = min(video_frame_count(video) or options.max_frames, options.max_frames)
        labels = read_spec(options.model).labels
    except DashboardError as exc:
        st.error(str(exc))
        return
    progress = st.progress(0.0, text=f"{video.name}: starting")
    image_col, plane_col = st.columns([3, 2])
    image_slot, plane_slot = image_col.empty(), plane_col.empty()
    bars_slot = plane_col.empty()
    rows, last, started, shown = [], None, time.monotonic(), 0.0
    try:
        for frame in run_video(video, options, labels):
            rows.extend(frame.rows)
            last = frame
            done = min((len({r.frame for r in rows}) and frame.index + 1) / max(total, 1), 1.0)
            progress.progress(done, text=f"{video.name}: frame {frame.index + 1} of {total}")
            # Redraw a few times a second: Plotly re-renders are slower than the pipeline.
            if time.monotonic() - shown > 0.3:
                shown = time.monotonic()
                draw_live(frame, rows, labels, image_slot, plane_slot, bars_slot)
    except Exception as exc:  # the pipeline's own errors are one-liners; keep the page alive on any
        st.error(f"{video.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return
    progress.progress(1.0, text=f"{video.name}: done in {time.monotonic() - started:.1f} s")
    image_slot.empty(), plane_slot.empty(), bars_slot.empty()
    st.session_state[RESULT_KEY] = {"video": video.name, "labels": labels, "rows": rows, "last": last}


def draw_live(frame, rows, labels, image_slot, plane_slot, bars_slot) -> None:
    if frame.image_bgr is not None:
        image_slot.image(draw_faces(frame.image_bgr, frame.rows), channels="BGR")
    df = rows_frame(rows, labels)
    trail = df[df["frame"] > frame.index - TRAIL_FRAMES]
    current = df[df["frame"] == frame.index]
    plane_slot.plotly_chart(charts.va_plane(trail, current), key=f"live_plane_{frame.index}")
    bars_slot.plotly_chart(charts.probability_bars(labels, current.set_index("track_id")),
                           key=f"live_bars_{frame.index}")


def show_result() -> None:
    result = st.session_state.get(RESULT_KEY)
    if not result:
        return
    labels, rows, last = result["labels"], result["rows"], result["last"]
    df = rows_frame(rows, labels) if rows else pd.DataFrame(columns=["frame", "track_id", "valence", "arousal"])
    st.subheader(f"{result['video']}: {df['frame'].nunique()} frames with a face, "
                 f"{df['track_id'].nunique()} tracks")
    image_col, plane_col = st.columns([3, 2])
    if last is not None and last.image_bgr is not None:
        image_col.image(draw_faces(last.image_bgr, last.rows), channels="BGR", caption=f"frame {last.index}")
    last_frame = df["frame"].max() if len(df) else 0
    trail = df[df["frame"] > last_frame - TRAIL_FRAMES]
    current = df.sort_values("frame").groupby("track_id").tail(1) if len(df) else df
    plane_col.plotly_chart(charts.va_plane(trail, current), key="live_plane")
    if len(df):
        plane_col.plotly_chart(charts.probability_bars(labels, current.set_index("track_id")), key="live_bars")
    text = recording_csv(rows, labels)
    st.download_button("Download recording (CSV)", text, file_name=f"{Path(result['video']).stem}.csv",
                       mime="text/csv", key="live_download")
    config = get_config()
    if config.dirs:
        target_dir = st.selectbox("Save into", config.dirs, key="live_save_dir")
        name = st.text_input("File name", f"{Path(result['video']).stem}.csv", key="live_save_name")
        if st.button("Save recording", key="live_save"):
            try:
                path = config.check(Path(target_dir) / Path(name).name)
                save_recording(text, path)
                st.success(f"saved {path}; open it on the Session page")
            except (DashboardError, OSError) as exc:
                st.error(str(exc))


def webcam(options: LiveOptions | None) -> None:
    try:
        import streamlit_webrtc  # noqa: F401
    except ImportError:
        st.info("The browser webcam needs streamlit-webrtc: `pip install 'affectcam[webcam]'`. "
                "Videos work without it.")
        return
    from dashboard.webcam import webcam_stream

    if options is None:
        return
    reason = pipeline_available()
    if reason:
        st.error(reason)
        return
    webcam_stream(options)
