"""Drawing the readings onto frames, and the OpenCV window.

Per face: box and track ID, expression + confidence, probability bars.
Per frame: a valence–arousal inset (each track's recent trail, quadrant names
from `affect.labels.QUADRANTS`), FPS and per-stage milliseconds.

`layout_panels` places every panel (each face's bars, the inset, the stats
lines) where it covers no face box, no face's label and no other panel: the
bars try the right of their face, then the left, below, above; the inset and
the stats try the four corners, the inset shrinking before it gives up. A
panel with no free place is left out for that frame (a crowd's faces stay
visible; their labels still say the expression).
"""

from __future__ import annotations

import functools
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


Rect = tuple[int, int, int, int]  # x, y, w, h
BAR_W, BAR_ROW, BAR_TEXT_W = 60, 11, 52  # a bar, one row's height, the room for its label
LABEL_H = 16  # the "#id expression p%" line above a face box
STATS_SIZE = (300, 42)
INSET_SIZES = (150, 110, 80)
MARGIN = 8


def track_color(track_id: int) -> tuple[int, int, int]:
    return PALETTE[track_id % len(PALETTE)]


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45,
          color: tuple[int, int, int] = (255, 255, 255), thickness: int = 1) -> None:
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def bar_panel_size(n_labels: int) -> tuple[int, int]:
    return BAR_W + BAR_TEXT_W, n_labels * BAR_ROW


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _free(rect: Rect, taken: Sequence[Rect], width: int, height: int) -> bool:
    x, y, w, h = rect
    return x >= 0 and y >= 0 and x + w <= width and y + h <= height and not any(_overlaps(rect, t) for t in taken)


def face_rects(boxes: Sequence[tuple[float, float, float, float]]) -> list[Rect]:
    """Each face box with its label line above it: what no panel may cover."""
    rects = []
    for bx, by, bw, bh in boxes:
        x, y, w, h = int(bx) - 2, int(by) - 2, int(round(bw)) + 5, int(round(bh)) + 5
        rects.append((x, y - LABEL_H, max(w, 120), h + LABEL_H))
    return rects


def layout_panels(boxes: Sequence[tuple[float, float, float, float]], n_labels: int, width: int, height: int,
                  inset: bool = True, stats: bool = True) -> dict[str, Any]:
    """Where the panels go: `bars` (one (x, y) or None per face), `inset` ((x, y, side) or None),
    `stats` ((x, y) or None); no panel covers a face box, a face's label line or another panel."""
    taken = face_rects(boxes)
    out: dict[str, Any] = {"bars": [], "inset": None, "stats": None}
    if stats:
        sw, sh = STATS_SIZE
        for x, y in ((0, 0), (0, height - sh), (width - sw, 0), (width - sw, height - sh)):
            if _free((x, y, sw, sh), taken, width, height):
                out["stats"] = (x, y)
                taken.append((x, y, sw, sh))
                break
    if inset:
        for size in INSET_SIZES:
            size = min(size, height - 2 * MARGIN, width - 2 * MARGIN)
            if size < 40:
                break
            corners = ((width - size - MARGIN, MARGIN), (MARGIN, MARGIN), (width - size - MARGIN, height - size - MARGIN),
                       (MARGIN, height - size - MARGIN))
            spot = next(((x, y) for x, y in corners if _free((x, y, size, size), taken, width, height)), None)
            if spot is not None:
                out["inset"] = (spot[0], spot[1], size)
                taken.append((spot[0], spot[1], size, size))
                break
    pw, ph = bar_panel_size(n_labels)
    for bx, by, bw, bh in boxes:
        x0, y0, x1, y1 = int(bx), int(by), int(bx + bw), int(by + bh)
        spots = ((x1 + 4, y0), (x0 - pw - 4, y0), (x1 + 4, y1 - ph), (x0 - pw - 4, y1 - ph),
                 (x0, y1 + 4), (x0, y0 - LABEL_H - ph - 4))
        spot = next(((x, y) for x, y in spots if _free((x, y, pw, ph), taken, width, height)), None)
        out["bars"].append(spot)
        if spot is not None:
            taken.append((spot[0], spot[1], pw, ph))
    return out


