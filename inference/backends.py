"""Inference backends behind one interface: ONNX Runtime, TensorRT engines and
PyTorch checkpoints (`train.torch_backend`, named in BACKENDS and imported only
when chosen).

`create_backend(path)` picks the backend from the file's kind
(`inference.model_files`, or the `backend` argument) and reads the model's spec from the file itself — ONNX
metadata, the `.engine.json` next to an engine, or the checkpoint's `spec` —
so labels, input size, normalisation and the crop rule are never hard-coded.

`Backend.predict(batch, blendshapes=None)` takes the NCHW float32 tensor of
`affect.preprocess.prepare_batch` and returns numpy arrays keyed by the
contract's output names (`expression` logits, `valence_arousal`, and
`landmarks` / `action_units` when the model has them). A model whose spec
lists `blendshapes` also gets them as its second input, float32 [N, B] in the
spec's order (`affect.blendshapes.blendshape_row`); None, or a NaN row, means
"none for this face" and the model reads the image alone. Image-only models
ignore the argument.

torch and tensorrt are imported only when a backend needs them: importing this
module (or `realtime`, or the dashboard) stays light.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affect.errors import first_line
from affect.spec import (
    INPUT_BLENDSHAPES,
    INPUT_NAME,
    OUTPUT_EXPRESSION,
    OUTPUT_VA,
    ModelSpec,
    SpecError,
    read_json_spec,
)
from inference.model_files import ModelFileError, model_file_for, suffixes_for


class BackendError(ValueError):
    """A model file that cannot be loaded or run by the chosen backend."""


class Backend(ABC):
    """A loaded model: `.spec`, `.predict(batch, blendshapes)`, `.close()`; usable with `with`."""

    name: str = "backend"

    def __init__(self, path: Path, spec: ModelSpec):
        self.path = path
        self.spec = spec

    @property
    def output_names(self) -> list[str]:
        return self.spec.output_names

    @property
    def takes_blendshapes(self) -> bool:
        return bool(self.spec.blendshapes)

    def predict(self, batch: np.ndarray, blendshapes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """NCHW float32 batch (and, for a model that takes them, blendshape
        scores [N, B]; None: none for any face) → {output name: array [N, …]}
        (N may be 0)."""
        batch = np.asarray(batch, dtype=np.float32)
        s = self.spec.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise BackendError(f"{self.path.name}: input batch has shape {batch.shape}, "
                               f"expected [N, 3, {s}, {s}]")
        rows = self._blendshape_rows(len(batch), blendshapes)
        if batch.shape[0] == 0:
            return self._empty_outputs()
        return self._run(np.ascontiguousarray(batch), rows)

    def _blendshape_rows(self, n: int, blendshapes: np.ndarray | None) -> np.ndarray | None:
        """The model's second input, float32 [n, B]; None for an image-only model."""
        width = len(self.spec.blendshapes)
        if not width:
            return None
        if blendshapes is None:
            return np.full((n, width), np.nan, np.float32)
        rows = np.asarray(blendshapes, dtype=np.float32)
        if rows.shape != (n, width):
            raise BackendError(f"{self.path.name}: blendshapes have shape {list(rows.shape)}, expected "
                               f"[{n}, {width}] (one row per face, the model's {width} blendshape names)")
        return np.ascontiguousarray(rows)

    @abstractmethod
    def _run(self, batch: np.ndarray, blendshapes: np.ndarray | None) -> dict[str, np.ndarray]:
        """`blendshapes` is float32 [N, B] when the model takes them, else None."""

    def _empty_outputs(self) -> dict[str, np.ndarray]:
        widths = {OUTPUT_EXPRESSION: len(self.spec.labels), OUTPUT_VA: 2,
                  "landmarks": 2 * self.spec.num_landmarks, "action_units": len(self.spec.au_names)}
        return {n: np.zeros((0, widths[n]), np.float32) for n in self.output_names}

    def close(self) -> None:  # noqa: B027  (optional hook)
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.name}:{self.path.name}"


