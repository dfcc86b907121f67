"""The camera command on bad input and interruptions: `python -m realtime.cam`
with a truncated video, a corrupt image, out-of-range --max-faces, outputs
that cannot be written, SIGINT/SIGTERM mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import pandas as pd
import pytest
from reliability_helpers import REPO, SHARED, error_line

import realtime.pipeline as pipeline_module
from realtime.cam import main as cam_main

real_open = pipeline_module.open_source

CLIP = SHARED / "videos" / "short_hamilton_clip.mp4"
FACE_MODEL = SHARED / "models" / "face_landmarker.task"


@pytest.fixture(scope="module", autouse=True)
def _shared():
    for path in (CLIP, FACE_MODEL):
        if not path.exists():
            pytest.skip(f"{path} not found: these tests need the project's ../shared data")


def cam(capsys, *args) -> tuple[int, str, str]:
    code = cam_main([str(a) for a in (*args, "--headless", "--face-model", FACE_MODEL)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def avi(tmp_path_factory):
    """90 frames of the clip (from frame 80: faces in view) as MJPG AVI, and the same cut in half."""
    d = tmp_path_factory.mktemp("video")
    cap = cv2.VideoCapture(str(CLIP))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 80)
    writer = None
    for _ in range(90):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(d / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0,
                                     (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    writer.release()
    cap.release()
    data = (d / "clip.avi").read_bytes()
    (d / "truncated.avi").write_bytes(data[: len(data) // 2])
    return d


def test_a_video_truncated_halfway_records_the_frames_before_the_cut(avi, tmp_path, capsys):
    csv, summary = tmp_path / "out" / "rec.csv", tmp_path / "out" / "summary.json"
    code, out, err = cam(capsys, "--source", avi / "truncated.avi", "--csv", csv, "--summary-json", summary)
    assert code == 0, err
    s = json.loads(summary.read_text())
    assert 30 <= s["frames"] < 90 and s["corrupt_frames"] == 0
    assert "the file ended early" in s["source_error"] and f"{s['frames']} frames read" in s["source_error"]
    assert "the file ended early" in out
    rows = pd.read_csv(csv)
    assert len(rows) and rows["frame"].max() < s["frames"]


def test_a_truncated_mp4_says_the_file_ended_early(tmp_path, capsys):
    cut = tmp_path / "cut.mp4"
    data = CLIP.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = cam(capsys, "--source", cut, "--max-frames", "5")
    assert code == 2 and f"{cut}: not a readable video file" in error_line(err) and "ended early" in err


def test_a_folder_with_one_corrupt_image_skips_and_counts_it(tmp_path, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    for p in sorted((SHARED / "data" / "affectnet" / "images").glob("*.jpg"))[:4]:
        shutil.copy(p, folder)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, _, err = cam(capsys, "--source", folder, "--summary-json", tmp_path / "s.json")
    s = json.loads((tmp_path / "s.json").read_text())
    assert code == 0 and s["frames"] == 4 and s["corrupt_frames"] == 1


@pytest.mark.parametrize("value", ["0", "-3"])
def test_max_faces_below_one_is_refused_before_anything_opens(avi, tmp_path, capsys, value):
    for extra in ([], ["--detector-only"]):
        code, _, err = cam(capsys, "--source", avi / "clip.avi", "--max-faces", value, "--csv", tmp_path / "x.csv",
                           *extra)
        assert code == 2 and error_line(err) == f"affectcam: error: --max-faces {value}: must be a whole number " \
                                                "of at least 1"
        assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_min_face_confidence_outside_0_1_is_refused_before_anything_opens(avi, tmp_path, capsys, value):
    code, _, err = cam(capsys, "--source", avi / "clip.avi", "--min-face-confidence", value,
                       "--csv", tmp_path / "x.csv")
    assert code == 2 and error_line(err) == f"affectcam: error: --min-face-confidence {float(value)}: must be " \
                                            "between 0 and 1"
    assert not (tmp_path / "x.csv").exists()


def test_min_face_confidence_reaches_the_face_finder(avi, tmp_path, capsys):
    """A threshold no real face passes finds fewer faces on the clip's 90 frames than the default."""
    faces = {}
    for value in ("0.5", "0.99"):
        code, _, err = cam(capsys, "--source", avi / "clip.avi", "--faces", "detector",
                           "--min-face-confidence", value, "--summary-json", tmp_path / f"{value}.json")
        assert code == 0, err
        faces[value] = json.loads((tmp_path / f"{value}.json").read_text())["frames_with_faces"]
    assert faces["0.5"] > 30 and faces["0.99"] < faces["0.5"]


