"""ONNX → serialized TensorRT engine (GPU / Jetson), with the spec beside it.

TensorRT is an optional extra (`pip install .[tensorrt]`; JetPack ships it on
Jetson) and is imported lazily. Everything that needs no GPU — the profile
shapes, the calibration batches, the trtexec command, the spec file — is
plain Python here so it can be tested anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affect.preprocess import prepare_batch
from affect.spec import INPUT_NAME, ModelSpec
from export.common import ExportError, atomic_output, check_writable, load_onnx, spec_of
from export.faces import FaceSet, load_faces

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


class TensorRTUnavailable(ExportError):
    """TensorRT or a CUDA GPU is missing on this machine."""


@dataclass
class EngineOptions:
    precision: str = "fp16"  # "fp32", "fp16" or "int8"
    min_batch: int = 1
    opt_batch: int | None = None  # None: the middle of min..max (rounded up)
    max_batch: int = 8
    workspace_mb: int = 1024
    timing_cache: Path | None = None  # None: <engine>.timing.cache next to the engine
    calibration_data: Path | None = None  # face crops for --int8 (required then)
    num_calibration: int = 300
    calibration_batch: int = 8
    calibration_cache: Path | None = None  # None: <engine>.calib.cache


def profile_shapes(spec: ModelSpec, options: EngineOptions) -> dict[str, tuple[int, int, int, int]]:
    """min/opt/max input shapes of the optimisation profile (batch 1…N, fixed S×S)."""
    lo, hi = int(options.min_batch), int(options.max_batch)
    opt = int(options.opt_batch) if options.opt_batch is not None else (lo + hi + 1) // 2
    if not 1 <= lo <= opt <= hi:
        raise ExportError(f"batch profile must satisfy 1 <= min <= opt <= max, got {lo}, {opt}, {hi}")
    s = int(spec.input_size)
    return {"min": (lo, 3, s, s), "opt": (opt, 3, s, s), "max": (hi, 3, s, s)}


def engine_spec_path(engine: str | os.PathLike) -> Path:
    """`model.engine` → `model.engine.json` (where realtime looks for the spec)."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def _side_file(engine: Path, given: Path | None, suffix: str) -> Path:
    return Path(given) if given is not None else engine.with_name(engine.name + suffix)


def write_engine_spec(engine: str | os.PathLike, spec: ModelSpec) -> Path:
    path = engine_spec_path(engine)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def trtexec_command(onnx_path: str | os.PathLike, engine: str | os.PathLike, spec: ModelSpec,
                    options: EngineOptions) -> str:
    """The trtexec line that builds the same engine (what Jetson users often prefer)."""
    if options.precision not in PRECISIONS:
        raise ExportError(f"unknown precision {options.precision!r}; choose one of {list(PRECISIONS)}")
    shapes = profile_shapes(spec, options)
    dims = {k: "x".join(str(d) for d in v) for k, v in shapes.items()}
    engine = Path(engine)
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}",
            f"--minShapes={INPUT_NAME}:{dims['min']}", f"--optShapes={INPUT_NAME}:{dims['opt']}",
            f"--maxShapes={INPUT_NAME}:{dims['max']}", f"--memPoolSize=workspace:{int(options.workspace_mb)}M",
            f"--timingCacheFile={_side_file(engine, options.timing_cache, '.timing.cache')}"]
    if options.precision == "fp16":
        args.append("--fp16")
    elif options.precision == "int8":
        # trtexec cannot run our calibrator; it reads the cache that build_engine writes.
        args += ["--int8", "--fp16", f"--calib={_side_file(engine, options.calibration_cache, '.calib.cache')}"]
    return shlex.join(args)


def calibration_batches(faces: FaceSet, spec: ModelSpec, batch_size: int) -> list[np.ndarray]:
    """Full batches [B, 3, S, S] (TensorRT's calibrator has one fixed batch size),
    preprocessed by affect.preprocess exactly as at run time; a last partial
    batch is dropped unless it is the only one, which is then padded by repetition."""
    if len(faces) == 0:
        raise ExportError(f"{faces.source}: no calibration images")
    images = list(faces.images)
    if len(images) < batch_size:
        images = (images * (batch_size // len(images) + 1))[:batch_size]
    n = len(images) // batch_size * batch_size
    return [prepare_batch(images[i:i + batch_size], spec) for i in range(0, n, batch_size)]


def require_tensorrt():
    """The tensorrt module, or one line saying what is missing and what to do."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(
            "TensorRT is not installed here: `pip install .[tensorrt]` on an NVIDIA GPU machine "
            "(JetPack ships it on Jetson), or run the trtexec command above where TensorRT is") from None
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = True  # let TensorRT itself report a missing GPU
    if not has_gpu:
        raise TensorRTUnavailable("no CUDA GPU found: a TensorRT engine is built on the GPU (or Jetson) that "
                                  "will run it; run this command or the trtexec line above there")
    return trt


def _entropy_calibrator(trt, batches: list[np.ndarray], cache: Path):
    """An IInt8EntropyCalibrator2 over our batches (torch holds the device memory,
    so no pycuda is needed)."""
    import torch

    class FaceEntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(batches)
            self._device: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names):  # noqa: ARG002 — one input
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._device = torch.from_numpy(batch).cuda().contiguous()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return FaceEntropyCalibrator()


def build_engine(onnx_path: str | os.PathLike, out: str | os.PathLike | None = None,
                 options: EngineOptions | None = None) -> Path:
    """Build `model.engine` (+ `model.engine.json`) from a contract ONNX file."""
    options = options or EngineOptions()
    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else onnx_path.with_suffix(".engine")
    spec = spec_of(load_onnx(onnx_path), str(onnx_path))
    command = trtexec_command(onnx_path, out, spec, options)
    print(f"equivalent trtexec command:\n  {command}", flush=True)
    check_writable(out)
    shapes = profile_shapes(spec, options)
    batches: list[np.ndarray] = []
    if options.precision == "int8":
        if options.calibration_data is None:
            raise ExportError(f"{onnx_path}: --int8 needs calibration face crops (--data DIR)")
        faces = load_faces(options.calibration_data, limit=options.num_calibration)
        batches = calibration_batches(faces, spec, options.calibration_batch)
    trt = require_tensorrt()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch is the only mode (and the default) in TensorRT 10; 8.x (JetPack 5/6.0) needs the flag.
    flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT cannot parse it ({errors[:200]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()
        b = batches[0].shape
        calib_profile.set_shape(INPUT_NAME, b, b, b)
        config.set_calibration_profile(calib_profile)
        config.int8_calibrator = _entropy_calibrator(
            trt, batches, _side_file(out, options.calibration_cache, ".calib.cache"))
    cache_path = _side_file(out, options.timing_cache, ".timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    with atomic_output(out) as tmp:
        tmp.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    write_engine_spec(out, spec)
    return out
