"""Faces at every size (issue 27): the packaged YuNet detector, its errors, the
default path on a wide frame of small faces, many faces read in one batch, and
an overlay whose panels cover no face."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import realtime.yunet as yunet_module
from affect.checks import OptionError
from affect.crop import DEFAULT_CROP, face_crop_box
from affect.face_model import FaceModelError
from affect.preprocess import prepare_batch
from realtime.faces import Face, FaceFinder, FaceOptions
from realtime.options import OutputOptions
from realtime.overlay import draw_overlay, face_rects, layout_panels
from realtime.pipeline import DEFAULT_MODEL, Pipeline, PipelineOptions
from realtime.yunet import (
    YUNET_FILE,
    YUNET_LICENSE,
    YUNET_SHA256,
    YuNetDetector,
    YuNetOptions,
    check_yunet_model,
)

REPO = Path(__file__).resolve().parents[2]


def small_face_frame(affectnet_root: Path, sides=(28, 36, 48, 64, 96), width=1280, height=720):
    """A wide frame (grey with grain) with AffectNet faces pasted at `sides` px; returns the
    BGR frame and the pasted boxes."""
    rng = np.random.default_rng(0)
    frame = np.clip(110 + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    paths = sorted((affectnet_root / "images").glob("*.jpg"))[:len(sides)]
    boxes, x = [], 40
    for path, side in zip(paths, sides):
        face = cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_AREA)
        y = 300 + (x // 7) % 200
        frame[y:y + side, x:x + side] = face
        boxes.append((x, y, side, side))
        x += side + 150
    return frame, boxes


def found(boxes, faces) -> list[bool]:
    out = []
    for x, y, w, h in boxes:
        out.append(any(x <= fx + fw / 2 <= x + w and y <= fy + fh / 2 <= y + h for fx, fy, fw, fh in
                       (f.box for f in faces)))
    return out


# --- the packaged detector and its errors -------------------------------------------------------
def test_packaged_yunet_is_the_official_file_with_its_licence():
    assert hashlib.sha256(YUNET_FILE.read_bytes()).hexdigest() == YUNET_SHA256
    assert "MIT License" in YUNET_LICENSE.read_text()
    assert check_yunet_model() == YUNET_FILE


def test_a_missing_yunet_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "yunet.onnx"
    with pytest.raises(FaceModelError) as err:
        YuNetDetector(YuNetOptions(model_path=missing))
    assert str(missing) in str(err.value) and "\n" not in str(err.value)


def test_a_corrupt_yunet_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"not an onnx graph" * 100)
    with pytest.raises(FaceModelError) as err:
        YuNetDetector(YuNetOptions(model_path=bad))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_a_damaged_packaged_yunet_file_is_refused_by_its_sha256(tmp_path, monkeypatch):
    damaged = tmp_path / YUNET_FILE.name
    data = bytearray(YUNET_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: OpenCV might still load it
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(yunet_module, "YUNET_FILE", damaged)
    monkeypatch.setattr(yunet_module, "_CHECKED", set())
    with pytest.raises(FaceModelError) as err:
        YuNetDetector()
    assert str(damaged) in str(err.value) and "sha256" in str(err.value) and "\n" not in str(err.value)


def test_the_camera_says_a_damaged_packaged_detector_in_one_line(tmp_path, hamilton_clip):
    """The command line: exit 2 and one `affectcam: error:` line naming the file, no traceback."""
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "realtime", pkg / "realtime", ignore=shutil.ignore_patterns("*.onnx", "__pycache__"))
    (pkg / "realtime" / "models" / YUNET_FILE.name).write_bytes(b"\0" * 1000)
    for name in ("affectcam_default.onnx", "affectcam_default.int8.onnx"):
        (pkg / "realtime" / "models" / name).symlink_to(DEFAULT_MODEL.parent / name)
    out = subprocess.run([sys.executable, "-m", "realtime.cam", "--source", str(hamilton_clip), "--headless",
                          "--max-frames", "2"], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": f"{pkg}:{REPO}", "PATH": "/usr/bin:/bin",
                              "AFFECTCAM_CACHE": str(tmp_path / "cache"), "AFFECTCAM_DEFAULT_MODEL": "int8"})
    assert out.returncode == 2, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("affectcam: error:")]
    assert len(errors) == 1 and YUNET_FILE.name in errors[0] and "damaged" in errors[0]
    assert "Traceback" not in out.stderr


def test_onnx_runtime_engine_finds_the_boxes_opencvs_yunet_finds(hamilton_clip, affectnet_root):
    """The default engine (ONNX Runtime, decoded in Python) against cv2.FaceDetectorYN on real
    frames: the clip at its size and odd-sized, and a wide frame of small pasted faces."""
    cap = cv2.VideoCapture(str(hamilton_clip))
    frames = []
    for i in range(200):
        ok, frame = cap.read()
        if ok and i % 50 == 0:
            frames.append(frame)
    cap.release()
    frames.append(frames[1][:347, :603])  # not a multiple of 32: the padding must match OpenCV's
    frames.append(small_face_frame(affectnet_root)[0])
    both = [YuNetDetector(YuNetOptions(engine=e, passes="full", score_threshold=0.5, denoise_above=0,
                                       bright_target=0)) for e in ("onnxruntime", "opencv")]
    total = 0
    for frame in frames:
        ours, theirs = (d.detect(frame) for d in both)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=0.05)
        total += len(ours)
        rgb = YuNetDetector(YuNetOptions(passes="full", score_threshold=0.5, denoise_above=0, bright_target=0))
        np.testing.assert_allclose(rgb.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), rgb=True), ours, atol=1e-4)
    assert total >= len(frames)  # faces were found, so the comparison compared something


def test_coarse_every_keeps_the_last_looks_faces_between_looks_and_looks_again_at_a_cut(hamilton_clip):
    cap = cv2.VideoCapture(str(hamilton_clip))
    frames = [cap.read()[1] for _ in range(4)]
    cap.release()
    det = YuNetDetector(YuNetOptions(coarse_every=2))
    looks = []
    run = det._engine.detect
    det._engine.detect = lambda *a, **k: looks.append(1) or run(*a, **k)
    first = det.detect(frames[0])
    n = len(looks)
    np.testing.assert_array_equal(det.detect(frames[1]), first)  # between two looks: no pass ran
    assert len(looks) == n and len(first)
    det.detect(frames[2])
    assert len(looks) > n  # the next look
    n = len(looks)
    det.detect(255 - frames[3])  # a cut: looked at at once, whatever the cadence says
    assert len(looks) > n


def test_carried_small_faces_follow_the_face_between_fine_passes(affectnet_root):
    """Frames between two full-resolution passes carry its small faces; they are moved to where
    their patch matches (follow_carried), not left where the last pass saw them."""
    frame, _ = small_face_frame(affectnet_root)
    moved = np.roll(frame, (3, 5), axis=(0, 1))  # the scene 5 px right, 3 px down: no cut
    results = {}
    for follow in (True, False):
        det = YuNetDetector(YuNetOptions(fine_every=10, score_threshold=0.5, follow_carried=follow))
        first = det.detect(frame)
        results[follow] = (first, det.detect(moved))
    first, followed = results[True]
    small = [f for f in first if f[2] < 30]  # too small for the coarse pass: carried
    assert small, "the fine pass found no small face to carry"
    for f in small:
        near = min(followed, key=lambda g: abs(g[0] - f[0] - 5) + abs(g[1] - f[1] - 3))
        assert abs(near[0] - f[0] - 5) <= 1 and abs(near[1] - f[1] - 3) <= 1
        assert abs(near[4] - f[4] - 5) <= 1  # the eye keypoint moved with it
    _, stayed = results[False]
    assert any(np.allclose(f[:2], g[:2]) for f in small for g in stayed)  # without following: where they were


def test_a_small_face_one_full_pass_misses_stays_one_pass_while_its_patch_matches(affectnet_root):
    """keep_missed=1: a carried face the next full-resolution pass does not find (its score dipped)
    is kept through that pass while it still matches its patch, and dropped after a second miss."""
    frame, _ = small_face_frame(affectnet_root)
    det = YuNetDetector(YuNetOptions(fine_every=2, score_threshold=0.5))
    first = det.detect(frame)
    target = min(first, key=lambda f: f[2])  # the smallest face: only the full-resolution pass finds it
    run = det._engine.detect

    def missing_it(img, **kw):  # the engine stops finding the target face
        out = run(img, **kw)
        return out[np.hypot(out[:, 0] - target[0], out[:, 1] - target[1]) > 10]

    det._engine.detect = missing_it

    def has_it(faces):
        return any(np.hypot(f[0] - target[0], f[1] - target[1]) < 3 for f in faces)

    assert has_it(det.detect(frame))  # carried between passes
    assert has_it(det.detect(frame))  # a full pass missed it: kept, its patch matches
    det.detect(frame)
    assert not has_it(det.detect(frame))  # missed twice: gone
    det = YuNetDetector(YuNetOptions(fine_every=2, score_threshold=0.5, keep_missed=0))
    det.detect(frame)
    det._engine.detect = missing_it
    det.detect(frame)
    assert not has_it(det.detect(frame))  # keep_missed=0: gone at the first miss


def test_an_unknown_yunet_engine_or_cadence_is_refused():
    with pytest.raises(ValueError, match="engine must be one of"):
        YuNetDetector(YuNetOptions(engine="tflite"))
    for name in ("condition_every", "coarse_every", "fine_every"):
        with pytest.raises(ValueError, match=name):
            YuNetDetector(YuNetOptions(**{name: 0}))


def test_a_corrupt_yunet_file_is_one_line_naming_it_for_either_engine(tmp_path):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"not an onnx graph" * 100)
    for engine in ("onnxruntime", "opencv"):
        with pytest.raises(FaceModelError) as err:
            YuNetDetector(YuNetOptions(model_path=bad, engine=engine))
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


# --- which finder ------------------------------------------------------------------------------
@pytest.mark.parametrize("faces, jsonl_landmarks, blendshapes, expected", [
    ("auto", False, (), "yunet"),
    ("auto", True, (), "landmarker"),
    ("auto", False, ("jawOpen",), "landmarker"),
    ("yunet", False, (), "yunet"),
    ("detector", False, (), "detector"),
    ("landmarker", False, (), "landmarker"),
])
def test_the_face_path_choice(faces, jsonl_landmarks, blendshapes, expected):
    o = PipelineOptions(source=None, faces=faces, outputs=OutputOptions(jsonl_landmarks=jsonl_landmarks))
    assert o.face_path(bool(blendshapes)) == expected


def test_an_unknown_face_path_is_refused():
    with pytest.raises(OptionError, match="must be one of"):
        PipelineOptions(source=None, faces="tiles")
    with pytest.raises(ValueError, match="face detector must be one of"):
        FaceFinder(FaceOptions(None, landmarks=False, detector="haar"))
    with pytest.raises(ValueError, match="passes must be one of"):
        YuNetDetector(YuNetOptions(passes="half"))


def test_yunet_faces_take_their_own_box_rule_and_roll_from_the_eyes():
    eyes = np.array([[110, 120], [140, 130], [125, 140], [112, 150], [138, 150]], np.float32)
    face = Face((100, 100, 50, 60), 0.9, keypoints=eyes, source="yunet")
    box = face.crop_box(dict(DEFAULT_CROP, yunet_scale=2.0, yunet_shift_y=0.1))
    assert box.side == pytest.approx(120) and box.cy == pytest.approx(130 + 12)
    assert box.angle == pytest.approx(np.degrees(np.arctan2(10, 30)))
    # a model's rule from before YuNet takes the fitted default, not the mesh numbers
    old_rule = {k: v for k, v in DEFAULT_CROP.items() if not k.startswith("yunet")}
    assert face.crop_box(old_rule).side == pytest.approx(DEFAULT_CROP["yunet_scale"] * 60)
    # the MediaPipe detector's fallback stays: its box keys, else the mesh scale, else 1.3
    assert face_crop_box({"method": "box"}, box=(0, 0, 10, 10), finder="detector").side == pytest.approx(13)


# --- small faces -------------------------------------------------------------------------------
def test_the_default_path_finds_small_faces_of_a_wide_frame(affectnet_root, face_model_path):
    frame, boxes = small_face_frame(affectnet_root)
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    o = PipelineOptions(source=None)
    assert o.face_path(False) == "yunet"
    with FaceFinder(FaceOptions(None, max_faces=o.faces.max_faces, landmarks=False, detector="yunet",
                                min_detection_confidence=o.faces.min_face_confidence, mode="image")) as finder:
        faces = finder.find(rgb)
    assert all(found(boxes, faces)), [(b, f.box) for b, f in zip(boxes, faces)]
    assert len(faces) == len(boxes)  # no false face on the plain background
    # MediaPipe's short-range detector, the default before, misses the small ones
    with FaceFinder(FaceOptions(face_model_path, landmarks=False, min_detection_confidence=0.4,
                                mode="image")) as mediapipe:
        assert not all(found(boxes, mediapipe.find(rgb)))


def test_the_pyramid_keeps_a_face_that_fills_the_frame(affectnet_root):
    """At full resolution YuNet misses a face that fills much of a large frame; the coarse
    pass finds it, and the merge leaves one box for it."""
    img = cv2.imread(str(sorted((affectnet_root / "images").glob("*.jpg"))[0]))
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[100:620, 380:900] = cv2.resize(img, (520, 520))
    with YuNetDetector(YuNetOptions(passes="pyramid", score_threshold=0.4)) as det:
        faces = det.detect(frame)
        assert len(det.scales(1280, 720)) == 2
    assert len(faces) == 1
    x, y, w, h = faces[0][:4]
    assert 380 < x + w / 2 < 900 and w > 250


# --- many faces in one batch -------------------------------------------------------------------
def test_many_faces_are_read_in_one_batch_equal_to_one_by_one(affectnet_root):
    sides = (64, 72, 80, 88, 96, 104, 112, 120, 72, 80, 88, 96)
    rng = np.random.default_rng(1)
    frame = np.clip(120 + rng.normal(0, 5, (720, 1280, 3)), 0, 255).astype(np.uint8)
    paths = sorted((affectnet_root / "images").glob("*.jpg"))[20:20 + len(sides)]
    for k, (path, side) in enumerate(zip(paths, sides)):
        x, y = 30 + (k % 6) * 210, 60 + (k // 6) * 330
        frame[y:y + side, x:x + side] = cv2.resize(cv2.imread(str(path)), (side, side))
    with Pipeline(PipelineOptions(source=None, model=DEFAULT_MODEL, outputs=OutputOptions(draw=False))) as p:
        calls = []
        predict = p.backend.predict
        p.backend.predict = lambda batch, *rows: calls.append(len(batch)) or predict(batch, *rows)
        result = p.process(frame, 0.0)
        assert len(result.faces) == len(sides) and calls == [len(sides)]  # one model call for the frame
        for face in result.faces:
            alone, _ = p.reader.read_batch(prepare_batch([face.crop], p.spec))
            np.testing.assert_allclose(face.raw_probabilities, alone[0], atol=1e-5)


# --- the overlay -------------------------------------------------------------------------------
def _grid_boxes(n: int, side: int, width: int, height: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cols = width // (side + 140)
    cells = rng.permutation(cols * (height // (side + 60)))[:n]
    return [(float(20 + (c % cols) * (side + 140)), float(30 + (c // cols) * (side + 60)), float(side), float(side))
            for c in cells]


@pytest.mark.parametrize("n, side", [(3, 120), (10, 70), (20, 48)])
def test_no_overlay_panel_covers_a_face(n, side):
    width, height = 1280, 720
    boxes = _grid_boxes(n, side, width, height)
    layout = layout_panels(boxes, 8, width, height)
    panels = [(x, y, 112, 88) for x, y in filter(None, layout["bars"])]
    if layout["inset"]:
        x, y, s = layout["inset"]
        panels.append((x, y, s, s))
    if layout["stats"]:
        panels.append((*layout["stats"], 300, 42))
    faces = face_rects(boxes)
    for px, py, pw, ph in panels:
        assert 0 <= px and 0 <= py and px + pw <= width and py + ph <= height
        for fx, fy, fw, fh in faces:
            assert px + pw <= fx or fx + fw <= px or py + ph <= fy or fy + fh <= py
    assert layout["inset"] is not None and sum(s is not None for s in layout["bars"]) >= n // 2

    class R:  # a FaceResult's drawn fields
        def __init__(self, i, box):
            self.track_id, self.box, self.expression, self.confidence = i, box, "Happy", 0.7
            self.probabilities = np.full(8, 0.125)

    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    before = img.copy()
    draw_overlay(img, [R(i, b) for i, b in enumerate(boxes)], ["x"] * 8, {i: [(0.1, 0.2)] for i in range(n)},
                 20.0, {"faces": 10.0})
    for x, y, w, h in boxes:  # inside each face box, not a pixel changed
        x, y, w, h = int(x) + 3, int(y) + 3, int(w) - 6, int(h) - 6
        assert np.array_equal(img[y:y + h, x:x + w], before[y:y + h, x:x + w])
