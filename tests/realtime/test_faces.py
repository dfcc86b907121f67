"""MediaPipe faces and the crop rule calibrated to the training framing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from affect.crop import DEFAULT_CROP, CropBox, _rotate
from realtime.faces import Face, FaceFinder, FaceOptions


def square(box: CropBox) -> np.ndarray:
    h = box.side / 2
    pts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]]) + [box.cx, box.cy]
    return _rotate(pts, np.array([box.cx, box.cy]), box.angle).astype(np.float32)


def iou(a: CropBox, b: CropBox) -> float:
    inter, _ = cv2.intersectConvexConvex(square(a), square(b))
    return inter / (a.side ** 2 + b.side ** 2 - inter)


@pytest.mark.parametrize("landmarks", [True, False], ids=["mesh", "detector"])
def test_runtime_crops_of_affectnet_images_reproduce_the_training_framing(affectnet_root, face_model_path,
                                                                         landmarks):
    paths = sorted((affectnet_root / "images").glob("*.jpg"))[:12]
    scores = []
    with FaceFinder(FaceOptions(face_model_path, max_faces=1, mode="image", landmarks=landmarks,
                                blendshapes=False, fill_with_detector=False)) as finder:
        for path in paths:
            img = cv2.imread(str(path))
            pad = img.shape[0] // 2
            canvas = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            faces = finder.find(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
            if faces:
                assert (faces[0].landmarks is not None) == landmarks
                target = CropBox(pad + img.shape[1] / 2, pad + img.shape[0] / 2, float(img.shape[0]))
                scores.append(iou(faces[0].crop_box(DEFAULT_CROP), target))
    assert len(scores) >= 10
    assert np.median(scores) > 0.75


def test_landmarker_gives_mesh_and_blendshapes_in_pixels(hamilton_clip, face_model_path):
    cap = cv2.VideoCapture(str(hamilton_clip))
    for _ in range(121):
        ok, img = cap.read()
    cap.release()
    with FaceFinder(FaceOptions(face_model_path, mode="image")) as finder:
        faces = finder.find(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    assert len(faces) == 1
    f = faces[0]
    assert f.landmarks.shape == (478, 3) and len(f.blendshapes) == 52
    x, y, w, h = f.box
    assert 150 < x + w / 2 < 350 and 40 < w < 200  # the singer's face, in pixels of the 640x360 frame


def test_detector_faces_use_the_box_rule():
    face = Face((100, 100, 50, 50), 0.9, keypoints=np.array([[115, 115], [135, 115]], np.float32),
                source="detector")
    rule = dict(DEFAULT_CROP, box_scale=2.0, box_shift_y=0.1)
    box = face.crop_box(rule)
    assert box.side == pytest.approx(100) and box.cy == pytest.approx(125 + 10) and box.angle == 0