# --- ONNX Runtime -------------------------------------------------------------------------------

ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def _check_graph_names(path: Path, inputs: Sequence[str], outputs: Sequence[str], spec: ModelSpec) -> None:
    if INPUT_NAME not in inputs:
        raise SpecError(f"{path}: the graph has inputs {list(inputs)}, the contract needs {INPUT_NAME!r}")
    if spec.blendshapes and INPUT_BLENDSHAPES not in inputs:
        raise SpecError(f"{path}: the spec lists {len(spec.blendshapes)} blendshapes but the graph has no "
                        f"{INPUT_BLENDSHAPES!r} input (inputs {list(inputs)}); re-export the model")
    if not spec.blendshapes and INPUT_BLENDSHAPES in inputs:
        raise SpecError(f"{path}: the graph takes {INPUT_BLENDSHAPES!r} but the spec lists no "
                        "affect.blendshapes names; re-export the model")
    missing = [n for n in (OUTPUT_EXPRESSION, OUTPUT_VA) if n not in outputs]
    if missing:
        raise SpecError(f"{path}: the graph lacks the contract outputs {missing} (has {list(outputs)})")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, providers: Sequence[str] | None = None,
                 spinning: bool | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = [ORT_PROVIDERS.get(p.lower(), p) for p in providers] if providers else None
        if wanted:
            missing = [p for p in wanted if p not in available]
            if missing:
                raise BackendError(f"{path}: execution provider(s) {missing} not available in this "
                                   f"onnxruntime build (available: {available})")
            if "CPUExecutionProvider" not in wanted:  # always keep a fallback for unsupported ops
                wanted.append("CPUExecutionProvider")
        else:
            # A GPU build uses CUDA by default; TensorRT only on request (its first run builds an engine).
            wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads, spinning = ort_thread_settings(threads, spinning)
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if spinning is not None:
            # Spinning workers keep a core busy between runs: on a small CPU that core is
            # then taken from MediaPipe, which runs on its own threads at the same time.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.threads, self.spinning = threads, spinning
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
        except Exception as exc:  # InvalidProtobuf, InvalidGraph, NoSuchFile, …
            raise BackendError(f"{path}: not a loadable ONNX model ({first_line(exc)})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        spec = ModelSpec.from_metadata(props, source=str(path))
        super().__init__(path, spec)
        inputs = self.session.get_inputs()
        self.graph_outputs = [o.name for o in self.session.get_outputs()]
        _check_graph_names(path, [i.name for i in inputs], self.graph_outputs, spec)
        if spec.blendshapes:
            width = next(i for i in inputs if i.name == INPUT_BLENDSHAPES).shape[-1]
            if isinstance(width, int) and width != len(spec.blendshapes):
                raise SpecError(f"{path}: the graph's {INPUT_BLENDSHAPES!r} input is {width} wide but the spec "
                                f"lists {len(spec.blendshapes)} blendshape names")
        self._outputs = [n for n in self.spec.output_names if n in self.graph_outputs]
        batch_dim = next(i for i in inputs if i.name == INPUT_NAME).shape[0]
        # A graph exported with a fixed batch of 1 is run face by face.
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.providers = self.session.get_providers()

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def _run(self, batch: np.ndarray, blendshapes: np.ndarray | None) -> dict[str, np.ndarray]:
        def feed(i: int, j: int) -> dict[str, np.ndarray]:
            inputs = {INPUT_NAME: batch[i:j]}
            if blendshapes is not None:
                inputs[INPUT_BLENDSHAPES] = blendshapes[i:j]
            return inputs

        if self._fixed_batch == 1 and len(batch) > 1:
            parts = [self.session.run(self._outputs, feed(i, i + 1)) for i in range(len(batch))]
            return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(self._outputs)}
        values = self.session.run(self._outputs, feed(0, len(batch)))
        return dict(zip(self._outputs, values))

    def close(self) -> None:
        self.session = None  # ORT frees the session with the object

    def describe(self) -> str:
        extra = "".join([f", {self.threads} threads" if self.threads else "",
                         "" if self.spinning is None else f", spinning {'on' if self.spinning else 'off'}"])
        return f"onnxruntime[{self.providers[0]}{extra}]:{self.path.name}"


THREADS_ENV = "AFFECTCAM_ORT_THREADS"
SPINNING_ENV = "AFFECTCAM_ORT_SPINNING"


def ort_thread_settings(threads: int | None, spinning: bool | None) -> tuple[int | None, bool | None]:
    """Intra-op threads and spinning: the arguments when given, else $AFFECTCAM_ORT_THREADS /
    $AFFECTCAM_ORT_SPINNING (1/0, on/off), else None (ONNX Runtime's own default)."""
    if threads is None and os.environ.get(THREADS_ENV):
        try:
            threads = int(os.environ[THREADS_ENV])
        except ValueError:
            raise BackendError(f"${THREADS_ENV}={os.environ[THREADS_ENV]!r}: expected a whole number") from None
    if spinning is None and os.environ.get(SPINNING_ENV):
        value = os.environ[SPINNING_ENV].strip().lower()
        if value not in ("1", "0", "on", "off", "true", "false", "yes", "no"):
            raise BackendError(f"${SPINNING_ENV}={os.environ[SPINNING_ENV]!r}: expected 1/0 or on/off")
        spinning = value in ("1", "on", "true", "yes")
    if threads is not None and threads < 1:
        raise BackendError(f"inference threads must be at least 1, got {threads}")
    return threads, spinning


