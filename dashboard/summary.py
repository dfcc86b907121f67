"""Session summaries from a recording: time per quadrant and per expression,
per-track means, and the state of the plane at a chosen time."""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd

from affect.aus import AU_DESCRIPTIONS, AU_THRESHOLD

# The per-recording numbers live in affect/ so the corpus table (realtime.batch) shares them.
from affect.session_stats import QUADRANT_ORDER, frame_interval_ms, time_per, with_quadrants

__all__ = ["QUADRANT_ORDER", "au_activity", "frame_interval_ms", "state_at", "summary_csv", "time_per",
           "track_table", "with_quadrants"]


def track_table(df: pd.DataFrame, interval_ms: float) -> pd.DataFrame:
    rows = []
    for track_id, g in df.groupby("track_id", sort=True):
        rows.append({
            "track_id": int(track_id), "frames": len(g), "seconds": len(g) * interval_ms / 1000.0,
            "first_s": g["t_ms"].min() / 1000.0, "last_s": g["t_ms"].max() / 1000.0,
            "mean_valence": g["valence"].mean(), "mean_arousal": g["arousal"].mean(),
            "main_expression": g["expression"].mode().iloc[0],
        })
    return pd.DataFrame(rows)


def summary_csv(df: pd.DataFrame, labels: list[str]) -> str:
    """The exported summary: one tidy table (track, kind, name, frames, seconds, share, value)."""
    interval = frame_interval_ms(df)
    df = with_quadrants(df)
    parts = []
    for track, g in [("all", df), *((str(t), g) for t, g in df.groupby("track_id", sort=True))]:
        for kind, order in (("quadrant", QUADRANT_ORDER), ("expression", list(labels))):
            part = time_per(g, kind, order, interval).rename(columns={kind: "name"})
            part.insert(0, "kind", kind)
            part.insert(0, "track", track)
            parts.append(part)
        parts.append(pd.DataFrame({"track": track, "kind": "mean", "name": ["valence", "arousal"],
                                   "value": [g["valence"].mean(), g["arousal"].mean()]}))
    out = pd.concat(parts, ignore_index=True)[["track", "kind", "name", "frames", "seconds", "share", "value"]]
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return buf.getvalue()


def state_at(df: pd.DataFrame, t_ms: float, trail_ms: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trail rows within trail_ms before t_ms, latest row per track at or before t_ms)."""
    # the time comes from a float slider (seconds): a row exactly on either edge stays in
    eps = 1e-3
    past = df[df["t_ms"] <= t_ms + eps]
    trail = past[past["t_ms"] >= t_ms - trail_ms - eps]
    current = trail.sort_values("t_ms").groupby("track_id").tail(1)
    return trail, current


def au_activity(df: pd.DataFrame, aus: list[str], interval_ms: float,
                threshold: float | Mapping[str, float] | None = AU_THRESHOLD) -> pd.DataFrame:
    """Per track and AU: face-frames that had AUs, the share of them where the AU was active
    (probability >= its threshold: one number for all, or {AU: threshold} as the recording's
    `affect.recording.read_au_thresholds` gives, 0.5 for an AU it lacks; None = 0.5), seconds
    active, the threshold and the mean probability; most active first."""
    cuts = dict(threshold) if isinstance(threshold, Mapping) else {}
    default = AU_THRESHOLD if threshold is None or isinstance(threshold, Mapping) else float(threshold)
    rows = []
    for track_id, g in df.groupby("track_id", sort=True):
        for au in aus:
            values = g[au].dropna()
            if values.empty:
                continue
            cut = float(cuts.get(au, default))
            active = int((values >= cut).sum())
            rows.append({"track_id": int(track_id), "au": au, "name": AU_DESCRIPTIONS.get(au, ""),
                         "frames": len(values), "active_share": active / len(values),
                         "active_seconds": active * interval_ms / 1000.0, "threshold": cut,
                         "mean_probability": float(values.mean())})
    out = pd.DataFrame(rows, columns=["track_id", "au", "name", "frames", "active_share", "active_seconds",
                                      "threshold", "mean_probability"])
    return out.sort_values(["track_id", "active_share", "mean_probability"], ascending=[True, False, False],
                           ignore_index=True)

