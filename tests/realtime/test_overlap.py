"""The overlapped pipeline (reading, faces and the model on their own threads):
the same results as the sequential path, in frame order, nothing dropped for
files, newest frames for live sources, and a clean close on Ctrl-C, on an
error inside any stage and at the end of the source."""

from __future__ import annotations

import os
import signal
import threading
import time

import cv2
import pytest

from affect.recording import read_csv
from realtime import (
    FaceFindingOptions,
    ModelOptions,
    OutputOptions,
    Pipeline,
    PipelineOptions,
    ScheduleOptions,
)
from realtime.sources import Frame, LiveSource, Source, SourceOptions

FRAMES = 60  # a subset of the clip: frames 0-59 hold a wide shot with two faces and cuts


def stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("affectcam-")]


def readings(options: PipelineOptions) -> list[tuple]:
    """Every figure of every face of every frame, for exact comparison."""
    out = []
    with Pipeline(options) as p:
        for r in p:
            out.append((r.index, r.t_ms, [
                (f.track_id, f.box, f.det_score, f.crop_box, f.expression, f.inferred,
                 f.probabilities.tolist(), f.raw_probabilities.tolist(), f.valence, f.arousal,
                 f.raw_valence, f.raw_arousal) for f in r.faces]))
    return out


@pytest.mark.parametrize("every", [1, 3])
def test_overlapped_results_equal_the_sequential_ones(hamilton_clip, onnx_model, face_model_path, every):
    opts = dict(source=hamilton_clip, model=ModelOptions(onnx_model, threads=1),
                faces=FaceFindingOptions(face_model=face_model_path))
    sequential = readings(PipelineOptions(schedule=ScheduleOptions(every, FRAMES, overlap=False), **opts))
    overlapped = readings(PipelineOptions(schedule=ScheduleOptions(every, FRAMES, overlap=True), **opts))
    assert [r[0] for r in overlapped] == list(range(FRAMES))  # in order, none dropped
    assert sum(len(r[2]) for r in sequential) >= 30  # faces to compare (32 on this clip)
    assert overlapped == sequential
    assert not stage_threads()


def test_end_of_a_file_delivers_every_frame_and_closes_the_sinks(hamilton_clip, onnx_model,
                                                                 face_model_path, tmp_path):
    cap = cv2.VideoCapture(str(hamilton_clip))
    images = [cap.read()[1] for _ in range(25)]
    cap.release()
    # A queue of one and a slow last stage: the earlier stages must wait, not drop.
    opts = PipelineOptions(source=ListSource(images), model=ModelOptions(onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path), schedule=ScheduleOptions(queue_size=1),
                           outputs=OutputOptions(csv=tmp_path / "r.csv", video_out=tmp_path / "r.mp4"))
    seen = []
    with Pipeline(opts) as p:
        for r in p:
            time.sleep(0.02)
            seen.append(r.index)
    assert seen == list(range(25))
    assert p.summary.frames == 25 and p.summary.dropped_frames == 0
    assert len(read_csv(str(tmp_path / "r.csv"))) == p.summary.faces
    assert video_frames(tmp_path / "r.mp4") == 25
    assert not list(tmp_path.glob(".*partial*")) and not stage_threads()


class ListSource(Source):
    kind = "file"

    def __init__(self, images, fail_at: int | None = None):
        super().__init__("list", SourceOptions())
        self.images, self.fail_at = images, fail_at
        self.fps = 30.0

    def __iter__(self):
        for i, img in enumerate(self.images):
            if i == self.fail_at:
                raise RuntimeError("boom in read")
            self.stats.frames += 1
            yield Frame(i, i * 1000 / 30, img)


def video_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def clip_images(hamilton_clip):
    cap = cv2.VideoCapture(str(hamilton_clip))
    images = [cap.read()[1] for _ in range(130)][100:130]  # one face in every frame
    cap.release()
    return images


def failing(calls: list, fail_at: int, fn, stage: str):
    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError(f"boom in {stage}")
        return fn(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("stage", ["read", "faces", "model", "write"])
@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "sequential"])
def test_an_error_in_any_stage_is_raised_and_every_sink_closes(clip_images, onnx_model, face_model_path,
                                                               tmp_path, stage, overlap):
    fail_at = 8
    opts = PipelineOptions(source=ListSource(clip_images, fail_at if stage == "read" else None),
                           model=ModelOptions(onnx_model, threads=1), faces=FaceFindingOptions(face_model=face_model_path),
                           schedule=ScheduleOptions(overlap=overlap),
                           outputs=OutputOptions(csv=tmp_path / "r.csv", jsonl=tmp_path / "r.jsonl",
                                                 video_out=tmp_path / "r.mp4"))
    seen, calls = [], []
    with pytest.raises(RuntimeError, match=f"boom in {stage}"):
        with Pipeline(opts) as p:
            if stage == "faces":
                p.finder.find = failing(calls, fail_at + 1, p.finder.find, stage)
            elif stage == "model":
                p.backend.predict = failing(calls, fail_at + 1, p.backend.predict, stage)
            elif stage == "write":
                p.sinks[0].write = failing(calls, fail_at + 1, p.sinks[0].write, stage)  # the first sink (CSV)
            for r in p:
                seen.append(r.index)
    assert seen == list(range(len(seen))) and len(seen) <= fail_at  # in order up to the failure
    assert not stage_threads()
    # every sink closed: the recordings were moved into place and the video is playable
    assert not list(tmp_path.glob(".*partial*"))
    assert len(read_csv(str(tmp_path / "r.csv"))) == p.summary.faces
    assert video_frames(tmp_path / "r.mp4") == p.summary.frames


