"""Models with the optional second input `blendshapes` [N, B] through every export format."""

from __future__ import annotations

import json
import shlex

import numpy as np
import onnx
import pytest
import torch

from affect.blendshapes import MEDIAPIPE_BLENDSHAPES
from affect.spec import INPUT_BLENDSHAPES, INPUT_NAME, ModelSpec, read_json_spec
from export.common import ExportError, ort_session
from export.faces import feeds, generated_faces, load_faces, score_blendshapes, with_nan_rows
from export.fp16 import export_fp16
from export.int8 import FaceCalibrationReader, Int8Options, argmax_agreement, export_int8
from export.onnx_export import export_onnx
from train.checkpoint import model_from_checkpoint

NAMES = list(MEDIAPIPE_BLENDSHAPES)


def _spec(path) -> ModelSpec:
    return ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def _torch(model, x, rows=None) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        out = model(torch.from_numpy(x)) if rows is None else model(torch.from_numpy(x), torch.from_numpy(rows))
    return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def bs_ckpt(tmp_path_factory, make_ckpt):
    return make_ckpt(tmp_path_factory.mktemp("bs") / "bs.pt", "small_cnn", size=64, blendshapes=NAMES)


@pytest.fixture(scope="module")
def bs_onnx(bs_ckpt, affectnet_root, face_model_path):
    return export_onnx(bs_ckpt, bs_ckpt.with_suffix(".onnx"), parity_data=affectnet_root,
                       face_model=face_model_path)


@pytest.fixture(scope="module")
def bs_faces(affectnet_root, face_model_path):
    """Real AffectNet crops scored by the real landmarker, every other row then NaN."""
    faces = score_blendshapes(load_faces(affectnet_root, limit=10, seed=11), NAMES, face_model_path)
    assert np.isfinite(faces.blendshapes).all(axis=1).mean() >= 0.8  # it finds these faces
    faces.blendshapes = with_nan_rows(faces.blendshapes, 2, offset=1)
    return faces


def test_export_has_both_inputs_with_a_dynamic_batch_and_the_names_in_metadata(bs_ckpt, bs_onnx):
    proto = onnx.load(str(bs_onnx))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert inputs == {INPUT_NAME: ["N", 3, 64, 64], INPUT_BLENDSHAPES: ["N", 52]}
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in proto.graph.input)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["affect.blendshapes"]) == NAMES
    assert _spec(bs_onnx) == model_from_checkpoint(bs_ckpt)[1]
    assert _spec(bs_onnx).input_names == [INPUT_NAME, INPUT_BLENDSHAPES]
    assert {"IsNaN", "Where"} <= {n.op_type for n in proto.graph.node}


def test_parity_check_feeds_real_and_nan_rows(make_ckpt, tmp_path, affectnet_root, face_model_path, caplog):
    caplog.set_level("INFO")
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64, blendshapes=NAMES, seed=3)
    export_onnx(ckpt, tmp_path / "m.onnx", parity_data=affectnet_root, face_model=face_model_path)
    line = next(r.getMessage() for r in caplog.records if "parity on 16 images" in r.getMessage())
    with_bs = int(line.split("images (")[1].split(" with blendshapes")[0])
    assert 8 <= with_bs <= 12 and f"{16 - with_bs} without" in line  # 4 NaN rows forced, a miss or two allowed


def test_ort_matches_torch_on_real_rows_and_nan_rows_equal_no_blendshapes(bs_ckpt, bs_onnx, bs_faces):
    model, spec, _ = model_from_checkpoint(bs_ckpt)
    feed = next(feeds(bs_faces, spec, len(bs_faces), bs_onnx))  # batch 10: a size the export never saw
    rows = feed[INPUT_BLENDSHAPES]
    nan = np.isnan(rows).all(axis=1)
    assert nan[1::2].all() and not nan[0::2].any()
    session = ort_session(bs_onnx)
    got = dict(zip(spec.output_names, session.run(spec.output_names, feed), strict=True))
    ref = _torch(model, feed[INPUT_NAME], rows)
    no_bs = _torch(model, feed[INPUT_NAME])  # blendshapes=None: the image alone
    all_nan = dict(zip(spec.output_names, session.run(spec.output_names, {
        INPUT_NAME: feed[INPUT_NAME], INPUT_BLENDSHAPES: np.full_like(rows, np.nan)}), strict=True))
    for name in spec.output_names:
        assert np.isfinite(got[name]).all()
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)
        np.testing.assert_allclose(got[name][nan], no_bs[name][nan], atol=1e-4)
        np.testing.assert_allclose(all_nan[name], no_bs[name], atol=1e-4)
    # The scores count: real rows do not give the image-only answer.
    assert np.abs(got["expression"][~nan] - no_bs["expression"][~nan]).max() > 1e-3


