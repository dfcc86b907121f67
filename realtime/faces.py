"""Faces in a frame with MediaPipe Tasks: the Face Landmarker (478 points and
52 blendshapes) or, lighter, the Face Detector from the same bundle.

Running mode: VIDEO for every source, files and cameras alike, with strictly
increasing timestamps. LIVE_STREAM would hand results to a callback on
MediaPipe's thread and drop frames while it is busy; but the pipeline must
crop the very frame the landmarks belong to and then run the model on it, so
it would only wait for that callback anyway. Dropping stale camera frames is
done earlier, by the source's bounded drop-oldest queue, and VIDEO mode keeps
MediaPipe's landmark tracking between frames (which is what makes it fast).
IMAGE mode is used for single images (folders of unrelated photos, the crop
calibration).

The landmarker alone misses faces the bundle's own detector finds: profiles
and the small faces of a wide shot (on the test clip it finds a face in 144
frames, the detector in 226). So by default the detector also runs, and each
face it finds that no landmarker face covers is added as a detector face
(box crop rule, no mesh): coverage of the detector, mesh where there is one.

The detector is MediaPipe's short-range FaceDetector (`detector="mediapipe"`)
or YuNet (`detector="yunet"`, `realtime.yunet`), which finds the small faces
of wide shots the short-range detector is blind to; YuNet needs no MediaPipe
bundle unless the landmarker runs too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affect.crop import CropBox, face_crop_box
from affect.face_model import detector_model
from realtime.yunet import YuNetDetector, YuNetOptions

# Face-mesh indices of the eye corners (image-left eye: 33/133, image-right: 362/263);
# their midpoints give the roll, and do not move with gaze as the iris points do.
LEFT_EYE_CORNERS = (33, 133)
RIGHT_EYE_CORNERS = (362, 263)


@dataclass
class Face:
    """One face in one frame, in image pixels."""
    box: tuple[float, float, float, float]  # x, y, w, h (landmark extent or detector box)
    score: float  # detector score; 1.0 for landmarker faces (MediaPipe gives no per-face score)
    landmarks: np.ndarray | None = None  # (478, 3): x, y in pixels, z in MediaPipe's relative units
    blendshapes: dict[str, float] | None = None
    keypoints: np.ndarray | None = None  # detector's points (eyes first: MediaPipe 6, YuNet 5), pixels
    source: str = "landmarker"  # "landmarker", "detector" (MediaPipe) or "yunet"

    def eyes(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.landmarks is not None:
            lm = self.landmarks[:, :2]
            return lm[list(LEFT_EYE_CORNERS)].mean(axis=0), lm[list(RIGHT_EYE_CORNERS)].mean(axis=0)
        if self.keypoints is not None and len(self.keypoints) >= 2:
            return self.keypoints[0], self.keypoints[1]
        return None

    def crop_box(self, rule: Mapping[str, Any]) -> CropBox:
        """The square crop of this face under the model's crop rule (`affect.crop.face_crop_box`:
        the mesh rule for landmarker faces, the finder's box rule for detector and YuNet boxes)."""
        finder = "landmarker" if self.landmarks is not None else self.source
        points = self.landmarks[:, :2] if self.landmarks is not None else None
        return face_crop_box(rule, box=self.box, points=points, eyes=self.eyes(), finder=finder)


DETECTORS = ("mediapipe", "yunet")


@dataclass
class FaceOptions:
    model_path: str | Path | None  # the MediaPipe bundle; None only for YuNet without the landmarker
    max_faces: int = 5
    landmarks: bool = True  # False: the detector-only path
    detector: str = "mediapipe"  # "mediapipe" (short-range FaceDetector) or "yunet"
    yunet: YuNetOptions | None = None  # YuNet's settings (its threshold: min_detection_confidence)
    blendshapes: bool = True
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    mode: str = "video"  # "video" or "image"
    fill_with_detector: bool = True  # landmarker path: add the detector's faces it missed


def _covered(det: Face, faces: list[Face]) -> bool:
    """True when the detector box's centre lies inside a face already found."""
    x, y, w, h = det.box
    cx, cy = x + w / 2, y + h / 2
    return any(fx <= cx <= fx + fw and fy <= cy <= fy + fh for fx, fy, fw, fh in (f.box for f in faces))


