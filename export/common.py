"""What every export format shares: the error type, checked atomic outputs
(`affect.files`), the contract spec read back from an ONNX file, and ONNX
Runtime sessions."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from affect import files
from affect.errors import first_line
from affect.files import atomic_path
from affect.spec import INPUT_BLENDSHAPES, ModelSpec, SpecError


class ExportError(RuntimeError):
    """An export that cannot go on; the message is one line naming the file and what to do."""


class ParityError(ExportError):
    """The exported graph does not compute what the PyTorch model computes."""


def check_writable(out: Path) -> None:
    """Fail before any work if `out` cannot be written (no half-done export later):
    `affect.files.check_writable`, worded for `-o`."""
    try:
        files.check_writable(out)
    except files.NotWritable as exc:
        parent = exc.path.parent
        raise ExportError({"folder": f"{out}: is a folder; give an output file name",
                           "mkdir": f"{out}: cannot create output folder {parent} ({exc.reason})",
                           "write": f"{out}: output folder {parent} is not writable ({exc.reason}); "
                                    "choose another path with -o"}[exc.kind]) from None


@contextlib.contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """Yield a temporary path next to `out`; it replaces `out` only if the block succeeds.
    An OSError while writing (a full disk) is the output's problem: one line naming `out`,
    and whatever was at `out` before stays as it was."""
    check_writable(out)
    if out.exists():  # the same rule as every command: an existing output is never replaced silently
        logging.getLogger("export").info("%s: replacing the existing file", out)
    try:
        with atomic_path(out) as tmp:
            yield tmp
    except OSError as exc:
        raise ExportError(f"{out}: cannot write it ({exc.strerror or exc}); nothing was written there, "
                          "free space or choose another path with -o") from None


def load_onnx(path: str | os.PathLike):
    """Load an ONNX file, turning every failure into one ExportError line."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ExportError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None


def spec_of(model, source: str) -> ModelSpec:
    """The affect.* contract spec stored in an ONNX model's metadata_props."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return ModelSpec.from_metadata(props, source=source)
    except SpecError as exc:
        raise ExportError(str(exc)) from None


def check_graph_inputs(model, spec: ModelSpec, source: str | os.PathLike) -> None:
    """The graph's inputs are the ones the spec promises: `image`, plus
    `blendshapes` [N, B] exactly when the spec lists B blendshape names."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in initializers}
    if list(inputs) != spec.input_names:
        raise ExportError(f"{source}: the graph has inputs {list(inputs)} but its affect.* metadata promises "
                          f"{spec.input_names}; re-export it with `python -m export onnx CHECKPOINT`")
    if spec.blendshapes:
        dims = inputs[INPUT_BLENDSHAPES].type.tensor_type.shape.dim
        width = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
        if len(dims) != 2 or (width is not None and width != len(spec.blendshapes)):
            raise ExportError(f"{source}: the graph's {INPUT_BLENDSHAPES!r} input has shape "
                              f"{[d.dim_value or d.dim_param for d in dims]} but the metadata lists "
                              f"{len(spec.blendshapes)} blendshape names; re-export it")


def blendshape_branch(model) -> list[str]:
    """Nodes that read the `blendshapes` input and not the image: the NaN test,
    the Where that zeroes missing rows, the small MLP (one branch per ensemble member)."""
    initializers = {i.name for i in model.graph.initializer}
    source: dict[str, set[str]] = {i.name: {i.name} for i in model.graph.input if i.name not in initializers}
    names = []
    for node in model.graph.node:  # graph order is topological
        deps = set().union(*(source.get(t, set()) for t in node.input))
        for out in node.output:
            source[out] = deps
        if deps == {INPUT_BLENDSHAPES}:
            names.append(node.name)
    return names


def set_metadata(model, spec: ModelSpec) -> None:
    """Replace the affect.* props with `spec`'s, keeping any others."""
    import onnx

    keep = {p.key: p.value for p in model.metadata_props if not p.key.startswith("affect.")}
    keep.update(spec.to_metadata())
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, keep)


def ort_session(path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)})") from None


def file_size_mb(path: str | os.PathLike) -> float:
    return os.path.getsize(path) / 1e6


def file_size_text(path: str | os.PathLike) -> str:
    """A file's size for a user's eyes: "92.1 kB", "14.27 MB" (a small model is not "0.1 MB")."""
    size = os.path.getsize(path)
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.2f} MB"
