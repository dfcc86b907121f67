"""Corpus mode (`python -m realtime.batch`) on short clips cut from the shared video, with
the packaged model and the real MediaPipe face model: failures isolated, reruns resumed,
a kill mid-corpus recovered, manifest metadata carried, Ray and local runs equal."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest

from inference.backends import THREADS_ENV
from realtime.batch import _pipeline_options
from realtime.batch import get_args_parser as batch_parser
from realtime.batch import main as batch_main
from realtime.cam import add_pipeline_arguments, options_from_args
from realtime.cam import get_args_parser as cam_parser
from realtime.corpus.inputs import collect_inputs, session_key
from realtime.corpus.runners import CV_THREADS_ENV, WorkerSettings, default_workers, worker_settings
from realtime.corpus.video import DONE, RECORDING, SESSIONS, SUMMARY, camera_args
from realtime.pipeline import DEFAULT_THREADS

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "realtime" / "models" / "affectcam_default.int8.onnx"
CLIP_FRAMES = 20
STARTS = {"a": 90, "b": 130, "c": 170}  # the shared clip has faces from about frame 82


def _cut(frames: list, start: int, path: Path) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for image in frames[start:start + CLIP_FRAMES]:
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory, hamilton_clip) -> dict[str, Path]:
    """Three 20-frame clips of the shared video, and a corrupt one (an MP4 cut short)."""
    cap = cv2.VideoCapture(str(hamilton_clip))
    frames = []
    while len(frames) < max(STARTS.values()) + CLIP_FRAMES:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    root = tmp_path_factory.mktemp("clips")
    out = {name: _cut(frames, start, root / f"{name}.mp4") for name, start in STARTS.items()}
    out["corrupt"] = root / "corrupt.mp4"
    out["corrupt"].write_bytes(out["a"].read_bytes()[:3000])
    return out


@pytest.fixture
def common(face_model_path) -> list[str]:
    return ["--model", str(MODEL), "--face-model", str(face_model_path), "--no-progress"]


def _folder(tmp_path: Path, clips: dict[str, Path], names: list[str]) -> Path:
    folder = tmp_path / "videos"
    (folder / "day2").mkdir(parents=True)
    for i, name in enumerate(names):
        target = folder / ("day2" if i == 1 else "") / clips[name].name  # one in a sub-folder
        target.write_bytes(clips[name].read_bytes())
    return folder


def _sessions(out: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in (out / SESSIONS).glob(f"*/{DONE}")}


def _failure_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("affectcam: failed:")]


def test_a_corrupt_video_is_one_failure_line_and_the_rerun_skips_the_done_and_retries_it(
        tmp_path, clips, common, capsys):
    folder = _folder(tmp_path, clips, ["a", "b", "corrupt"])
    out = tmp_path / "out"
    assert batch_main([str(folder), "-o", str(out), "--workers", "2", *common]) == 1
    err = capsys.readouterr().err
    failures = _failure_lines(err)
    assert len(failures) == 1 and "corrupt.mp4" in failures[0], err
    sessions = _sessions(out)
    assert len(sessions) == 2
    table = pd.read_parquet(out / "corpus.parquet")
    assert list(table["status"]) == ["done", "failed", "done"]  # path order: a, corrupt, day2/b
    for session in sessions.values():
        recording = pd.read_csv(session / RECORDING)
        assert len(recording) > 0 and set(recording["frame"]) <= set(range(CLIP_FRAMES))
    before = {key: (s / DONE).stat().st_mtime_ns for key, s in sessions.items()}

    # The corrupt file is replaced by a good one: the rerun skips the two done and reads it.
    (folder / "corrupt.mp4").write_bytes(clips["c"].read_bytes())
    assert batch_main([str(folder), "-o", str(out), "--workers", "2", *common]) == 0
    captured = capsys.readouterr()
    assert "1 videos read, 0 failed, 2 skipped" in captured.out
    assert not _failure_lines(captured.err)
    after = _sessions(out)
    assert len(after) == 3
    assert {key: (after[key] / DONE).stat().st_mtime_ns for key in before} == before  # untouched
    table = pd.read_parquet(out / "corpus.parquet")
    assert list(table["status"]) == ["done", "done", "done"]
    assert (table["frames"] == CLIP_FRAMES).all()


def test_a_kill_mid_corpus_then_a_rerun_gives_the_outputs_of_an_uninterrupted_run(tmp_path, clips, common):
    folder = _folder(tmp_path, clips, ["a", "b", "c"])
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert batch_main([str(folder), "-o", str(whole), "--workers", "1", *common]) == 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "realtime.batch", str(folder), "-o", str(killed),
                             "--workers", "1", *common], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _sessions(killed) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    helpers = _descendants(proc.pid)  # the forkserver and the worker
    proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
    proc.wait(timeout=30)
    assert 1 <= len(_sessions(killed)) < 3, "the kill did not land mid-corpus"
    assert helpers, "no worker process was seen"
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in helpers if Path(f"/proc/{pid}").exists()], "workers outlived the killed command"

    assert batch_main([str(folder), "-o", str(killed), "--workers", "1", *common]) == 0
    assert (killed / "corpus.csv").read_text() == (whole / "corpus.csv").read_text()
    assert pd.read_parquet(killed / "corpus.parquet").equals(pd.read_parquet(whole / "corpus.parquet"))
    for key, session in _sessions(whole).items():
        assert (killed / SESSIONS / key / RECORDING).read_bytes() == (session / RECORDING).read_bytes()
    leftovers = [p.name for p in (killed / SESSIONS).iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the killed run's partial folder was removed


def test_manifest_metadata_lands_in_the_corpus_table(tmp_path, clips, common):
    manifest = tmp_path / "manifest.csv"
    rel = os.path.relpath(clips["a"], tmp_path)
    manifest.write_text(f"path,participant,condition,age\n{rel},P01,control,31\n{clips['b']},P02,stress,\n"
                        f"missing.mp4,P03,control,40\n")
    out = tmp_path / "out"
    assert batch_main([str(manifest), "-o", str(out), "--workers", "1", *common]) == 1  # missing.mp4 fails
    table = pd.read_parquet(out / "corpus.parquet")
    assert list(table.columns[:4]) == ["participant", "condition", "age", "video"]
    assert list(table["participant"]) == ["P01", "P02", "P03"]
    assert list(table["condition"]) == ["control", "stress", "control"]
    assert table["age"].iloc[0] == 31 and pd.isna(table["age"].iloc[1])
    assert list(table["status"]) == ["done", "done", "failed"]
    assert "missing.mp4" in table["error"].iloc[2]
    done = table[table["status"] == "done"]
    shares = done[[c for c in table.columns if c.startswith("share_")]]
    expressions = [c for c in shares.columns if c[6:7].isupper()]  # share_<Label>, not quadrants
    assert ((shares[expressions].sum(axis=1) - 1).abs() < 1e-9).all()
    assert (done["frames_with_face"] > 0).all() and done["valence_mean"].between(-1, 1).all()
    summary = (out / SESSIONS / table["session"].iloc[0] / SUMMARY).read_text()
    assert '"participant": "P01"' in summary
    assert pd.read_csv(out / "corpus.csv")["participant"].tolist() == ["P01", "P02", "P03"]


def test_same_named_videos_in_different_folders_get_their_own_sessions(tmp_path, clips):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "interview.mp4").write_bytes(clips["a"].read_bytes())
    videos = collect_inputs([str(tmp_path / "one"), str(tmp_path / "two")])
    assert len({v.key for v in videos}) == 2
    assert all(v.key.startswith("interview-") for v in videos)
    assert session_key(tmp_path / "one" / "interview.mp4") == videos[0].key  # stable across runs


def test_changed_options_redo_the_videos_and_write_what_they_ask_for(tmp_path, clips, common, capsys):
    folder = _folder(tmp_path, clips, ["a"])
    out = tmp_path / "out"
    assert batch_main([str(folder), "-o", str(out), "--workers", "1", *common]) == 0
    capsys.readouterr()
    assert batch_main([str(folder), "-o", str(out), "--workers", "1", "--max-frames", "5", "--write-jsonl",
                       "--write-video", *common]) == 0
    assert "1 videos read, 0 failed, 0 skipped" in capsys.readouterr().out
    assert pd.read_parquet(out / "corpus.parquet")["frames"].tolist() == [5]
    session = next(iter(_sessions(out).values()))
    assert sorted(p.name for p in session.iterdir()) == ["annotated.mp4", DONE, RECORDING, "recording.jsonl", SUMMARY]
    assert len(pd.read_json(session / "recording.jsonl", lines=True)) == len(pd.read_csv(session / RECORDING))
    cap = cv2.VideoCapture(str(session / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


def test_an_option_out_of_range_is_one_line_before_anything_runs(tmp_path, clips, common, capsys):
    folder = _folder(tmp_path, clips, ["a"])
    assert batch_main([str(folder), "-o", str(tmp_path / "out"), "--every", "0", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["affectcam: error: --every 0: must be a whole number of at least 1"], err
    assert not (tmp_path / "out").exists()


def _worker_ran(out: Path) -> list[dict]:
    """What each worker says it ran a video with (summary.json's run.worker)."""
    return [json.loads((s / SUMMARY).read_text(encoding="utf-8"))["run"]["worker"]
            for s in sorted(_sessions(out).values())]


def test_each_of_several_workers_runs_on_one_core_and_one_worker_alone_overlaps(
        tmp_path, clips, common, capsys, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv(CV_THREADS_ENV, raising=False)
    folder = _folder(tmp_path, clips, ["a", "b"])
    few = ["--max-frames", "5"]
    several, alone = tmp_path / "several", tmp_path / "alone"
    assert batch_main([str(folder), "-o", str(several), "--workers", "2", *few, *common]) == 0
    assert "per worker: sequential stages (one thread), 1 inference thread(s), 1 OpenCV thread(s)" \
        in capsys.readouterr().out
    assert _worker_ran(several) == [{"stages": "sequential", "inference_threads": 1, "opencv_threads": 1}] * 2

    # The per-worker defaults change how a video is read, not what is written: one worker skips them.
    assert batch_main([str(folder), "-o", str(several), "--workers", "1", *few, *common]) == 0
    assert "0 videos read, 0 failed, 2 skipped" in capsys.readouterr().out

    assert batch_main([str(folder), "-o", str(alone), "--workers", "1", *few, *common]) == 0
    assert "per worker: overlapped stages" in capsys.readouterr().out
    one = {"stages": "overlapped", "inference_threads": DEFAULT_THREADS, "opencv_threads": cv2.getNumThreads()}
    assert _worker_ran(alone) == [one] * 2
    for key, session in _sessions(alone).items():  # the same recordings either way
        assert (several / SESSIONS / key / RECORDING).read_bytes() == (session / RECORDING).read_bytes()


def test_what_the_command_names_wins_over_the_per_worker_defaults(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv(CV_THREADS_ENV, raising=False)

    def options(*argv: str) -> dict:
        return _pipeline_options(batch_parser().parse_args(["videos", "-o", "out", *argv]))

    assert worker_settings(options(), 1) == WorkerSettings(False, None, None, shared=False)
    assert worker_settings(options(), 2) == WorkerSettings(True, 1, 1, shared=True)
    assert worker_settings(options(), 1, ray=True) == WorkerSettings(True, 1, 1, shared=True)  # one CPU a task
    named = worker_settings(options("--overlap", "--threads", "2"), 3)
    assert (named.sequential, named.threads, named.cv_threads) == (False, 2, 1)
    assert named.apply(options())["sequential"] is False and named.apply(options())["threads"] == 2
    assert worker_settings(options("--sequential"), 1).sequential is True
    monkeypatch.setenv(THREADS_ENV, "3")
    monkeypatch.setenv(CV_THREADS_ENV, "2")
    env = worker_settings(options(), 2)  # the environment names them: left to it
    assert (env.sequential, env.threads, env.cv_threads) == (True, None, None)
    assert default_workers(1) == 1 and default_workers(2) >= 2


@pytest.mark.parametrize("argv", [[], ["--sequential", "--threads", "2", "--faces", "detector", "--every", "3"],
                                  ["--overlap", "--max-faces", "4", "--aus", "--no-ema", "--no-spinning"]])
def test_every_camera_option_means_the_same_in_the_corpus_command(argv):
    only_pipeline = argparse.ArgumentParser(add_help=False)
    add_pipeline_arguments(only_pipeline)
    shared = {a.dest for a in only_pipeline._actions}
    cam = cam_parser().parse_args(argv)
    batch = batch_parser().parse_args(["videos", "-o", "out", *argv])
    assert {d: getattr(cam, d) for d in shared} == {d: getattr(batch, d) for d in shared}
    mine, theirs = options_from_args(cam), options_from_args(camera_args(_pipeline_options(batch), cam.source))
    for group in ("model", "faces", "schedule", "smoothing", "tracking"):
        assert getattr(mine, group) == getattr(theirs, group), group
    assert mine.schedule.overlap is ("--sequential" not in argv)  # the camera overlaps unless told


def test_ray_missing_is_one_line(tmp_path, clips, common, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when not installed
    folder = _folder(tmp_path, clips, ["a"])
    assert batch_main([str(folder), "-o", str(tmp_path / "out"), "--ray", "auto", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "affectcam[ray]" in err[0], err


@pytest.mark.slow
def test_ray_gives_the_corpus_table_of_local_workers(tmp_path, clips, common):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'affectcam[ray]')")
    folder = _folder(tmp_path, clips, ["a", "b", "corrupt"])
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert batch_main([str(folder), "-o", str(local), "--workers", "2", *common]) == 1

    port = _free_port()
    ray_dir = Path("/tmp") / f"rt{os.getpid()}"  # Ray's socket paths must stay short
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    ray_bin = Path(sys.executable).with_name("ray")
    # --block: the head (and every Ray process it started) ends when this process is terminated,
    # so the test stops its own cluster and no other.
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", str(ray_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, head)
        run = subprocess.run([sys.executable, "-m", "realtime.batch", str(folder), "-o", str(on_ray),
                              "--ray", f"127.0.0.1:{port}", *common], env=env, capture_output=True, text=True,
                             timeout=300)
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert run.returncode == 1, run.stderr[-2000:]
    assert len(_failure_lines(run.stderr)) == 1
    assert (on_ray / "corpus.csv").read_text() == (local / "corpus.csv").read_text()
    assert pd.read_parquet(on_ray / "corpus.parquet").equals(pd.read_parquet(local / "corpus.parquet"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "ray start --head ended early"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"the local Ray head did not listen on port {port} within {timeout:.0f} s")


def _descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found