def draw_face(img: np.ndarray, face: Any, labels: Sequence[str], bars: bool = True,
              panel: tuple[int, int] | None = None, au_thresholds: Sequence[float] | None = None) -> None:
    """Box, ID, label+confidence and probability bars of one `FaceResult`; the bars at
    `panel` (top-left) when given (`layout_panels`), else beside the box. Its active AUs under
    the box: at or above `au_thresholds` (AU_NAMES order, the AU reader's; None = 0.5)."""
    x, y, w, h = (int(round(v)) for v in face.box)
    color = track_color(face.track_id)
    cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)
    _text(img, f"#{face.track_id} {face.expression} {face.confidence:.0%}", (x, max(12, y - 6)), 0.5, color)
    aus = getattr(face, "aus", None)
    if aus is not None:  # the face's active action units under its box (--aus)
        from affect.aus import AU_NAMES, active_aus

        active = active_aus(aus, AU_NAMES, au_thresholds)
        _text(img, " ".join(active[:6]) if active else "no AU", (x, min(img.shape[0] - 4, y + h + 14)), 0.42, color)
    if not bars:
        return
    bar_w, row = BAR_W, BAR_ROW
    if panel is not None:
        bx, by = panel
    else:
        bx, by = x + w + 4, y
        if bx + bar_w + 60 > img.shape[1]:  # no room on the right: draw on the left
            bx = max(0, x - bar_w - 64)
    rows = 0
    for i, p in enumerate(face.probabilities[:len(labels)]):
        top = by + i * row
        if top + row > img.shape[0]:
            break
        cv2.rectangle(img, (bx, top), (bx + bar_w, top + row - 2), (40, 40, 40), -1)
        cv2.rectangle(img, (bx, top), (bx + int(bar_w * float(p)), top + row - 2), color, -1)
        rows += 1
    _blit_labels(img, tuple(labels), bx + bar_w, by, rows)


@functools.lru_cache(maxsize=8)
def _label_column(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The bar labels drawn once (as `_text` draws them: a black outline, then white), as
    (keep, add), each [rows * BAR_ROW, width, 1]: a pixel under them becomes pixel * keep + add. A crowd's
    frame has a bar panel per face; blending one column is several times cheaper than
    16 anti-aliased putText calls a face."""
    height, width = len(labels) * BAR_ROW, BAR_TEXT_W + 12
    outline, fill = np.zeros((height, width), np.uint8), np.zeros((height, width), np.uint8)
    for i, label in enumerate(labels):
        org = (3, i * BAR_ROW + BAR_ROW - 3)
        cv2.putText(outline, label[:8], org, FONT, 0.33, 255, 3, cv2.LINE_AA)
        cv2.putText(fill, label[:8], org, FONT, 0.33, 255, 1, cv2.LINE_AA)
    a_out, a_fill = outline / np.float32(255), fill / np.float32(255)
    # what stays of the frame under the text, and what the white adds: pixel * keep + add
    return ((1 - a_out) * (1 - a_fill))[..., None], (255 * a_fill)[..., None]


def _blit_labels(img: np.ndarray, labels: tuple[str, ...], x: int, y: int, rows: int) -> None:
    """The first `rows` bar labels with their top-left at (x, y), cut to the image."""
    keep, add = _label_column(labels)
    h = min(rows * BAR_ROW, img.shape[0] - y)
    w = min(keep.shape[1], img.shape[1] - x)
    if h <= 0 or w <= 0 or x < 0 or y < 0:
        return
    roi = img[y:y + h, x:x + w]
    roi[:] = roi * keep[:h, :w] + add[:h, :w]


def draw_va_inset(img: np.ndarray, trails: Mapping[int, Iterable[tuple[float, float]]], size: int = 150,
                  margin: int = MARGIN, at: tuple[int, int] | None = None) -> None:
    """Valence (x) – arousal (y, up) plane with each track's trail, its top-left corner at `at`
    (default: the top-right corner)."""
    size = min(size, img.shape[0] - 2 * margin, img.shape[1] - 2 * margin)
    if size < 40:
        return
    x0, y0 = at if at is not None else (img.shape[1] - size - margin, margin)
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

    for tid, trail in trails.items():
        va = np.asarray(list(trail), np.float64).reshape(-1, 2)
        if not len(va):
            continue
        # valence → x, arousal → y (up), rounded half to even as round() does
        pts = np.column_stack([x0 + np.round((va[:, 0] + 1) / 2 * (size - 1)),
                               y0 + np.round((1 - va[:, 1]) / 2 * (size - 1))]).astype(np.int32)
        color = track_color(tid)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, color, 1, cv2.LINE_AA)
        cv2.circle(img, (int(pts[-1, 0]), int(pts[-1, 1])), 4, color, -1, cv2.LINE_AA)


def draw_stats(img: np.ndarray, fps: float, timings: Mapping[str, float], at: tuple[int, int] = (0, 0)) -> None:
    parts = " ".join(f"{k} {v:.1f}" for k, v in timings.items())
    x, y = at
    _text(img, f"{fps:5.1f} FPS", (x + 8, y + 18), 0.55, (80, 255, 80))
    _text(img, f"ms: {parts}", (x + 8, y + 36), 0.4)


def draw_overlay(img: np.ndarray, faces: Sequence[Any], labels: Sequence[str],
                 trails: Mapping[int, Iterable[tuple[float, float]]], fps: float,
                 timings: Mapping[str, float], au_thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Every face, the inset and the stats, laid out by `layout_panels`; returns the layout."""
    layout = layout_panels([f.box for f in faces], len(labels), img.shape[1], img.shape[0])
    for face, spot in zip(faces, layout["bars"]):
        draw_face(img, face, labels, bars=spot is not None, panel=spot, au_thresholds=au_thresholds)
    if layout["inset"] is not None:
        x, y, size = layout["inset"]
        draw_va_inset(img, trails, size=size, at=(x, y))
    if layout["stats"] is not None:
        draw_stats(img, fps, timings, at=layout["stats"])
    return layout


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