def batch_chunks(n: int, max_batch: int) -> list[tuple[int, int]]:
    """[start, stop) ranges covering n items, none longer than max_batch."""
    if max_batch < 1:
        raise BackendError(f"maximum batch must be at least 1, got {max_batch}")
    return [(i, min(i + max_batch, n)) for i in range(0, n, max_batch)]


# --- TensorRT engine ----------------------------------------------------------------------------

class TensorRTBackend(Backend):
    """A serialized TensorRT engine (`model.engine`) with its spec in `model.engine.json`.

    Device memory goes through torch's CUDA allocator, which every TensorRT
    install we target (desktop, Jetson) has alongside it.
    """

    name = "tensorrt"

    def __init__(self, path: Path):
        spec = read_json_spec(str(path) + ".json")
        super().__init__(path, spec)
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError(f"{path}: the tensorrt package is not installed; install it "
                               "(pip install 'affectcam[tensorrt]' or JetPack) or use the .onnx model "
                               "with --backend onnxruntime") from None
        try:
            import torch
        except ImportError:
            raise BackendError(f"{path}: the TensorRT backend needs torch with CUDA for device memory") from None
        if not torch.cuda.is_available():
            raise BackendError(f"{path}: no CUDA device available for the TensorRT engine")
        self._torch, self._trt = torch, trt
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialize this engine "
                               "(built for another TensorRT version or GPU?)")
        self.engine, self.context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        _check_graph_names(path, inputs, outputs, spec)
        self._outputs = [n for n in spec.output_names if n in outputs]
        # The optimisation profile's largest batch: bigger batches (a frame with
        # more faces than the engine was built for) run in chunks.
        self.max_batch = int(engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self.stream = torch.cuda.Stream()

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def _run(self, batch: np.ndarray, blendshapes: np.ndarray | None) -> dict[str, np.ndarray]:
        if len(batch) > self.max_batch:
            parts = [self._run(batch[i:j], None if blendshapes is None else blendshapes[i:j])
                     for i, j in batch_chunks(len(batch), self.max_batch)]
            return {n: np.concatenate([p[n] for p in parts]) for n in self._outputs}
        torch = self._torch
        inputs = {INPUT_NAME: torch.from_numpy(batch).cuda(non_blocking=True)}
        if blendshapes is not None:
            inputs[INPUT_BLENDSHAPES] = torch.from_numpy(blendshapes).cuda(non_blocking=True)
        for name, x in inputs.items():  # `inputs` keeps the device tensors alive until the run ends
            if not self.context.set_input_shape(name, tuple(x.shape)):
                raise BackendError(f"{self.path}: the engine does not accept {name} shape {tuple(x.shape)}")
            self.context.set_tensor_address(name, x.data_ptr())
        outs = {}
        for name in self._outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, outs[name].data_ptr())
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError(f"{self.path}: TensorRT execution failed")
        self.stream.synchronize()
        return {n: t.float().cpu().numpy() for n, t in outs.items()}

    def close(self) -> None:
        self.context = self.engine = None


# --- the table and the factory -------------------------------------------------------------------

# The PyTorch backend lives with training (it builds the model from train's
# registry) and is named here, not imported: only choosing it loads torch.
TORCH_BACKEND = "train.torch_backend:TorchBackend"


@dataclass(frozen=True)
class BackendKind:
    name: str
    suffixes: tuple[str, ...]  # the files it runs (inference.model_files: the rows whose backend it is)
    providers: tuple[str, ...] = ()  # ONNX Runtime execution providers for the ort-* aliases
    cls: str = ""  # "module:Class" of its Backend


def _kind(name: str, cls: str, providers: tuple[str, ...] = ()) -> BackendKind:
    return BackendKind(name, suffixes_for(name), providers, cls)


_ORT = "inference.backends:OnnxRuntimeBackend"
BACKENDS: dict[str, BackendKind] = {
    "onnxruntime": _kind("onnxruntime", _ORT),
    "ort-cpu": _kind("onnxruntime", _ORT, ("cpu",)),
    "ort-cuda": _kind("onnxruntime", _ORT, ("cuda",)),
    "ort-tensorrt": _kind("onnxruntime", _ORT, ("tensorrt", "cuda")),
    "tensorrt": _kind("tensorrt", "inference.backends:TensorRTBackend"),
    "torch": _kind("torch", TORCH_BACKEND),
}


