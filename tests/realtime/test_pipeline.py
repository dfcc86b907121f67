"""The whole pipeline on the shared clip with the real MediaPipe model and an
exported ONNX model, plus the bad inputs of the issue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from affect.recording import csv_columns, read_csv
from realtime import (
    FaceFindingOptions,
    ModelOptions,
    OutputOptions,
    Pipeline,
    PipelineOptions,
    ScheduleOptions,
)
from realtime.cam import main as cam_main
from realtime.smoothing import SmoothingOptions
from realtime.sources import FileSource, Frame, Source, SourceOptions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory, hamilton_clip, onnx_model, face_model_path):
    """One run over the whole clip (275 frames) with every sink on; tests read from it."""
    out = tmp_path_factory.mktemp("run")
    opts = PipelineOptions(source=hamilton_clip, model=ModelOptions(onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path),
                           outputs=OutputOptions(csv=out / "rec.csv", jsonl=out / "rec.jsonl", jsonl_landmarks=True,
                                                 video_out=out / "annotated.mp4"))
    results = []
    with Pipeline(opts) as p:
        for r in p:
            results.append((r.index, [(f.track_id, f.box, f.valence, f.arousal, f.raw_valence, f.raw_arousal,
                                       f.landmarks is not None) for f in r.faces], r.timings))
    return {"out": out, "results": results, "summary": p.summary, "labels": p.spec.labels}


def test_faces_are_found_in_most_frames_that_have_one(clip_run):
    s = clip_run["summary"]
    assert s.frames == 275
    # the clip has a face in about 226 frames; the `fer` package finds 166
    assert s.frames_with_faces >= 200
    assert s.max_faces >= 2
    with_mesh = sum(any(f[6] for f in faces) for _, faces, _ in clip_run["results"])
    assert with_mesh >= 130  # the landmarker's mesh where it can; the detector fills the rest


def test_ids_are_stable_over_a_continuous_shot(clip_run):
    # frames 90-200 are one continuous close shot of one singer
    ids = Counter(f[0] for index, faces, _ in clip_run["results"] if 90 <= index <= 200 for f in faces)
    main_id, count = ids.most_common(1)[0]
    assert count >= 105
    assert sum(ids.values()) - count <= 5  # hardly any spurious IDs


def test_csv_matches_the_documented_format(clip_run):
    path = clip_run["out"] / "rec.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert header == csv_columns(clip_run["labels"])
    df = read_csv(str(path))
    assert len(df) == clip_run["summary"].faces
    probs = df[[f"p_{label}" for label in clip_run["labels"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=2e-3)
    assert df["valence"].between(-1, 1).all() and df["arousal"].between(-1, 1).all()
    assert (df["expression"].isin(clip_run["labels"])).all()
    assert df["frame"].is_monotonic_increasing
    rows = [json.loads(line) for line in (clip_run["out"] / "rec.jsonl").read_text().splitlines()]
    assert len(rows) == len(df)
    mesh_rows = [r for r in rows if "landmarks" in r]
    assert mesh_rows and len(mesh_rows[0]["landmarks"]) == 478 and len(mesh_rows[0]["blendshapes"]) == 52


def test_annotated_video_is_readable_with_the_same_frame_count(clip_run):
    cap = cv2.VideoCapture(str(clip_run["out"] / "annotated.mp4"))
    assert cap.isOpened()
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        assert img.shape == (360, 640, 3)
        n += 1
    assert n == 275
    assert not list(clip_run["out"].glob(".*partial*"))


def test_smoothing_reduces_valence_arousal_jitter_on_a_real_track(clip_run):
    ids = Counter(f[0] for _, faces, _ in clip_run["results"] for f in faces)
    main_id = ids.most_common(1)[0][0]
    track = np.array([f[2:6] for _, faces, _ in clip_run["results"] for f in faces if f[0] == main_id])
    assert len(track) > 100
    smooth_jitter = np.abs(np.diff(track[:, :2], axis=0)).mean()
    raw_jitter = np.abs(np.diff(track[:, 2:4], axis=0)).mean()
    assert raw_jitter > 0  # the model does react to the frames
    assert smooth_jitter < 0.6 * raw_jitter


def test_summary_lists_each_stage(clip_run):
    stages = clip_run["summary"].stages_ms
    assert list(stages) == ["read", "faces", "track", "crop", "infer", "smooth", "draw", "write", "frame", "latency"]
    assert all(v["p95"] >= v["p50"] >= 0 for v in stages.values())
    assert "faces/frame" in clip_run["summary"].format()


class ListSource(Source):
    def __init__(self, images, name="list"):
        super().__init__(name, SourceOptions())
        self.images = images
        self.kind = "file"

    def __iter__(self):
        for i, img in enumerate(self.images):
            self.stats.frames += 1
            yield Frame(i, i * 33.3, img)


def tiled_faces(hamilton_clip, cols=4, rows=3, size=160):
    cap = cv2.VideoCapture(str(hamilton_clip))
    for _ in range(121):
        ok, img = cap.read()
    cap.release()
    # frame 120: one singer, face box about (204, 50, 93, 93); tile a square around it
    tile = cv2.resize(img[13:181, 167:335], (size, size))
    return np.vstack([np.hstack([tile] * cols)] * rows)


def test_ten_plus_faces_in_one_frame_are_read_in_one_batch(hamilton_clip, onnx_model, face_model_path,
                                                           tmp_path):
    grid = tiled_faces(hamilton_clip)
    opts = PipelineOptions(source=ListSource([grid] * 3), model=onnx_model,
                           faces=FaceFindingOptions(face_model=face_model_path, max_faces=16, min_face_confidence=0.3),
                           outputs=OutputOptions(csv=tmp_path / "many.csv", video_out=tmp_path / "many.mp4"))
    with Pipeline(opts) as p:
        calls = []
        predict = p.backend.predict
        p.backend.predict = lambda batch, *rows: calls.append(len(batch)) or predict(batch, *rows)
        results = list(p)
    assert [len(r.faces) for r in results] == [12, 12, 12]
    assert calls == [12, 12, 12]  # one inference call per frame
    assert len({f.track_id for f in results[-1].faces}) == 12
    assert len(read_csv(str(tmp_path / "many.csv"))) == 36
    capped = PipelineOptions(source=ListSource([grid]), model=onnx_model,
                             faces=FaceFindingOptions(face_model=face_model_path, max_faces=5, min_face_confidence=0.3))
    with Pipeline(capped) as p:
        assert len(next(iter(p)).faces) == 5


def test_corrupt_frames_and_long_faceless_stretches_do_not_stop_the_run(hamilton_clip, onnx_model,
                                                                         face_model_path):
    cap = cv2.VideoCapture(str(hamilton_clip))
    real = [cap.read()[1] for _ in range(130)][100:130]  # a face in every one of these
    cap.release()
    black = np.zeros_like(real[0])
    script = real[:10] + [None, "corrupt", None] + [black] * 40 + real[10:20]

    class Fake:
        def __init__(self, *a):
            self.s = list(script)

        def isOpened(self):
            return True

        def read(self):
            item = self.s.pop(0) if self.s else None
            return item is not None, item

        def get(self, prop):
            return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_COUNT: len(script)}.get(prop, 0)

        def release(self):
            pass

    source = FileSource("fake.mp4", SourceOptions(), Fake)
    opts = PipelineOptions(source=source, model=onnx_model, faces=FaceFindingOptions(face_model=face_model_path),
                           smoothing=SmoothingOptions(ema=False, one_euro=False))
    with Pipeline(opts) as p:
        results = list(p)
        tracks_after_blank = len(p.tracker.tracks)
    assert len(results) == 60 and p.summary.corrupt_frames == 3
    blank = [r for r in results if not r.image.any()]
    assert len(blank) == 40 and all(not r.faces for r in blank)
    assert all(r.faces for r in results[:10]) and all(r.faces for r in results[-10:])
    ids_before = {f.track_id for r in results[:10] for f in r.faces}
    ids_after = {f.track_id for r in results[-10:] for f in r.faces}
    assert ids_before.isdisjoint(ids_after)  # the old track retired during the blank stretch
    assert tracks_after_blank == len(ids_after)  # and its state went with it


def test_every_n_carries_readings_between_inferences(hamilton_clip, onnx_model, face_model_path):
    opts = PipelineOptions(source=hamilton_clip, model=onnx_model, faces=FaceFindingOptions(face_model=face_model_path),
                           schedule=ScheduleOptions(every=3, max_frames=120))
    with Pipeline(opts) as p:
        seen = [(r.index, f.track_id, f.inferred) for r in p for f in r.faces if r.index >= 90]
    # the singer's track (a face that appears later is read at once, whatever --every says)
    singer = Counter(t for _, t, _ in seen).most_common(1)[0][0]
    flags = [(i, inferred) for i, t, inferred in seen if t == singer]
    assert len(flags) >= 20
    # read every 3rd frame, in its track's turn (track ids stagger the faces over the frames)
    assert all(inferred == ((i + singer) % 3 == 0) for i, inferred in flags[1:])


def test_small_faces_are_read_every_second_frame_in_turn_and_large_ones_every_frame(hamilton_clip, onnx_model):
    """The default schedule: a face whose crop is under the model's input size is read when
    (frame + track id) is even, others every frame; a track's first face is read at once."""
    opts = PipelineOptions(source=hamilton_clip, model=onnx_model, schedule=ScheduleOptions(max_frames=90))
    seen: set[int] = set()
    small = large = 0
    with Pipeline(opts) as p:
        size = p.spec.input_size
        for r in p:
            for f in r.faces:
                first = f.track_id not in seen
                seen.add(f.track_id)
                if first:
                    assert f.inferred
                elif f.crop_box.side < size:
                    small += 1
                    assert f.inferred == ((r.index + f.track_id) % 2 == 0)
                else:
                    large += 1
                    assert f.inferred
    assert small > 20 and large > 20  # the clip has both: the singer near, the audience far


