"""The one table of model files: each kind's name, the suffix it is written
with, the other suffixes it is read from, and the backend that runs it.

The exporters (`export.formats`), the backends (`inference.backends`), the
benchmark's row names (`export.bench`) and the dashboard's model scan
(`dashboard.data`) all read this table; adding a model-file format is a row
here plus its exporter and backend. It imports nothing heavy, so the camera
and the dashboard read it without loading an exporter or torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ModelFileError(ValueError):
    """A path whose name matches no kind of model file."""


@dataclass(frozen=True)
class ModelFile:
    name: str  # what tables call it
    suffix: str  # the suffix it is written with (a name ending: ".int8.onnx")
    backend: str  # the backend that runs it (inference.backends.BACKENDS)
    also: tuple[str, ...] = ()  # other suffixes read as this kind (.pth; TensorRT's .plan, .trt)

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (self.suffix, *self.also)

    def output_for(self, source: str | os.PathLike) -> Path:
        """Where a file of this kind made from `source` goes by default: next to it,
        the source's last suffix replaced by this kind's (checkpoint.pt → checkpoint.onnx,
        m.onnx → m.int8.onnx, m.int8.onnx → m.int8.engine)."""
        source = Path(source)
        return source.with_name(source.stem + self.suffix)


MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile("PyTorch", ".pt", "torch", (".pth",)),
    ModelFile("ONNX", ".onnx", "onnxruntime"),
    ModelFile("ONNX INT8", ".int8.onnx", "onnxruntime"),
    ModelFile("ONNX FP16", ".fp16.onnx", "onnxruntime"),
    ModelFile("TensorRT", ".engine", "tensorrt", (".plan", ".trt")),
)


def model_file(name: str) -> ModelFile:
    """The row called `name` ("ONNX INT8")."""
    for row in MODEL_FILES:
        if row.name == name:
            return row
    raise ModelFileError(f"unknown model file kind {name!r}; the table has {[r.name for r in MODEL_FILES]}")


def known_suffixes() -> list[str]:
    """Every file ending a model file can have, sorted."""
    return sorted({s for row in MODEL_FILES for s in row.suffixes})


def model_file_for(path: str | os.PathLike) -> ModelFile:
    """The row a file belongs to, by its longest matching suffix (m.int8.onnx: ONNX INT8)."""
    name = Path(path).name.lower()
    matches = [(len(s), row) for row in MODEL_FILES for s in row.suffixes if name.endswith(s)]
    if not matches:
        suffix = Path(path).suffix.lower()
        raise ModelFileError(f"{path}: unknown model file kind {suffix or '(no extension)'!r}; "
                             f"expected one of {known_suffixes()}")
    return max(matches, key=lambda m: m[0])[1]


def suffixes_for(backend: str) -> tuple[str, ...]:
    """The last suffixes (Path.suffix) of the files `backend` runs: ".onnx" for onnxruntime."""
    return tuple(dict.fromkeys(Path("m" + s).suffix for row in MODEL_FILES if row.backend == backend
                               for s in row.suffixes))
