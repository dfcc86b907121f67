"""docs/JETSON.md describes the shipped model file as it is (issue 24 item 15): its
input and output shapes, its operators, and trtexec lines equal to what
`python -m export tensorrt` prints for it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import onnx

from export.common import load_onnx, spec_of
from export.tensorrt_engine import EngineOptions, trtexec_command

REPO = Path(__file__).resolve().parents[1]
SHIPPED = "realtime/models/affectcam_default.onnx"


def _doc() -> str:
    return (REPO / "docs" / "JETSON.md").read_text(encoding="utf-8")


def _shipped():
    model = onnx.load(str(REPO / SHIPPED))
    initializers = {i.name for i in model.graph.initializer}
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in model.graph.input if i.name not in initializers}
    return model, inputs


def test_the_shipped_file_is_described_with_its_real_inputs_outputs_and_operators():
    model, inputs = _shipped()
    size = spec_of(load_onnx(REPO / SHIPPED), SHIPPED).input_size
    doc = _doc()
    assert list(inputs) == ["image"] and inputs["image"][1:] == [3, size, size]
    assert f"`image`, float32\n>   `[N, 3, {size}, {size}]`" in doc
    for out in model.graph.output:
        dims = [d.dim_value for d in out.type.tensor_type.shape.dim][1:]
        assert f"`{out.name}` `[N, {dims[0]}]`" in doc
    stated = re.search(r"Its operators are (.*?), all in TensorRT", doc, re.S).group(1)
    named = {w for w in re.split(r"[,\s>]+", stated.replace(" and ", ", ")) if w}
    assert named == {n.op_type for n in model.graph.node}


def test_the_trtexec_lines_are_the_ones_the_export_command_prints_for_the_shipped_file():
    spec = spec_of(load_onnx(REPO / SHIPPED), SHIPPED)
    lines = [ln.removeprefix("/usr/src/tensorrt/bin/") for ln in _doc().splitlines()
             if ln.startswith("/usr/src/tensorrt/bin/trtexec --onnx=")]
    assert len(lines) == 2
    for line in lines:
        engine = re.search(r"--saveEngine=(\S+)", line).group(1)
        precision = "int8" if "--int8" in line else "fp16"
        assert shlex.split(line) == shlex.split(trtexec_command(SHIPPED, engine, spec,
                                                                EngineOptions(precision=precision)))
    load = re.search(r"trtexec --loadEngine=\S+ --shapes=(\S+)", _doc()).group(1)
    assert load == f"image:1x3x{spec.input_size}x{spec.input_size}"
