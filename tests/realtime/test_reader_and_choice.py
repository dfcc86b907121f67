"""AffectReader (the one-class reading API), which face path runs for which
model, ONNX Runtime's thread settings, and the measured INT8/FP32 choice."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

import realtime
from realtime import (
    AffectReader,
    FaceFindingOptions,
    ModelOptions,
    OutputOptions,
    Pipeline,
    PipelineOptions,
    ScheduleOptions,
    model_choice,
)
from realtime.backends import BackendError, create_backend, ort_thread_settings
from realtime.sources import Frame, Source, SourceOptions


def faces(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (90 + 10 * i, 80, 3), dtype=np.uint8) for i in range(n)]


# --- AffectReader ---------------------------------------------------------------------------------

def test_reader_predict_and_predict_many_agree(onnx_model):
    assert "AffectReader" in realtime.__all__
    with AffectReader(onnx_model, threads=1) as reader:
        crops = faces()
        many = reader.predict_many(crops)
        one = [reader.predict(c) for c in crops]
        assert [r.expression for r in many] == [r.expression for r in one]
        for a, b in zip(many, one):
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
            assert a.probabilities.sum() == pytest.approx(1.0)
            assert -1 <= a.valence <= 1 and -1 <= a.arousal <= 1
            assert a.expression == reader.labels[int(np.argmax(a.probabilities))]
            assert a.confidence == pytest.approx(a.probabilities.max())
        assert len({r.probabilities.tobytes() for r in many}) == 3  # different faces, different readings
        assert set(many[0].as_dict()["probabilities"]) == set(reader.labels)
        assert reader.predict_many([]) == []


def test_reader_passes_blendshapes_to_a_model_that_takes_them(blendshape_onnx_model):
    with AffectReader(blendshape_onnx_model, threads=1) as reader:
        names = reader.spec.blendshapes
        scores = {n: float(v) for n, v in zip(names, np.linspace(0, 1, len(names)))}
        crop = faces(1)[0]
        alone, given = reader.predict(crop), reader.predict(crop, scores)
        assert not np.allclose(alone.probabilities, given.probabilities, atol=1e-3)
        np.testing.assert_allclose(reader.predict(crop, None).probabilities, alone.probabilities, atol=1e-6)
        with pytest.raises(ValueError, match="2 faces but 1 blendshape entries"):
            reader.predict_many([crop, crop], [scores])


def test_pipeline_reads_through_its_reader(hamilton_clip, onnx_model, face_model_path):
    with Pipeline(PipelineOptions(source=hamilton_clip, model=ModelOptions(onnx_model, threads=1),
                                  faces=FaceFindingOptions(face_model=face_model_path),
                                  schedule=ScheduleOptions(max_frames=1))) as p:
        assert p.backend is p.reader.backend


# --- which face path -----------------------------------------------------------------------------

class Frames(Source):
    kind = "file"

    def __init__(self, clip, first=100, n=4):
        super().__init__("clip frames", SourceOptions())
        cap = cv2.VideoCapture(str(clip))
        self.images = [cap.read()[1] for _ in range(first + n)][first:]
        cap.release()

    def __iter__(self):
        for i, img in enumerate(self.images):
            yield Frame(i, i * 1000 / 30, img)


@pytest.mark.parametrize("model, options, expected", [
    ("onnx_model", {}, "yunet"),  # session 9: YuNet, not MediaPipe's detector (issue 27)
    ("blendshape_onnx_model", {}, "landmarker"),
    ("onnx_model", {"jsonl_landmarks": True}, "landmarker"),
    ("onnx_model", {"faces": "landmarker"}, "landmarker"),
    ("blendshape_onnx_model", {"faces": "detector"}, "detector"),
], ids=["image-only", "blendshapes", "jsonl-landmarks", "asked-landmarker", "asked-detector"])
def test_the_default_face_path_runs_the_landmarker_only_when_needed(request, hamilton_clip, face_model_path,
                                                                    tmp_path, model, options, expected):
    path = request.getfixturevalue(model)
    outputs = OutputOptions(jsonl=tmp_path / "r.jsonl", jsonl_landmarks=True) if options.get("jsonl_landmarks") \
        else OutputOptions()
    calls = []
    with Pipeline(PipelineOptions(source=Frames(hamilton_clip), model=ModelOptions(path, threads=1),
                                  faces=FaceFindingOptions(options.get("faces", "auto"), face_model=face_model_path),
                                  outputs=outputs)) as p:
        assert p.face_path == expected
        assert (p.finder.task is not None) == (expected == "landmarker")
        predict = p.backend.predict
        p.backend.predict = lambda batch, rows=None: calls.append(rows) or predict(batch, rows)
        results = list(p)
    found = [f for r in results for f in r.faces]
    assert len(found) >= 4  # one singer in each of the 4 frames
    if expected in ("detector", "yunet"):
        assert all(f.landmarks is None for f in found)
        # the detector's keypoints set the crop's roll when the model's crop rule aligns
        assert all(f.crop_box is not None for f in found)
    else:
        assert any(f.landmarks is not None for f in found)
    if "blendshape" in model:
        rows = np.concatenate(calls)
        assert np.isfinite(rows).all() == (expected == "landmarker")  # real scores only from the mesh
    else:
        assert all(r is None for r in calls)


def test_cli_faces_flag(capsys):
    from realtime.cam import get_args_parser, options_from_args

    parse = get_args_parser().parse_args
    assert options_from_args(parse([])).faces.finder == "auto"
    assert options_from_args(parse(["--detector-only"])).faces.finder == "detector"
    assert options_from_args(parse(["--faces", "landmarker"])).faces.finder == "landmarker"
    assert options_from_args(parse(["--sequential"])).schedule.overlap is False
    assert options_from_args(parse(["--no-spinning", "--threads", "2"])).model.spinning is False


# --- thread settings -----------------------------------------------------------------------------

def test_thread_settings_come_from_arguments_then_environment(monkeypatch, onnx_model):
    monkeypatch.delenv("AFFECTCAM_ORT_THREADS", raising=False)
    monkeypatch.delenv("AFFECTCAM_ORT_SPINNING", raising=False)
    assert ort_thread_settings(None, None) == (None, None)
    monkeypatch.setenv("AFFECTCAM_ORT_THREADS", "3")
    monkeypatch.setenv("AFFECTCAM_ORT_SPINNING", "off")
    assert ort_thread_settings(None, None) == (3, False)
    assert ort_thread_settings(1, True) == (1, True)
    with create_backend(onnx_model) as backend:
        assert "3 threads, spinning off" in backend.describe()
    monkeypatch.setenv("AFFECTCAM_ORT_SPINNING", "maybe")
    with pytest.raises(BackendError, match=r"AFFECTCAM_ORT_SPINNING='maybe': expected 1/0 or on/off"):
        ort_thread_settings(None, None)
    monkeypatch.setenv("AFFECTCAM_ORT_THREADS", "two")
    with pytest.raises(BackendError, match="AFFECTCAM_ORT_THREADS='two'"):
        ort_thread_settings(None, None)


# --- INT8 or FP32, by measurement ----------------------------------------------------------------

@pytest.fixture()
def packaged(tmp_path, monkeypatch, onnx_model, blendshape_onnx_model):
    """Two 'packaged' files that differ in speed: the plain test model and one with a blendshape branch."""
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(onnx_model, d / "affectcam_default.onnx")
    shutil.copy(blendshape_onnx_model, d / "affectcam_default.int8.onnx")
    monkeypatch.setenv("AFFECTCAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(model_choice.CHOICE_ENV, raising=False)
    return d


def test_the_faster_packaged_file_is_measured_once_and_recorded(packaged, tmp_path, monkeypatch, capsys):
    timed = []
    real = model_choice.time_models

    def spy(files, *a, **k):
        ms = real(files, *a, runs=3)
        timed.append(ms)
        return {"fp32": 5.0, "int8": 9.0} if len(timed) == 1 else ms  # the first time: fp32 wins

    monkeypatch.setattr(model_choice, "time_models", spy)
    assert model_choice.default_model(packaged, threads=1) == packaged / "affectcam_default.onnx"
    assert set(timed[0]) == {"fp32", "int8"} and all(v > 0 for v in timed[0].values())
    assert "using fp32" in capsys.readouterr().err
    record = json.loads((tmp_path / "cache" / "model_choice.json").read_text())
    (entry,) = record.values()
    assert entry["choice"] == "fp32" and entry["ms"] == {"fp32": 5.0, "int8": 9.0}
    # the next start reads the record and times nothing
    assert model_choice.default_model(packaged, threads=1) == packaged / "affectcam_default.onnx"
    assert len(timed) == 1
    # other thread settings are another measurement
    model_choice.default_model(packaged, threads=2)
    assert len(timed) == 2
    # the override wins over the record
    monkeypatch.setenv(model_choice.CHOICE_ENV, "int8")
    assert model_choice.default_model(packaged, threads=1) == packaged / "affectcam_default.int8.onnx"
    monkeypatch.setenv(model_choice.CHOICE_ENV, "fp16")
    with pytest.raises(model_choice.ModelChoiceError, match="expected 'int8' or 'fp32'"):
        model_choice.default_model(packaged)


def test_one_packaged_file_or_none(packaged):
    (packaged / "affectcam_default.int8.onnx").unlink()
    assert model_choice.default_model(packaged) == packaged / "affectcam_default.onnx"
    (packaged / "affectcam_default.onnx").unlink()
    with pytest.raises(model_choice.ModelChoiceError, match="pass --model PATH"):
        model_choice.default_model(packaged)
