"""What the pipeline gives: for each frame a `FrameResult`, holding one
`FaceResult` per tracked face, and for the run a `RunSummary`. Their own module, so that sinks, the overlay
and the dashboard can name them without importing the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affect.crop import CropBox


@dataclass
class FaceResult:
    track_id: int
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    det_score: float
    crop_box: CropBox
    expression: str
    confidence: float
    probabilities: np.ndarray  # smoothed, in spec.labels order
    valence: float  # smoothed
    arousal: float
    raw_probabilities: np.ndarray  # this frame's (or the carried) model output
    raw_valence: float
    raw_arousal: float
    inferred: bool  # False when carried from an earlier frame (--every N)
    landmarks: np.ndarray | None = None
    blendshapes: dict[str, float] | None = None
    crop: np.ndarray | None = None  # the RGB model input crop
    aus: np.ndarray | None = None  # [15] AU probabilities, affect.aus.AU_NAMES order (ModelOptions.aus); None: none


@dataclass
class FrameResult:
    index: int
    t_ms: float
    image: np.ndarray  # the frame, BGR
    faces: list[FaceResult]
    timings: dict[str, float]  # milliseconds per stage (`STAGES`), `frame` for their sum, `latency` read → result
    fps: float
    annotated: np.ndarray | None = None  # the frame with the overlay drawn, when the run draws


@dataclass
class RunSummary:
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    max_faces: int = 0
    tracks: int = 0
    wall_s: float = 0.0
    corrupt_frames: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    interrupted: bool = False
    source_error: str | None = None
    nonfinite_faces: int = 0  # faces the model gave NaN/inf for: left out of the results and recordings

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def faces_per_frame(self) -> float:
        return self.faces / self.frames if self.frames else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "frames_with_faces": self.frames_with_faces, "faces": self.faces,
                "faces_per_frame": round(self.faces_per_frame, 3), "max_faces": self.max_faces,
                "tracks": self.tracks, "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 2),
                "corrupt_frames": self.corrupt_frames, "dropped_frames": self.dropped_frames,
                "reconnects": self.reconnects, "interrupted": self.interrupted,
                "nonfinite_faces": self.nonfinite_faces,
                "source_error": self.source_error,
                "stages_ms": {k: {m: round(x, 3) for m, x in v.items()} for k, v in self.stages_ms.items()}}

    def format(self) -> str:
        lines = [f"frames {self.frames} ({self.frames_with_faces} with faces), "
                 f"{self.faces_per_frame:.2f} faces/frame, {self.tracks} tracks, "
                 f"{self.fps:.1f} FPS over {self.wall_s:.1f} s"
                 + (f", {self.corrupt_frames} corrupt frames skipped" if self.corrupt_frames else "")
                 + (f", {self.dropped_frames} stale frames dropped" if self.dropped_frames else "")
                 + (f", {self.nonfinite_faces} faces left out: the model gave NaN/inf for them"
                    if self.nonfinite_faces else "")
                 + (" (interrupted)" if self.interrupted else "")]
        if self.source_error:
            lines.append(f"source: {self.source_error}")
        if self.stages_ms:
            lines.append("stage      p50 ms   p95 ms")
            lines += [f"{k:<9} {v['p50']:7.2f}  {v['p95']:7.2f}" for k, v in self.stages_ms.items()]
        return "\n".join(lines)
