"""What a `Pipeline` is told, in groups: the model and how it runs, how faces
are found, the schedule of the stages, and where results go.

    PipelineOptions(source="clip.mp4", model="model.onnx")          # the common case
    PipelineOptions(source=0, model=ModelOptions("model.onnx", threads=2),
                    faces=FaceFindingOptions("detector", max_faces=4),
                    schedule=ScheduleOptions(every=3),
                    outputs=OutputOptions(csv="rec.csv", sinks=[MySink()]))

A path for `model` and a finder name for `faces` stand for the group with only
that set. Every group checks its values once, in `__post_init__`, and refuses a
bad one with an `affect.checks.OptionError` naming the option
(`ScheduleOptions.every 0: must be a whole number of at least 1`);
`realtime.cam` turns that into the flag's one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from affect.checks import OptionError, is_finite, require, whole_at_least
from realtime.sinks import CsvSink, JsonlSink, Sink, VideoSink
from realtime.smoothing import SmoothingOptions
from realtime.sources import Source, SourceOptions
from realtime.tracking import TrackerOptions

FACE_PATHS = ("auto", "yunet", "detector", "landmarker")
MAX_FACES_LIMIT = 100  # MediaPipe's cost grows with it; more faces than this in one frame is a typo


@dataclass
class ModelOptions:
    """The affect model and how its backend runs."""
    path: str | Path | None = None  # None: the packaged default model (INT8 or FP32, by measurement)
    backend: str | None = None  # None: by the model file's extension
    providers: list[str] | None = None  # ONNX Runtime execution providers
    threads: int | None = None  # ONNX Runtime intra-op threads; None: $AFFECTCAM_ORT_THREADS, else DEFAULT_THREADS
    spinning: bool | None = None  # ONNX Runtime intra-op spinning; None: $AFFECTCAM_ORT_SPINNING, else DEFAULT_SPINNING
    # action units for every face (FaceResult.aus; AU1 … AU27 in the recordings): True = the model's
    # action_units output, else MediaPipe's blendshapes through the packaged map (the landmarker then
    # runs); a map file (.json, `python -m train au-map`) = blendshapes through that map; False: none
    aus: bool | str | Path = False

    def __post_init__(self) -> None:
        whole_at_least(self, "threads", 1, optional=True)
        require(isinstance(self.aus, (bool, str, Path)), self, "aus", "must be true, false or an AU map file")


@dataclass
class FaceFindingOptions:
    """How the faces are found: YuNet (`realtime.yunet`) or MediaPipe's detector or landmarker."""
    # "auto": YuNet, or the landmarker when something needs it (a model that takes
    # blendshapes, OutputOptions.jsonl_landmarks); "yunet"; "detector" (MediaPipe's); "landmarker".
    finder: str = "auto"
    face_model: str | Path | None = None  # the MediaPipe bundle; None: env var, cache, download
    download_face_model: bool = True
    # MediaPipe blendshapes on FaceResult (and in the JSONL with jsonl_landmarks) when the landmarker
    # runs; a model that takes blendshapes gets them either way.
    blendshapes: bool = True
    detector_fill: bool = True  # landmarker path: also run the detector for faces the landmarker misses
    max_faces: int = 30  # a classroom's faces (docs/BENCHMARKS.md: faces at every size)
    # 0.4, not MediaPipe's 0.5: measured (docs/BENCHMARKS.md, session 7) to keep marginal real faces
    # tracked (known-faces video 97.3 % -> 98.7 % found; the clip's faces followed in 9 more frames)
    min_face_confidence: float = 0.4

    def __post_init__(self) -> None:
        require(self.finder in FACE_PATHS, self, "finder", f"must be one of {', '.join(FACE_PATHS)}")
        whole_at_least(self, "max_faces", 1)
        require(self.max_faces <= MAX_FACES_LIMIT, self, "max_faces", f"at most {MAX_FACES_LIMIT}")
        require(is_finite(self.min_face_confidence) and 0.0 < self.min_face_confidence < 1.0, self,
                "min_face_confidence", "must be between 0 and 1")


