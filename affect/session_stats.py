"""What one recording says in numbers: time per expression and per quadrant, the spread
of valence and arousal, AU activity. The dashboard's Session page and the corpus
table (`python -m realtime.batch`) both read a recording through these, so a share
means the same on both.

A share is of face-frames: each face row stands for one frame interval of one face.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from affect.aus import AU_THRESHOLD
from affect.labels import QUADRANTS, quadrant
from affect.recording import au_columns  # the recording format owns its AU columns

QUADRANT_ORDER = [QUADRANTS[k] for k in ((True, True), (False, True), (False, False), (True, False))]
AU_ACTIVE = AU_THRESHOLD  # an AU column holds a probability; at or above this the AU counts as active


def frame_interval_ms(df: pd.DataFrame) -> float:
    """Typical time between frames: each face row stands for this much time.
    The median ignores the gaps where no face was found."""
    times = np.unique(df["t_ms"].to_numpy(dtype=float))
    if len(times) < 2:
        return 0.0
    return float(np.median(np.diff(times)))


def with_quadrants(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["quadrant"] = [quadrant(float(v), float(a)) for v, a in zip(out["valence"], out["arousal"], strict=True)]
    return out


def time_per(df: pd.DataFrame, category: str, order: list[str], interval_ms: float,
             by_track: bool = False) -> pd.DataFrame:
    """Face-frames and seconds per category value (all values in `order`, zeros kept)."""
    keys = ["track_id", category] if by_track else [category]
    counts = df.groupby(keys).size().rename("frames").reset_index()
    if not by_track:
        counts = counts.set_index(category).reindex(order, fill_value=0).rename_axis(category).reset_index()
    counts["frames"] = counts["frames"].astype(int)
    counts["seconds"] = counts["frames"] * interval_ms / 1000.0
    total = counts["frames"].sum()
    counts["share"] = counts["frames"] / total if total else 0.0
    return counts


def session_stats(df: pd.DataFrame | None, labels: Sequence[str],
                  au_thresholds: Mapping[str, float] | None = None) -> dict[str, float | int]:
    """One recording as one row of numbers: face rows, frames with a face, tracks, mean and
    standard deviation of valence and arousal, the share of face-frames per expression
    (`share_<label>`) and per quadrant (`share_<quadrant>`), and for each AU column the
    share of face-frames where it is active (`active_<AU>`: probability ≥ its threshold in
    `au_thresholds`, the recording's `affect.recording.read_au_thresholds`; 0.5 for an AU it
    lacks). `df` None or empty: no face was found; counts are 0 and the rest NaN."""
    empty = df is None or df.empty
    row: dict[str, float | int] = {
        "face_rows": 0 if empty else len(df),
        "frames_with_face": 0 if empty else int(df["frame"].nunique()),
        "tracks": 0 if empty else int(df["track_id"].nunique()),
    }
    for what in ("valence", "arousal"):
        row[f"{what}_mean"] = float("nan") if empty else float(df[what].mean())
        row[f"{what}_sd"] = float("nan") if empty or len(df) < 2 else float(df[what].std())
    if empty:
        row.update({f"share_{label}": float("nan") for label in labels})
        row.update({f"share_{q}": float("nan") for q in QUADRANT_ORDER})
        return row
    interval = frame_interval_ms(df)
    shares = time_per(df, "expression", list(labels), interval).set_index("expression")["share"]
    row.update({f"share_{label}": float(shares[label]) for label in labels})
    shares = time_per(with_quadrants(df), "quadrant", QUADRANT_ORDER, interval).set_index("quadrant")["share"]
    row.update({f"share_{q}": float(shares[q]) for q in QUADRANT_ORDER})
    for au in au_columns(df.columns):
        values = pd.to_numeric(df[au], errors="coerce")
        cut = (au_thresholds or {}).get(au, AU_ACTIVE)
        row[f"active_{au}"] = float((values >= cut).mean()) if values.notna().any() else float("nan")
    return row
