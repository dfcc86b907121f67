"""Issue 24 items 10, 11 and 14 (camera side): a full disk (a real one: a small tmpfs),
a second Ctrl-C / SIGTERM while the run shuts down, a SIGKILL, and outputs that exist.
Each failure is one line per file naming it and why, a non-zero exit, the summary
printed, and what was complete kept under the output's own name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest
from gated_fit import wait_for_gate
from reliability_helpers import REPO, SHARED, fill, small_disk

from affect.recording import read_recording
from realtime.cam import main as cam_main

CLIP = SHARED / "videos" / "short_hamilton_clip.mp4"
FACE_MODEL = SHARED / "models" / "face_landmarker.task"


@pytest.fixture(scope="module", autouse=True)
def _shared():
    for path in (CLIP, FACE_MODEL):
        if not path.exists():
            pytest.skip(f"{path} not found: these tests need the project's ../shared data")


def cam(capsys, *args) -> tuple[int, str, str]:
    code = cam_main([str(a) for a in (*args, "--source", CLIP, "--headless", "--faces", "detector",
                                       "--face-model", FACE_MODEL)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def errors(err: str) -> list[str]:
    assert "Traceback" not in err, err[-2000:]
    return [line for line in err.splitlines() if line.startswith("affectcam: error:")]


def frames_that_play(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def no_partials(folder) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name]


# --- item 10: a full disk --------------------------------------------------------------------------

@pytest.mark.parametrize("flag, name", [("--csv", "rec.csv"), ("--jsonl", "rec.jsonl")])
def test_a_full_disk_cuts_a_recording_at_a_whole_frame_keeps_it_and_says_so(tmp_path, capsys, flag, name):
    with small_disk(tmp_path / "disk", 24) as disk:
        out = disk / name
        extra = ["--jsonl-landmarks"] if flag == "--jsonl" else []
        code, stdout, err = cam(capsys, flag, out, *extra)
        lines = errors(err)
        assert code == 1 and len(lines) == 1, err[-1500:]
        assert f"{out}: cannot write it (no space left on device) at frame" in lines[0], lines
        assert f"are kept in {out}" in lines[0]
        kept = int(lines[0].split("up to frame ")[1].split(" ")[0])
        rows = read_recording(out)  # whole rows only: the reader takes it
        assert rows["frame"].max() == kept
        assert no_partials(disk) and "frames" in stdout  # the summary is printed all the same


def test_a_full_disk_keeps_the_video_frames_that_play_and_says_how_many(tmp_path, capsys):
    with small_disk(tmp_path / "disk", 512) as disk:
        out = disk / "out.mp4"
        code, stdout, err = cam(capsys, "--video-out", out)
        lines = errors(err)
        assert code == 1 and lines, err[-1500:]
        assert f"{out}: cannot write it (no space left on device)" in lines[0]
        assert "frames are kept in" in lines[-1]
        kept = int(lines[-1].split("the first ")[1].split(" ")[0])
        assert 0 < kept < 275 and frames_that_play(out) == kept
        assert no_partials(disk) and "frames" in stdout


def test_a_full_disk_at_the_end_names_the_summary_and_prints_it(tmp_path, capsys):
    with small_disk(tmp_path / "disk", 64) as disk:
        fill(disk)
        out = disk / "s.json"
        code, stdout, err = cam(capsys, "--summary-json", out, "--max-frames", "3")
        lines = errors(err)
        assert code == 1 and len(lines) == 1
        assert lines[0] == (f"affectcam: error: {out}: cannot write the summary (no space left on device); "
                            "it is printed instead")
        assert "frames 3" in stdout and not out.exists() and no_partials(disk)


# --- item 14: outputs that exist ---------------------------------------------------------------------

def test_an_existing_output_is_refused_without_overwrite_and_replaced_with_it(tmp_path, capsys):
    csv = tmp_path / "rec.csv"
    csv.write_text("earlier recording\n")
    code, _, err = cam(capsys, "--csv", csv, "--max-frames", "3")
    assert code == 2 and errors(err) == [f"affectcam: error: --csv {csv}: already exists; pass --overwrite to "
                                         "replace it, or give another name"]
    assert csv.read_text() == "earlier recording\n"
    code, _, err = cam(capsys, "--csv", csv, "--max-frames", "3", "--overwrite")
    assert code == 0 and f"--csv {csv} exists and will be replaced (--overwrite)" in err
    assert csv.read_text().startswith("frame,")


# --- item 11: signals ----------------------------------------------------------------------------

def _gated_cam(tmp_path, *args, at_close=False, gate_name="gate"):
    gate = tmp_path / gate_name
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1",
           "GATE_AT_CLOSE": "1" if at_close else "0"}
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "gated_cam.py"), str(gate), "120", "--",
                             "--source", str(CLIP), "--headless", "--faces", "detector",
                             "--face-model", str(FACE_MODEL), *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return gate, proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_while_the_video_closes_lets_the_shutdown_finish(tmp_path, sig):
    csv, video, summary = tmp_path / "rec.csv", tmp_path / "out.mp4", tmp_path / "s.json"
    gate, proc = _gated_cam(tmp_path, "--csv", csv, "--video-out", video, "--summary-json", summary, at_close=True)
    try:
        wait_for_gate(gate, proc)
        proc.send_signal(sig)
        (gate / "release").touch()
        while not (gate / "closing").exists():  # the shutdown is under way: the video is about to close
            assert proc.poll() is None, proc.communicate()[1][-1500:]
            time.sleep(0.01)
        proc.send_signal(sig)  # the second signal, in the middle of it
        proc.send_signal(sig)
        (gate / "close_release").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "stopping already" in err
    s = json.loads(summary.read_text())
    assert s["interrupted"] and 0 < s["frames"] < 275
    assert frames_that_play(video) == s["frames"]
    assert read_recording(csv)["frame"].max() < s["frames"]
    assert no_partials(tmp_path)


def test_after_a_sigkill_the_recordings_are_recovered_by_the_next_run_or_by_hand(tmp_path, capsys):
    csv, video = tmp_path / "rec.csv", tmp_path / "out.mp4"
    gate, proc = _gated_cam(tmp_path, "--csv", csv, "--video-out", video)
    try:
        wait_for_gate(gate, proc)
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = sorted(p.name for p in tmp_path.iterdir() if ".partial" in p.name)
    assert len(left) == 2 and not csv.exists() and not video.exists()
    # by hand: only the recovery, nothing run
    code = cam_main(["--recover", "--csv", str(csv), "--video-out", str(video)])
    err = capsys.readouterr().err
    assert code == 0 and err.count("affectcam: recovered ") == 2, err
    recovered = {p.suffix: p for p in tmp_path.glob("*.recovered-*")}
    assert read_recording(recovered[".csv"])["frame"].max() <= 120
    assert 60 <= frames_that_play(recovered[".mp4"]) <= 120  # a killed run loses at most its last second
    assert no_partials(tmp_path)
    # the next run does the same at start-up
    gate, proc = _gated_cam(tmp_path, "--csv", csv, "--video-out", video, gate_name="gate2")
    try:
        wait_for_gate(gate, proc)
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    code, _, err = cam(capsys, "--csv", csv, "--video-out", video, "--max-frames", "3")
    assert code == 0 and err.count("affectcam: recovered ") == 2, err
    assert len(list(tmp_path.glob("*.recovered-*"))) == 4 and no_partials(tmp_path)
