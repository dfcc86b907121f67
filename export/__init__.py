"""Export: checkpoint → ONNX (parity-checked) → INT8 / FP16 ONNX / TensorRT engine, and a benchmark.

    python -m export onnx runs/x/checkpoint.pt --data ../shared/data/affectnet
    python -m export int8 runs/x/checkpoint.onnx --data ../shared/data/affectnet
    python -m export bench runs/x/checkpoint.pt runs/x/checkpoint.onnx runs/x/checkpoint.int8.onnx --data DIR

Importing this package does not import torch; the format functions do, lazily.
"""

from export.common import ExportError, ParityError

__all__ = ["ExportError", "ParityError", "FORMATS", "export_onnx", "export_int8", "export_fp16", "build_engine"]


def __getattr__(name: str):
    # Lazy: `python -m export bench` on an ONNX-only machine needs no torch import.
    if name == "FORMATS":
        from export.formats import FORMATS

        return FORMATS
    if name == "export_onnx":
        from export.onnx_export import export_onnx

        return export_onnx
    if name == "export_int8":
        from export.int8 import export_int8

        return export_int8
    if name == "export_fp16":
        from export.fp16 import export_fp16

        return export_fp16
    if name == "build_engine":
        from export.tensorrt_engine import build_engine

        return build_engine
    raise AttributeError(name)
