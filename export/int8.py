"""FP32 ONNX → INT8 ONNX with onnxruntime.quantization (static, calibrated on
real face crops preprocessed exactly as at run time)."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from affect.spec import INPUT_BLENDSHAPES, INPUT_NAME, ModelSpec
from export.common import (
    ExportError,
    atomic_output,
    blendshape_branch,
    check_graph_inputs,
    check_writable,
    load_onnx,
    ort_session,
    set_metadata,
    spec_of,
)
from export.faces import FaceSet, blendshape_input, feeds, load_faces, score_blendshapes, with_nan_rows
from inference.model_files import model_file

log = logging.getLogger(__name__)


@dataclass
class Int8Options:
    """Quantisation choices; defaults are the ones measured best on a 2-core AVX2 CPU (docs/BENCHMARKS.md)."""
    quant_format: str = "QDQ"  # "QDQ" or "QOperator"
    per_channel: bool = True
    # 7-bit weights: helps on AVX2 CPUs without VNNI when the first conv is quantised
    # (agreement 69% → 75%), but keeping the first conv in float helps far more (95%).
    reduce_range: bool = False
    activation_type: str = "uint8"  # "uint8" (U8S8) or "int8" (S8S8)
    calibrate_method: str = "minmax"  # "minmax", "entropy" or "percentile"
    # Kept in float: the stem, i.e. the first conv (it sees the raw normalised
    # image, whose range quantises badly) and the two convs of the first block
    # after it. MobileNetV2 160 px, validation part of its run: FP32 0.461,
    # INT8 with only the first conv in float 0.438, with the stem in float 0.469,
    # at the same speed (these layers are small).
    exclude: tuple[str, ...] = ("stem",)
    num_calibration: int = 300
    batch_size: int = 16
    face_model: Path | None = None  # MediaPipe landmarker for models that take blendshapes (None: resolved)


class FaceCalibrationReader(CalibrationDataReader):
    """Feeds onnxruntime's calibrator with batches of preprocessed face crops
    (and their `blendshapes` rows when the model takes them)."""

    def __init__(self, faces: FaceSet, spec: ModelSpec, batch_size: int = 16, model: str | os.PathLike = "model"
                 ) -> None:
        self._batches = list(feeds(faces, spec, batch_size, model))
        # Every batch the same size: ORT's histogram calibrators (entropy,
        # percentile) stack batches and fail on a short last one. The last is
        # topped up with faces from the first batch.
        last = self._batches[-1] if self._batches else None
        if last is not None and len(self._batches) > 1 and len(last[INPUT_NAME]) < batch_size:
            n = batch_size - len(last[INPUT_NAME])
            self._batches[-1] = {k: np.concatenate([v, self._batches[0][k][:n]]) for k, v in last.items()}
        self._iter = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._batches)


EXCLUSIONS = ("first_conv", "stem", "heads")
STEM_CONVS = 3  # the first conv, then a MobileNet/EfficientNet first block's depthwise + projection


def excluded_nodes(model, exclude: tuple[str, ...]) -> list[str]:
    """Names of the nodes `exclude` keywords stand for in this graph."""
    unknown = set(exclude) - set(EXCLUSIONS)
    if unknown:
        raise ExportError(f"unknown INT8 exclusion {sorted(unknown)}; use any of {list(EXCLUSIONS)}")
    names: list[str] = []
    convs = [n for n in model.graph.node if n.op_type == "Conv"]  # graph order is topological
    if "first_conv" in exclude:
        first = next((n for n in convs if INPUT_NAME in n.input), None)
        names += [first.name] if first is not None else []
    if "stem" in exclude:
        names += [n for n in _stem_convs(model.graph, convs) if n not in names]
    if "heads" in exclude:
        # Everything after global pooling: the neck and the task heads (Gemm/MatMul + activations).
        after_pool = False
        for node in model.graph.node:
            if node.op_type in ("GlobalAveragePool", "ReduceMean", "Flatten"):
                after_pool = True
            if after_pool:
                names.append(node.name)
    return names


def _blendshape_quant_settings(model) -> tuple[list[str], list[str] | None]:
    """(nodes kept in float, op types to quantise) for a graph with a `blendshapes` input.

    The branch stays float: it is a 52x64 Gemm (nothing to gain in speed), and
    its inputs are scores in [0, 1] where small values matter (an eye blink at
    0.01 vs 0.003), which one 8-bit scale over [0, 1] rounds away. And no op
    type that reads the raw input is given to the quantiser: the calibrator
    collects ranges of every input of every op type it quantises, and the raw
    input holds the NaN rows of faces without blendshapes, which turn the
    histogram calibrators' (entropy, percentile) ranges into NaN and make them
    fail. Its consumers are IsNaN, Shape and Where; IsNaN and Shape are not
    quantisable anyway, so only Where (the zeroing of missing rows, in the
    branch) drops out of ORT's default op list.
    """
    if INPUT_BLENDSHAPES not in {i.name for i in model.graph.input}:
        return [], None
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    # Tensors that can hold NaN: the input, and what is computed from it (a
    # standardising Sub/Div, say) until a Where replaces the NaN rows or IsNaN
    # turns them into booleans.
    nan_tensors, readers = {INPUT_BLENDSHAPES}, set()
    for node in model.graph.node:  # topological order
        if nan_tensors & set(node.input):
            readers.add(node.op_type)
            if node.op_type not in ("Where", "IsNaN"):
                nan_tensors |= set(node.output)
    op_types = sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - readers)
    return blendshape_branch(model), op_types


def _stem_convs(graph, convs) -> list[str]:
    """The first STEM_CONVS convs downstream of the input, per branch: one
    model has one stem; an ensemble graph has one per member."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    starts = [n for n in convs if INPUT_NAME in n.input] or convs[:1]
    names: list[str] = []
    for start in starts:
        found, queue, seen = [], [start], {start.name}
        while queue and len(found) < STEM_CONVS:  # breadth first: graph distance from the input
            node = queue.pop(0)
            if node.op_type == "Conv":
                found.append(node.name)
            for out in node.output:
                for nxt in consumers.get(out, []):
                    if nxt.name not in seen:
                        seen.add(nxt.name)
                        queue.append(nxt)
        names += found
    return names


