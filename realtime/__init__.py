"""Realtime facial affect: sources, MediaPipe faces, inference backends,
tracking, smoothing, overlay and recordings. `python -m realtime.cam`.

Importing this package does not import torch (only the PyTorch and TensorRT
backends do, when they are used).
"""

from realtime.pipeline import FaceResult, FrameResult, Pipeline, PipelineError, PipelineOptions
from realtime.reader import AffectReader, Reading

__all__ = ["Pipeline", "PipelineOptions", "PipelineError", "FrameResult", "FaceResult", "AffectReader", "Reading"]