# --- the command line and its bad inputs -----------------------------------------------------------

def run_cam(capsys, *args):
    code = cam_main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if line.startswith("affectcam:")]


def test_a_run_that_succeeds_says_what_it_wrote(capsys, tmp_path, onnx_model, hamilton_clip):
    csv, video = tmp_path / "rec.csv", tmp_path / "rec.mp4"
    code, lines = run_cam(capsys, "--source", str(hamilton_clip), "--model", str(onnx_model), "--headless",
                          "--max-frames", "20", "--csv", str(csv), "--video-out", str(video))
    rows = len(read_csv(csv))
    assert code == 0 and rows > 0
    assert f"affectcam: wrote {csv} ({rows:,} rows)" in lines
    assert f"affectcam: wrote {video} (20 frames)" in lines


def test_cli_bad_inputs_are_one_line_errors(capsys, tmp_path, onnx_model, face_model_path, hamilton_clip):
    fm = ["--face-model", str(face_model_path), "--headless"]
    code, err = run_cam(capsys, "--source", "7", "--model", str(onnx_model), *fm)
    assert code == 2 and len(err) == 1 and "no camera at index 7" in err[0]
    text = tmp_path / "notes.mp4"
    text.write_text("just text\n")
    code, err = run_cam(capsys, "--source", str(text), "--model", str(onnx_model), *fm)
    assert code == 2 and "notes.mp4: not a readable video file" in err[0]
    code, err = run_cam(capsys, "--source", str(hamilton_clip), "--model", str(face_model_path), *fm)
    assert code == 2 and "unknown model file kind '.task'" in err[0]
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x00garbage")
    code, err = run_cam(capsys, "--source", str(hamilton_clip), "--model", str(fake), *fm)
    assert code == 2 and "model.onnx: not a loadable ONNX model" in err[0]


