"""Face-crop geometry: one implementation for training, export and realtime.

A crop is a square (centre, side, roll angle) in image pixels, derived from a
set of face points or a face box by the model's crop rule, then cut out and
resized with one affine warp. The rule travels in the model spec
(`affect.crop`), so the runtime frames faces the way the training data did.

Rule keys:
- `method`: "landmark_box" (square around the points' bounding box) or
  "box" (square around a detector/annotation box).
- `scale`: side = scale * max(box width, box height).
- `shift_y`: the centre moves down by shift_y * side (negative = up).
- `margin`: legacy spelling; scale = 1 + 2 * margin when `scale` is absent.
- `align`: rotate so the eyes are level (roll only).
- `box_scale`, `box_shift_y`: the same for MediaPipe FaceDetector boxes;
  `yunet_scale`, `yunet_shift_y`: for YuNet boxes (`BOX_RULE_KEYS`).

`face_crop_box` is the one reader of these keys: the camera's faces (mesh,
detector or YuNet box) and the training loaders' annotated faces all get
their square from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# YuNet's box already spans about AffectNet's framing (forehead to chin): fitted by
# bench/calibrate_crop.py on 200 AffectNet faces outside the held-out part, median IoU 0.85
# with the training image (0.84 before the fit; the MediaPipe detector box: 0.82).
YUNET_SCALE, YUNET_SHIFT_Y = 0.98, 0.016

# Fitted by bench/calibrate_crop.py so that runtime crops of AffectNet's 224x224 training
# images reproduce the whole image (median IoU 0.84 on the 478-point mesh box, 0.81 on the
# detector box); `box_scale`/`box_shift_y` are the rule for MediaPipe FaceDetector boxes,
# `yunet_scale`/`yunet_shift_y` for YuNet's boxes.
DEFAULT_CROP: dict[str, Any] = {"method": "landmark_box", "scale": 1.112, "shift_y": -0.043, "align": True,
                                "box_scale": 1.158, "box_shift_y": -0.074,
                                "yunet_scale": YUNET_SCALE, "yunet_shift_y": YUNET_SHIFT_Y}

# The rule keys that frame each face finder's boxes. A rule without the MediaPipe detector's keys
# falls back to its mesh numbers, then to FALLBACK_BOX_SCALE (as models before the box rule did);
# a rule without YuNet's keys (every model made before YuNet) takes the numbers fitted above: they
# relate YuNet's box to AffectNet's framing, the framing every shipped model was trained on.
BOX_RULE_KEYS: dict[str, tuple[str, str]] = {"detector": ("box_scale", "box_shift_y"),
                                             "yunet": ("yunet_scale", "yunet_shift_y")}
FALLBACK_BOX_SCALE = 1.3
# A training sample's box that is already the rule's square: crop it as given.
AS_GIVEN: dict[str, Any] = {"method": "box", "scale": 1.0}


@dataclass(frozen=True)
class CropBox:
    cx: float
    cy: float
    side: float
    angle: float = 0.0  # degrees, counter-clockwise roll to undo

    def as_xywh(self) -> tuple[float, float, float, float]:
        half = self.side / 2
        return (self.cx - half, self.cy - half, self.side, self.side)


def _scale(rule: Mapping[str, Any]) -> float:
    if "scale" in rule:
        return float(rule["scale"])
    return 1.0 + 2.0 * float(rule.get("margin", 0.15))


def box_from_xywh(x: float, y: float, w: float, h: float, rule: Mapping[str, Any] = DEFAULT_CROP,
                  angle: float = 0.0) -> CropBox:
    """Square crop around an axis-aligned box by the rule's scale and shift."""
    if w <= 0 or h <= 0:
        raise ValueError(f"face box has no area: w={w}, h={h}")
    side = _scale(rule) * max(w, h)
    cy = y + h / 2 + float(rule.get("shift_y", 0.0)) * side
    return CropBox(x + w / 2, cy, side, angle)


