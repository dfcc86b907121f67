"""Stable face IDs across frames.

Each frame's boxes are matched to the live tracks by IoU (Hungarian
assignment, scipy); a box that overlaps no track can still take a nearby one
by centroid distance, which keeps the ID through fast motion and through the
frames `--every N` or a slow detector leaves behind. A track that finds no box
survives `max_missed` frames before its ID is retired (a blink of the
detector, a hand over the face), and retired tracks free their per-track
state, so memory stays flat over long runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

Box = tuple[float, float, float, float]  # x, y, w, h


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a_arr, b_arr = np.asarray(a, float), np.asarray(b, float)
    ax0, ay0, ax1, ay1 = a_arr[:, 0:1], a_arr[:, 1:2], a_arr[:, 0:1] + a_arr[:, 2:3], a_arr[:, 1:2] + a_arr[:, 3:4]
    bx0, by0, bx1, by1 = b_arr[:, 0], b_arr[:, 1], b_arr[:, 0] + b_arr[:, 2], b_arr[:, 1] + b_arr[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a_arr[:, 2:3] * a_arr[:, 3:4] + b_arr[:, 2] * b_arr[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Track:
    id: int
    box: Box
    hits: int = 1
    missed: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # smoothers, trail, last reading


@dataclass
class TrackerOptions:
    iou_threshold: float = 0.3
    max_missed: int = 15  # frames a track survives without a box
    centroid_ratio: float = 0.6  # a match by distance must be within this × the track's box size


_NO_MATCH = 1e6  # the cost of a pair that may not match (more than all real pairs together)


class Tracker:
    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self.tracks: dict[int, Track] = {}
        self.retired: list[int] = []  # IDs dropped by the last update
        self._next_id = 1

    def update(self, boxes: Sequence[Box]) -> list[Track]:
        """Assign each box a track (in the boxes' order); age the unmatched tracks."""
        o = self.options
        ids = list(self.tracks)
        prev = [self.tracks[i].box for i in ids]
        assigned: dict[int, int] = {}  # box index -> track id
        if ids and boxes:
            iou = iou_matrix(boxes, prev)
            dist = self._centroid_cost(boxes, prev)
            # IoU first; the centroid term only decides between boxes that overlap nothing. A pair
            # that passes neither test costs more than any real match together: otherwise a new
            # face (that must take some column) could buy a cheap far track and push a face off its
            # own track (seen on the crowds bench: one face changing ID at every full-res pass)
            cost = np.where(iou >= o.iou_threshold, 1.0 - iou,
                            np.where(dist <= o.centroid_ratio, 1.0 + dist, _NO_MATCH))
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < _NO_MATCH:  # passed the IoU or the centroid test
                    assigned[r] = ids[c]
        out = []
        for i, box in enumerate(boxes):
            tid = assigned.get(i)
            if tid is None:
                tid = self._next_id
                self._next_id += 1
                self.tracks[tid] = Track(tid, tuple(box))
            else:
                track = self.tracks[tid]
                track.box, track.hits, track.missed = tuple(box), track.hits + 1, 0
            out.append(self.tracks[tid])
        self.retired = []
        for tid in set(ids) - set(assigned.values()):
            track = self.tracks[tid]
            track.missed += 1
            if track.missed > o.max_missed:
                del self.tracks[tid]
                self.retired.append(tid)
        return out

    @staticmethod
    def _centroid_cost(boxes: Sequence[Box], prev: Sequence[Box]) -> np.ndarray:
        a, b = np.asarray(boxes, float), np.asarray(prev, float)
        ca = a[:, :2] + a[:, 2:] / 2
        cb = b[:, :2] + b[:, 2:] / 2
        size = np.maximum(b[:, 2], b[:, 3])[None, :]
        return np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2) / np.maximum(size, 1e-6)