def test_ctrl_c_during_an_overlapped_run_closes_cleanly(clip_images, onnx_model, face_model_path, tmp_path):
    opts = PipelineOptions(source=ListSource(clip_images * 20), model=ModelOptions(onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path),
                           outputs=OutputOptions(csv=tmp_path / "r.csv", video_out=tmp_path / "r.mp4"))
    p = Pipeline(opts)
    # pytest-xdist workers ignore SIGINT: put Python's own handler back for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        summary = p.run()  # the default SIGINT handler raises KeyboardInterrupt in this thread
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert summary.interrupted and 0 < summary.frames < 600
    assert not stage_threads()
    # The interrupt may land between a frame's sinks and its count: at most that one frame apart.
    assert 0 <= len(read_csv(str(tmp_path / "r.csv"))) - summary.faces <= summary.max_faces
    assert summary.frames <= video_frames(tmp_path / "r.mp4") <= summary.frames + 1


def test_stop_and_leaving_the_loop_early_end_the_threads(clip_images, onnx_model, face_model_path):
    opts = PipelineOptions(source=ListSource(clip_images), model=ModelOptions(onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path))
    with Pipeline(opts) as p:
        for r in p:
            if r.index == 3:
                p.stop()
    assert p.summary.frames == 4 and not stage_threads()
    with Pipeline(opts) as p:
        first = next(iter(p))  # a generator left suspended: close() must still stop its threads
        assert first.index == 0
    assert not stage_threads()


class FastCamera:
    """A fake capture that delivers frames much faster than the pipeline reads them;
    `ended` is set once it has delivered them all."""

    def __init__(self, images, *args):
        self.images, self.i = images, 0
        self.ended = threading.Event()

    def isOpened(self):
        return True

    def read(self):
        time.sleep(0.002)
        if self.i >= len(self.images):
            self.ended.set()
            return False, None
        self.i += 1
        return True, self.images[self.i - 1]

    def get(self, prop):
        return 500.0 if prop == cv2.CAP_PROP_FPS else 0

    def set(self, *args):
        return True

    def release(self):
        pass


def test_live_sources_keep_the_newest_frames(clip_images, onnx_model, face_model_path):
    images = clip_images * 10  # 300 frames at about 500 FPS
    camera = FastCamera(images)
    source = LiveSource("fake camera", "camera", (0,), SourceOptions(max_bad_reads=1), lambda *a: camera)
    with Pipeline(PipelineOptions(source=source, model=ModelOptions(onnx_model, threads=1),
                                  faces=FaceFindingOptions(face_model=face_model_path))) as p:
        results = []
        for r in p:
            results.append(r)
            if len(results) == 1:
                # The consumer stalls until the camera has delivered every frame: frames must then
                # have been dropped, on any CPU (a CPU fast enough to keep up at 500 FPS would drop none).
                assert camera.ended.wait(120), "the camera never finished"
    indices = [r.index for r in results]
    assert indices == sorted(set(indices))  # in order, each frame once
    assert p.summary.dropped_frames > 0 and len(results) < len(images)
    assert p.summary.dropped_frames + len(results) == len(images)
    assert indices[-1] >= len(images) - 4  # the run kept up with the camera's newest frames
    assert not stage_threads()


def test_process_gives_the_sequential_results_one_frame_at_a_time(clip_images, onnx_model, face_model_path):
    opts = dict(model=ModelOptions(onnx_model, threads=1), faces=FaceFindingOptions(face_model=face_model_path))
    expected = readings(PipelineOptions(source=ListSource(clip_images[:10]), schedule=ScheduleOptions(overlap=False),
                                        **opts))
    with Pipeline(PipelineOptions(source=None, **opts)) as p:
        got = []
        for i, image in enumerate(clip_images[:10]):
            r = p.process(image, i * 1000 / 30)
            got.append((r.index, r.t_ms, [
                (f.track_id, f.box, f.det_score, f.crop_box, f.expression, f.inferred,
                 f.probabilities.tolist(), f.raw_probabilities.tolist(), f.valence, f.arousal,
                 f.raw_valence, f.raw_arousal) for f in r.faces]))
        with pytest.raises(Exception, match="no source: pass frames to process"):
            next(iter(p))
    assert got == expected


class EndlessCamera(FastCamera):
    """A camera that never ends (a frame every 30 ms)."""

    def read(self):
        time.sleep(0.03)
        self.i += 1
        return True, self.images[self.i % len(self.images)]


def test_closing_a_live_run_midway_is_prompt(clip_images, onnx_model, face_model_path):
    source = LiveSource("endless camera", "camera", (0,), SourceOptions(), lambda *a: EndlessCamera(clip_images))
    with Pipeline(PipelineOptions(source=source, model=ModelOptions(onnx_model, threads=1),
                                  faces=FaceFindingOptions(face_model=face_model_path))) as p:
        for r in p:
            if r.index >= 5:
                break
        # Closing must not wait for a camera that never ends: close on a thread and give it far
        # longer than any CPU needs (a wall-clock bound of 3 s failed on slow, busy machines).
        closer = threading.Thread(target=p.close, daemon=True)
        closer.start()
        closer.join(60)
        assert not closer.is_alive(), "closing a live run waited for the endless camera"
    assert not stage_threads()
