"""Issue 24, dashboard items 1–7: what a visitor (or a clumsy owner) can do to the
dashboard, and what it must do instead of reading outside the owner's directories,
writing where it was not asked to, filling the server's memory or showing a
traceback. Every bad input here is listed in tests/reliability/BAD_INPUTS_dashboard.md
with its expected one-line outcome; the browser checks of the same inputs are in
test_browser.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, realtime_pipeline_ready
from streamlit.testing.v1 import AppTest

from dashboard.config import DashboardError, owner_settings

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "streamlit_app.py"
CLIP = SHARED / "videos" / "short_hamilton_clip.mp4"
FACE_MODEL = SHARED / "models" / "face_landmarker.task"
SECRET = "TOPSECRET-do-not-show"
TIMEOUT = 180

needs_pipeline = pytest.mark.skipif(
    not (realtime_pipeline_ready() and CLIP.is_file() and FACE_MODEL.is_file()),
    reason="needs realtime.Pipeline and ../shared (clip + face_landmarker.task)")


@pytest.fixture
def site(tmp_path, recording_file, eval_dir, model_file, monkeypatch):
    """An owner's tree and, beside it, an `outside/` the owner did not choose to show."""
    shown, outside = tmp_path / "shown", tmp_path / "outside"
    for d in ("recordings", "runs", "models", "videos"):
        (shown / d).mkdir(parents=True)
    outside.mkdir()
    shutil.copy(recording_file, shown / "recordings" / "a.csv")
    shutil.copytree(eval_dir, shown / "runs" / "eval")
    shutil.copy(model_file, shown / "models" / "tiny.onnx")
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(str(shown / d) for d in
                                                                 ("runs", "recordings", "models", "videos")))
    monkeypatch.delenv("AFFECTCAM_DASHBOARD_CONFIG", raising=False)
    monkeypatch.setenv("AFFECTCAM_FACE_MODEL", str(FACE_MODEL))
    monkeypatch.chdir(tmp_path)  # no dashboard.toml from the repository
    return shown, outside