def test_cli_without_model_or_face_model(capsys, monkeypatch, tmp_path, onnx_model, hamilton_clip):
    import affect.face_model as fmod
    import realtime.pipeline as pipe

    monkeypatch.setattr(pipe, "DEFAULT_MODEL", tmp_path / "absent.int8.onnx")
    code, err = run_cam(capsys, "--source", str(hamilton_clip), "--headless")
    assert code == 2 and "pass --model PATH" in err[0]
    monkeypatch.delenv(fmod.ENV_VAR, raising=False)
    monkeypatch.setenv("AFFECTCAM_CACHE", str(tmp_path / "cache"))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(fmod.urllib.request, "urlopen", offline)
    # the MediaPipe paths need the bundle: one line saying where to put it
    code, err = run_cam(capsys, "--source", str(hamilton_clip), "--model", str(onnx_model), "--headless",
                        "--faces", "detector")
    assert code == 2 and len(err) == 1
    assert str(tmp_path / "cache" / "face_landmarker.task") in err[0]
    # the default path (YuNet, packaged) runs offline without it
    code, err = run_cam(capsys, "--source", str(hamilton_clip), "--model", str(onnx_model), "--headless",
                        "--max-frames", "3")
    assert code == 0 and len(err) == 1 and "faces: yunet" in err[0]


