"""Inference: model files and the backends that run them (ONNX Runtime, TensorRT,
and by name the PyTorch backend of `train`), below every room that runs a model.

`train`, `export`, `realtime` and `dashboard` import this; it imports only
`affect` (and onnxruntime / tensorrt when a backend is made), so arrows point down.
`inference.model_files.MODEL_FILES` is the one table of model-file kinds.
"""

from inference.backends import (
    BACKENDS,
    Backend,
    BackendError,
    backend_for_path,
    backends_for,
    batch_chunks,
    create_backend,
    ort_thread_settings,
)
from inference.model_files import MODEL_FILES, ModelFile, ModelFileError, model_file, model_file_for

__all__ = ["BACKENDS", "Backend", "BackendError", "backend_for_path", "backends_for", "batch_chunks",
           "create_backend", "ort_thread_settings", "MODEL_FILES", "ModelFile", "ModelFileError", "model_file",
           "model_file_for"]
