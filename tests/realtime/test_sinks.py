"""Outputs as sinks, and options checked where they are made: a sink passed in
`OutputOptions.sinks` is started with the run's context, gets every frame's
result in order and is closed once, also when another sink fails to close;
a bad option is refused at construction with one line naming it, and the
command line names the flag."""

from __future__ import annotations

import json
import math
import stat

import cv2
import pytest

from affect.checks import OptionError
from affect.recording import read_csv
from realtime import (
    FaceFindingOptions,
    ModelOptions,
    OutputOptions,
    Pipeline,
    PipelineOptions,
    ScheduleOptions,
    SummaryJsonSink,
)
from realtime.cam import main as cam_main
from realtime.smoothing import SmoothingOptions
from realtime.sources import Frame, Source, SourceOptions

FRAMES = 12


class Frames(Source):
    kind = "file"

    def __init__(self, images):
        super().__init__("frames", SourceOptions())
        self.images, self.fps = images, 25.0

    def __iter__(self):
        for i, img in enumerate(self.images):
            self.stats.frames += 1
            yield Frame(i, i * 40.0, img)


@pytest.fixture(scope="module")
def images(hamilton_clip):
    cap = cv2.VideoCapture(str(hamilton_clip))
    out = [cap.read()[1] for _ in range(FRAMES)]
    cap.release()
    return out


class Recorder:
    """A sink with a start step: keeps what it was given."""

    def __init__(self, fail_close: bool = False):
        self.context, self.results, self.closed, self.fail_close = None, [], 0, fail_close

    def start(self, context):
        assert self.context is None, "started twice"
        self.context = context

    def write(self, result):
        assert self.context is not None and not self.closed
        self.results.append(result)

    def close(self):
        self.closed += 1
        if self.fail_close:
            raise OSError("recorder: disk full")


class Plain:
    """A sink with only write and close."""

    def __init__(self):
        self.indices, self.closed = [], 0

    def write(self, result):
        self.indices.append(result.index)

    def close(self):
        self.closed += 1


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "sequential"])
def test_a_custom_sink_gets_every_result_in_order_and_is_closed_once_even_when_another_fails(
        images, onnx_model, face_model_path, tmp_path, overlap):
    first, failing, last = Recorder(), Recorder(fail_close=True), Plain()
    opts = PipelineOptions(source=Frames(images), model=ModelOptions(onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path),
                           schedule=ScheduleOptions(overlap=overlap),
                           outputs=OutputOptions(csv=tmp_path / "r.csv", sinks=[first, failing, last]))
    with pytest.raises(OSError, match="recorder: disk full"):
        with Pipeline(opts) as p:
            results = list(p)
    assert [r.index for r in results] == list(range(FRAMES))
    assert all(a is b for a, b in zip(first.results, results, strict=True))  # the very results, in order
    assert len(failing.results) == FRAMES and last.indices == list(range(FRAMES))
    assert first.context.labels == list(p.spec.labels) and first.context.fps == 25.0
    assert first.context.source == "frames" and first.context.summary is p.summary
    p.close()  # closing again closes nothing again
    assert (first.closed, failing.closed, last.closed) == (1, 1, 1)
    # the sinks before and after the failing one finished: the CSV was moved into place, whole
    assert len(read_csv(str(tmp_path / "r.csv"))) == p.summary.faces > 0
    assert not list(tmp_path.glob(".*partial*"))


def test_sinks_see_frames_pushed_through_process_and_the_summary_json_is_written_at_close(
        images, onnx_model, face_model_path, tmp_path):
    recorder = Recorder()
    opts = PipelineOptions(source=None, model=ModelOptions(onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path),
                           outputs=OutputOptions(csv=tmp_path / "r.csv",
                                                 sinks=[recorder, SummaryJsonSink(tmp_path / "s.json")]))
    with Pipeline(opts) as p:
        for i, image in enumerate(images[:3]):
            p.process(image, i * 33.0)
        assert not (tmp_path / "s.json").exists()  # written when the run is over
    assert [r.index for r in recorder.results] == [0, 1, 2] and recorder.context.fps == 30.0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 3 and set(summary["stages_ms"]) >= {"track", "crop", "smooth"}
    for name in ("r.csv", "s.json"):  # shared like the other outputs, whatever the umask
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


@pytest.mark.parametrize("make, option", [
    (lambda: SmoothingOptions(min_cutoff=math.nan), "SmoothingOptions.min_cutoff"),
    (lambda: SmoothingOptions(min_cutoff=0.0), "SmoothingOptions.min_cutoff"),
    (lambda: SmoothingOptions(beta=math.inf), "SmoothingOptions.beta"),
    (lambda: SmoothingOptions(beta=-0.5), "SmoothingOptions.beta"),
    (lambda: SmoothingOptions(ema_alpha=math.nan), "SmoothingOptions.ema_alpha"),
    (lambda: PipelineOptions(schedule=ScheduleOptions(every=0)), "ScheduleOptions.every"),
    (lambda: PipelineOptions(faces="mesh"), "FaceFindingOptions.finder"),
    (lambda: PipelineOptions(faces=FaceFindingOptions(min_face_confidence=math.nan)),
     "FaceFindingOptions.min_face_confidence"),
    (lambda: PipelineOptions(model=ModelOptions(threads=0)), "ModelOptions.threads"),
    (lambda: PipelineOptions(outputs=OutputOptions(sinks=[object()])), "OutputOptions.sinks"),
    (lambda: SourceOptions(fps=-1.0), "SourceOptions.fps"),
])
def test_a_bad_option_is_refused_at_construction_with_one_line_naming_it(make, option):
    with pytest.raises(OptionError) as info:
        make()
    message = str(info.value)
    assert info.value.option == option and message.startswith(f"{option} ") and "\n" not in message


@pytest.mark.parametrize("flag, value, problem", [
    ("--euro-min-cutoff", "nan", "must be a finite number above 0"),
    ("--euro-beta", "-1", "must be a finite number of at least 0"),
    ("--every", "0", "must be a whole number of at least 1"),
])
def test_the_command_line_names_the_flag_of_a_refused_option(hamilton_clip, tmp_path, capsys, flag, value, problem):
    code = cam_main(["--source", str(hamilton_clip), "--headless", "--csv", str(tmp_path / "x.csv"), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    shown = float(value) if flag.startswith("--euro") else int(value)
    assert code == 2 and err == [f"affectcam: error: {flag} {shown}: {problem}"]
    assert not list(tmp_path.iterdir())  # refused before anything was opened or written
