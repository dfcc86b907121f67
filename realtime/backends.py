"""Moved to `inference.backends` (below train, export, realtime and the dashboard);
kept so old import paths work."""

from inference.backends import (  # noqa: F401
    BACKENDS,
    ORT_PROVIDERS,
    SPINNING_ENV,
    THREADS_ENV,
    TORCH_BACKEND,
    Backend,
    BackendError,
    BackendKind,
    OnnxRuntimeBackend,
    TensorRTBackend,
    backend_for_path,
    backends_for,
    batch_chunks,
    check_against_spec,
    create_backend,
    ort_thread_settings,
)
