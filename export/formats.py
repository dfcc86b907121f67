"""The table of export formats (as in ultralytics' exporter): one row per
format with its CLI argument, file suffix, whether it needs a GPU, its
command-line options and the function that writes it. The CLI builds its
sub-commands from the rows, `python -m export bench CHECKPOINT --all-formats`
walks them, and every export runs through `run_format`, so success and
failure are logged the same way, with time and file size.

The functions are named, not imported, here ("module:function"): reading the
table (the benchmark, `--help`) loads no exporter and no torch. Each row's
file kind (suffix, the backend that runs it) is its row of the one model-file
table, `inference.model_files.MODEL_FILES`, under the same name. The CLI
resolves a format's output path (`-o`, else `default_output(source)`) before
calling its function.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.common import ExportError, file_size_text
from inference.model_files import ModelFile, ModelFileError, model_file, model_file_for

log = logging.getLogger("export")

FACE_MODEL_HELP = ("MediaPipe face_landmarker.task that scores the faces' blendshapes, for models that take them "
                   "(default: $AFFECTCAM_FACE_MODEL, the user cache, else a one-time download)")


# --- each format's command-line options, and how they become its function's arguments -------------------

def _onnx_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, nargs="+",
                   help="checkpoint.pt; several: one graph averaging their outputs (an ensemble)")
    p.add_argument("-o", "--out", type=Path)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--data", type=Path, help="face crops for the parity check (dataset or folder)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |ORT - PyTorch| per output")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP)
    p.add_argument("--blendshape-fusion", type=float, nargs="?", const=0.5, metavar="WEIGHT",
                   help="models that take blendshapes: mix their expression log-probabilities with a "
                        "logistic regression over the blendshapes (fitted on the first checkpoint's run, its "
                        "training faces), WEIGHT 0.5 if not given; faces without blendshapes are unchanged")
    p.add_argument("--calibrate", type=Path, metavar="RUN_DIR", dest="calibrate_run",
                   help="then fit the expression temperature on RUN_DIR's validation parts into the file's "
                        "affect.temperature (as `python -m export calibrate`)")


def _out(a: argparse.Namespace, argument: str, source: Path) -> Path:
    """-o, else where the format writes by default next to its source."""
    return a.out if a.out is not None else format_by_argument(argument).default_output(source)


def _onnx_call(a: argparse.Namespace) -> tuple[tuple, dict]:
    return (a.checkpoint, _out(a, "onnx", a.checkpoint[0])), dict(opset=a.opset, parity_data=a.data, tolerance=a.tolerance,
                                       simplify=not a.no_simplify, face_model=a.face_model,
                                       blendshape_fusion=a.blendshape_fusion, calibrate_run=a.calibrate_run)


def _int8_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("--data", type=Path, required=True, help="calibration face crops (a few hundred): a folder, a .txt list of images, or a run's splits.json (its training part; never calibrate on held-out faces)")
    p.add_argument("-o", "--out", type=Path)
    p.add_argument("--format", dest="quant_format", choices=["QDQ", "QOperator"], default="QDQ")
    p.add_argument("--no-per-channel", action="store_true")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (CPUs without VNNI)")
    p.add_argument("--activations", choices=["uint8", "int8"], default="uint8")
    p.add_argument("--calibrate", choices=["minmax", "entropy", "percentile"], default="minmax")
    p.add_argument("--exclude", nargs="*", choices=["first_conv", "stem", "heads"],
                   help="nodes kept in float (default: stem = the first 3 convs; give --exclude alone for none)")
    p.add_argument("--num-calibration", type=int, default=300)
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP)


def _int8_call(a: argparse.Namespace) -> tuple[tuple, dict]:
    from export.int8 import Int8Options

    opts = Int8Options(quant_format=a.quant_format, per_channel=not a.no_per_channel, reduce_range=a.reduce_range,
                       activation_type=a.activations, calibrate_method=a.calibrate,
                       exclude=tuple(a.exclude) if a.exclude is not None else Int8Options.exclude,
                       num_calibration=a.num_calibration, face_model=a.face_model)
    return (a.model, a.data, _out(a, "int8", a.model), opts), {}


def _fp16_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("-o", "--out", type=Path)


def _fp16_call(a: argparse.Namespace) -> tuple[tuple, dict]:
    return (a.model, _out(a, "fp16", a.model)), {}


def _tensorrt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("-o", "--out", type=Path)
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    p.add_argument("--data", type=Path, help="calibration face crops (needed with --int8)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--opt-batch", type=int)
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--timing-cache", type=Path)
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP + "; used with --int8")


def _tensorrt_call(a: argparse.Namespace) -> tuple[tuple, dict]:
    from export.tensorrt_engine import EngineOptions

    opts = EngineOptions(precision=a.precision or "fp16", max_batch=a.max_batch, opt_batch=a.opt_batch,
                         workspace_mb=a.workspace_mb, timing_cache=a.timing_cache, calibration_data=a.data,
                         face_model=a.face_model)
    return (a.model, _out(a, "tensorrt", a.model), opts), {}


# --- each format made with its defaults (`bench --all-formats`) -----------------------------------------

def _onnx_defaults(source: Path, out: Path, data: Path | None, face_model: Path | None) -> tuple[tuple, dict]:
    return (source, out), dict(parity_data=data, face_model=face_model)


def _int8_defaults(source: Path, out: Path, data: Path | None, face_model: Path | None) -> tuple[tuple, dict]:
    if data is None:
        raise SkipFormat("needs calibration faces (--data)")
    from export.int8 import Int8Options

    return (source, data, out, Int8Options(face_model=face_model)), {}


def _fp16_defaults(source: Path, out: Path, data: Path | None, face_model: Path | None) -> tuple[tuple, dict]:
    return (source, out), {}


def _tensorrt_defaults(source: Path, out: Path, data: Path | None, face_model: Path | None) -> tuple[tuple, dict]:
    from export.tensorrt_engine import EngineOptions

    return (source, out, EngineOptions(face_model=face_model)), {}


class SkipFormat(Exception):
    """A format that cannot be made here (the reason is the message)."""


# --- the table ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    name: str  # what tables call it: its row of inference.model_files.MODEL_FILES
    argument: str  # `python -m export <argument>`
    needs_gpu: bool  # to build the file (FP16 builds anywhere; it pays off on a GPU)
    function: str | None = None  # "module:function" that writes it; None: an input format, not produced here
    source: str | None = None  # the argument of the format it is made from (the first row: a checkpoint)
    help: str = ""
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    call_arguments: Callable[[argparse.Namespace], tuple[tuple, dict]] | None = None
    # (source, out, data, face_model) → its function's arguments with every other option at its default
    default_arguments: Callable[..., tuple[tuple, dict]] | None = None

    @property
    def file(self) -> ModelFile:
        return model_file(self.name)

    @property
    def suffix(self) -> str:
        """File suffix of what it writes."""
        return self.file.suffix

    def default_output(self, source: str | os.PathLike) -> Path:
        """Where it writes without -o: next to its source, the source's last suffix
        replaced by this format's (checkpoint.pt → checkpoint.onnx, m.onnx → m.int8.onnx,
        m.int8.onnx → m.int8.engine)."""
        return self.file.output_for(source)

    def load(self) -> Callable[..., Path]:
        if self.function is None:
            raise ExportError(f"{self.name} is an input format; nothing exports to it")
        module, attr = self.function.split(":")
        return getattr(importlib.import_module(module), attr)


FORMATS: tuple[Format, ...] = (
    Format("PyTorch", "-", False),
    Format("ONNX", "onnx", False, "export.onnx_export:export_onnx", source="-",
           help="checkpoint → ONNX (contract names + metadata), parity-checked",
           add_arguments=_onnx_arguments, call_arguments=_onnx_call,
           default_arguments=_onnx_defaults),
    Format("ONNX INT8", "int8", False, "export.int8:export_int8", source="onnx",
           help="ONNX → static INT8 ONNX calibrated on face crops",
           add_arguments=_int8_arguments, call_arguments=_int8_call,
           default_arguments=_int8_defaults),
    Format("ONNX FP16", "fp16", False, "export.fp16:export_fp16", source="onnx",
           help="ONNX → FP16 ONNX (float32 I/O) for GPUs",
           add_arguments=_fp16_arguments, call_arguments=_fp16_call,
           default_arguments=_fp16_defaults),
    Format("TensorRT", "tensorrt", True, "export.tensorrt_engine:build_engine", source="onnx",
           help="ONNX → TensorRT engine + model.engine.json",
           add_arguments=_tensorrt_arguments, call_arguments=_tensorrt_call,
           default_arguments=_tensorrt_defaults),
)


def exportable() -> list[Format]:
    return [f for f in FORMATS if f.function is not None]


def format_by_argument(argument: str) -> Format:
    for fmt in exportable():
        if fmt.argument == argument:
            return fmt
    raise ExportError(f"unknown export format {argument!r}; choose one of {[f.argument for f in exportable()]}")


def format_for_path(path: str | os.PathLike) -> Format:
    """The table row a file belongs to: its kind in the model-file table (longest matching suffix)."""
    try:
        kind = model_file_for(path)
    except ModelFileError as exc:
        raise ExportError(str(exc)) from None
    for fmt in FORMATS:
        if fmt.name == kind.name:
            return fmt
    raise ExportError(f"{path}: a {kind.name} file is not a format of the export table")


def run_format(argument: str, *args: Any, **kwargs: Any) -> Path:
    """Run one format's function, logging `export <name>: success/failure` with time and size."""
    fmt = format_by_argument(argument)
    start = time.perf_counter()
    try:
        path = fmt.load()(*args, **kwargs)
    except ModuleNotFoundError:
        raise  # a missing install, not a failed export: the CLI says which extra to install
    except Exception as exc:
        log.error("export %s: failure after %.1fs: %s", fmt.name, time.perf_counter() - start, exc)
        raise
    log.info("export %s: success in %.1fs, saved as %s (%s)", fmt.name, time.perf_counter() - start,
             path, file_size_text(path))
    return path