def _quant_enums(options: Int8Options):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    try:
        fmt = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[options.quant_format.lower()]
        act = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[options.activation_type.lower()]
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[options.calibrate_method.lower()]
    except KeyError as exc:
        raise ExportError(f"unknown INT8 option {exc}") from None
    return fmt, act, method


def export_int8(onnx_path: str | os.PathLike, calibration_data: str | os.PathLike,
                out: str | os.PathLike | None = None, options: Int8Options | None = None) -> Path:
    """Quantise `onnx_path` (which must carry the contract metadata) to INT8."""
    from onnxruntime.quantization import QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = options or Int8Options()
    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else model_file("ONNX INT8").output_for(onnx_path)
    check_writable(out)
    fp32 = load_onnx(onnx_path)
    spec = spec_of(fp32, str(onnx_path))
    check_graph_inputs(fp32, spec, onnx_path)
    fmt, act, method = _quant_enums(options)
    faces = load_faces(calibration_data, limit=options.num_calibration)
    if len(faces) < 32:
        log.warning("%s: only %d calibration images; a few hundred give steadier INT8 ranges",
                    calibration_data, len(faces))
    if spec.blendshapes:
        score_blendshapes(faces, spec.blendshapes, options.face_model)
        # Every 4th face without them: the ranges after the blendshape branch (the
        # neck, the heads) then also cover faces the camera's detector path sends.
        faces.blendshapes = with_nan_rows(faces.blendshapes)
    reader = FaceCalibrationReader(faces, spec, options.batch_size, onnx_path)

    with tempfile.TemporaryDirectory(prefix="affectcam-int8-") as work, atomic_output(out) as tmp:
        pre = Path(work) / "pre.onnx"
        # Shape inference + graph optimisation first (what ORT recommends before
        # quantising): fuses BatchNorm into Conv so ranges are those of the fused ops.
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        pre_proto = load_onnx(pre)
        branch, op_types = _blendshape_quant_settings(pre_proto)
        quantize_static(str(pre), str(tmp), reader, quant_format=fmt, per_channel=options.per_channel,
                        reduce_range=options.reduce_range, activation_type=act, weight_type=QuantType.QInt8,
                        calibrate_method=method, op_types_to_quantize=op_types,
                        nodes_to_exclude=excluded_nodes(pre_proto, options.exclude) + branch,
                        extra_options={"ActivationSymmetric": act == QuantType.QInt8})
        quantised = load_onnx(tmp)
        set_metadata(quantised, spec)
        quantised.producer_name = "affectcam.export.int8"
        import onnx

        onnx.save(quantised, str(tmp))
        agreement = argmax_agreement(onnx_path, tmp, faces, spec)
        log.info("%s: INT8 (%s, per_channel=%s, reduce_range=%s, %s activations, %s calibration on %d images "
                 "from %s) agrees with FP32 on %.1f%% of argmaxes", out, options.quant_format,
                 options.per_channel, options.reduce_range, options.activation_type, options.calibrate_method,
                 len(faces), faces.source, 100 * agreement)
    return out


def argmax_agreement(reference: str | os.PathLike, candidate: str | os.PathLike, faces: FaceSet,
                     spec: ModelSpec, limit: int = 64) -> float:
    """Share of images where both ONNX files pick the same expression (fed
    `faces.blendshapes` too when the model takes them)."""
    blendshape_input(faces, spec, reference)  # a wrong width fails here, naming the file, not inside ORT
    a, b = ort_session(reference, threads=2), ort_session(candidate, threads=2)
    same = total = 0
    for feed in feeds(faces.subset(slice(0, limit)), spec, 16, reference):
        ya = a.run(["expression"], feed)[0].argmax(1)
        yb = b.run(["expression"], feed)[0].argmax(1)
        same += int((ya == yb).sum())
        total += len(ya)
    return same / max(total, 1)