def backend_class(kind: BackendKind, path: str | os.PathLike = "") -> type[Backend]:
    """The Backend class `kind` names, imported now (the torch one needs the `train` extra)."""
    module, attr = kind.cls.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise BackendError(f"{path}: the {kind.name} backend needs torch and the train package "
                           f"({first_line(exc)}): pip install 'affectcam[train]', or use an .onnx model") from None


def torch_backend_module():
    """The PyTorch backend's module (`train.torch_backend`), imported now by the name in
    TORCH_BACKEND: the one way from the other rooms into training (the ONNX exporter takes
    the model it traces from it). A missing torch raises ModuleNotFoundError as is, so a
    command can name the `train` extra."""
    return importlib.import_module(TORCH_BACKEND.partition(":")[0])


def backends_for(suffix: str) -> list[str]:
    """The backend names that can run a `suffix` model file on this machine: ONNX
    Runtime aliases whose execution providers this onnxruntime build has, the
    TensorRT and torch backends when their packages are installed."""
    import importlib.util

    usable = []
    for name, kind in BACKENDS.items():
        if suffix.lower() not in kind.suffixes:
            continue
        if kind.name == "onnxruntime":
            import onnxruntime as ort

            available = set(ort.get_available_providers())
            if not all(ORT_PROVIDERS.get(p, p) in available for p in kind.providers):
                continue
        elif importlib.util.find_spec(kind.name) is None:  # tensorrt, torch
            continue
        usable.append(name)
    return usable


def backend_for_path(path: str | os.PathLike) -> str:
    """The default backend name for a model file, by its kind (inference.model_files)."""
    try:
        return model_file_for(path).backend
    except ModelFileError as exc:
        raise BackendError(str(exc)) from None


def create_backend(model_path: str | os.PathLike, backend: str | None = None, threads: int | None = None,
                   providers: Sequence[str] | None = None, spinning: bool | None = None) -> Backend:
    """Load a model file into the backend named by `backend` or by its extension.

    `threads` sets intra-op threads (ONNX Runtime, torch); `providers` lists
    ONNX Runtime execution providers ("cpu", "cuda", "tensorrt" or full names);
    `spinning` sets ONNX Runtime's `session.intra_op.allow_spinning` (None: its default).
    Raises BackendError / SpecError with a one-line message naming the file.
    """
    path = Path(model_path)
    if not path.is_file():
        raise BackendError(f"{path}: model file not found")
    name = (backend or backend_for_path(path)).lower()
    if name in ("onnx", "ort"):
        name = "onnxruntime"
    if name in ("pytorch", "pt"):
        name = "torch"
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose from {sorted(BACKENDS)}")
    kind = BACKENDS[name]
    if path.suffix.lower() not in kind.suffixes:
        raise BackendError(f"{path}: a {path.suffix or 'extension-less'} file cannot be run by the "
                           f"{name} backend (it takes {list(kind.suffixes)})")
    if kind.name == "onnxruntime":
        loaded: Backend = OnnxRuntimeBackend(path, threads=threads, providers=providers or kind.providers or None,
                                             spinning=spinning)
    elif kind.name == "tensorrt":
        loaded = TensorRTBackend(path)
    else:
        loaded = backend_class(kind, path)(path, threads=threads)
    try:
        check_against_spec(loaded)
    except BaseException:
        loaded.close()
        raise
    return loaded


def check_against_spec(backend: Backend) -> None:
    """The model file against its own metadata, once at load: one blank face of the spec's
    input size runs, and each contract output has the width the spec promises (as many
    expression columns as labels, two for valence/arousal). A file whose metadata lies fails
    here in one line, not with a traceback or a malformed recording later."""
    s, path = int(backend.spec.input_size), backend.path
    try:
        out = backend.predict(np.zeros((1, 3, s, s), np.float32))
    except Exception as exc:
        raise SpecError(f"{path}: the model does not run on a face of its affect.input_size {s}x{s} "
                        f"({first_line(exc)}); its metadata does not match the graph") from None
    widths = {OUTPUT_EXPRESSION: len(backend.spec.labels), OUTPUT_VA: 2}
    for name, width in widths.items():
        got = list(np.shape(out.get(name, np.zeros((0,)))))
        if got != [1, width]:
            what = f"{width} labels" if name == OUTPUT_EXPRESSION else "valence and arousal"
            raise SpecError(f"{path}: its {name!r} output has shape {got} for one face, but its metadata "
                            f"promises [1, {width}] ({what})")
