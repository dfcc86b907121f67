"""Live page: a video (uploaded or under a scanned directory) or the browser's
webcam through realtime.Pipeline, with the plane and probability bars."""

from __future__ import annotations

import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from affect.errors import first_line
from dashboard import charts
from dashboard.common import display_path, get_config, pick_path
from dashboard.config import DEFAULT_MAX_VIDEO_SIDE, ENV_FACE_MODEL, DashboardConfig, DashboardError
from dashboard.data import (
    MODEL_SUFFIXES,
    VIDEO_SUFFIXES,
    find_models,
    find_videos,
    is_annotated_output,
    model_roots,
)
from dashboard.live import (
    FACE_COLUMNS,
    LiveOptions,
    check_frame_size,
    check_save_name,
    face_table,
    release_memory,
    run_video,
    save_recording,
    video_frame_count,
)
from inference.backends import backends_for

RESULT_KEY = "live_result"
TRAIL_FRAMES = 45  # about 1.5 s at 30 fps: enough to see direction, short enough to stay readable
MAX_FRAMES = 20_000  # per run: bounds what a session keeps (face rows, the CSV text)
SHOWN_SIDE = 960  # the last annotated frame is kept at most this large (JPEG), not the decoded frames
FACE_MODEL_HOW = (f'set face_model = "…/face_landmarker.task" in dashboard.toml, or start the dashboard '
                  f"with `-- --face-model PATH`, or set ${ENV_FACE_MODEL}")


def backend_names() -> list[str]:
    """"auto" and the backends that can run the page's models (.onnx) here: not
    TensorRT or torch (other files), nor providers this onnxruntime lacks."""
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
    face_model = config.settings.face_model if config.settings else None
    st.sidebar.caption("Face model: " + (Path(face_model).name + " (the face_model setting)" if face_model else
                                         "the user cache, or a one-time download (works offline once "
                                         "face_model is set in dashboard.toml)"))
    backend = st.sidebar.selectbox("Backend", backend_names(), key="live_backend")
    smoothing = st.sidebar.checkbox("Smoothing (EMA + One-Euro)", value=True, key="live_smoothing")
    max_frames = int(st.sidebar.number_input("Max frames", 1, MAX_FRAMES, 300, key="live_max_frames"))
    return LiveOptions(model, None if backend == "auto" else backend, smoothing, max_frames,
                       face_model=Path(face_model).expanduser() if face_model else None)


def render() -> None:
    st.title("Live")
    config = get_config()
    options = sidebar_options(config)
    videos = find_videos(config.existing_roots(), config.max_entries)
    plain = [v for v in videos if not is_annotated_output(v)]
    # With only realtime.cam's own output videos (boxes already drawn) on disk, offer an upload first.
    source = st.radio("Source", ["Video file", "Upload a video", "Webcam (browser)"], horizontal=True,
                      key="live_source", index=0 if plain else 1)
    if source == "Webcam (browser)":
        webcam(options)
    else:
        video = pick_video(config, videos) if source == "Video file" else uploaded_video()
        if video is not None and options is not None:
            if st.button("Process", type="primary", key="live_process"):
                max_side = config.settings.max_video_side if config.settings else DEFAULT_MAX_VIDEO_SIDE
                try:
                    if isinstance(video, Path):
                        process(video, options, max_side=max_side, shown=display_path(video, config))
                    else:
                        with private_copy(video) as path:
                            process(path, options, shown=upload_name(video.name), max_side=max_side)
                finally:
                    release_memory()  # the decoded frames are gone: give their pages back
    show_result()


def upload_name(name: str) -> str:
    """The visitor's file name as the page may show it (the folder never: it is a temporary one)."""
    name = Path(name).name
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def pick_video(config: DashboardConfig, videos) -> Path | None:
    path = pick_path("a video", videos, config, key="live_video",
                     empty_hint="No videos under the scanned directories; add a directory in the sidebar "
                                "or upload one.")
    if path is not None and is_annotated_output(path):
        st.caption(f"{path.name} has a recording beside it: it is probably realtime.cam's output, with "
                   "boxes already drawn. Pick or upload the original video for a clean run.")
    if videos and all(is_annotated_output(v) for v in videos):
        st.info("Only already-annotated videos (realtime.cam --video-out output) were found: upload the "
                "original, or start the dashboard with its folder, e.g. `-- runs recordings ../shared/videos`.")
    return path


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


def face_model_message(exc: BaseException, options: LiveOptions) -> str:
    """The face-model failure in the dashboard's own terms (its setting, not realtime.cam's flag)."""
    if options.face_model:
        return (f"the face_model setting ({options.face_model.name}) is not a usable face_landmarker.task: "
                f"{FACE_MODEL_HOW}")
    return f"no face model here and it could not be downloaded (offline?): {FACE_MODEL_HOW}"


def small_frame(image):
    """The frame as a JPEG at most SHOWN_SIDE px on its longest side: what the session keeps."""
    import cv2

    scale = SHOWN_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return jpeg.tobytes() if ok else None


