"""The corpus table: one row per video (`OUT/corpus.parquet` and `OUT/corpus.csv`).

Columns: the manifest's metadata columns first, then `video` (the input file), `session`
(its folder under OUT/sessions), `status` (done / failed / not read), `error`,
`duration_s`, `frames`, then `affect.session_stats.session_stats`: face rows, frames
with a face, tracks, valence and arousal mean and standard deviation, the share of
face-frames per expression and per quadrant, the share with each AU active when the
recordings have AU columns; and `recording` (the CSV, relative to OUT). Built only from
the session folders' summaries and this run's failures, so it says the same whichever
run (or how many interrupted ones) produced the sessions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from affect.files import atomic_path, atomic_write_text
from realtime.corpus.inputs import VideoInput
from realtime.corpus.video import RECORDING, SESSIONS, SUMMARY

TABLE = "corpus"
FIXED = ("video", "session", "status", "error", "duration_s", "frames")
COUNTS = ("frames", "face_rows", "frames_with_face", "tracks")  # whole numbers, empty for a failed video


class TableError(ValueError):
    """A manifest whose metadata columns clash with the table's own; one line."""


def check_metadata_columns(videos: list[VideoInput]) -> None:
    reserved = set(FIXED) | {"recording", "face_rows", "frames_with_face", "tracks"}
    for video in videos:
        clash = sorted(c for c in video.metadata if c in reserved or c.startswith(("share_", "active_"))
                       or c.startswith(("valence_", "arousal_")))
        if clash:
            raise TableError(f"{video.given}: manifest column(s) {clash} clash with the corpus table's own; "
                             "rename them")


def read_summary(out_dir: Path, key: str) -> dict[str, Any] | None:
    try:
        return json.loads((out_dir / SESSIONS / key / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def corpus_frame(out_dir: Path, videos: list[VideoInput], done: set[str], errors: dict[str, str]) -> pd.DataFrame:
    """One row per video in input order; `done` holds the keys with a finished session folder."""
    rows = []
    meta_columns: list[str] = []
    for video in videos:
        for column in video.metadata:
            if column not in meta_columns:
                meta_columns.append(column)
    for video in videos:
        row: dict[str, Any] = {c: video.metadata.get(c) for c in meta_columns}
        row.update(video=str(video.path), session=video.key)
        summary = read_summary(out_dir, video.key) if video.key in done else None
        if summary is None:
            row.update(status="failed" if video.key in errors else "not read", error=errors.get(video.key, ""))
        else:
            row.update(status="done", error="", duration_s=summary["duration_s"], frames=summary["frames"])
            row.update(summary["stats"])
            row["recording"] = f"{SESSIONS}/{video.key}/{RECORDING}"
        rows.append(row)
    df = pd.DataFrame(rows)
    for column in (*FIXED, "recording"):
        if column not in df.columns:
            df[column] = None
    for column in COUNTS:
        if column in df.columns:
            df[column] = df[column].astype("Int64")
    stats = [c for c in df.columns if c not in meta_columns and c not in FIXED and c != "recording"]
    return df[[*meta_columns, *FIXED, *stats, "recording"]]


def write_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """corpus.parquet and corpus.csv, each written atomically."""
    parquet, csv = out_dir / f"{TABLE}.parquet", out_dir / f"{TABLE}.csv"
    with atomic_path(parquet) as tmp:
        df.to_parquet(tmp, index=False)
    atomic_write_text(csv, df.to_csv(index=False))
    return [parquet, csv]
