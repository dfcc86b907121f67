from __future__ import annotations

import numpy as np

from realtime.smoothing import EmaFilter, OneEuroFilter, SmoothingOptions, TrackSmoother
from realtime.tracking import Tracker, TrackerOptions, iou_matrix


def test_iou_matrix_values():
    m = iou_matrix([(0, 0, 10, 10)], [(0, 0, 10, 10), (5, 0, 10, 10), (20, 20, 5, 5)])
    np.testing.assert_allclose(m[0], [1.0, 50 / 150, 0.0])


def test_ids_follow_moving_faces_and_survive_missed_frames():
    tracker = Tracker(TrackerOptions(max_missed=3))
    a, b = (10, 10, 50, 50), (200, 10, 50, 50)
    ids = [t.id for t in tracker.update([a, b])]
    for step in range(1, 10):  # both move right by 8 px per frame, listed in swapped order
        moved = [(b[0] + 8 * step, 10, 50, 50), (a[0] + 8 * step, 10, 50, 50)]
        assert [t.id for t in tracker.update(moved)] == ids[::-1]
    last_a = (a[0] + 72, 10, 50, 50)
    for _ in range(3):  # face b vanishes for 3 frames: its ID stays alive
        assert [t.id for t in tracker.update([last_a])] == [ids[0]]
    assert [t.id for t in tracker.update([last_a, (b[0] + 80, 10, 50, 50)])] == [ids[0], ids[1]]


def test_a_fast_jump_keeps_the_id_by_centroid_and_lost_tracks_retire():
    tracker = Tracker(TrackerOptions(max_missed=2, centroid_ratio=0.6))
    first = tracker.update([(100, 100, 40, 40)])[0].id
    # moved 22 px: IoU 0.29 (below 0.3), but the centre is within 0.6 box sizes
    assert tracker.update([(122, 100, 40, 40)])[0].id == first
    for _ in range(3):
        tracker.update([])
    assert tracker.retired == [first] and not tracker.tracks
    assert tracker.update([(122, 100, 40, 40)])[0].id != first  # a new person, a new ID


def test_one_euro_reduces_jitter_and_still_follows_a_step():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    t = np.arange(120) / 30
    signal = np.where(t < 2, 0.0, 0.6) + rng.normal(0, 0.08, t.size)
    out = np.array([f(np.array([x]), ti)[0] for x, ti in zip(signal, t)])
    raw_jitter = np.abs(np.diff(signal[:55])).mean()
    assert np.abs(np.diff(out[:55])).mean() < 0.5 * raw_jitter
    assert abs(out[-10:].mean() - 0.6) < 0.05  # reaches the new level within 2 s


def test_ema_and_switches():
    ema = EmaFilter(0.5)
    ema(np.array([1.0, 0.0]))
    np.testing.assert_allclose(ema(np.array([0.0, 1.0])), [0.5, 0.5])
    off = TrackSmoother(SmoothingOptions(ema=False, one_euro=False))
    p, v = off.update(np.array([0.2, 0.8]), np.array([0.3, -0.4]), 0.0)
    p, v = off.update(np.array([0.9, 0.1]), np.array([-0.5, 0.5]), 0.033)
    np.testing.assert_allclose(p, [0.9, 0.1])
    np.testing.assert_allclose(v, [-0.5, 0.5])
    on = TrackSmoother(SmoothingOptions())
    on.update(np.array([0.2, 0.8]), np.array([0.3, -0.4]), 0.0)
    p, v = on.update(np.array([0.9, 0.1]), np.array([-0.5, 0.5]), 0.033)
    assert 0.2 < p[0] < 0.9 and abs(p.sum() - 1) < 1e-9
    assert -0.5 < v[0] < 0.3


def test_a_new_face_cannot_push_a_face_off_its_own_track():
    """Frame 84 of the crowds bench (1280x720, train part), as the tracker saw it: 21 tracks (some
    stale, from the scene before) and 14 boxes, one a face the full-resolution pass found first.
    The large face at (891, 466) keeps track 19; the newcomer gets a new track."""
    from realtime.tracking import Track, Tracker

    tracks = {5: (724, 219, 29, 37, 4), 8: (887, 282, 103, 143, 4), 9: (453, 77, 37, 45, 0),
              10: (520, 505, 31, 37, 4), 11: (1093, 154, 41, 47, 4), 12: (533, 394, 67, 80, 4),
              13: (1003, 479, 69, 90, 4), 14: (899, 591, 51, 61, 4), 15: (1138, 226, 79, 102, 0),
              16: (291, 49, 22, 29, 4), 17: (987, 82, 108, 142, 0), 18: (649, 314, 127, 159, 0),
              19: (892, 468, 165, 217, 0), 20: (311, 152, 80, 97, 0), 21: (1173, 593, 71, 75, 0),
              22: (423, 291, 55, 67, 0), 23: (46, 485, 33, 41, 0), 24: (688, 180, 56, 68, 0),
              25: (1142, 84, 53, 72, 0), 26: (376, 414, 18, 21, 0), 27: (1160, 34, 28, 35, 0)}
    boxes = [(646, 312, 132, 164), (987, 82, 108, 143), (891, 466, 165, 217), (313, 152, 79, 98),
             (45, 485, 34, 41), (1138, 227, 81, 101), (423, 293, 56, 66), (375, 413, 17, 23),
             (1143, 85, 56, 74), (689, 180, 56, 69), (1159, 34, 30, 36), (1172, 593, 69, 78),
             (452, 74, 39, 47), (117, 676, 27, 30)]
    tracker = Tracker()
    tracker.tracks = {i: Track(i, b[:4], missed=b[4]) for i, b in tracks.items()}
    tracker._next_id = 28
    ids = [t.id for t in tracker.update(boxes)]
    assert ids == [18, 17, 19, 20, 23, 15, 22, 26, 25, 24, 27, 21, 9, 28]
