"""Drawing the readings onto frames, and the OpenCV window.

Per face: box and track ID, expression + confidence, probability bars.
Per frame: a valence–arousal inset (each track's recent trail, quadrant names
from `affect.labels.QUADRANTS`), FPS and per-stage milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affect.labels import QUADRANTS

FONT = cv2.FONT_HERSHEY_SIMPLEX
PALETTE = [(66, 135, 245), (80, 200, 120), (245, 160, 66), (200, 80, 200), (60, 220, 220),
           (240, 90, 90), (160, 160, 60), (120, 120, 250)]  # BGR


def track_color(track_id: int) -> tuple[int, int, int]:
    return PALETTE[track_id % len(PALETTE)]


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45,
          color: tuple[int, int, int] = (255, 255, 255), thickness: int = 1) -> None:
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def draw_face(img: np.ndarray, face: Any, labels: Sequence[str], bars: bool = True) -> None:
    """Box, ID, label+confidence and probability bars of one `FaceResult`."""
    x, y, w, h = (int(round(v)) for v in face.box)
    color = track_color(face.track_id)
    cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)
    _text(img, f"#{face.track_id} {face.expression} {face.confidence:.0%}", (x, max(12, y - 6)), 0.5, color)
    aus = getattr(face, "aus", None)
    if aus is not None:  # the face's active action units under its box (--aus)
        from affect.aus import AU_NAMES, active_aus

        active = active_aus(aus, AU_NAMES)
        _text(img, " ".join(active[:6]) if active else "no AU", (x, min(img.shape[0] - 4, y + h + 14)), 0.42, color)
    if not bars:
        return
    bar_w, row = 60, 11
    bx, by = x + w + 4, y
    if bx + bar_w + 60 > img.shape[1]:  # no room on the right: draw on the left
        bx = max(0, x - bar_w - 64)
    for i, (label, p) in enumerate(zip(labels, face.probabilities)):
        top = by + i * row
        if top + row > img.shape[0]:
            break
        cv2.rectangle(img, (bx, top), (bx + bar_w, top + row - 2), (40, 40, 40), -1)
        cv2.rectangle(img, (bx, top), (bx + int(bar_w * float(p)), top + row - 2), color, -1)
        _text(img, label[:8], (bx + bar_w + 3, top + row - 3), 0.33)


def draw_va_inset(img: np.ndarray, trails: Mapping[int, Iterable[tuple[float, float]]], size: int = 150,
                  margin: int = 8) -> None:
    """Valence (x) – arousal (y, up) plane in the top-right corner with each track's trail."""
    size = min(size, img.shape[0] - 2 * margin, img.shape[1] - 2 * margin)
    if size < 40:
        return
    x0, y0 = img.shape[1] - size - margin, margin
    roi = img[y0:y0 + size, x0:x0 + size]
    roi[:] = (roi * 0.35).astype(np.uint8)  # darken in place: readable on any frame
    c = size // 2
    cv2.line(img, (x0 + c, y0), (x0 + c, y0 + size), (150, 150, 150), 1)
    cv2.line(img, (x0, y0 + c), (x0 + size, y0 + c), (150, 150, 150), 1)
    cv2.rectangle(img, (x0, y0), (x0 + size, y0 + size), (200, 200, 200), 1)
    for (pos_v, pos_a), name in QUADRANTS.items():
        tx = x0 + (c + 4 if pos_v else 4)
        ty = y0 + (12 if pos_a else size - 4)
        _text(img, name, (tx, ty), 0.32, (200, 200, 200))

    def to_px(v: float, a: float) -> tuple[int, int]:
        return (x0 + int(round((v + 1) / 2 * (size - 1))), y0 + int(round((1 - a) / 2 * (size - 1))))

    for tid, trail in trails.items():
        pts = [to_px(v, a) for v, a in trail]
        if not pts:
            continue
        color = track_color(tid)
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, color, 1, cv2.LINE_AA)
        cv2.circle(img, pts[-1], 4, color, -1, cv2.LINE_AA)


def draw_stats(img: np.ndarray, fps: float, timings: Mapping[str, float]) -> None:
    parts = " ".join(f"{k} {v:.1f}" for k, v in timings.items())
    _text(img, f"{fps:5.1f} FPS", (8, 18), 0.55, (80, 255, 80))
    _text(img, f"ms: {parts}", (8, 36), 0.4)


class Window:
    """An OpenCV window: q quits, space pauses, s saves a snapshot."""

    def __init__(self, name: str = "affectcam", snapshot_dir: str | Path = "."):
        self.name = name
        self.snapshot_dir = Path(snapshot_dir)
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)

    def show(self, img: np.ndarray, frame_index: int) -> bool:
        """Show a frame; returns False when the user asked to quit."""
        cv2.imshow(self.name, img)
        key = cv2.waitKey(1) & 0xFF
        while True:
            if key == ord("q"):
                return False
            if key == ord("s"):
                self.snapshot(img, frame_index)
            if key != ord(" "):
                return True
            # paused: wait for space again (or q / s)
            key = 0
            while key not in (ord(" "), ord("q")):
                key = cv2.waitKey(50) & 0xFF
                if key == ord("s"):
                    self.snapshot(img, frame_index)
            if key == ord("q"):
                return False
            return True

    def snapshot(self, img: np.ndarray, frame_index: int) -> Path:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.snapshot_dir / f"snapshot_{frame_index:06d}_{int(time.time())}.png"
        cv2.imwrite(str(path), img)
        return path

    def close(self) -> None:
        cv2.destroyWindow(self.name)