def owner_config(tmp_path: Path, monkeypatch, text: str) -> Path:
    path = tmp_path / "owner.toml"
    path.write_text(text)
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_CONFIG", str(path))
    return path


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page != "live":
        at.switch_page(f"dashboard/pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def one_liners(messages: list[str]) -> bool:
    return all("\n" not in m and "Traceback" not in m for m in messages)


# --- 1. compare reads only inside the allowed directories ----------------------------------


def _side_files_outside(shown: Path, outside: Path) -> Path:
    """A run whose run.json, config.yaml and bench.json are symlinks to the outside."""
    run = shown / "runs" / "eval"
    (outside / "run.json").write_text(json.dumps({"backbone": SECRET, "parameters": 123_456_789,
                                                  "train_seconds": 4242}))
    (outside / "config.yaml").write_text(f"model:\n  backbone: {SECRET}\n  input_size: 777\n")
    (outside / "bench.json").write_text(json.dumps({"latency_ms": 31337.0}))
    for name in ("run.json", "config.yaml", "bench.json"):
        (run / name).symlink_to(outside / name)
    return run


def test_compare_reads_no_side_file_outside_the_allowed_dirs(site):
    shown, outside = site
    run = _side_files_outside(shown, outside)
    at = open_page("metrics")
    at.multiselect(key="runs_selected").set_value([str(run)]).run()
    assert not at.exception
    shown_text = " ".join(m.value for m in at.markdown)
    assert SECRET not in shown_text and "31337" not in shown_text and "123.457" not in shown_text
    assert sorted(Path(m.split(":")[0]).name for m in errors(at)) == ["bench.json", "config.yaml", "run.json"]

    from affect.compare import compare
    from dashboard.config import DashboardConfig

    config = DashboardConfig([str(shown / "runs")])
    refused: list[str] = []
    markdown, csv_text = compare([run], allowed=config.allowed, refused=refused)
    for leaked in (SECRET, "123.457", "70.7", "31337", "777"):
        assert leaked not in markdown and leaked not in csv_text
    assert sorted(Path(line.split(":")[0]).name for line in refused) == ["bench.json", "config.yaml", "run.json"]
    assert all(line.endswith("outside the allowed directories; refused") for line in refused)


# --- 2. a concat list / playlist saved as .mp4 ---------------------------------------------


def _concat_list(shown: Path, outside: Path) -> Path:
    """An FFmpeg concat list named .mp4 inside an allowed dir, naming a video through a
    symlinked folder that points outside (OpenCV's FFmpeg plays it)."""
    shutil.copy(CLIP, outside / "private.mp4")
    (shown / "videos" / "door").symlink_to(outside, target_is_directory=True)
    evil = shown / "videos" / "evil.mp4"
    evil.write_text("ffconcat version 1.0\nfile 'door/private.mp4'\n")
    return evil


@pytest.mark.skipif(not CLIP.is_file(), reason="needs ../shared/videos")
def test_a_concat_list_saved_as_mp4_is_refused_before_ffmpeg_opens_it(site):
    shown, outside = site
    evil = _concat_list(shown, outside)
    cap = cv2.VideoCapture(str(evil))  # the attack is real: FFmpeg follows the list out
    assert cap.isOpened() and cap.read()[0]
    cap.release()
    from dashboard.live import video_container, video_frame_count

    with pytest.raises(DashboardError, match="concat list, not a video file; refused"):
        video_frame_count(evil)
    playlist = shown / "videos" / "list.mp4"
    playlist.write_text("#EXTM3U\n#EXTINF:1,\ndoor/private.mp4\n")
    with pytest.raises(DashboardError, match="playlist or FFmpeg concat list"):
        video_container(playlist)
    text = shown / "videos" / "notes.mp4"
    text.write_text("just some text, long enough to have twelve bytes\n")
    with pytest.raises(DashboardError, match="not a video container"):
        video_container(text)
    assert video_container(CLIP) == "MP4/MOV"

    at = open_page("live")
    at.text_input(key="live_video_typed").input(str(evil)).run()
    at.button(key="live_process").click().run()
    assert not at.exception
    [message] = errors(at)
    assert "evil.mp4" in message and "concat list" in message and one_liners([message])
    assert "live_result" not in at.session_state and not at.image


# --- 3. saving is the owner's choice, under checked names -----------------------------------


def _processed(frames: int = 3) -> AppTest:
    at = open_page("live")
    at.sidebar.number_input(key="live_max_frames").set_value(frames).run()
    at.selectbox(key="live_video").set_value(str(CLIP)).run()
    at.button(key="live_process").click().run()
    assert not at.exception and not errors(at), errors(at)
    return at


@needs_pipeline
def test_saving_is_off_unless_the_owner_enables_it(site, monkeypatch):
    shown, _ = site
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(
        [str(shown / "recordings"), str(shown / "models"), str(CLIP.parent)]))
    at = _processed()
    assert at.session_state["live_result"]["csv"]
    assert not [b for b in at.button if b.key == "live_save"]
    assert any("Saving into the server's folders is off" in c.value for c in at.caption)