def test_face_blendshapes_come_from_the_landmarker(affectnet_root, face_model_path, monkeypatch):
    faces = score_blendshapes(load_faces(affectnet_root, limit=40, seed=4), NAMES, face_model_path)
    rows = faces.blendshapes
    assert rows.shape == (40, 52) and rows.dtype == np.float32 and faces.blendshape_names == NAMES
    assert np.isfinite(rows).all(axis=1).mean() >= 0.9
    assert np.nanmin(rows) >= 0 and np.nanmax(rows) <= 1
    smile = rows[:, [NAMES.index("mouthSmileLeft"), NAMES.index("mouthSmileRight")]].mean(axis=1)
    happy = faces.expression == 1
    assert happy.sum() >= 5
    assert np.nanmean(smile[happy]) > np.nanmean(smile[~happy]) + 0.25  # real scores, not noise

    # No --face-model: resolved by affect.face_model ($AFFECTCAM_FACE_MODEL here).
    monkeypatch.setenv("AFFECTCAM_FACE_MODEL", str(face_model_path))
    again = score_blendshapes(faces.subset(range(3)), NAMES[:5])
    np.testing.assert_allclose(again.blendshapes, rows[:3, :5], atol=1e-5)
    monkeypatch.setenv("AFFECTCAM_FACE_MODEL", str(face_model_path.parent / "missing.task"))
    with pytest.raises(ExportError, match="missing.task") as err:
        score_blendshapes(faces.subset(range(2)), NAMES)
    assert "\n" not in str(err.value)


def test_generated_faces_get_seeded_scores_in_0_1():
    a = score_blendshapes(generated_faces(8), NAMES)
    b = score_blendshapes(generated_faces(8), NAMES)
    assert a.blendshapes.shape == (8, 52) and np.isfinite(a.blendshapes).all()
    assert 0 <= a.blendshapes.min() and a.blendshapes.max() <= 1 and a.blendshapes.std() > 0.2
    np.testing.assert_array_equal(a.blendshapes, b.blendshapes)


def test_export_without_data_uses_generated_faces_and_random_scores(make_ckpt, tmp_path, caplog):
    caplog.set_level("INFO")
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64, blendshapes=NAMES[:10])
    out = export_onnx(ckpt)  # no data, no face model: the landmarker is not needed
    assert [i.name for i in onnx.load(str(out)).graph.input] == [INPUT_NAME, INPUT_BLENDSHAPES]
    assert "generated" in caplog.text and "6 with blendshapes, 2 without" in caplog.text


