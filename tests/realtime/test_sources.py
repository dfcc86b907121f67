"""Sources through one interface, with fake capture objects for cameras and streams."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from realtime.sources import FileSource, SourceError, SourceOptions, open_source


def frame(value: int, h: int = 24, w: int = 32) -> np.ndarray:
    return np.full((h, w, 3), value % 256, np.uint8)


class FakeCapture:
    """Stands in for cv2.VideoCapture: replays a script of frames (None = failed read,
    other non-images = corrupt frames)."""

    def __init__(self, script, opened=True, fps=30.0, delay=0.0):
        self.script, self.opened, self.fps, self.delay = list(script), opened, fps, delay
        self.props: dict[int, float] = {}
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        if self.delay:
            time.sleep(self.delay)
        if not self.script:
            return False, None
        item = self.script.pop(0)
        return (item is not None), item

    def get(self, prop):
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return self.props.get(prop, 0)
        return self.props.get(prop, 0)

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def release(self):
        self.released = True


def test_camera_frames_arrive_and_resolution_is_requested():
    made = []

    def factory(*args):
        cap = FakeCapture([frame(i) for i in range(5)], delay=0.001)
        made.append(cap)
        return cap

    with open_source(0, SourceOptions(width=320, height=240, fps=15, queue_size=10), factory=factory) as src:
        assert src.live and src.kind == "camera"
        got = [f.image[0, 0, 0] for f in src]
    assert got == [0, 1, 2, 3, 4]
    assert made[0].props[cv2.CAP_PROP_FRAME_WIDTH] == 320
    assert made[0].props[cv2.CAP_PROP_FRAME_HEIGHT] == 240
    assert made[0].released


def test_camera_corrupt_frames_are_skipped_and_counted():
    script = [frame(1), np.zeros((0, 0, 3), np.uint8), "garbage", frame(2), np.zeros((4, 4), np.float32), frame(3)]
    with open_source("0", SourceOptions(queue_size=10), factory=lambda *a: FakeCapture(script)) as src:
        got = [int(f.image[0, 0, 0]) for f in src]
        assert got == [1, 2, 3]
        assert src.stats.corrupt == 3


def test_live_queue_drops_the_oldest_frames_for_a_slow_consumer():
    camera = FakeCapture([frame(i) for i in range(40)])
    with open_source(0, SourceOptions(queue_size=2), factory=lambda *a: camera) as src:
        got = []
        for f in src:
            if not got:  # a consumer slower than the camera, on any CPU: it waits until the camera is done
                deadline = time.monotonic() + 120  # only against a hang
                while camera.script and time.monotonic() < deadline:
                    time.sleep(0.005)
                assert not camera.script, "the camera was not read to its end"
            got.append(int(f.image[0, 0, 0]))
    assert src.stats.dropped > 0
    assert got[-1] == 39  # the newest frame is never the one dropped
    assert len(got) + src.stats.dropped == 40
    assert got == sorted(got)


def test_missing_camera_lists_the_indices_that_open():
    def factory(index, *rest):
        return FakeCapture([], opened=index in (0, 2))

    with pytest.raises(SourceError, match=r"no camera at index 5 \(cameras that open: 0, 2\)"):
        open_source(5, factory=factory)
    with pytest.raises(SourceError, match="no camera opens at indices 0-9"):
        open_source(3, factory=lambda *a: FakeCapture([], opened=False))


def test_real_missing_camera_is_a_clear_error():
    with pytest.raises(SourceError, match="no camera at index 9"):
        open_source(9)


def test_stream_reconnects_with_backoff_after_a_drop():
    caps = iter([FakeCapture([frame(1), frame(2)]), FakeCapture([], opened=False),
                 FakeCapture([frame(3)]), FakeCapture([], opened=False), FakeCapture([], opened=False)])
    opts = SourceOptions(queue_size=10, reconnect_tries=2, backoff_s=(0.01, 0.02))
    with open_source("rtsp://camera.local/stream", opts, factory=lambda *a: next(caps)) as src:
        got = [int(f.image[0, 0, 0]) for f in src]
    assert got == [1, 2, 3]
    assert src.stats.reconnects == 1
    assert "2 reconnects failed" in src.error


def test_file_with_decode_errors_skips_and_counts_them():
    script = [frame(1), None, frame(2), None, None, frame(3)]

    def factory(path):
        cap = FakeCapture(script)
        cap.props[cv2.CAP_PROP_FRAME_COUNT] = len(script)
        return cap

    src = FileSource("clip.mp4", SourceOptions(), factory)
    got = [(f.index, int(f.image[0, 0, 0])) for f in src]
    assert got == [(0, 1), (2, 2), (5, 3)]  # indices keep their place in the file
    assert src.stats.corrupt == 3
    assert not src.live


def test_a_text_file_is_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video at all\n" * 10)
    with pytest.raises(SourceError, match="notes.mp4: not a readable video file"):
        open_source(path)
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing.mp4")


def test_folder_of_images_skips_unreadable_ones(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), frame(i * 50))
    (tmp_path / "01b.jpg").write_bytes(b"broken jpeg")
    (tmp_path / "readme.txt").write_text("ignored")
    with open_source(tmp_path) as src:
        got = [int(f.image[0, 0, 0]) for f in src]
    assert got == [0, 50, 100]
    assert src.stats.corrupt == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="empty: no images"):
        open_source(empty)


def test_real_video_file_reads_every_frame(hamilton_clip):
    with open_source(hamilton_clip) as src:
        n = sum(1 for _ in src)
    assert n == 275 and src.stats.corrupt == 0