@needs_pipeline
def test_save_names_are_checked_and_nothing_is_replaced_silently(site, tmp_path, monkeypatch):
    shown, _ = site
    recordings = shown / "recordings"
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(
        [str(recordings), str(shown / "models"), str(CLIP.parent)]))
    owner_config(tmp_path, monkeypatch, "allow_save = true\n")
    at = _processed(frames=90)  # faces from about frame 82: a recording with rows
    before = sorted(p.name for p in recordings.iterdir())
    original = (recordings / "a.csv").read_bytes()

    def save(name: str, overwrite: bool = False) -> list[str]:
        at.selectbox(key="live_save_dir").set_value(str(recordings)).run()
        at.text_input(key="live_save_name").input(name).run()
        at.checkbox(key="live_save_overwrite").set_value(overwrite).run()
        at.button(key="live_save").click().run()
        assert not at.exception
        return errors(at)

    for name, problem in (("evil.onnx", "saved as .csv or .jsonl"), (".hidden.csv", "hidden file names"),
                          ("", "give a file name"), ("   ", "give a file name"),
                          ("../x.csv", "without folders"), ("sub/x.csv", "without folders"),
                          ("a\x00b.csv", "control characters"), ("x.csv\n", None), ("a.csv", "exists already")):
        found = save(name)
        if problem is None:  # a trailing newline is stripped like blanks: a valid name
            continue
        [message] = found
        assert problem in message and one_liners([message]), (name, message)
        assert str(tmp_path) not in message  # no server paths
    (recordings / "x.csv").unlink()
    assert sorted(p.name for p in recordings.iterdir()) == before  # nothing written, nothing hidden left
    assert (recordings / "a.csv").read_bytes() == original
    assert save("a.csv", overwrite=True) == []
    assert (recordings / "a.csv").read_text() == at.session_state["live_result"]["csv"]
    # named as the owner named the directory (the sidebar shows it too), nothing the server resolved
    assert [s.value for s in at.success] == [f"saved {recordings / 'a.csv'}; open it on the Session page"]
    assert save("b.jsonl") == []
    from affect.recording import read_recording

    saved = read_recording(recordings / "b.jsonl")
    assert len(saved) == len(read_recording(recordings / "a.csv")) > 0


# --- 4. memory: frame size limited, the session keeps no decoded frames -------------------------


def write_video(path: Path, width: int, height: int, frames: int = 2, fps: int = 2) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    image = np.full((height, width, 3), 90, np.uint8)
    for _ in range(frames):
        writer.write(image)
    writer.release()
    return path


def test_a_video_larger_than_the_limit_is_refused_before_a_frame_is_decoded(site):
    shown, _ = site
    from dashboard.live import video_frame_count

    big = write_video(shown / "videos" / "eightk.mp4", 7680, 4320)
    assert big.stat().st_size < 2_000_000  # a small file…
    with pytest.raises(DashboardError, match=r"7680×4320 frames are larger than the dashboard's limit of 3840"):
        video_frame_count(big)  # …whose frames would cost 100 MB each
    assert video_frame_count(big, max_side=8000) == 2
    assert owner_settings(["--max-video-side", "8000"], {}).max_video_side == 8000


@needs_pipeline
def test_the_session_keeps_a_small_jpeg_not_the_decoded_frames(site, monkeypatch):
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join([str(site[0] / "models"), str(CLIP.parent)]))
    at = _processed()
    result = at.session_state["live_result"]
    index, jpeg = result["last"]
    assert index == 2 and isinstance(jpeg, bytes) and len(jpeg) < 500_000
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert max(image.shape[:2]) <= 960
    assert not any(isinstance(v, np.ndarray) and v.size > 1_000_000 for v in result.values())


# --- 5. no tracebacks ---------------------------------------------------------------------------


def test_a_nul_byte_in_a_typed_path_or_the_directory_list_is_one_line(site):
    shown, _ = site
    at = open_page("session")
    at.text_input(key="session_file_typed").input(str(shown / "recordings" / "a\x00.csv")).run()
    assert not at.exception
    [message] = errors(at)
    assert "NUL byte; refused" in message and "\\x00" in message and "\x00" not in message
    at.text_input(key="session_file_typed").input("").run()
    at.sidebar.text_area(key="dirs_text").input(f"{shown / 'recordings'}\nrec\x00ordings").run()
    assert not at.exception
    [refusal] = [e.value for e in at.sidebar.error]
    assert refusal.startswith("rec\\x00ordings: not inside") and at.dataframe  # the good dir still shows


