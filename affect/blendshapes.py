"""MediaPipe face blendshapes as a model input: one implementation for
training caches, evaluation, export calibration and the camera.

The FaceLandmarker that finds faces in `realtime` also scores 52 blendshapes
per face (jawOpen, mouthSmileLeft, browInnerUp, …). A model whose spec lists
`blendshapes` takes them as a second input, `[N, B]` in the spec's order; a
row of NaN says "none for this face" and the model reads the image alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# The 52 categories of MediaPipe's face blendshapes model, in its output order.
MEDIAPIPE_BLENDSHAPES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)

# Face crops go to the landmarker at this side (training caches, eval, export
# calibration alike): its detector works at 128 px and its mesh at 256 px, so a
# larger crop adds nothing and a model-size (160 px) one loses detail.
LANDMARKER_CROP = 256

# Tight face crops (AffectNet's, a model's input crop) get this much black
# border on each side, as a fraction of their side: the landmarker's detector
# misses faces that fill the whole picture.
CROP_PADDING = 0.3


def blendshape_row(scores: Mapping[str, float] | None, names: Sequence[str]) -> np.ndarray:
    """float32 [B] in `names` order; all NaN when `scores` is None or lacks a name."""
    if scores is None or any(n not in scores for n in names):
        return np.full(len(names), np.nan, np.float32)
    return np.array([scores[n] for n in names], np.float32)


def mirror_order(names: Sequence[str]) -> np.ndarray:
    """Index array that swaps every ...Left score with its ...Right twin: the
    blendshapes of the horizontally flipped face."""
    index = {n: i for i, n in enumerate(names)}

    def twin(name: str) -> str:
        if name.endswith("Left"):
            return name[:-4] + "Right"
        if name.endswith("Right"):
            return name[:-5] + "Left"
        return name

    return np.array([index.get(twin(n), i) for i, n in enumerate(names)], np.int64)


class CropBlendshapes:
    """Blendshapes of single face crops (RGB uint8) with a FaceLandmarker in
    IMAGE mode; `None` where it finds no face. Use as a context manager (the
    MediaPipe task must be closed)."""

    def __init__(self, face_model: str | os.PathLike, min_confidence: float = 0.3):
        from mediapipe.tasks.python import BaseOptions, vision

        path = Path(face_model)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: MediaPipe face model not found")
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), output_face_blendshapes=True, num_faces=1,
            min_face_detection_confidence=min_confidence, min_face_presence_confidence=min_confidence)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def __call__(self, rgb: np.ndarray) -> dict[str, float] | None:
        import mediapipe as mp

        rgb = np.asarray(rgb, np.uint8)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        h, w = rgb.shape[:2]
        ph, pw = int(h * CROP_PADDING), int(w * CROP_PADDING)
        canvas = np.zeros((h + 2 * ph, w + 2 * pw, 3), np.uint8)
        canvas[ph:ph + h, pw:pw + w] = rgb[:, :, :3]
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=canvas))
        if not result.face_blendshapes:
            return None
        return {c.category_name: float(c.score) for c in result.face_blendshapes[0]}

    def rows(self, crops: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
        """float32 [N, B]; NaN rows where no face was found."""
        out = np.full((len(crops), len(names)), np.nan, np.float32)
        for i, crop in enumerate(crops):
            out[i] = blendshape_row(self(crop), names)
        return out

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> CropBlendshapes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
