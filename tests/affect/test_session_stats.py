"""affect.session_stats on a recording written by the recording format's own writer."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from affect.labels import EXPRESSIONS, quadrant
from affect.recording import FaceRow, write_csv_header
from affect.session_stats import QUADRANT_ORDER, au_columns, session_stats


def _recording(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    buf = io.StringIO()
    writer = write_csv_header(buf, EXPRESSIONS)
    for frame in range(n):
        for track in (1, 2) if frame % 4 else (1,):
            probs = rng.dirichlet(np.ones(len(EXPRESSIONS)))
            best = int(probs.argmax())
            writer.writerow(FaceRow(frame, frame * 33.3, track, 10, 10, 50, 50, 0.9, EXPRESSIONS[best],
                                    float(probs[best]), probs.tolist(), float(rng.uniform(-1, 1)),
                                    float(rng.uniform(-1, 1))).as_csv_row())
    df = pd.read_csv(io.StringIO(buf.getvalue()))
    df["AU12"] = rng.uniform(0, 1, len(df))  # the AU columns `--aus` adds (probabilities)
    return df


def test_shares_are_of_face_frames_and_agree_with_the_labels():
    df = _recording()
    row = session_stats(df, list(EXPRESSIONS))
    assert row["face_rows"] == len(df) and row["frames_with_face"] == 40 and row["tracks"] == 2
    assert math.isclose(sum(row[f"share_{e}"] for e in EXPRESSIONS), 1.0)
    assert math.isclose(row["share_Happy"], (df["expression"] == "Happy").mean())
    quadrants = [quadrant(v, a) for v, a in zip(df["valence"], df["arousal"])]
    for q in QUADRANT_ORDER:
        assert math.isclose(row[f"share_{q}"], quadrants.count(q) / len(df))
    assert math.isclose(row["valence_sd"], df["valence"].std())
    assert au_columns(df.columns) == ["AU12"]
    assert math.isclose(row["active_AU12"], (df["AU12"] >= 0.5).mean())


def test_a_session_without_faces_has_counts_of_zero_and_no_means():
    row = session_stats(None, list(EXPRESSIONS))
    assert row["face_rows"] == row["frames_with_face"] == row["tracks"] == 0
    assert math.isnan(row["valence_mean"]) and math.isnan(row["share_Happy"])