def test_a_recording_with_an_infinite_or_huge_track_id_is_one_line(site):
    shown, _ = site
    lines = (shown / "recordings" / "a.csv").read_text().splitlines()
    col = lines[0].split(",").index("track_id")
    for name, value in (("inf.csv", "inf"), ("huge.csv", "1e30")):
        rows = [line.split(",") for line in lines[1:]]
        rows[0][col] = value
        (shown / "recordings" / name).write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
        at = open_page("session")
        at.text_input(key="session_file_typed").input(str(shown / "recordings" / name)).run()
        assert not at.exception
        messages = errors(at) + [w.value for w in at.warning]
        assert len(messages) == 1 and name in messages[0] and one_liners(messages), messages


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_deeply_nested_metrics_and_bench_json_are_one_line(site, capsys):
    shown, _ = site
    deep = shown / "runs" / "a_deep"
    deep.mkdir()
    (deep / "metrics.json").write_text(_nested(100_000))
    at = open_page("metrics")  # a_deep sorts first: the page opens on it
    assert not at.exception
    [message] = errors(at)
    assert message == f"{deep / 'metrics.json'}: nested too deeply to be metrics"
    from train.__main__ import main as train_main

    assert train_main(["compare", str(shown / "runs" / "eval"), str(deep)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and err.count("\n") == 1 and "Traceback" not in err
    # bench.json beside a run (latency) and beside a model (the Model page's table)
    (shown / "runs" / "eval" / "bench.json").write_text(_nested(100_000))
    assert train_main(["compare", str(shown / "runs" / "eval"), str(shown / "runs" / "eval")]) == 2
    err = capsys.readouterr().err
    assert "bench.json: JSON nested too deeply" in err and err.count("\n") == 1
    (shown / "models" / "bench.json").write_text(_nested(100_000))
    at = open_page("model")
    at.selectbox(key="model_file").set_value(str(shown / "models" / "tiny.onnx")).run()
    assert not at.exception and not errors(at)


def test_nan_in_a_confusion_matrix_is_a_warning_not_a_traceback(site):
    shown, _ = site
    metrics_path = shown / "runs" / "eval" / "metrics.json"
    text = metrics_path.read_text()
    metrics = json.loads(text)
    metrics["expression"]["confusion"][0][0] = float("nan")
    metrics_path.write_text(json.dumps(metrics))  # json writes NaN, as Python's json reads it
    at = open_page("metrics")
    assert not at.exception
    assert any("non-numbers" in w.value for w in at.warning)
    at.radio(key="run0_confusion_mode").set_value("normalised").run()
    assert not at.exception


@pytest.mark.parametrize("text, problem", [
    ("dirs = [runs\n", "not a readable TOML dashboard config"),
    ("dirs = 'runs'\n", "dirs must be a list"),
    ("max_entries = 'abc'\n", "max_entries must be a positive whole number"),
    ("allow_save = 'yes'\n", "allow_save must be true or false"),
    ("dirz = ['runs']\n", "unknown setting 'dirz'"),
])
def test_a_malformed_dashboard_toml_refuses_to_start(site, tmp_path, monkeypatch, text, problem):
    config = owner_config(tmp_path, monkeypatch, text)
    with pytest.raises(DashboardError, match=problem):
        owner_settings([], dict(os.environ))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # in a test: one line, page stopped
    assert not at.exception and len(at.error) == 1 and problem in at.error[0].value and not at.title
    proc = subprocess.run([sys.executable, "-m", "dashboard"], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and str(config) in proc.stderr and problem in proc.stderr


@pytest.mark.parametrize("argv, problem", [
    (["--max-entries", "abc"], "--max-entries abc: not a positive whole number"),
    (["--max-entries", "0"], "--max-entries 0: not a positive whole number"),
    (["--max-video-side", "-5"], "--max-video-side -5: not a positive whole number"),
])
def test_bad_launch_options_are_one_line_not_a_blank_page(site, argv, problem):
    with pytest.raises(DashboardError, match=problem):
        owner_settings(argv, {})
    proc = subprocess.run([sys.executable, "-m", "dashboard", *argv], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stderr == f"python -m dashboard: {problem}\n"


def test_python_m_dashboard_serves_with_good_options(site, tmp_path):
    """The checked launcher starts streamlit with the options it checked (and says so)."""
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "launch.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dashboard", "--server.port", str(port),
                                 "--server.headless", "true", "--server.fileWatcherType", "none", "--",
                                 "runs", "--allow-save"], cwd=site[0], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline, healthy = time.monotonic() + 60, False
        while not healthy and proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    healthy = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert healthy and proc.poll() is None, log.read_text()[-500:]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "dashboard: serving runs (from command line); saving recordings on" in log.read_text()


# --- 6. one big directory does not starve the others ----------------------------------------


def test_a_huge_first_dir_does_not_hide_the_other_dirs_or_the_packaged_model(site, tmp_path, monkeypatch):
    shown, _ = site
    from dashboard.data import find_models, find_recordings, model_roots

    big = tmp_path / "big"
    big.mkdir()
    for i in range(50_000):  # empty files: a second or two
        os.close(os.open(big / f"{i:05d}.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    roots = [big, shown / "recordings", shown / "models"]
    recordings = find_recordings(roots, max_entries=20_000)
    assert recordings.truncated and shown / "recordings" / "a.csv" in recordings
    models = find_models(roots, max_entries=20_000)
    packaged = sorted(model_roots()[0].glob("*.onnx"))
    assert packaged and all(p in models for p in packaged) and shown / "models" / "tiny.onnx" in models
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(map(str, roots)))
    at = open_page("model")
    options = at.selectbox(key="model_file").options
    assert all(any(o.endswith(p.name) for o in options) for p in packaged)


# --- 7. defaults ------------------------------------------------------------------------------


def test_the_session_page_opens_on_a_recording_not_a_compare_table(site, second_eval_dir):
    shown, _ = site
    from affect.compare import compare

    compare([shown / "runs" / "eval", second_eval_dir], out_dir=shown / "runs" / "compare")
    assert (shown / "runs" / "compare" / "compare.csv").is_file()
    at = open_page("session")
    options = at.selectbox(key="session_file").options
    assert options == [str(shown / "recordings" / "a.csv")]  # no compare.csv, predictions.csv, history.csv
    assert not errors(at) and at.dataframe


@pytest.mark.skipif(not CLIP.is_file(), reason="needs ../shared/videos")
def test_the_live_page_offers_the_plain_video_before_an_annotated_output(site, monkeypatch):
    shown, _ = site
    # README's first command (realtime.cam --csv recordings/demo.csv --video-out recordings/demo.mp4)
    # leaves an annotated video beside its recording: alone, the page offers an upload first.
    shutil.copy(CLIP, shown / "recordings" / "a.mp4")
    at = open_page("live")
    assert at.radio(key="live_source").value == "Upload a video"
    at.radio(key="live_source").set_value("Video file").run()
    assert at.selectbox(key="live_video").options == [str(shown / "recordings" / "a.mp4")]
    assert any("Only already-annotated videos" in i.value for i in at.info)
    assert any("boxes already drawn" in c.value for c in at.caption)
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(
        [str(shown / "recordings"), str(shown / "models"), str(CLIP.parent)]))
    at = open_page("live")
    assert at.radio(key="live_source").value == "Video file"
    box = at.selectbox(key="live_video")
    assert box.options == [str(CLIP), str(shown / "recordings" / "a.mp4")] and box.value == str(CLIP)


def test_the_model_page_refuses_a_checkpoint_in_one_line(site):
    shown, _ = site
    pt = shown / "models" / "checkpoint.pt"
    pt.write_bytes(b"PK\x03\x04 torch zip" * 20)
    at = open_page("model")
    at.text_input(key="model_file_typed").input(str(pt)).run()
    assert not at.exception
    [message] = errors(at)
    assert "not an ONNX model" in message and "python -m export onnx checkpoint.pt" in message
    assert "DecodeError" not in message and one_liners([message])


def test_the_model_page_hint_command_works_as_written(site, monkeypatch):
    shown, _ = site
    monkeypatch.chdir(shown)  # the owner's usual launch: relative directories, from the project folder
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(["runs", "recordings", "models"]))
    at = open_page("model")
    at.selectbox(key="model_file").set_value("models/tiny.onnx").run()
    [hint] = [i.value for i in at.info if "python -m export bench" in i.value]
    command = hint.split("`")[1]
    assert command == "python -m export bench models/tiny.onnx --out models/bench"
    proc = subprocess.run(command, shell=True, cwd=shown, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:"
                                                                              f"{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    at = open_page("model")
    at.selectbox(key="model_file").set_value("models/tiny.onnx").run()
    assert not errors(at), errors(at)
    assert any("backend" in d.value.columns for d in at.dataframe)


@needs_pipeline
def test_the_live_page_runs_offline_with_the_face_model_setting(site, tmp_path, monkeypatch):
    monkeypatch.delenv("AFFECTCAM_FACE_MODEL")
    monkeypatch.setenv("AFFECTCAM_CACHE", str(tmp_path / "empty_cache"))  # no cached copy either
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join([str(site[0] / "models"), str(CLIP.parent)]))
    owner_config(tmp_path, monkeypatch, f'face_model = "{tmp_path / "missing.task"}"\n')
    at = open_page("live")
    at.sidebar.number_input(key="live_max_frames").set_value(3).run()
    at.button(key="live_process").click().run()
    [message] = errors(at)
    assert "face_model setting (missing.task)" in message and "dashboard.toml" in message
    assert not message.startswith("--face-model") and one_liners([message])
    owner_config(tmp_path, monkeypatch, f'face_model = "{FACE_MODEL}"\n')
    at = _processed()
    assert at.session_state["live_result"]["frames"] == 3


def test_track_colours_do_not_repeat_across_tracks():
    from dashboard.charts import track_colour

    colours = [track_colour(i) for i in range(200)]
    assert len(set(colours)) == 200
    try:
        from realtime.overlay import track_color
    except ImportError:
        return
    b, g, r = track_color(3)
    assert track_colour(3) == f"#{r:02X}{g:02X}{b:02X}"  # the first ones match the overlay's boxes


def test_time_per_quadrant_says_it_sums_face_seconds(site):
    at = open_page("session")
    assert any(h.value == "Time per quadrant (face-seconds)" for h in at.subheader)
    assert any("summed over faces" in c.value for c in at.caption)


def test_no_empty_valence_arousal_charts_and_no_best_across_datasets(site, capsys):
    shown, _ = site
    fer = shown / "runs" / "fer"
    shutil.copytree(shown / "runs" / "eval", fer)
    metrics = json.loads((fer / "metrics.json").read_text())
    metrics.pop("valence", None)
    metrics.pop("arousal", None)
    metrics["dataset"] = "fer2013 PublicTest"
    (fer / "metrics.json").write_text(json.dumps(metrics))
    import pandas as pd

    preds = pd.read_csv(fer / "predictions.csv")
    preds[[c for c in preds.columns if "valence" in c or "arousal" in c]] = np.nan
    preds.to_csv(fer / "predictions.csv", index=False)
    at = open_page("metrics")
    at.multiselect(key="runs_selected").set_value([str(fer)]).run()
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert not any("valence" in str(t).lower() or "arousal" in str(t).lower() for t in titles)
    assert any("no valence/arousal labels" in c.value for c in at.caption)
    at.multiselect(key="runs_selected").set_value([str(shown / "runs" / "eval"), str(fer)]).run()
    assert not at.exception
    compare_md = " ".join(m.value for m in at.markdown)
    assert "**" not in compare_md.replace("**Note:**", "") and "different datasets" in compare_md
    from train.__main__ import main as train_main

    assert train_main(["compare", str(shown / "runs" / "eval"), str(fer)]) == 0
    out = capsys.readouterr().out
    assert "| metric |" in out and "**" not in out.replace("**Note:**", "")
    assert train_main(["compare", str(shown / "runs" / "eval"), str(shown / "runs" / "eval")]) == 0
    assert "**" in capsys.readouterr().out  # one dataset: the best is still bold


def test_every_listed_test_exists():
    """tests/reliability/BAD_INPUTS_dashboard.md names, for each bad input, the test that tries it."""
    import re

    table = (REPO / "tests" / "reliability" / "BAD_INPUTS_dashboard.md").read_text()
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", table))  # not the module names
    source = " ".join(p.read_text() for p in (REPO / "tests" / "dashboard").glob("test_*.py"))
    defined = set(re.findall(r"^def (test_[a-z0-9_]+)\(", source, flags=re.M))
    assert len(named) >= 30 and named <= defined, sorted(named - defined)
