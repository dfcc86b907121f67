"""The table of export formats (as in ultralytics' exporter): one row per
format, one function per format, each run through `run_format` so success and
failure are logged the same way, with time and file size."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export.common import ExportError, file_size_mb
from export.fp16 import export_fp16
from export.int8 import export_int8
from export.onnx_export import export_onnx
from export.tensorrt_engine import build_engine

log = logging.getLogger("export")


@dataclass(frozen=True)
class Format:
    name: str  # what tables call it
    argument: str  # `python -m export <argument>`
    suffix: str  # file suffix of what it writes
    needs_gpu: bool  # to build the file (FP16 builds anywhere; it pays off on a GPU)
    function: Callable[..., Path] | None  # None: an input format, not produced here


FORMATS: tuple[Format, ...] = (
    Format("PyTorch", "-", ".pt", False, None),
    Format("ONNX", "onnx", ".onnx", False, export_onnx),
    Format("ONNX INT8", "int8", ".int8.onnx", False, export_int8),
    Format("ONNX FP16", "fp16", ".fp16.onnx", False, export_fp16),
    Format("TensorRT", "tensorrt", ".engine", True, build_engine),
)


def format_by_argument(argument: str) -> Format:
    for fmt in FORMATS:
        if fmt.argument == argument and fmt.function is not None:
            return fmt
    raise ExportError(f"unknown export format {argument!r}; choose one of "
                      f"{[f.argument for f in FORMATS if f.function is not None]}")


def format_for_path(path: str | os.PathLike) -> Format:
    """The table row a file belongs to, by its longest matching suffix."""
    name = Path(path).name.lower()
    matches = [f for f in FORMATS if name.endswith(f.suffix)]
    if not matches:
        raise ExportError(f"{path}: unknown model file kind; expected one of {[f.suffix for f in FORMATS]}")
    return max(matches, key=lambda f: len(f.suffix))


def run_format(argument: str, *args, **kwargs) -> Path:
    """Run one format's function, logging `export <name>: success/failure` with time and size."""
    fmt = format_by_argument(argument)
    assert fmt.function is not None
    start = time.perf_counter()
    try:
        path = fmt.function(*args, **kwargs)
    except ModuleNotFoundError:
        raise  # a missing install, not a failed export: the CLI says which extra to install
    except Exception as exc:
        log.error("export %s: failure after %.1fs: %s", fmt.name, time.perf_counter() - start, exc)
        raise
    log.info("export %s: success in %.1fs, saved as %s (%.1f MB)", fmt.name, time.perf_counter() - start,
             path, file_size_mb(path))
    return path
