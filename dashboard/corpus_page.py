"""Corpus page: compare the sessions of a corpus written by `python -m realtime.batch`
(its OUT folder: corpus.parquet and sessions/<name>/recording.csv)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from affect.session_stats import QUADRANT_ORDER
from dashboard import charts
from dashboard.common import get_config, pick_path
from dashboard.config import DashboardConfig, DashboardError
from dashboard.data import _scan

TABLE = "corpus.parquet"
FIXED_FIRST = "video"  # the table's first own column: those before it are the manifest's metadata
SESSION_PAGE = "dashboard/pages/session.py"
SESSION_TYPED_KEY = "session_file_typed"  # the Session page's typed-path box (dashboard.common.pick_path)
NO_GROUP = "(none)"


def find_corpora(roots: list[Path], max_entries: int) -> list[Path]:
    """Folders under the scanned directories that hold a corpus table."""
    found = _scan(roots, lambda p: p.name == TABLE, max_entries)
    return sorted({p.parent for p in found})


def load_corpus(folder: Path, config: DashboardConfig) -> pd.DataFrame:
    """The corpus table; the file itself must lie inside the scanned directories too."""
    path = config.check(folder / TABLE if folder.is_dir() else folder)
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not a table
        raise DashboardError(f"{path}: not a readable corpus table ({type(exc).__name__})") from None


def metadata_columns(df: pd.DataFrame) -> list[str]:
    columns = list(df.columns)
    return columns[:columns.index(FIXED_FIRST)] if FIXED_FIRST in columns else []


def expression_labels(df: pd.DataFrame) -> list[str]:
    quadrants = set(QUADRANT_ORDER)
    return [c[len("share_"):] for c in df.columns if c.startswith("share_") and c[len("share_"):] not in quadrants]


def session_name(row: pd.Series, group: str | None) -> str:
    name = str(row["session"])
    return f"{name} ({row[group]})" if group else name


def va_sessions(df: pd.DataFrame, group: str | None) -> go.Figure:
    """Each session at its mean valence and arousal, with bars one standard deviation long."""
    fig = charts.va_plane(title="Sessions on the valence–arousal plane (mean ± 1 SD)")
    groups = df.groupby(df[group].astype(str), sort=True) if group else [("sessions", df)]
    for i, (name, rows) in enumerate(groups):
        fig.add_trace(go.Scatter(
            x=rows["valence_mean"], y=rows["arousal_mean"], mode="markers", name=str(name),
            text=rows["session"], hovertemplate="%{text}<br>valence %{x:.2f}, arousal %{y:.2f}<extra></extra>",
            marker={"size": 12, "color": charts.PALETTE[i % len(charts.PALETTE)],
                    "line": {"color": "black", "width": 1}},
            error_x={"type": "data", "array": rows["valence_sd"].fillna(0), "thickness": 1},
            error_y={"type": "data", "array": rows["arousal_sd"].fillna(0), "thickness": 1}))
    return fig


def expression_shares(df: pd.DataFrame, labels: list[str], group: str | None) -> go.Figure:
    """One stacked bar per session: its share of face-frames per expression."""
    names = [session_name(row, group) for _, row in df.iterrows()]
    fig = go.Figure()
    for i, label in enumerate(labels):
        fig.add_trace(go.Bar(x=names, y=df[f"share_{label}"], name=label,
                             marker={"color": charts.PALETTE[i % len(charts.PALETTE)]}))
    fig.update_layout(title="Expression shares per session", barmode="stack", height=420,
                      yaxis={"range": [0, 1], "title": "share of face-frames"},
                      margin={"l": 40, "r": 10, "t": 40, "b": 80}, legend={"orientation": "h", "y": -0.3})
    return fig


def render() -> None:
    st.title("Corpus")
    config = get_config()
    folder = pick_path("a corpus folder", find_corpora(config.existing_roots(), config.max_entries), config,
                       key="corpus_dir",
                       empty_hint="No corpus (corpus.parquet) under the scanned directories; make one with "
                                  "`python -m realtime.batch videos/ -o recordings/corpus`.")
    if folder is None:
        return
    try:
        df = load_corpus(folder, config)
    except DashboardError as exc:
        st.error(str(exc))
        return
    show_corpus(df, folder if folder.is_dir() else folder.parent, config)


def show_corpus(df: pd.DataFrame, folder: Path, config: DashboardConfig) -> None:
    meta = metadata_columns(df)
    done = df[df["status"] == "done"]
    cols = st.columns(4)
    cols[0].metric("Sessions", len(df))
    cols[1].metric("Read", len(done))
    cols[2].metric("Failed", int((df["status"] == "failed").sum()))
    seconds = float(done["duration_s"].sum())
    cols[3].metric("Video", f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s")
    for _, row in df[df["status"] == "failed"].iterrows():
        st.warning(f"failed: {row['error']}")

    group = None
    if meta:
        left, right = st.columns(2)
        choice = left.selectbox("Group by", [NO_GROUP, *meta], key="corpus_group")
        group = None if choice == NO_GROUP else choice
        if group:
            values = sorted(done[group].astype(str).unique())
            keep = right.multiselect(f"Show {group}", values, default=values, key="corpus_filter")
            done = done[done[group].astype(str).isin(keep)]

    st.subheader("Sessions")
    st.dataframe(df if not group else df[df.index.isin(done.index) | (df["status"] != "done")],
                 hide_index=True, key="corpus_table")
    if done.empty:
        st.info("No session read (yet) in this selection.")
        return
    plane_col, bars_col = st.columns(2)
    plane_col.plotly_chart(va_sessions(done, group), key="corpus_plane")
    bars_col.plotly_chart(expression_shares(done, expression_labels(df), group), key="corpus_shares")
    if group:
        st.subheader(f"Means per {group}")
        numbers = ["duration_s", "valence_mean", "arousal_mean",
                   *(c for c in df.columns if c.startswith(("share_", "active_")))]
        st.dataframe(done.groupby(group)[numbers].mean().reset_index(), hide_index=True, key="corpus_groups")

    st.subheader("Open a session")
    names = [session_name(row, group) for _, row in done.iterrows()]
    choice = st.selectbox("Session", names, key="corpus_session")
    recording = folder / done.iloc[names.index(choice)]["recording"]
    if st.button("Replay on the Session page", key="corpus_open"):
        try:
            config.check(recording)
        except DashboardError as exc:
            st.error(str(exc))
            return
        # The Session page's typed-path box takes it (and checks it again).
        st.session_state[SESSION_TYPED_KEY] = str(recording)
        st.switch_page(SESSION_PAGE)
