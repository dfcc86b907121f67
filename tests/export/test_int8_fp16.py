from __future__ import annotations

import numpy as np
import onnx
import pytest

from affect.spec import INPUT_NAME, ModelSpec
from export.common import ExportError, ort_session
from export.faces import batches, load_faces
from export.fp16 import export_fp16
from export.int8 import FaceCalibrationReader, Int8Options, excluded_nodes, export_int8
from export.onnx_export import export_onnx


def _spec(path) -> ModelSpec:
    return ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def test_int8_runs_and_agrees_with_fp32_on_most_real_faces(tmp_path, fitted_mv2, affectnet_root):
    fp32 = export_onnx(fitted_mv2, tmp_path / "mv2.onnx", parity_data=affectnet_root)
    int8 = export_int8(fp32, affectnet_root, options=Int8Options(num_calibration=64))
    assert int8 == tmp_path / "mv2.int8.onnx"
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert _spec(int8) == _spec(fp32)
    assert int8.stat().st_size < fp32.stat().st_size / 2
    # The default keeps the stem (first conv + the first block's two convs) in float: their
    # weights are plain float initializers, every later conv reads dequantized weights.
    graph = onnx.load(str(int8)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert [n.input[1] in floats for n in convs[:4]] == [True, True, True, False]

    faces = load_faces(affectnet_root, limit=96, seed=3)  # a different subset than calibration
    spec = _spec(fp32)
    a, b = ort_session(fp32), ort_session(int8)
    agree = []
    for x in batches(faces, spec, 32):
        agree.append(a.run(["expression"], {INPUT_NAME: x})[0].argmax(1) ==
                     b.run(["expression"], {INPUT_NAME: x})[0].argmax(1))
    assert np.concatenate(agree).mean() >= 0.7


def test_int8_exclusions_keep_named_nodes_in_float(tmp_path, small_onnx, affectnet_root):
    proto = onnx.load(str(small_onnx))
    names = excluded_nodes(proto, ("first_conv", "heads"))
    first = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert first.name in names
    assert any(n.op_type == "Gemm" and n.name in names for n in proto.graph.node)
    with pytest.raises(ExportError, match="unknown INT8 exclusion"):
        excluded_nodes(proto, ("everything",))
    out = export_int8(small_onnx, affectnet_root, tmp_path / "q.onnx",
                      Int8Options(num_calibration=16, quant_format="QOperator", exclude=("heads",)))
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "QLinearConv" in ops and "Gemm" in ops


def test_calibration_reader_yields_preprocessed_batches_then_none(small_onnx, affectnet_root):
    spec = _spec(small_onnx)
    faces = load_faces(affectnet_root, limit=20)
    reader = FaceCalibrationReader(faces, spec, batch_size=8)
    got = [reader.get_next() for _ in range(3)]
    assert [g[INPUT_NAME].shape[0] for g in got] == [8, 8, 8]  # the short last batch is topped up
    np.testing.assert_array_equal(got[2][INPUT_NAME][4:], got[0][INPUT_NAME][:4])
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()[INPUT_NAME], got[0][INPUT_NAME])


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_methods_export(tmp_path, small_onnx, affectnet_root, method):
    out = export_int8(small_onnx, affectnet_root, tmp_path / f"{method}.onnx",
                      Int8Options(calibrate_method=method, num_calibration=20, batch_size=8))
    assert ort_session(out).run(None, {INPUT_NAME: np.zeros((1, 3, 64, 64), np.float32)})[0].shape == (1, 8)


def test_calibration_folder_without_readable_faces(tmp_path, small_onnx):
    bad = tmp_path / "faces"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(ExportError, match="no readable face images") as err:
        export_int8(small_onnx, bad, tmp_path / "q.onnx")
    assert str(bad) in str(err.value)
    assert not (tmp_path / "q.onnx").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="no readable face images"):
        export_int8(small_onnx, empty, tmp_path / "q.onnx")


def test_onnx_without_contract_metadata_is_refused(tmp_path, small_onnx, affectnet_root):
    proto = onnx.load(str(small_onnx))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    for convert in (lambda: export_int8(bare, affectnet_root), lambda: export_fp16(bare)):
        with pytest.raises(ExportError, match="no affect.\\* metadata"):
            convert()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.onnx"]


def test_fp16_keeps_float32_io_and_close_outputs(tmp_path, small_onnx, affectnet_root):
    out = export_fp16(small_onnx, tmp_path / "m.fp16.onnx")
    proto = onnx.load(str(out))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert _spec(out) == _spec(small_onnx)
    x = next(batches(load_faces(affectnet_root, limit=8), _spec(out), 8))
    a = ort_session(small_onnx).run(None, {INPUT_NAME: x})
    b = ort_session(out).run(None, {INPUT_NAME: x})
    for u, v in zip(a, b, strict=True):
        assert v.dtype == np.float32
        np.testing.assert_allclose(u, v, atol=2e-2)


def test_calibration_faces_from_a_run_split_or_an_image_list_never_include_held_out(tmp_path, affectnet_root):
    import json

    images = sorted((affectnet_root / "images").glob("*.jpg"))[:6]
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [str(p) for p in images[:4]], "val": [], "test": [str(p) for p in images[4:]]}))
    faces = load_faces(splits)
    assert sorted(faces.paths) == sorted(str(p) for p in images[:4]) and faces.images[0].ndim == 3
    listing = tmp_path / "calib.txt"
    listing.write_text("\n".join(str(p) for p in images[2:5]) + "\n\n")
    assert load_faces(listing).paths == [str(p) for p in images[2:5]]
    bad = tmp_path / "other.json"
    bad.write_text('{"test": []}')
    with pytest.raises(ExportError, match=r"other\.json: not a run's splits\.json"):
        load_faces(bad)
