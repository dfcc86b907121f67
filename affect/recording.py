"""The recording format shared by realtime (writer) and the dashboard (reader).

CSV: one row per face per frame:
`frame, t_ms, track_id, x, y, w, h, det_score, expression, confidence,
p_<label>…, valence, arousal`. JSONL: one object per face per frame with the
same keys, plus `landmarks` ([[x, y, z], …] in pixels) and `blendshapes`
({name: score}) when the writer has them. Writers build rows with `FaceRow`;
`read_recording` reads either kind back, checked, as a pandas DataFrame.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    def as_json(self, labels: Sequence[str], landmarks: Any = None,
                blendshapes: Mapping[str, float] | None = None) -> dict[str, Any]:
        """The JSONL object: the CSV's keys, then `landmarks` and `blendshapes` when given."""
        obj: dict[str, Any] = {
            "frame": self.frame, "t_ms": round(self.t_ms, 1), "track_id": self.track_id,
            "x": round(self.x, 1), "y": round(self.y, 1), "w": round(self.w, 1), "h": round(self.h, 1),
            "det_score": round(self.det_score, 4), "expression": self.expression,
            "confidence": round(self.confidence, 4),
            **{f"p_{label}": round(float(p), 4) for label, p in zip(labels, self.probabilities)},
            "valence": round(self.valence, 4), "arousal": round(self.arousal, 4),
        }
        if landmarks is not None:
            import numpy as np

            obj["landmarks"] = np.round(landmarks, 2).tolist()
        if blendshapes is not None:
            obj["blendshapes"] = {k: round(v, 4) for k, v in blendshapes.items()}
        return obj


def write_csv_header(fh, labels: Sequence[str]) -> csv.writer:
    writer = csv.writer(fh)
    writer.writerow(csv_columns(labels))
    return writer


def _check_columns(path, df, what: str):
    missing = [c for c in (*BASE_COLUMNS, *TAIL_COLUMNS) if c not in df.columns]
    if missing:
        raise RecordingError(f"{path}: not an affectcam recording, missing {what} {missing}")
    if not labels_from_columns(df.columns):
        raise RecordingError(f"{path}: no p_<label> probability {what}")
    if df.empty:
        raise RecordingError(f"{path}: the recording has no rows")
    return df


def read_csv(path: str | os.PathLike):
    """Read a recording into a pandas DataFrame, checking its columns.

    Raises RecordingError naming the file and what is wrong.
    """
    import pandas as pd  # the dashboard has pandas; realtime writers need not

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such recording") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        # The kind of error only: a parser's message can quote the file's content.
        raise RecordingError(f"{path}: not a readable CSV recording ({type(exc).__name__})") from None
    return _check_columns(path, df, "columns")


def read_jsonl(path: str | os.PathLike):
    """Read a JSONL recording into a DataFrame with the CSV's columns (landmarks and
    blendshapes ride along). `{"probabilities": {label: p}}` is accepted as well as
    flat `p_<label>` keys. Raises RecordingError naming the file and what is wrong."""
    import pandas as pd

    try:
        df = pd.read_json(path, lines=True)
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such recording") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise RecordingError(f"{path}: not a readable JSONL recording ({type(exc).__name__})") from None
    if df.empty:
        raise RecordingError(f"{path}: the recording has no rows")
    if "probabilities" in df.columns and not labels_from_columns(df.columns):
        probs = df["probabilities"]
        if all(isinstance(p, dict) for p in probs):
            expanded = pd.DataFrame(list(probs)).add_prefix("p_")
            df = pd.concat([df.drop(columns="probabilities"), expanded], axis=1)
    return _check_columns(path, df, "keys")


NUMERIC_COLUMNS = ("frame", "t_ms", "track_id", "valence", "arousal", "confidence")
INDEX_LIMIT = 2.0 ** 31  # frame and track numbers: a recorder counts up from 0, one per frame / track


def read_recording(path: str | os.PathLike):
    """A CSV or JSONL recording (by suffix) as a DataFrame sorted by time and track,
    its numeric columns checked. Raises RecordingError naming the file."""
    import numpy as np
    import pandas as pd

    path = Path(path)
    df = read_jsonl(path) if path.suffix.lower() == ".jsonl" else read_csv(path)
    numeric = [*NUMERIC_COLUMNS, *(f"p_{label}" for label in labels_from_columns([str(c) for c in df.columns]))]
    bad_cols = []
    for col in numeric:
        try:
            df[col] = pd.to_numeric(df[col], errors="raise")
        except (ValueError, TypeError):
            bad_cols.append(col)
    if bad_cols:  # the columns, never the values: the file may not be a recording at all
        raise RecordingError(f"{path}: non-numeric values in the recording (columns {bad_cols})")
    if df[numeric].isna().any().any():
        bad = [c for c in numeric if df[c].isna().any()]
        raise RecordingError(f"{path}: empty values in columns {bad}")
    for col in ("frame", "track_id"):
        # Writers write whole numbers; a cast would turn 1.7 into 1 and 1e30 into a negative number.
        values = df[col].to_numpy(dtype="float64")
        wrong = ~((np.abs(values) < INDEX_LIMIT) & (np.floor(values) == values))
        if wrong.any():
            raise RecordingError(f"{path}: {int(wrong.sum())} rows whose {col} is not a whole number below "
                                 f"{INDEX_LIMIT:.0f} (first at row {int(np.flatnonzero(wrong)[0]) + 1})")
        df[col] = df[col].astype("int64")
    return df.sort_values(["t_ms", "track_id"]).reset_index(drop=True)