def box_from_points(points: np.ndarray, rule: Mapping[str, Any] = DEFAULT_CROP,
                    eyes: tuple[np.ndarray, np.ndarray] | None = None) -> CropBox:
    """Square crop around face points (N, 2) in pixels.

    With `eyes` (left, right centres) and `rule["align"]`, the crop is rotated
    so the eyes are level; the box is measured in the de-rotated frame so a
    tilted head does not inflate it.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        raise ValueError("need at least two face points for a landmark crop")
    angle = roll_angle(*eyes) if (eyes is not None and rule.get("align", False)) else 0.0
    centre = pts.mean(axis=0)
    if angle:
        pts = _rotate(pts, centre, -angle)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    box = box_from_xywh(x0, y0, x1 - x0, y1 - y0, rule)
    if not angle:
        return box
    # The box centre was found in the de-rotated frame: rotate it back.
    cx, cy = _rotate(np.array([[box.cx, box.cy]]), centre, angle)[0]
    return CropBox(float(cx), float(cy), box.side, angle)


def roll_angle(left_eye: np.ndarray, right_eye: np.ndarray) -> float:
    """Roll in degrees of the line from the image-left eye to the image-right eye."""
    (lx, ly), (rx, ry) = np.asarray(left_eye, float)[:2], np.asarray(right_eye, float)[:2]
    if rx < lx:  # accept the eyes in either order
        (lx, ly), (rx, ry) = (rx, ry), (lx, ly)
    return math.degrees(math.atan2(ry - ly, rx - lx))


def _rotate(pts: np.ndarray, centre: np.ndarray, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (pts - centre) @ rot.T + centre


def crop_transform(box: CropBox, size: int) -> np.ndarray:
    """2x3 affine matrix mapping image pixels into the size x size crop."""
    s = size / box.side
    t = math.radians(box.angle)
    cos, sin = math.cos(t) * s, math.sin(t) * s
    # rotate by -angle around the box centre, scale, then move the centre to the crop centre
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
    m[:, 2] = np.array([size / 2, size / 2]) - m[:, :2] @ np.array([box.cx, box.cy])
    return m


def crop_face(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Cut the square crop out of an HxWxC uint8 image; outside pixels are black."""
    m = crop_transform(box, size)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def points_to_crop(points: np.ndarray, box: CropBox, size: int = 1) -> np.ndarray:
    """Map image points (N, 2) into crop coordinates; size=1 gives [0, 1] units."""
    m = crop_transform(box, size)
    pts = np.asarray(points, float).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def box_rule(rule: Mapping[str, Any], finder: str) -> dict[str, float]:
    """`{"scale", "shift_y"}` for the boxes of `finder` ("detector", "yunet") under `rule`."""
    if finder not in BOX_RULE_KEYS:
        raise ValueError(f"no box rule for face finder {finder!r}; known: {sorted(BOX_RULE_KEYS)}")
    scale_key, shift_key = BOX_RULE_KEYS[finder]
    if finder == "detector":
        return {"scale": float(rule.get(scale_key, rule.get("scale", FALLBACK_BOX_SCALE))),
                "shift_y": float(rule.get(shift_key, rule.get("shift_y", 0.0)))}
    return {"scale": float(rule.get(scale_key, DEFAULT_CROP[scale_key])),
            "shift_y": float(rule.get(shift_key, DEFAULT_CROP[shift_key]))}


def face_crop_box(rule: Mapping[str, Any], box: tuple[float, float, float, float] | None = None,
                  points: np.ndarray | None = None, eyes: tuple[np.ndarray, np.ndarray] | None = None,
                  finder: str | None = None) -> CropBox:
    """The square crop of one face under the model's crop rule: the one reader of the rule.

    - `finder="landmarker"` (a face mesh): the mesh rule around `points`;
    - `finder="detector"` / `"yunet"`: that finder's box rule (`BOX_RULE_KEYS`) around `box`,
      rolled by `eyes` when the rule aligns;
    - `finder=None` (an annotated training face): the rule's own method, `landmark_box` around
      `points` when it has them, else the rule's scale and shift around `box`.
    """
    if finder == "landmarker" or (finder is None and rule.get("method") == "landmark_box"
                                  and points is not None and len(points) >= 2):
        if points is None:
            raise ValueError("a landmarker face needs its points")
        return box_from_points(points, rule, eyes=eyes)
    if box is None:
        raise ValueError("a box crop needs the face box")
    if finder is None:
        return box_from_xywh(*box, rule)
    angle = roll_angle(*eyes) if (eyes is not None and rule.get("align", False)) else 0.0
    return box_from_xywh(*box, box_rule(rule, finder), angle=angle)


def given_square(box: tuple[float, float, float, float], angle: float = 0.0) -> CropBox:
    """A training sample's stored square (already the rule's crop), as a `CropBox`."""
    return box_from_xywh(*box, AS_GIVEN, angle=angle)
