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
from affect.spec import INPUT_BLENDSHAPES, INPUT_NAME, ModelSpec
from export.common import ExportError, atomic_output, check_graph_inputs, check_writable, load_onnx, spec_of
from export.faces import FaceSet, blendshape_input, load_faces, score_blendshapes, with_nan_rows
from inference.model_files import model_file

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
    face_model: Path | None = None  # MediaPipe landmarker for --int8 of a model that takes blendshapes


def profile_shapes(spec: ModelSpec, options: EngineOptions) -> dict[str, tuple[int, int, int, int]]:
    """min/opt/max input shapes of the optimisation profile (batch 1…N, fixed S×S)."""
    lo, hi = int(options.min_batch), int(options.max_batch)
    opt = int(options.opt_batch) if options.opt_batch is not None else (lo + hi + 1) // 2
    if not 1 <= lo <= opt <= hi:
        raise ExportError(f"batch profile must satisfy 1 <= min <= opt <= max, got {lo}, {opt}, {hi}")
    s = int(spec.input_size)
    return {"min": (lo, 3, s, s), "opt": (opt, 3, s, s), "max": (hi, 3, s, s)}


def input_profiles(spec: ModelSpec, options: EngineOptions) -> dict[str, dict[str, tuple[int, ...]]]:
    """{input name: min/opt/max shapes}: `image` as in `profile_shapes`, and
    `blendshapes` [N, B] over the same batch range when the model takes them."""
    shapes = profile_shapes(spec, options)
    profiles: dict[str, dict[str, tuple[int, ...]]] = {INPUT_NAME: dict(shapes)}
    if spec.blendshapes:
        profiles[INPUT_BLENDSHAPES] = {k: (v[0], len(spec.blendshapes)) for k, v in shapes.items()}
    return profiles


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
    profiles = input_profiles(spec, options)

    def dims(key: str) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in p[key])}" for name, p in profiles.items())

    engine = Path(engine)
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}",
            f"--minShapes={dims('min')}", f"--optShapes={dims('opt')}",
            f"--maxShapes={dims('max')}", f"--memPoolSize=workspace:{int(options.workspace_mb)}M",
            f"--timingCacheFile={_side_file(engine, options.timing_cache, '.timing.cache')}"]
    if options.precision == "fp16":
        args.append("--fp16")
    elif options.precision == "int8":
        # trtexec cannot run our calibrator; it reads the cache that build_engine writes.
        args += ["--int8", "--fp16", f"--calib={_side_file(engine, options.calibration_cache, '.calib.cache')}"]
    return shlex.join(args)


def _full_batch_index(n_faces: int, batch_size: int) -> list[np.ndarray]:
    """Face indices per full batch: a last partial batch is dropped unless it is
    the only one, which is then padded by repetition."""
    index = np.arange(n_faces)
    if n_faces < batch_size:
        index = np.resize(index, batch_size)
    n = len(index) // batch_size * batch_size
    return [index[i:i + batch_size] for i in range(0, n, batch_size)]


def calibration_batches(faces: FaceSet, spec: ModelSpec, batch_size: int) -> list[np.ndarray]:
    """Full batches [B, 3, S, S] (TensorRT's calibrator has one fixed batch size),
    preprocessed by affect.preprocess exactly as at run time; a last partial
    batch is dropped unless it is the only one, which is then padded by repetition."""
    if len(faces) == 0:
        raise ExportError(f"{faces.source}: no calibration images")
    return [prepare_batch([faces.images[i] for i in idx], spec) for idx in _full_batch_index(len(faces), batch_size)]


def calibration_feeds(faces: FaceSet, spec: ModelSpec, batch_size: int, model: str | os.PathLike = "model"
                      ) -> list[dict[str, np.ndarray]]:
    """`calibration_batches` as {input name: batch}, with the faces' `blendshapes`
    rows (same faces, same order) when the model takes them."""
    rows = blendshape_input(faces, spec, model)
    feeds = [{INPUT_NAME: x} for x in calibration_batches(faces, spec, batch_size)]
    if rows is not None:
        for feed, idx in zip(feeds, _full_batch_index(len(faces), batch_size), strict=True):
            feed[INPUT_BLENDSHAPES] = np.ascontiguousarray(rows[idx])
    return feeds


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


def _entropy_calibrator(trt, batches: list[dict[str, np.ndarray]], cache: Path):
    """An IInt8EntropyCalibrator2 over our {input name: batch} feeds (torch holds
    the device memory, so no pycuda is needed)."""
    import torch

    class FaceEntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(batches)
            self._device: dict[str, torch.Tensor] = {}

        def get_batch_size(self) -> int:
            return int(batches[0][INPUT_NAME].shape[0])

        def get_batch(self, names):
            feed = next(self._batches, None)
            if feed is None:
                return None
            self._device = {n: torch.from_numpy(feed[n]).cuda().contiguous() for n in names}
            return [int(self._device[n].data_ptr()) for n in names]

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
    out = Path(out) if out is not None else model_file("TensorRT").output_for(onnx_path)
    proto = load_onnx(onnx_path)
    spec = spec_of(proto, str(onnx_path))
    check_graph_inputs(proto, spec, onnx_path)
    command = trtexec_command(onnx_path, out, spec, options)
    print(f"equivalent trtexec command:\n  {command}", flush=True)
    check_writable(out)
    profiles = input_profiles(spec, options)
    batches: list[dict[str, np.ndarray]] = []
    if options.precision == "int8":
        if options.calibration_data is None:
            raise ExportError(f"{onnx_path}: --int8 needs calibration face crops (--data DIR)")
        faces = load_faces(options.calibration_data, limit=options.num_calibration)
        if spec.blendshapes:
            score_blendshapes(faces, spec.blendshapes, options.face_model)
            faces.blendshapes = with_nan_rows(faces.blendshapes)  # the no-blendshapes path calibrated too
        batches = calibration_feeds(faces, spec, options.calibration_batch, onnx_path)
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
    for name, p in profiles.items():
        profile.set_shape(name, p["min"], p["opt"], p["max"])
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()
        for name, x in batches[0].items():
            calib_profile.set_shape(name, x.shape, x.shape, x.shape)
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
