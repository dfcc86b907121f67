"""The recording format shared by realtime (writer) and the dashboard (reader).

CSV: one row per face per frame:
`frame, t_ms, track_id, x, y, w, h, det_score, expression, confidence,
p_<label>…, valence, arousal` and, when the camera read action units (`--aus`),
`AU1, AU2, … AU27` (FACS numbers, no padding: `affect.aus.AU_NAMES`): each AU's
probability in [0, 1], empty for a face that has none (the landmarker missed it,
or `--every N` carried its expression from an earlier frame without AUs).
JSONL: one object per face per frame with the same keys (AU keys null for none),
plus `landmarks` ([[x, y, z], …] in pixels) and `blendshapes` ({name: score})
when the writer has them. Writers build rows with `FaceRow`; `read_recording`
reads either kind back, checked, as a pandas DataFrame; recordings written
before AU columns existed read as they always did.

AU thresholds: the AU columns are raw probabilities. When the AU reader carries its own
per-AU decision thresholds (a model whose `affect.au_thresholds` were chosen on its
validation part), the writer puts them beside the recording in `<stem>.au_thresholds.json`
(`write_au_thresholds`); readers that call an AU "active" (the dashboard's AU panel, the
corpus table) use them (`read_au_thresholds`); without that file every AU is active at 0.5.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_COLUMNS = ("frame", "t_ms", "track_id", "x", "y", "w", "h", "det_score", "expression", "confidence")
TAIL_COLUMNS = ("valence", "arousal")


class RecordingError(ValueError):
    """A recording file that does not follow the documented format."""


AU_COLUMN = re.compile(r"^AU[1-9][0-9]*$")


AU_THRESHOLDS_FORMAT = "affectcam.au_thresholds"


def au_thresholds_path(recording: str | os.PathLike) -> Path:
    """The AU thresholds file of a recording: `session.csv` → `session.au_thresholds.json`."""
    return Path(recording).with_suffix(".au_thresholds.json")


def write_au_thresholds(recording: str | os.PathLike, thresholds: Mapping[str, float], source: str) -> Path:
    """Write the AU reader's per-AU thresholds beside `recording` (atomic); returns the path."""
    from affect.files import atomic_write_json

    path = au_thresholds_path(recording)
    atomic_write_json(path, {"format": AU_THRESHOLDS_FORMAT, "source": source,
                             "thresholds": {str(k): float(v) for k, v in thresholds.items()}})
    return path


def read_au_thresholds(recording: str | os.PathLike) -> dict[str, float] | None:
    """The per-AU thresholds written beside `recording`, or None when it has none (every AU
    active at 0.5). RecordingError naming the file when it is there but unusable."""
    import json

    path = au_thresholds_path(recording)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordingError(f"{path}: not a readable AU thresholds file ({type(exc).__name__})") from None
    values = data.get("thresholds") if isinstance(data, dict) and data.get("format") == AU_THRESHOLDS_FORMAT else None
    if not isinstance(values, dict) or not all(
            AU_COLUMN.match(str(k)) and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1
            for k, v in values.items()):
        raise RecordingError(f"{path}: not an AU thresholds file (needs format {AU_THRESHOLDS_FORMAT!r} and "
                             "'thresholds': {AU name: number in (0, 1)})")
    return {str(k): float(v) for k, v in values.items()}


def csv_columns(labels: Sequence[str], au_names: Sequence[str] = ()) -> list[str]:
    return [*BASE_COLUMNS, *(f"p_{label}" for label in labels), *TAIL_COLUMNS, *au_names]


def labels_from_columns(columns: Sequence[str]) -> list[str]:
    return [c[2:] for c in columns if c.startswith("p_")]


def au_columns(columns: Sequence[str]) -> list[str]:
    """The action-unit columns of a recording (`AU1`, `AU12`, …), in file order; [] for one
    written without AUs."""
    return [str(c) for c in columns if AU_COLUMN.match(str(c))]


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
    # [A] AU probabilities in the writer's au_names order; None (or NaN) = none for this face
    aus: Sequence[float] | None = None

    def _au_values(self, au_names: Sequence[str]) -> list[float | None]:
        if not au_names:
            return []
        if self.aus is None:
            return [None] * len(au_names)
        if len(self.aus) != len(au_names):
            raise ValueError(f"{len(self.aus)} AU probabilities for {len(au_names)} AU columns")
        return [float(p) if math.isfinite(float(p)) else None for p in self.aus]

    def as_csv_row(self, au_names: Sequence[str] = ()) -> list[str]:
        """The CSV row; with `au_names` (the file's AU columns) its AU probabilities, empty where none."""
        return [
            str(self.frame), f"{self.t_ms:.1f}", str(self.track_id),
            f"{self.x:.1f}", f"{self.y:.1f}", f"{self.w:.1f}", f"{self.h:.1f}",
            f"{self.det_score:.4f}", self.expression, f"{self.confidence:.4f}",
            *(f"{p:.4f}" for p in self.probabilities),
            f"{self.valence:.4f}", f"{self.arousal:.4f}",
            *("" if p is None else f"{p:.4f}" for p in self._au_values(au_names)),
        ]

    def as_json(self, labels: Sequence[str], landmarks: Any = None,
                blendshapes: Mapping[str, float] | None = None, au_names: Sequence[str] = ()) -> dict[str, Any]:
        """The JSONL object: the CSV's keys (AUs null where none), then `landmarks` and
        `blendshapes` when given."""
        obj: dict[str, Any] = {
            "frame": self.frame, "t_ms": round(self.t_ms, 1), "track_id": self.track_id,
            "x": round(self.x, 1), "y": round(self.y, 1), "w": round(self.w, 1), "h": round(self.h, 1),
            "det_score": round(self.det_score, 4), "expression": self.expression,
            "confidence": round(self.confidence, 4),
            **{f"p_{label}": round(float(p), 4) for label, p in zip(labels, self.probabilities)},
            "valence": round(self.valence, 4), "arousal": round(self.arousal, 4),
            **{name: None if p is None else round(p, 4) for name, p in zip(au_names, self._au_values(au_names))},
        }
        if landmarks is not None:
            import numpy as np

            obj["landmarks"] = np.round(landmarks, 2).tolist()
        if blendshapes is not None:
            obj["blendshapes"] = {k: round(v, 4) for k, v in blendshapes.items()}
        return obj


def write_csv_header(fh, labels: Sequence[str], au_names: Sequence[str] = ()) -> csv.writer:
    writer = csv.writer(fh)
    writer.writerow(csv_columns(labels, au_names))
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
    aus = au_columns([str(c) for c in df.columns])
    for col in aus:  # empty = no AUs for that face; a value must be a probability
        try:
            df[col] = pd.to_numeric(df[col], errors="raise").astype(float)
        except (ValueError, TypeError):
            bad_cols.append(col)
            continue
        if ((df[col] < 0) | (df[col] > 1)).any():
            bad_cols.append(col)
    if bad_cols:
        raise RecordingError(f"{path}: AU columns {bad_cols} hold values that are not probabilities in [0, 1]")
    return df.sort_values(["t_ms", "track_id"]).reset_index(drop=True)


