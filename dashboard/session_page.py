"""Session page: replay a recording written by `python -m realtime.cam --csv/--jsonl`."""

from __future__ import annotations

import streamlit as st

from affect.recording import au_columns
from dashboard import charts
from dashboard.common import get_config, pick_path
from dashboard.config import DashboardError
from dashboard.data import Recording, find_recordings, load_recording
from dashboard.summary import (
    QUADRANT_ORDER,
    au_activity,
    frame_interval_ms,
    state_at,
    summary_csv,
    time_per,
    track_table,
    with_quadrants,
)

FACE_SECONDS_NOTE = ("Times are face-seconds: each face counts its own time, summed over faces, so "
                     "two faces on screen for 10 s make 20 s, and the total can exceed the duration.")


def render() -> None:
    st.title("Session")
    config = get_config()
    path = pick_path("a recording", find_recordings(config.existing_roots(), config.max_entries), config,
                     key="session_file",
                     empty_hint="No recordings (.csv/.jsonl) under the scanned directories; record one with "
                                "`python -m realtime.cam --csv recordings/session.csv` or on the Live page.")
    if path is None:
        return
    try:
        recording = load_recording(path)
    except DashboardError as exc:
        st.error(str(exc))
        return
    if recording.warning():
        st.warning(recording.warning())
    show_recording(recording)


def show_recording(recording: Recording) -> None:
    df = with_quadrants(recording.frame)
    labels = recording.labels
    interval = frame_interval_ms(df)
    duration_s = (df["t_ms"].max() - df["t_ms"].min()) / 1000.0
    cols = st.columns(4)
    cols[0].metric("Tracks", len(recording.tracks))
    cols[1].metric("Face rows", len(df))
    cols[2].metric("Frames with a face", int(df["frame"].nunique()))
    cols[3].metric("Duration (s)", f"{duration_s:.2f}")

    st.subheader("The plane at a chosen time")
    t_min, t_max = float(df["t_ms"].min()) / 1000.0, float(df["t_ms"].max()) / 1000.0
    step = max(interval / 1000.0, 0.001)
    if t_max > t_min:
        t_s = st.slider("time (s)", t_min, t_max, value=t_max, step=step, key="scrub_time")
    else:
        t_s = t_min
    trail_s = st.slider("trail (s)", 0.0, 10.0, value=2.0, step=0.5, key="scrub_trail")
    trail, current = state_at(df, t_s * 1000.0, trail_s * 1000.0)
    plane_col, bars_col = st.columns(2)
    plane_col.plotly_chart(charts.va_plane(trail, current, title=f"Valence–arousal at {t_s:.2f} s"),
                           key="session_plane")
    bars_col.plotly_chart(charts.probability_bars(labels, current.set_index("track_id")), key="session_bars")

    st.subheader("Valence and arousal over time")
    st.plotly_chart(charts.va_over_time(df), key="session_va_time")
    st.subheader("Expression timeline")
    st.plotly_chart(charts.expression_timeline(df, labels), key="session_timeline")

    left, right = st.columns(2)
    st.caption(FACE_SECONDS_NOTE)
    with left:
        st.subheader("Time per quadrant (face-seconds)")
        st.dataframe(time_per(df, "quadrant", QUADRANT_ORDER, interval), hide_index=True, key="quadrant_table")
        st.plotly_chart(charts.share_bars(time_per(df, "quadrant", QUADRANT_ORDER, interval, by_track=True),
                                          "quadrant", QUADRANT_ORDER), key="quadrant_bars")
    with right:
        st.subheader("Time per expression (face-seconds)")
        st.dataframe(time_per(df, "expression", labels, interval), hide_index=True, key="expression_table")
        st.plotly_chart(charts.share_bars(time_per(df, "expression", labels, interval, by_track=True),
                                          "expression", labels), key="expression_bars")
    st.subheader("Tracks")
    st.dataframe(track_table(df, interval), hide_index=True, key="track_table")
    show_action_units(df, interval, recording.au_thresholds)

    st.download_button("Download summary (CSV)", summary_csv(recording.frame, labels),
                       file_name=f"{recording.path.stem}_summary.csv", mime="text/csv", key="summary_download")


def show_action_units(df, interval: float, thresholds: dict[str, float] | None = None) -> None:
    """The AU panel: only for a recording with AU columns (`python -m realtime.cam --aus`);
    an AU is active at the AU reader's own thresholds when the recording has them, else at 0.5."""
    aus = au_columns([str(c) for c in df.columns])
    if not aus:
        return
    st.subheader("Action units")
    activity = au_activity(df, aus, interval, thresholds)
    if activity.empty:
        st.info("The recording has AU columns, but no face in it had AU probabilities.")
        return
    tracks = sorted(int(t) for t in activity["track_id"].unique())
    track = st.selectbox("track", tracks, key="au_track") if len(tracks) > 1 else tracks[0]
    st.plotly_chart(charts.au_over_time(df, aus, track), key="session_aus")
    st.caption("Most active AUs per track (active: probability ≥ "
               + ("the model's threshold for that AU, chosen on its validation faces)" if thresholds else "0.5)"))
    st.dataframe(activity.groupby("track_id").head(5), hide_index=True, key="au_table")

