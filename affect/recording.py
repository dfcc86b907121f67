"""The recording format shared by realtime (writer) and the dashboard (reader).

CSV: one row per face per frame:
`frame, t_ms, track_id, x, y, w, h, det_score, expression, confidence,
p_<label>…, valence, arousal`. Landmarks and blendshapes go to JSONL, one
object per face per frame with the same leading keys.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

BASE_COLUMNS = ("frame", "t_ms", "track_id", "x", "y", "w", "h", "det_score", "expression", "confidence")
TAIL_COLUMNS = ("valence", "arousal")


class RecordingError(ValueError):
    """A recording file that does not follow the documented format."""


def csv_columns(labels: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"p_{label}" for label in labels), *TAIL_COLUMNS]


def labels_from_columns(columns: Sequence[str]) -> list[str]:
    return [c[2:] for c in columns if c.startswith("p_")]


@dataclass
class FaceRow:
    frame: int
    t_ms: float
    track_id: int
    x: float
    y: float
    w: float
    h: float
    det_score: float
    expression: str
    confidence: float
    probabilities: Sequence[float]
    valence: float
    arousal: float

    def as_csv_row(self) -> list[str]:
        return [
            str(self.frame), f"{self.t_ms:.1f}", str(self.track_id),
            f"{self.x:.1f}", f"{self.y:.1f}", f"{self.w:.1f}", f"{self.h:.1f}",
            f"{self.det_score:.4f}", self.expression, f"{self.confidence:.4f}",
            *(f"{p:.4f}" for p in self.probabilities),
            f"{self.valence:.4f}", f"{self.arousal:.4f}",
        ]


def read_csv(path: str):
    """Read a recording into a pandas DataFrame, checking its columns.

    Raises RecordingError naming the file and what is wrong.
    """
    import pandas as pd  # the dashboard has pandas; realtime writers need not

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such recording") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: not a readable CSV recording ({str(exc).splitlines()[0]})") from None
    missing = [c for c in (*BASE_COLUMNS, *TAIL_COLUMNS) if c not in df.columns]
    if missing:
        raise RecordingError(f"{path}: not an affectcam recording, missing columns {missing}")
    if not labels_from_columns(df.columns):
        raise RecordingError(f"{path}: no p_<label> probability columns")
    if df.empty:
        raise RecordingError(f"{path}: the recording has no rows")
    return df


def write_csv_header(fh, labels: Sequence[str]) -> csv.writer:
    writer = csv.writer(fh)
    writer.writerow(csv_columns(labels))
    return writer