def process(video: Path, options: LiveOptions, shown: str | None = None,
            max_side: int = DEFAULT_MAX_VIDEO_SIDE) -> None:
    name = shown or video.name
    st.session_state.pop(RESULT_KEY, None)  # one result per session: the old one goes first
    try:
        # The container by its magic bytes (no concat lists or playlists), then the frame size.
        total = min(video_frame_count(video, max_side, name) or options.max_frames, options.max_frames)
    except DashboardError as exc:
        st.error(str(exc))
        return
    from affect.face_model import FaceModelError

    progress = st.progress(0.0, text=f"{name}: starting")
    image_col, plane_col = st.columns([3, 2])
    image_slot, plane_slot, bars_slot = image_col.empty(), plane_col.empty(), plane_col.empty()
    rows, recent, last, labels, started, drawn = [], deque(maxlen=TRAIL_FRAMES), None, [], time.monotonic(), 0.0
    frames_done = 0
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "recording.csv"
        try:
            with closing(run_video(video, options, csv_path)) as frames:
                for result, labels in frames:
                    check_frame_size(result.image.shape[1], result.image.shape[0], max_side, name)
                    table = face_table(result, labels)
                    rows.extend(table.itertuples(index=False, name=None))
                    recent.append(table)
                    frames_done += 1
                    image = result.annotated if result.annotated is not None else result.image
                    last = (result.index, small_frame(image))  # not the decoded frame: it is released
                    progress.progress(min((result.index + 1) / max(total, 1), 1.0),
                                      text=f"{name}: frame {result.index + 1} of {total}")
                    # Redraw a few times a second: Plotly re-renders are slower than the pipeline.
                    if time.monotonic() - drawn > 0.5:
                        drawn = time.monotonic()
                        draw_frame(last, pd.concat(recent, ignore_index=True), labels, result.index,
                                   image_slot, plane_slot, bars_slot)
                    del result, image
        except FaceModelError as exc:
            st.error(f"{name}: {face_model_message(exc, options)}")
            return
        except DashboardError as exc:
            st.error(str(exc))
            return
        except Exception as exc:  # the page outlives any pipeline failure; realtime's messages are one line
            st.error(f"{name}: {first_line(exc)}")
            return
        recording = csv_path.read_text(encoding="utf-8") if csv_path.is_file() else ""
    progress.progress(1.0, text=f"{name}: {frames_done} frames in {time.monotonic() - started:.1f} s")
    for slot in (image_slot, plane_slot, bars_slot):
        slot.empty()
    columns = [*FACE_COLUMNS, *(f"p_{lab}" for lab in labels)]
    faces = pd.DataFrame(rows, columns=columns) if rows else face_table_empty(labels)
    st.session_state[RESULT_KEY] = {"video": name, "labels": labels, "faces": faces,
                                    "last": last, "csv": recording, "frames": frames_done}


def face_table_empty(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=[*FACE_COLUMNS, *(f"p_{lab}" for lab in labels)])


def plane_and_bars(faces: pd.DataFrame, labels: list[str], frame_index: int):
    trail = faces[faces["frame"] > frame_index - TRAIL_FRAMES]
    current = faces[faces["frame"] == frame_index]
    return (charts.va_plane(trail, current),
            charts.probability_bars(labels, current.set_index("track_id")))


def draw_frame(last, faces, labels, index, image_slot, plane_slot, bars_slot) -> None:
    if last[1] is not None:
        image_slot.image(last[1], caption=f"frame {last[0]}")
    plane, bars = plane_and_bars(faces, labels, index)
    plane_slot.plotly_chart(plane, key=f"live_plane_{index}")
    bars_slot.plotly_chart(bars, key=f"live_bars_{index}")


def show_result() -> None:
    result = st.session_state.get(RESULT_KEY)
    if not result:
        return
    labels, faces, last = result["labels"], result["faces"], result["last"]
    st.subheader(f"{result['video']}: {result['frames']} frames, {faces['frame'].nunique()} with a face, "
                 f"{faces['track_id'].nunique()} tracks")
    image_col, plane_col = st.columns([3, 2])
    if last is not None and last[1] is not None:
        image_col.image(last[1], caption=f"frame {last[0]}")
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
    save_form(result, name)


def save_form(result: dict, name: str) -> None:
    """Saving into the server's directories: only when the owner enabled it at launch, under a
    checked recording name, never replacing a file unless "Replace" is ticked."""
    config = get_config()
    if not (config.settings and config.settings.allow_save):
        st.caption("Saving into the server's folders is off (the owner enables it with `--allow-save` "
                   "after `--`, or allow_save = true in dashboard.toml): use the download button.")
        return
    if not config.dirs:
        return
    save_cols = st.columns([2, 2, 1, 1])
    target_dir = save_cols[0].selectbox("Save into", config.dirs, key="live_save_dir")
    file_name = save_cols[1].text_input("File name", name, key="live_save_name")
    overwrite = save_cols[2].checkbox("Replace an existing file", value=False, key="live_save_overwrite")
    if save_cols[3].button("Save recording", key="live_save"):
        try:
            checked_name = check_save_name(file_name)
            path = save_recording(result["csv"], config.check(Path(target_dir) / checked_name), overwrite)
            st.success(f"saved {display_path(path, config)}; open it on the Session page")
        except DashboardError as exc:
            st.error(str(exc))
        except OSError as exc:  # the reason, not the server's path
            st.error(f"{Path(file_name).name}: not saved ({exc.strerror or type(exc).__name__})")


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
    webcam_stream(options, lambda exc: face_model_message(exc, options))