def test_max_faces_50_runs(avi, tmp_path, capsys):
    code, _, err = cam(capsys, "--source", avi / "clip.avi", "--max-faces", "50", "--max-frames", "10",
                       "--summary-json", tmp_path / "s.json")
    assert code == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 10


def test_every_output_folder_that_does_not_exist_is_created(avi, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    code, _, err = cam(capsys, "--source", avi / "clip.avi", "--max-frames", "5", "--csv", out / "a.csv",
                       "--jsonl", out / "b.jsonl", "--video-out", out / "c.mp4", "--summary-json", out / "d.json")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.jsonl", "c.mp4", "d.json"]  # no partial names


@pytest.mark.parametrize("flag, make_bad, problem", [
    ("--csv", lambda d: d / "is_a_dir", "is a folder"),
    ("--video-out", lambda d: d / "is_a_dir", "is a folder"),
    ("--video-out", lambda d: d / "clip.txt", "cannot open an mp4v video writer"),
    ("--summary-json", lambda d: d / "a_file" / "s.json", "cannot create the folder"),
    ("--jsonl", lambda d: d / "a_file" / "x.jsonl", "cannot create the folder"),
])
def test_an_output_that_cannot_be_written_is_refused_at_start_up(avi, tmp_path, capsys, monkeypatch, flag, make_bad,
                                                                 problem):
    (tmp_path / "is_a_dir").mkdir()
    (tmp_path / "a_file").write_text("earlier output")
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("frame\n1\n")
    opened = []  # refused before the run, not after it: the source is never opened (no clock involved)
    monkeypatch.setattr(pipeline_module, "open_source", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    code, _, err = cam(capsys, "--source", avi / "clip.avi", "--csv", earlier if flag != "--csv" else make_bad(tmp_path),
                       *([flag, make_bad(tmp_path)] if flag != "--csv" else []))
    line = error_line(err)
    assert code == 2 and line.startswith(f"affectcam: error: {flag} {make_bad(tmp_path)}") and problem in line
    assert opened == []
    assert earlier.read_text() == "frame\n1\n" and (tmp_path / "a_file").read_text() == "earlier output"
    assert not [p for p in tmp_path.rglob(".*") if "partial" in p.name or "probe" in p.name]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_leaves_a_complete_csv_and_a_playable_mp4(tmp_path, sig):
    csv, video, summary = tmp_path / "rec.csv", tmp_path / "out.mp4", tmp_path / "s.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # the source stops at frame 150 (faces from about frame 82) until released: the signal
    # lands mid-run on any CPU (tests/gated_cam.py)
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "gated_cam.py"), str(gate), "150", "--",
                             "--source", str(CLIP), "--headless",
                             "--face-model", str(FACE_MODEL), "--csv", str(csv), "--video-out", str(video),
                             "--summary-json", str(summary)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (gate / "reached").exists() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None and (gate / "reached").exists(), "the run never reached the gate"
    proc.send_signal(sig)
    time.sleep(0.2)
    (gate / "release").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-800:]
    s = json.loads(summary.read_text())
    assert s["interrupted"] and 0 < s["frames"] < 275
    rows = pd.read_csv(csv)
    assert len(rows) > 0 and rows["frame"].max() < s["frames"] and not rows.isna().any().any()
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == s["frames"]
    assert sum(1 for _ in iter(lambda: cap.read()[0], False)) == s["frames"]  # every frame decodes
    cap.release()