def test_int8_calibrates_with_blendshapes_and_keeps_the_branch_in_float(tmp_path, bs_onnx, bs_faces,
                                                                      affectnet_root, face_model_path):
    spec = _spec(bs_onnx)
    reader = FaceCalibrationReader(bs_faces, spec, batch_size=4, model=bs_onnx)
    got = [reader.get_next() for _ in range(3)]
    assert reader.get_next() is None
    assert [sorted(g) for g in got] == [[INPUT_BLENDSHAPES, INPUT_NAME]] * 3
    assert [g[INPUT_BLENDSHAPES].shape for g in got] == [(4, 52)] * 3  # last batch topped up
    np.testing.assert_array_equal(got[2][INPUT_BLENDSHAPES][2:], got[0][INPUT_BLENDSHAPES][:2])

    int8 = export_int8(bs_onnx, affectnet_root, tmp_path / "bs.int8.onnx",
                       Int8Options(num_calibration=32, face_model=face_model_path))
    proto = onnx.load(str(int8))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in proto.graph.node}
    assert _spec(int8) == spec
    floats = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    branch_gemm = next(n for n in proto.graph.node if n.op_type == "Gemm" and "blendshapes" in n.name)
    assert branch_gemm.input[1] in floats  # the 52x64 branch reads float weights
    head_gemms = [n for n in proto.graph.node if n.op_type == "Gemm" and "blendshapes" not in n.name]
    assert not all(n.input[1] in floats for n in head_gemms)  # the rest is quantised

    faces = score_blendshapes(load_faces(affectnet_root, limit=24, seed=9), NAMES, face_model_path)
    faces.blendshapes = with_nan_rows(faces.blendshapes, 3)
    assert argmax_agreement(bs_onnx, int8, faces, spec) >= 0.8
    a, b = ort_session(bs_onnx), ort_session(int8)
    for feed in feeds(faces, spec, 12, bs_onnx):
        ya, yb = a.run(None, feed), b.run(None, feed)
        for u, v in zip(ya, yb, strict=True):
            assert np.isfinite(v).all()
            assert np.abs(u - v).max() < 0.1 * (np.abs(u).max() + 1e-3)
        # A NaN row in the INT8 file is still "no blendshapes": the same as an all-NaN batch.
        nan_feed = {INPUT_NAME: feed[INPUT_NAME], INPUT_BLENDSHAPES: np.full_like(feed[INPUT_BLENDSHAPES], np.nan)}
        rows_nan = np.isnan(feed[INPUT_BLENDSHAPES]).all(axis=1)
        np.testing.assert_allclose(yb[0][rows_nan], b.run(None, nan_feed)[0][rows_nan], atol=1e-5)


@pytest.mark.parametrize("standardise", [False, True])
def test_int8_histogram_calibration_survives_nan_rows(tmp_path, bs_onnx, affectnet_root, face_model_path, make_ckpt,
                                                      standardise):
    # The NaN rows must not reach the calibrator's histograms ("range of [nan, nan] is not finite"),
    # neither straight from the input nor through a standardising Sub/Div before the Where.
    model = bs_onnx
    if standardise:
        ckpt = make_ckpt(tmp_path / "std.pt", "small_cnn", size=64, blendshapes=NAMES, standardise=True)
        model = export_onnx(ckpt, tmp_path / "std.onnx", parity_data=affectnet_root, face_model=face_model_path)
    out = export_int8(model, affectnet_root, tmp_path / "p.int8.onnx",
                      Int8Options(calibrate_method="percentile", num_calibration=16, batch_size=8,
                                  face_model=face_model_path))
    rows = np.full((2, 52), 0.2, np.float32)
    rows[1] = np.nan
    y = ort_session(out).run(None, {INPUT_NAME: np.zeros((2, 3, 64, 64), np.float32), INPUT_BLENDSHAPES: rows})
    assert y[0].shape == (2, 8) and np.isfinite(y[0]).all()


def test_fp16_keeps_float32_io_and_the_nan_logic(tmp_path, bs_onnx, bs_faces):
    out = export_fp16(bs_onnx, tmp_path / "bs.fp16.onnx")
    proto = onnx.load(str(out))
    assert [(i.name, i.type.tensor_type.elem_type) for i in proto.graph.input] == [
        (INPUT_NAME, onnx.TensorProto.FLOAT), (INPUT_BLENDSHAPES, onnx.TensorProto.FLOAT)]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert _spec(out) == _spec(bs_onnx)
    spec = _spec(out)
    feed = next(feeds(bs_faces, spec, len(bs_faces), out))
    nan = np.isnan(feed[INPUT_BLENDSHAPES]).all(axis=1)
    a, b = ort_session(bs_onnx).run(None, feed), ort_session(out).run(None, feed)
    for u, v in zip(a, b, strict=True):
        assert v.dtype == np.float32 and np.isfinite(v).all()
        np.testing.assert_allclose(u, v, atol=2e-2)
    nan_feed = {INPUT_NAME: feed[INPUT_NAME], INPUT_BLENDSHAPES: np.full_like(feed[INPUT_BLENDSHAPES], np.nan)}
    np.testing.assert_allclose(b[0][nan], ort_session(out).run(None, nan_feed)[0][nan], atol=1e-6)
    assert np.abs(b[0][~nan] - ort_session(out).run(None, nan_feed)[0][~nan]).max() > 1e-3


