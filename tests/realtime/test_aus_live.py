"""`--aus` on a real video: every face gets the 15 AU columns (from MediaPipe's blendshapes
through the packaged map when the model has no AU head); a corrupt map is one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affect.aus import AU_NAMES, DEFAULT_AU_MAP
from affect.recording import au_columns, read_recording
from realtime.cam import main as cam_main
from realtime.options import FaceFindingOptions, ModelOptions, ScheduleOptions
from realtime.pipeline import Pipeline, PipelineError, PipelineOptions
from realtime.reader import AffectReader

PACKAGED = Path(__file__).resolve().parents[2] / "realtime" / "models" / "affectcam_default.int8.onnx"


def test_aus_on_a_short_video_writes_the_15_au_columns(tmp_path, hamilton_clip, face_model_path, capsys):
    out, jsonl = tmp_path / "rec.csv", tmp_path / "rec.jsonl"
    code = cam_main(["--source", str(hamilton_clip), "--model", str(PACKAGED), "--face-model", str(face_model_path),
                     "--headless", "--max-frames", "90", "--aus", "--csv", str(out), "--jsonl", str(jsonl)])
    assert code == 0
    assert "AUs: blendshapes through blendshape_aus.json" in capsys.readouterr().err
    header = out.read_text().splitlines()[0].split(",")
    assert header[-15:] == list(AU_NAMES) == au_columns(header)
    df = read_recording(out)
    with_aus = df[df["AU1"].notna()]
    assert len(with_aus) >= 5  # the landmarker's faces have them (detector-fill faces have none)
    values = with_aus[list(AU_NAMES)].to_numpy()
    assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    assert (df[list(AU_NAMES)].notna().sum(axis=1) % 15 == 0).all()  # all 15 or none for a face
    pd.testing.assert_frame_equal(read_recording(jsonl)[list(AU_NAMES)], df[list(AU_NAMES)], atol=1e-4)


def test_without_aus_the_recording_has_no_au_columns(tmp_path, hamilton_clip, face_model_path):
    out = tmp_path / "rec.csv"
    assert cam_main(["--source", str(hamilton_clip), "--model", str(PACKAGED), "--face-model",
                     str(face_model_path), "--headless", "--max-frames", "5", "--csv", str(out)]) == 0
    assert au_columns(out.read_text().splitlines()[0].split(",")) == []


def test_a_corrupt_au_map_is_one_line_naming_it(tmp_path, hamilton_clip, face_model_path, capsys):
    bad = tmp_path / "aus.json"
    bad.write_bytes(DEFAULT_AU_MAP.read_bytes()[:300])
    code = cam_main(["--source", str(hamilton_clip), "--model", str(PACKAGED), "--face-model", str(face_model_path),
                     "--headless", "--max-frames", "5", "--aus", "--au-map", str(bad)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("affectcam:")]
    assert code == 2 and len(err) == 1 and str(bad) in err[0] and "not an AU map" in err[0]


def test_reader_and_pipeline_take_aus(tmp_path, face_model_path):
    with AffectReader(PACKAGED, aus=True) as reader:
        assert reader.au_source == "blendshapes" and reader.au_names == AU_NAMES
        face = np.full((96, 96, 3), 128, np.uint8)
        assert reader.predict(face).aus is None  # no blendshapes given: no AUs
        scores = dict(zip(reader.au_map.blendshapes, reader.au_map.mean))  # an average CK+ face
        r = reader.predict(face, blendshapes=scores)
        assert list(r.aus) == list(AU_NAMES) and all(0 <= p <= 1 for p in r.aus.values())
    with pytest.raises(PipelineError, match="need the landmarker"):
        Pipeline(PipelineOptions(source=None, model=ModelOptions(PACKAGED, aus=True),
                                 faces=FaceFindingOptions("detector", face_model=face_model_path)))
    copy = tmp_path / "map.json"
    shutil.copy(DEFAULT_AU_MAP, copy)
    with Pipeline(PipelineOptions(source=None, model=ModelOptions(PACKAGED, aus=copy),
                                  faces=FaceFindingOptions(face_model=face_model_path))) as p:
        assert p.face_path == "landmarker" and p.reader.au_map.path == str(copy)


def _au_head_onnx(path: Path, au_names: list[str], au_thresholds: list[float] | None = None) -> Path:
    """A contract model with an `action_units` output (the AU head of a CK+ run), AUs in its own order."""
    import onnx
    import torch
    from torch import nn

    from affect.spec import INPUT_NAME, OUTPUT_AUS, OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec

    class WithAus(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(4)
            self.head = nn.Linear(48, 10 + len(au_names))

        def forward(self, x):
            y = self.head(self.pool(x).flatten(1))
            return y[:, :8], torch.tanh(y[:, 8:10]), 3 * y[:, 10:]

    torch.manual_seed(0)
    names = [INPUT_NAME]
    outs = [OUTPUT_EXPRESSION, OUTPUT_VA, OUTPUT_AUS]
    torch.onnx.export(WithAus().eval(), (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, opset_version=17,
                      input_names=names, output_names=outs, dynamic_axes={n: {0: "n"} for n in names + outs})
    proto = onnx.load(str(path))
    spec = ModelSpec(input_size=64, mean=[0.5] * 3, std=[0.5] * 3, backbone="test", au_names=au_names,
                     au_thresholds=list(au_thresholds or []))
    onnx.helper.set_model_props(proto, spec.to_metadata())
    onnx.save(proto, str(path))
    return path


def test_a_model_with_an_au_head_is_read_from_its_head_on_the_detector_path(tmp_path, hamilton_clip,
                                                                           face_model_path):
    model = _au_head_onnx(tmp_path / "aus.onnx", ["AU25", "AU12", "AU4"])  # a subset, in its own order
    options = PipelineOptions(source=hamilton_clip, model=ModelOptions(model, aus=True),
                              faces=FaceFindingOptions(face_model=face_model_path),
                              schedule=ScheduleOptions(every=3, max_frames=60))
    with Pipeline(options) as p:
        assert p.reader.au_source == "model" and p.face_path == "yunet"  # no landmarker needed (the default finder, issue 27)
        faces = [f for r in p for f in r.faces]
    assert faces and all(f.aus is not None and f.aus.shape == (15,) for f in faces)
    got = np.array([f.aus for f in faces])
    known = [AU_NAMES.index(a) for a in ("AU4", "AU12", "AU25")]
    assert np.isfinite(got[:, known]).all() and ((got[:, known] > 0) & (got[:, known] < 1)).all()
    assert np.isnan(np.delete(got, known, axis=1)).all()  # AUs the model lacks stay empty
    carried = [f for f in faces if not f.inferred]
    assert carried  # --every 3: carried faces keep their track's last AU reading


def test_a_models_own_au_thresholds_decide_the_active_aus_and_go_beside_the_recording(tmp_path, hamilton_clip,
                                                                                       face_model_path):
    from affect.aus import active_aus
    from affect.recording import au_thresholds_path, read_au_thresholds
    from realtime.options import OutputOptions

    own = _au_head_onnx(tmp_path / "own.onnx", ["AU25", "AU12", "AU4"], [0.9, 0.2, 0.6])
    plain = _au_head_onnx(tmp_path / "plain.onnx", ["AU25", "AU12", "AU4"])
    stale = tmp_path / "plain.au_thresholds.json"  # an earlier run's file beside plain.csv: removed
    stale.write_text('{"format": "affectcam.au_thresholds", "thresholds": {"AU12": 0.9}}')
    for model, csv in ((own, tmp_path / "own.csv"), (plain, tmp_path / "plain.csv")):
        options = PipelineOptions(source=hamilton_clip, model=ModelOptions(model, aus=True),
                                  faces=FaceFindingOptions(face_model=face_model_path),
                                  schedule=ScheduleOptions(max_frames=20), outputs=OutputOptions(csv=csv))
        with Pipeline(options) as p:
            thresholds = p.reader.au_thresholds
            faces = [f for r in p for f in r.faces]
        assert faces
        if model == own:  # in AU_NAMES order; the AUs the model lacks at 0.5
            assert thresholds[AU_NAMES.index("AU25")] == 0.9 and thresholds[AU_NAMES.index("AU12")] == 0.2
            assert thresholds[AU_NAMES.index("AU4")] == 0.6 and thresholds[AU_NAMES.index("AU1")] == 0.5
            assert read_au_thresholds(csv) == dict(zip(AU_NAMES, thresholds))
            # the overlay's active AUs use them: not the same set as at 0.5 for some face
            assert any(active_aus(f.aus, AU_NAMES, thresholds) != active_aus(f.aus, AU_NAMES) for f in faces)
        else:  # a model without thresholds: 0.5 for every AU and no thresholds file, as before
            assert thresholds == (0.5,) * 15 and not au_thresholds_path(csv).exists()
        # the recording keeps raw probabilities either way
        written = np.sort(read_recording(csv)["AU12"].dropna().to_numpy())
        read = np.sort([f.aus[AU_NAMES.index("AU12")] for f in faces if f.aus is not None])
        assert written.shape == read.shape and np.allclose(written, read, atol=1e-4)
