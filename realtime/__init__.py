"""Realtime facial affect: sources, MediaPipe faces, tracking, smoothing,
overlay and recordings; the model runs on `inference`'s backends.
`python -m realtime.cam`.

Importing this package does not import torch (only the PyTorch and TensorRT
backends do, when they are used).
"""

from realtime.options import FaceFindingOptions, ModelOptions, OutputOptions, PipelineOptions, ScheduleOptions
from realtime.pipeline import Pipeline, PipelineError
from realtime.reader import AffectReader, Reading
from realtime.results import FaceResult, FrameResult, RunSummary
from realtime.sinks import CsvSink, JsonlSink, Sink, SinkContext, SummaryJsonSink, VideoSink

__all__ = ["Pipeline", "PipelineOptions", "ModelOptions", "FaceFindingOptions", "ScheduleOptions", "OutputOptions",
           "PipelineError", "FrameResult", "FaceResult", "RunSummary", "Sink", "SinkContext", "CsvSink", "JsonlSink",
           "VideoSink", "SummaryJsonSink", "AffectReader", "Reading"]
