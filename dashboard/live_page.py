"""Live page: a video (uploaded or under a scanned directory) or the browser's
webcam through realtime.Pipeline, with the plane and probability bars."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import display_path, get_config, pick_path
from dashboard.config import DashboardConfig, DashboardError
from dashboard.data import MODEL_SUFFIXES, VIDEO_SUFFIXES, find_models, find_videos, model_roots
from dashboard.live import (
    FACE_COLUMNS,
    LiveOptions,
    face_table,
    first_line,
    pipeline_available,
    run_video,
    save_recording,
    video_frame_count,
)

RESULT_KEY = "live_result"
TRAIL_FRAMES = 45  # about 1.5 s at 30 fps: enough to see direction, short enough to stay readable


def backend_names() -> list[str]:
    """"auto" and the backends that can run the page's models (.onnx) here: not
    TensorRT or torch (other files), nor providers this onnxruntime lacks."""
    try:
        from realtime.backends import backends_for
    except ImportError:
        return ["auto"]
    return ["auto", *(name for suffix in MODEL_SUFFIXES for name in backends_for(suffix))]


def sidebar_options(config: DashboardConfig) -> LiveOptions | None:
    st.sidebar.subheader("Live: model")
    models = find_models(config.existing_roots(), config.max_entries)
    if not models:
        st.sidebar.warning("No .onnx model under the scanned directories or realtime/models.")
        return None
    names = [display_path(p, config) for p in models]
    choice = st.sidebar.selectbox("Model", names, key="live_model")
    try:  # a listed model may be a symlink to anywhere
        model = config.check(models[names.index(choice)], model_roots())
    except DashboardError:
        st.sidebar.error(f"{choice}: outside the scanned directories; refused")
        return None
    st.sidebar.caption("Face model: $AFFECTCAM_FACE_MODEL, the user cache, or a one-time download.")
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
                if isinstance(video, Path):
                    process(video, options)
                else:
                    with private_copy(video) as path:
                        process(path, options, shown=video.name)
    show_result()


def pick_video(config: DashboardConfig) -> Path | None:
    return pick_path("a video", find_videos(config.existing_roots(), config.max_entries), config,
                     key="live_video",
                     empty_hint="No videos under the scanned directories; add a directory in the sidebar "
                                "or upload one.")


def uploaded_video():
    """The uploaded file (kept in memory by Streamlit); it touches the disk only in private_copy."""
    return st.file_uploader("Video", type=[s.lstrip(".") for s in VIDEO_SUFFIXES], key="live_upload")


@contextmanager
def private_copy(upload) -> Iterator[Path]:
    """The upload in a temporary directory only this user can read (mkdtemp
    makes it 0700), removed with everything in it when processing ends."""
    suffix = Path(upload.name).suffix.lower()
    suffix = suffix if suffix in VIDEO_SUFFIXES else ".mp4"  # the name is the visitor's: only its suffix is used
    with tempfile.TemporaryDirectory(prefix="affectcam-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(upload.getvalue())
        yield path


def process(video: Path, options: LiveOptions, shown: str | None = None) -> None:
    name = shown or video.name
    reason = pipeline_available()
    if reason:
        st.error(reason)
        return
    try:
        total = min(video_frame_count(video) or options.max_frames, options.max_frames)
    except DashboardError as exc:
        st.error(str(exc))
        return
    progress = st.progress(0.0, text=f"{name}: starting")
    image_col, plane_col = st.columns([3, 2])
    image_slot, plane_slot, bars_slot = image_col.empty(), plane_col.empty(), plane_col.empty()
    tables, last, labels, started, shown = [], None, [], time.monotonic(), 0.0
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "recording.csv"
        try:
            with closing(run_video(video, options, csv_path)) as frames:
                for result, labels in frames:
                    tables.append(face_table(result, labels))
                    last = result
                    progress.progress(min((result.index + 1) / max(total, 1), 1.0),
                                      text=f"{name}: frame {result.index + 1} of {total}")
                    # Redraw a few times a second: Plotly re-renders are slower than the pipeline.
                    if time.monotonic() - shown > 0.5:
                        shown = time.monotonic()
                        faces = pd.concat(tables, ignore_index=True)
                        draw_frame(result, faces, labels, image_slot, plane_slot, bars_slot)
        except Exception as exc:  # the page outlives any pipeline failure; realtime's messages are one line
            st.error(f"{name}: {first_line(exc)}")
            return
        recording = csv_path.read_text(encoding="utf-8") if csv_path.is_file() else ""
    progress.progress(1.0, text=f"{name}: {len(tables)} frames in {time.monotonic() - started:.1f} s")
    for slot in (image_slot, plane_slot, bars_slot):
        slot.empty()
    faces = pd.concat(tables, ignore_index=True) if tables else face_table_empty(labels)
    st.session_state[RESULT_KEY] = {"video": name, "labels": labels, "faces": faces,
                                    "last": last, "csv": recording, "frames": len(tables)}


def face_table_empty(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=[*FACE_COLUMNS, *(f"p_{lab}" for lab in labels)])


def plane_and_bars(faces: pd.DataFrame, labels: list[str], frame_index: int):
    trail = faces[faces["frame"] > frame_index - TRAIL_FRAMES]
    current = faces[faces["frame"] == frame_index]
    return (charts.va_plane(trail, current),
            charts.probability_bars(labels, current.set_index("track_id")))


def draw_frame(result, faces, labels, image_slot, plane_slot, bars_slot) -> None:
    image = result.annotated if result.annotated is not None else result.image
    image_slot.image(image, channels="BGR", caption=f"frame {result.index}")
    plane, bars = plane_and_bars(faces, labels, result.index)
    plane_slot.plotly_chart(plane, key=f"live_plane_{result.index}")
    bars_slot.plotly_chart(bars, key=f"live_bars_{result.index}")


def show_result() -> None:
    result = st.session_state.get(RESULT_KEY)
    if not result:
        return
    labels, faces, last = result["labels"], result["faces"], result["last"]
    st.subheader(f"{result['video']}: {result['frames']} frames, {faces['frame'].nunique()} with a face, "
                 f"{faces['track_id'].nunique()} tracks")
    image_col, plane_col = st.columns([3, 2])
    if last is not None:
        image = last.annotated if last.annotated is not None else last.image
        image_col.image(image, channels="BGR", caption=f"frame {last.index}")
    # Tracks seen in the last TRAIL_FRAMES frames, each at its latest point; older ones have left.
    trail = faces[faces["frame"] > (faces["frame"].max() if len(faces) else 0) - TRAIL_FRAMES]
    current = trail.sort_values("frame").groupby("track_id").tail(1)
    plane_col.plotly_chart(charts.va_plane(trail, current), key="live_plane")
    plane_col.plotly_chart(charts.probability_bars(labels, current.set_index("track_id")), key="live_bars")
    if not result["csv"]:
        return
    name = f"{Path(result['video']).stem}.csv"
    st.download_button("Download recording (CSV)", result["csv"], file_name=name, mime="text/csv",
                       key="live_download")
    config = get_config()
    if config.dirs:
        save_cols = st.columns([2, 2, 1])
        target_dir = save_cols[0].selectbox("Save into", config.dirs, key="live_save_dir")
        file_name = save_cols[1].text_input("File name", name, key="live_save_name")
        if save_cols[2].button("Save recording", key="live_save"):
            try:
                path = save_recording(result["csv"], config.check(Path(target_dir) / Path(file_name).name))
                st.success(f"saved {path}; open it on the Session page")
            except (DashboardError, OSError) as exc:
                st.error(first_line(exc))


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
