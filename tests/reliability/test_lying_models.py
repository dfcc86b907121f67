"""Issue 24 item 12: model files whose metadata lies about the graph, and a model that
gives NaN. Each lie is one line naming the file at load, before any frame; NaN outputs
are counted and left out of the recording, never written as numbers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from reliability_helpers import REPO, SHARED

from realtime.cam import main as cam_main

SHIPPED = REPO / "realtime" / "models" / "affectcam_default.onnx"
FACE_MODEL = SHARED / "models" / "face_landmarker.task"


def _with_props(model: onnx.ModelProto, **props: str) -> onnx.ModelProto:
    for p in model.metadata_props:
        if p.key in props:
            p.value = props[p.key]
    return model


def _nan_expression(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph, its expression logits multiplied by NaN."""
    g = model.graph
    out = next(o for o in g.output if o.name == "expression")
    for node in g.node:
        node.output[:] = ["expression_raw" if n == "expression" else n for n in node.output]
    g.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "not_a_number"))
    g.node.append(helper.make_node("Mul", ["expression_raw", "not_a_number"], ["expression"]))
    assert out.name == "expression"
    return model


@pytest.fixture(scope="module")
def lies(tmp_path_factory):
    if not FACE_MODEL.exists():
        pytest.skip(f"{FACE_MODEL} not found: these tests need the project's ../shared data")
    d = tmp_path_factory.mktemp("lies")
    labels = json.loads({p.key: p.value for p in onnx.load(str(SHIPPED)).metadata_props}["affect.labels"])
    variants = {
        "size_160.onnx": lambda m: _with_props(m, **{"affect.input_size": "160"}),
        "size_huge.onnx": lambda m: _with_props(m, **{"affect.input_size": "100000000"}),
        "ten_labels.onnx": lambda m: _with_props(m, **{"affect.labels": json.dumps([*labels, "Bored", "Pain"])}),
        "nan.onnx": _nan_expression,
    }
    for name, change in variants.items():
        onnx.save(change(onnx.load(str(SHIPPED))), str(d / name))
    faces = d / "faces"
    faces.mkdir()
    for p in sorted((SHARED / "data" / "affectnet" / "images").glob("*.jpg"))[:4]:
        shutil.copy(p, faces)
    return d, faces


@pytest.mark.parametrize("name, problem", [
    ("size_160.onnx", "the model does not run on a face of its affect.input_size 160x160"),
    ("size_huge.onnx", "spec input_size 100000000 is absurd"),
    ("ten_labels.onnx", "its 'expression' output has shape [1, 8] for one face, but its metadata promises "
                        "[1, 10] (10 labels)"),
])
def test_a_model_whose_metadata_lies_is_one_line_naming_it_at_load(lies, tmp_path, capsys, name, problem):
    d, faces = lies
    csv = tmp_path / "r.csv"
    code = cam_main(["--source", str(faces), "--model", str(d / name), "--headless", "--face-model",
                     str(FACE_MODEL), "--csv", str(csv)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("affectcam: error:")]
    assert code == 2 and len(lines) == 1 and str(d / name) in lines[0] and problem in lines[0], err[-1500:]
    assert "Traceback" not in err and not csv.exists()


def test_nan_outputs_are_counted_and_left_out_of_the_recording(lies, tmp_path, capsys):
    d, faces = lies
    csv, summary = tmp_path / "r.csv", tmp_path / "s.json"
    code = cam_main(["--source", str(faces), "--model", str(d / "nan.onnx"), "--headless", "--face-model",
                     str(FACE_MODEL), "--csv", str(csv), "--summary-json", str(summary)])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    s = json.loads(summary.read_text())
    assert s["frames"] == 4 and s["nonfinite_faces"] >= 3 and s["faces"] == 0
    assert f"{d / 'nan.onnx'}: the model gave NaN/inf for {s['nonfinite_faces']} faces" in err
    assert "faces left out: the model gave NaN/inf" in out
    assert csv.read_text().count("\n") == 1  # the header: no row of NaN
    assert "nan" not in csv.read_text().lower()