def test_ensemble_of_blendshape_models_via_the_cli(tmp_path, make_ckpt, affectnet_root, face_model_path, bs_faces):
    from export.__main__ import main

    a = make_ckpt(tmp_path / "a.pt", "small_cnn", size=64, blendshapes=NAMES, seed=1)
    b = make_ckpt(tmp_path / "b.pt", "small_cnn", size=64, blendshapes=NAMES, seed=2)
    out = tmp_path / "ens.onnx"
    assert main(["onnx", str(a), str(b), "-o", str(out), "--data", str(affectnet_root),
                 "--face-model", str(face_model_path)]) == 0
    spec = _spec(out)
    assert spec.blendshapes == NAMES and spec.backbone == "mean of 2 × small_cnn"
    feed = next(feeds(bs_faces, spec, 6, out))
    got = ort_session(out).run(["expression"], feed)[0]
    members = [model_from_checkpoint(p)[0].eval() for p in (a, b)]
    outs = [_torch(m, feed[INPUT_NAME], feed[INPUT_BLENDSHAPES])["expression"] for m in members]
    np.testing.assert_allclose(got, (outs[0] + outs[1]) / 2, atol=1e-4)


def test_ensemble_members_with_different_blendshapes_are_refused(tmp_path, make_ckpt, capsys):
    from export.__main__ import main

    a = make_ckpt(tmp_path / "a.pt", "small_cnn", size=64, blendshapes=NAMES)
    b = make_ckpt(tmp_path / "b.pt", "small_cnn", size=64)
    assert main(["onnx", str(a), str(b), "-o", str(tmp_path / "ens.onnx")]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "b.pt: blendshapes [] differs from" in err[0]
    assert not (tmp_path / "ens.onnx").exists()


def test_blendshapes_of_the_wrong_width_are_a_one_line_error_naming_the_model(tmp_path, bs_onnx, bs_faces):
    bad = bs_faces.subset(range(4))
    bad.blendshapes, bad.blendshape_names = bad.blendshapes[:, :51], None
    with pytest.raises(ExportError, match=r"bs\.onnx: blendshapes have shape \[4, 51\], the model takes \[4, 52\]"
                       ) as err:
        argmax_agreement(bs_onnx, bs_onnx, bad, _spec(bs_onnx))
    assert "\n" not in str(err.value)
    with pytest.raises(ExportError, match=r"bs\.onnx: blendshapes have shape"):
        FaceCalibrationReader(bad, _spec(bs_onnx), model=bs_onnx)
    # A graph whose metadata lists other names than its input is wide is refused before any work.
    proto = onnx.load(str(bs_onnx))
    for p in proto.metadata_props:
        if p.key == "affect.blendshapes":
            p.value = json.dumps(NAMES[:51])
    edited = tmp_path / "edited.onnx"
    onnx.save(proto, str(edited))
    for convert in (lambda: export_fp16(edited), lambda: export_int8(edited, tmp_path)):
        with pytest.raises(ExportError, match=r"edited\.onnx: the graph's 'blendshapes' input has shape \['N', 52\]"):
            convert()


def test_tensorrt_profile_command_calibration_and_spec_cover_blendshapes(tmp_path, bs_faces):
    from export.tensorrt_engine import (
        EngineOptions,
        calibration_feeds,
        input_profiles,
        trtexec_command,
        write_engine_spec,
    )

    spec = ModelSpec(input_size=64, blendshapes=NAMES)
    profiles = input_profiles(spec, EngineOptions(max_batch=4))
    assert profiles[INPUT_BLENDSHAPES] == {"min": (1, 52), "opt": (3, 52), "max": (4, 52)}
    assert profiles[INPUT_NAME]["max"] == (4, 3, 64, 64)
    args = shlex.split(trtexec_command("m.onnx", "m.engine", spec, EngineOptions(max_batch=4)))
    assert "--maxShapes=image:4x3x64x64,blendshapes:4x52" in args
    assert "--minShapes=image:1x3x64x64" in shlex.split(
        trtexec_command("m.onnx", "m.engine", ModelSpec(input_size=64), EngineOptions(max_batch=4)))
    batches = calibration_feeds(bs_faces, spec, 4)
    assert len(batches) == 2 and [b[INPUT_BLENDSHAPES].shape for b in batches] == [(4, 52)] * 2
    np.testing.assert_array_equal(batches[1][INPUT_BLENDSHAPES], bs_faces.blendshapes[4:8])
    path = write_engine_spec(tmp_path / "m.engine", spec)
    assert read_json_spec(str(path)).blendshapes == NAMES


def test_bench_feeds_blendshapes_to_pytorch_and_onnx(tmp_path, bs_ckpt, bs_onnx, affectnet_root, face_model_path):
    from export.bench import BenchOptions, run_bench

    options = BenchOptions(data=affectnet_root, batch_sizes=(3,), threads=1, warmup=1, min_iters=3,
                           min_seconds=0, limit=12, face_model=face_model_path)
    rows = run_bench([bs_ckpt, bs_onnx], options)
    assert [(r.backend, r.batch) for r in rows] == [("PyTorch eager", 3), ("ORT FP32", 3)]
    assert rows[0].accuracy == pytest.approx(rows[1].accuracy)
    assert rows[0].valence_ccc == pytest.approx(rows[1].valence_ccc, abs=1e-4)


def _offline_without_a_face_model(monkeypatch, tmp_path):
    import urllib.request

    monkeypatch.delenv("AFFECTCAM_FACE_MODEL", raising=False)
    monkeypatch.setenv("AFFECTCAM_CACHE", str(tmp_path / "empty-cache"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def _run_dir(tmp_path, make_ckpt, affectnet_root):
    """A checkpoint that takes blendshapes in a run folder with the config and splits fusion reads."""
    import yaml

    from affect.datasets.loaders import load_dataset
    from affect.labels import EXPRESSIONS

    run = tmp_path / "run"
    run.mkdir()
    ckpt = make_ckpt(run / "checkpoint.pt", "small_cnn", size=64, blendshapes=NAMES)
    dataset = {"type": "affectnet", "root": str(affectnet_root), "limit": 16}
    (run / "config.yaml").write_text(yaml.safe_dump({"labels": list(EXPRESSIONS), "data": {"datasets": [dataset]}}))
    paths = [s.path for s in load_dataset(dataset).samples]
    (run / "splits.json").write_text(json.dumps({"train": paths, "val": [], "test": []}))
    return ckpt


def test_blendshape_fusion_without_a_face_model_is_one_line(tmp_path, make_ckpt, affectnet_root, monkeypatch,
                                                           capsys):
    from export.__main__ import main

    ckpt = _run_dir(tmp_path, make_ckpt, affectnet_root)
    _offline_without_a_face_model(monkeypatch, tmp_path)
    out = tmp_path / "fused.onnx"
    assert main(["onnx", str(ckpt), "-o", str(out), "--blendshape-fusion"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert "face landmarker" in err[0] and str(tmp_path / "empty-cache" / "face_landmarker.task") in err[0]
    assert not out.exists()


def test_training_faces_without_a_face_model_are_a_fusion_error(tmp_path, make_ckpt, affectnet_root, monkeypatch):
    """train's own path to the run's training faces: a FusionError (a ValueError,
    which `python -m train` prints as one line), not MediaPipe's lookup error."""
    from train.blendshape_fusion import FusionError, run_training_faces

    ckpt = _run_dir(tmp_path, make_ckpt, affectnet_root)
    _offline_without_a_face_model(monkeypatch, tmp_path)
    with pytest.raises(FusionError, match="--face-model") as info:
        run_training_faces(ckpt.parent, NAMES)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
