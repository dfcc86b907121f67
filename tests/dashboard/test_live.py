"""The Live page and the webcam bridge, on the shared clip through realtime.Pipeline."""

from __future__ import annotations

import io
import json
import os
import sys

import pandas as pd
import pytest
from conftest import SHARED, realtime_pipeline_ready
from streamlit.testing.v1 import AppTest
from test_pages import APP, TIMEOUT, arr, errors

from dashboard.charts import track_colour

CLIP = SHARED / "videos" / "short_hamilton_clip.mp4"
FACE_MODEL = SHARED / "models" / "face_landmarker.task"
LIVE_FRAMES = 100  # faces start at about frame 82

needs_pipeline = pytest.mark.skipif(
    not (realtime_pipeline_ready() and CLIP.is_file() and FACE_MODEL.is_file()),
    reason="needs realtime.Pipeline and ../shared (clip + face_landmarker.task)")


def test_the_live_page_offers_only_backends_that_run_its_models():
    from dashboard.live_page import backend_names
    from realtime.backends import backends_for

    names = backend_names()
    assert names == ["auto", *backends_for(".onnx")]
    assert "torch" not in names and "tensorrt" not in names  # the page lists .onnx files only


@pytest.fixture
def live(workspace, model_file, monkeypatch):
    return open_live(workspace, model_file, monkeypatch)


def open_live(workspace, model_file, monkeypatch) -> AppTest:
    dirs = [workspace / "runs", workspace / "recordings", workspace / "models", workspace / "videos", CLIP.parent]
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(map(str, dirs)))
    monkeypatch.setenv("AFFECTCAM_FACE_MODEL", str(FACE_MODEL))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    at.sidebar.selectbox(key="live_model").set_value(str(model_file)).run()
    at.sidebar.number_input(key="live_max_frames").set_value(LIVE_FRAMES).run()
    return at


@needs_pipeline
def test_live_page_runs_a_video_through_the_pipeline_and_plots_each_track(live):
    at = live
    at.selectbox(key="live_video").set_value(str(CLIP)).run()
    at.button(key="live_process").click().run()
    assert not at.exception and not errors(at), errors(at)
    result = at.session_state["live_result"]
    assert result["frames"] == LIVE_FRAMES
    recording = pd.read_csv(io.StringIO(result["csv"]))  # written by realtime's own CSV sink
    assert len(recording) > 0 and recording["frame"].max() < LIVE_FRAMES
    plane = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if "Valence" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    recent = recording[recording["frame"] > recording["frame"].max() - 45]  # the page's trail window
    latest = recent.sort_values("frame").groupby("track_id").tail(1)
    now = {t["name"]: t for t in plane["data"] if str(t.get("name", "")).endswith(" now")}
    assert set(now) == {f"track {t} now" for t in latest["track_id"]}
    for _, row in latest.iterrows():
        trace = now[f"track {row['track_id']} now"]
        # The CSV keeps 4 decimals; the plane has the pipeline's floats.
        assert arr(trace["x"])[0] == pytest.approx(row["valence"], abs=1e-4)
        assert arr(trace["y"])[0] == pytest.approx(row["arousal"], abs=1e-4)
    trails = [t for t in plane["data"] if str(t.get("name", "")).startswith("track ") and " now" not in t["name"]]
    assert trails
    for trace in trails:  # each track's trail in its own colour, the same as its current point
        track_id = int(trace["name"].split()[1])
        assert trace["line"]["color"] == track_colour(track_id) == now[f"track {track_id} now"]["marker"]["color"]
    assert len({t["line"]["color"] for t in trails}) == len(trails)
    assert [c for img in at.image for c in img.captions] == [f"frame {LIVE_FRAMES - 1}"]  # the annotated frame
    bars = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(b["layout"]["title"]["text"] == "Expression probabilities" for b in bars)


@needs_pipeline
def test_live_page_saves_the_recording_for_the_session_page(workspace, model_file, monkeypatch, tmp_path):
    (tmp_path / "owner.toml").write_text("allow_save = true\n")  # the owner's launch option
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_CONFIG", str(tmp_path / "owner.toml"))
    at = open_live(workspace, model_file, monkeypatch)
    at.selectbox(key="live_video").set_value(str(CLIP)).run()
    at.button(key="live_process").click().run()
    at.selectbox(key="live_save_dir").set_value(str(workspace / "recordings")).run()
    at.text_input(key="live_save_name").input("from_live.csv").run()
    at.button(key="live_save").click().run()
    saved = workspace / "recordings" / "from_live.csv"
    try:
        assert not errors(at), errors(at)
        assert saved.read_text() == at.session_state["live_result"]["csv"]
    finally:
        saved.unlink(missing_ok=True)


def test_live_page_says_when_a_video_cannot_be_decoded(live, workspace):
    bad = workspace / "videos" / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    try:
        at = live
        at.text_input(key="live_video_typed").input(str(bad)).run()
        at.button(key="live_process").click().run()
        assert not at.exception
        [message] = errors(at)
        assert "broken.mp4" in message and "not a video container" in message
    finally:
        bad.unlink()


def test_webcam_without_streamlit_webrtc_says_how_to_get_it(live, monkeypatch):
    monkeypatch.setitem(sys.modules, "streamlit_webrtc", None)  # import fails as if not installed
    at = live
    at.radio(key="live_source").set_value("Webcam (browser)").run()
    assert not at.exception
    assert any("streamlit-webrtc" in i.value for i in at.info)


@needs_pipeline
def test_webcam_bridge_turns_each_pushed_frame_into_one_result(model_file):
    import cv2

    from dashboard.live import LiveOptions
    from dashboard.webcam import FrameStepper

    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < 102:
        ok, image = cap.read()
        assert ok
        frames.append(image)
    cap.release()
    stepper = FrameStepper(LiveOptions(model=model_file, face_model=FACE_MODEL))
    try:
        # frames 82-101: one shot (the cut is at 82; YuNet also finds the audience of the shot before)
        results = [stepper.step(image) for image in frames[82:102]]
    finally:
        stepper.close()
    assert [r.index for r in results] == list(range(20))
    assert all(b.t_ms > a.t_ms for a, b in zip(results, results[1:], strict=False))
    with_face = [r for r in results if r.faces]
    assert len(with_face) >= 15
    assert len({f.track_id for r in with_face for f in r.faces}) == 1  # one continuous shot, one ID
    assert all(r.annotated is not None for r in results)
    faces = stepper.faces()
    assert len(faces) == sum(len(r.faces) for r in results)

