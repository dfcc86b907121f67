"""FP32 ONNX → FP16 ONNX for GPUs (inputs and outputs stay float32, so callers
feed the same preprocessed batch to every file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from export.common import (
    ExportError,
    atomic_output,
    blendshape_branch,
    check_graph_inputs,
    check_writable,
    load_onnx,
    set_metadata,
    spec_of,
)
from inference.model_files import model_file

log = logging.getLogger(__name__)


def export_fp16(onnx_path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Convert weights and activations to float16, keeping float32 inputs (`image`,
    and `blendshapes` for models that take them) and outputs. The blendshape
    branch stays float32 (see below), so a NaN row still means "none"."""
    import onnx

    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        raise ExportError("FP16 export needs onnxconverter-common: pip install onnxconverter-common") from None
    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else model_file("ONNX FP16").output_for(onnx_path)
    check_writable(out)
    fp32 = load_onnx(onnx_path)
    spec = spec_of(fp32, str(onnx_path))
    check_graph_inputs(fp32, spec, onnx_path)
    # keep_io_types: Cast nodes at the edges, so the contract's float32 I/O holds.
    # The blendshape branch (NaN test, Where, a 52x64 MLP) stays float32: the
    # converter leaves its Cast(to=float) of the "present" flag and the float
    # zeros of ConstantOfShape as they are, so converted, the graph mixes
    # float16 and float inputs (ORT refuses it); blocked, it gets Casts at its
    # edges, and the value types are inferred afresh over the stale ones it leaves.
    branch = blendshape_branch(fp32)
    half = convert_float_to_float16(fp32, keep_io_types=True, disable_shape_infer=False,
                                    node_block_list=branch or None)
    if branch:
        del half.graph.value_info[:]
        half = onnx.shape_inference.infer_shapes(half, strict_mode=True)
    set_metadata(half, spec)
    half.producer_name = "affectcam.export.fp16"
    onnx.checker.check_model(half)
    with atomic_output(out) as tmp:
        onnx.save(half, str(tmp))
    log.info("%s: FP16 weights/activations, float32 I/O (runs fastest on a GPU; CPUs emulate float16)", out)
    return out