def test_ctrl_c_flushes_the_recordings_and_leaves_a_playable_video(tmp_path, onnx_model, face_model_path,
                                                                    hamilton_clip):
    # the clip's frames as an image folder: a run long enough to interrupt midway
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(hamilton_clip))
    for i in range(275):
        ok, img = cap.read()
        cv2.imwrite(str(frames / f"{i:04d}.jpg"), img)
    cap.release()
    csv_path, video, summary = tmp_path / "c.csv", tmp_path / "c.mp4", tmp_path / "s.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # the source stops at frame 120 until released: the signal lands mid-run on any CPU
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "gated_cam.py"), str(gate), "120", "--",
         "--source", str(frames), "--model", str(onnx_model),
         "--face-model", str(face_model_path), "--headless", "--csv", str(csv_path),
         "--video-out", str(video), "--summary-json", str(summary)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (gate / "reached").exists() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None and (gate / "reached").exists(), "the run never reached the gate"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    (gate / "release").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-500:]
    s = json.loads(summary.read_text())
    assert s["interrupted"] and 0 < s["frames"] < 275
    df = read_csv(str(csv_path))
    assert df["frame"].max() < 275
    assert len(df) == s["faces"]
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == s["frames"]


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_memory_stays_flat_over_a_long_run(tmp_path, hamilton_clip, onnx_model, face_model_path):
    """The clip played three times over (825 frames, tracks coming and going,
    recordings and the overlay on): resident memory after the first pass stays
    where it was, so nothing grows per frame (trails, tracks, timings)."""
    cap = cv2.VideoCapture(str(hamilton_clip))
    clip = []
    while (ok := cap.read())[0]:
        clip.append(cv2.resize(ok[1], (320, 180)))  # smaller frames: the same work per face, less test time
    cap.release()

    class Looped(Source):
        kind = "file"

        def __iter__(self):
            for i in range(3 * len(clip)):
                yield Frame(i, i * 1000.0 / 30, clip[i % len(clip)])

    rss = {}
    opts = PipelineOptions(source=Looped("looped clip", SourceOptions()), model=onnx_model,
                           faces=FaceFindingOptions(face_model=face_model_path),
                           outputs=OutputOptions(csv=tmp_path / "r.csv", jsonl=tmp_path / "r.jsonl", draw=True))
    with Pipeline(opts) as p:
        for r in p:
            if r.index in (len(clip) - 1, 3 * len(clip) - 1):
                rss[r.index] = _rss_mb()
    first, last = rss[len(clip) - 1], rss[3 * len(clip) - 1]
    print(f"RSS {first:.1f} -> {last:.1f} MB")
    assert p.summary.frames == 3 * len(clip)
    assert last - first < 25, f"resident memory grew from {first:.0f} to {last:.0f} MB over two more passes"