class FaceFinder:
    """`find(rgb, t_ms) → list[Face]`; close it (or use `with`)."""

    def __init__(self, options: FaceOptions):
        os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's INFO lines on every start
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import face_detector, face_landmarker
        from mediapipe.tasks.python.vision.core.image import Image, ImageFormat
        from mediapipe.tasks.python.vision.core.vision_task_running_mode import VisionTaskRunningMode

        self.options = options
        self._image, self._format = Image, ImageFormat.SRGB
        self._video = options.mode == "video"
        mode = VisionTaskRunningMode.VIDEO if self._video else VisionTaskRunningMode.IMAGE
        self._last_ts = -1
        self.task = self.detector = self.yunet = None
        if options.detector not in DETECTORS:
            raise ValueError(f"face detector must be one of {list(DETECTORS)}, got {options.detector!r}")
        need_detector = not options.landmarks or options.fill_with_detector
        if need_detector and options.detector == "yunet":
            yopts = options.yunet or YuNetOptions()
            given = {**yopts.__dict__, "score_threshold": options.min_detection_confidence}
            if not self._video:  # unrelated images: nothing to carry from one to the next
                given["fine_every"] = given["coarse_every"] = 1
            self.yunet = YuNetDetector(YuNetOptions(**given))
        elif need_detector:
            det_opts = face_detector.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_path=str(detector_model(Path(options.model_path)))),
                running_mode=mode, min_detection_confidence=options.min_detection_confidence)
            self.detector = face_detector.FaceDetector.create_from_options(det_opts)
        if options.landmarks:
            opts = face_landmarker.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(options.model_path)),
                running_mode=mode, num_faces=int(options.max_faces),
                min_face_detection_confidence=options.min_detection_confidence,
                min_face_presence_confidence=options.min_presence_confidence,
                min_tracking_confidence=options.min_tracking_confidence,
                output_face_blendshapes=options.blendshapes)
            try:
                self.task = face_landmarker.FaceLandmarker.create_from_options(opts)
            except BaseException:
                self.close()
                raise

    def find(self, frame: np.ndarray, t_ms: float = 0.0, bgr: bool = False) -> list[Face]:
        """Faces in an HxWx3 uint8 frame, RGB (or BGR with `bgr=True`: YuNet alone then needs no
        conversion of the whole frame); `t_ms` only matters in video mode."""
        image = None
        if self.task is not None or self.detector is not None:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if bgr else frame
            image = self._image(image_format=self._format, data=np.ascontiguousarray(rgb))
        # MediaPipe's VIDEO mode requires strictly increasing integer timestamps.
        ts = max(int(t_ms), self._last_ts + 1)
        self._last_ts = ts
        h, w = frame.shape[:2]
        faces: list[Face] = []
        if self.task is not None:
            result = self.task.detect_for_video(image, ts) if self._video else self.task.detect(image)
            faces = self._from_landmarks(result, w, h)
        if self.detector is not None and len(faces) < self.options.max_faces:
            result = self.detector.detect_for_video(image, ts) if self._video else self.detector.detect(image)
            faces += [d for d in self._from_detections(result, w, h) if not _covered(d, faces)]
        if self.yunet is not None and len(faces) < self.options.max_faces:
            found = self.yunet.detect(frame, rgb=not bgr)  # YuNet was trained on BGR: it reorders an RGB frame
            faces += [d for d in self._from_yunet(found) if not _covered(d, faces)]
        return faces[: self.options.max_faces]

    @staticmethod
    def _from_yunet(found: np.ndarray) -> list[Face]:
        return [Face((float(r[0]), float(r[1]), float(r[2]), float(r[3])), float(r[14]),
                     keypoints=r[4:14].reshape(5, 2).copy(), source="yunet") for r in found]

    @staticmethod
    def _from_landmarks(result: Any, w: int, h: int) -> list[Face]:
        faces = []
        for i, points in enumerate(result.face_landmarks):
            lm = np.array([(p.x * w, p.y * h, p.z * w) for p in points], np.float32)
            x0, y0 = lm[:, :2].min(axis=0)
            x1, y1 = lm[:, :2].max(axis=0)
            shapes = None
            if result.face_blendshapes and i < len(result.face_blendshapes):
                shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[i]}
            faces.append(Face((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), 1.0, lm, shapes))
        return faces

    @staticmethod
    def _from_detections(result: Any, w: int, h: int) -> list[Face]:
        faces = []
        for det in result.detections:
            bb = det.bounding_box
            kp = None
            if det.keypoints:
                kp = np.array([(k.x * w, k.y * h) for k in det.keypoints], np.float32)
            score = float(det.categories[0].score) if det.categories else 1.0
            faces.append(Face((float(bb.origin_x), float(bb.origin_y), float(bb.width), float(bb.height)),
                              score, keypoints=kp, source="detector"))
        faces.sort(key=lambda f: -f.score)
        return faces

    def close(self) -> None:
        for task in (self.task, self.detector, self.yunet):
            if task is not None:
                task.close()
        self.task = self.detector = self.yunet = None

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