@dataclass
class ScheduleOptions:
    """Which frames run what, and on which threads."""
    # The model reads each face every Nth frame, faces in turn (track id staggers them, so every
    # frame carries about the same work); faces and tracks every frame, readings carried between.
    every: int = 1
    max_frames: int | None = None
    overlap: bool = True  # stages on their own threads (False: one thread, for comparison)
    queue_size: int = 2  # frames held between two stages (files; a live source's own queue holds its frames)
    # Small faces (far faces of a wide shot: a crop under small_face_side px, by default the model's
    # input size, so the model sees them upscaled; they change little from one frame to the next) are
    # read every small_face_every-th frame at most often (docs/BENCHMARKS.md: agreement with reading
    # them every frame); 1: every frame.
    small_face_every: int = 2
    small_face_side: int | None = None

    def __post_init__(self) -> None:
        whole_at_least(self, "every", 1)
        whole_at_least(self, "small_face_every", 1)
        whole_at_least(self, "small_face_side", 0, optional=True)
        whole_at_least(self, "max_frames", 1, optional=True)
        whole_at_least(self, "queue_size", 1)


@dataclass
class OutputOptions:
    """Where results go. `sinks` are written in order each frame and closed in order at the end;
    `csv`, `jsonl` and `video_out` are shorthands for a CsvSink, JsonlSink and VideoSink, which come
    before `sinks` (`all_sinks()`). A sink object serves one run."""
    sinks: list[Sink] = field(default_factory=list)
    csv: str | Path | None = None
    jsonl: str | Path | None = None
    jsonl_landmarks: bool = False  # landmarks and blendshapes in the JSONL (large)
    video_out: str | Path | None = None
    show: bool = False  # an OpenCV window (q quits, space pauses, s saves a snapshot)
    draw: bool | None = None  # annotate frames; None: when there is a window or a sink that draws (video)
    trail_length: int = 45  # frames of V-A trail per track in the inset
    snapshot_dir: str | Path = "."

    def __post_init__(self) -> None:
        self.sinks = list(self.sinks)
        for i, sink in enumerate(self.sinks):
            require(callable(getattr(sink, "write", None)) and callable(getattr(sink, "close", None)), self,
                    "sinks", f"item {i} ({type(sink).__name__}) has no write(result) and close()")
        whole_at_least(self, "trail_length", 1)

    def all_sinks(self) -> list[Sink]:
        """New sink objects for the shorthands, then `sinks`: the order they are written and closed in."""
        shorthands: list[Sink] = []
        if self.csv:
            shorthands.append(CsvSink(self.csv))
        if self.jsonl:
            shorthands.append(JsonlSink(self.jsonl, self.jsonl_landmarks, self.jsonl_landmarks))
        if self.video_out:
            shorthands.append(VideoSink(self.video_out))
        return [*shorthands, *self.sinks]


@dataclass
class PipelineOptions:
    source: str | int | Path | Source | None = 0  # None: frames come through Pipeline.process()
    model: ModelOptions | str | Path | None = None  # a path (or None) is ModelOptions(path)
    faces: FaceFindingOptions | str = "auto"  # a finder name is FaceFindingOptions(finder)
    schedule: ScheduleOptions = field(default_factory=ScheduleOptions)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    tracking: TrackerOptions = field(default_factory=TrackerOptions)
    source_options: SourceOptions = field(default_factory=SourceOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelOptions):
            require(self.model is None or isinstance(self.model, (str, Path)), self, "model",
                    "must be a model file's path or ModelOptions")
            self.model = ModelOptions(self.model)
        if isinstance(self.faces, str):
            self.faces = FaceFindingOptions(self.faces)
        for name, kind in (("faces", FaceFindingOptions), ("schedule", ScheduleOptions),
                           ("outputs", OutputOptions), ("smoothing", SmoothingOptions),
                           ("tracking", TrackerOptions), ("source_options", SourceOptions)):
            require(isinstance(getattr(self, name), kind), self, name, f"must be {kind.__name__}")

    def face_path(self, model_takes_blendshapes: bool) -> str:
        """"yunet", "detector" or "landmarker": what finds the faces for these options and a model
        (`model_takes_blendshapes`: the model, or the AU map, reads them)."""
        finder = self.faces.finder  # type: ignore[union-attr]  # FaceFindingOptions after __post_init__
        if finder != "auto":
            return finder
        return "landmarker" if (model_takes_blendshapes or self.outputs.jsonl_landmarks) else "yunet"


__all__ = ["PipelineOptions", "ModelOptions", "FaceFindingOptions", "ScheduleOptions", "OutputOptions",
           "OptionError", "FACE_PATHS", "MAX_FACES_LIMIT"]
