"""Plotly figures for the pages. Figures only draw numbers they are given;
every metric comes from the files the other rooms write."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from affect.labels import QUADRANTS

PALETTE = qualitative.D3 + qualitative.Set2


GOLDEN_TURN = 0.381966  # hue step (1 - 1/φ of a turn): consecutive hues never coincide


def _overlay_palette() -> list[str]:
    try:
        from realtime.overlay import PALETTE as OVERLAY
    except ImportError:
        return list(PALETTE[:10])
    return [f"#{r:02X}{g:02X}{b:02X}" for b, g, r in OVERLAY]  # OpenCV's BGR


def track_colour(track_id: int) -> str:
    """A track's colour, the same on every page and chart, and different for every
    track: the first tracks get the colours realtime's overlay draws their boxes in (so
    the annotated frame and the plane agree); once that palette would repeat, each
    further id gets its own hue (golden-ratio steps, alternating lightness), never
    one already used. Every trace is also labelled "track <id>"."""
    import colorsys

    track_id = int(track_id)
    base = _overlay_palette()
    if 0 <= track_id < len(base) and len(set(base)) == len(base):
        return base[track_id]
    n = abs(track_id)
    hue = (0.07 + n * GOLDEN_TURN) % 1.0
    light = (0.38, 0.52, 0.64)[n % 3]
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
    colour = f"#{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"
    if colour in base:  # vanishingly rare: nudge off an overlay colour
        colour = colour[:-2] + f"{(int(colour[-2:], 16) ^ 1):02X}"
    return colour


def va_plane(trails: pd.DataFrame | None = None, current: pd.DataFrame | None = None,
             title: str = "Valence–arousal plane", height: int = 420) -> go.Figure:
    """The circumplex: unit circle, axes, quadrant names from affect.labels.QUADRANTS,
    each track's trail in its own colour and its latest point emphasised.

    `trails`/`current` hold `track_id, valence, arousal` (and `t_ms` for trails)."""
    fig = go.Figure()
    theta = np.linspace(0, 2 * np.pi, 121)
    fig.add_trace(go.Scatter(x=np.cos(theta), y=np.sin(theta), mode="lines", hoverinfo="skip",
                             line={"color": "#bbbbbb", "width": 1}, showlegend=False))
    for (v_pos, a_pos), name in QUADRANTS.items():
        fig.add_annotation(x=0.72 if v_pos else -0.72, y=0.92 if a_pos else -0.92, text=name,
                           showarrow=False, font={"size": 13, "color": "#777777"})
    if trails is not None and not trails.empty:
        for track_id, rows in trails.groupby("track_id", sort=True):
            fig.add_trace(go.Scatter(
                x=rows["valence"], y=rows["arousal"], mode="lines+markers", name=f"track {track_id}",
                line={"color": track_colour(track_id), "width": 2}, marker={"size": 4},
                opacity=0.6, legendgroup=str(track_id)))
    if current is not None and not current.empty:
        for track_id, rows in current.groupby("track_id", sort=True):
            fig.add_trace(go.Scatter(
                x=rows["valence"], y=rows["arousal"], mode="markers", name=f"track {track_id} now",
                marker={"color": track_colour(track_id), "size": 15, "line": {"color": "black", "width": 1}},
                legendgroup=str(track_id), showlegend=trails is None or trails.empty))
    axis = {"range": [-1.05, 1.05], "zeroline": True, "zerolinecolor": "#999999", "dtick": 0.5}
    fig.update_layout(title=title, height=height, xaxis={**axis, "title": "valence"},
                      yaxis={**axis, "title": "arousal", "scaleanchor": "x", "scaleratio": 1},
                      margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.15})
    return fig


def probability_bars(labels: Sequence[str], probabilities: pd.DataFrame | None,
                     title: str = "Expression probabilities") -> go.Figure:
    """Horizontal bars per label; `probabilities` has one row per track (index = track id)."""
    fig = go.Figure()
    if probabilities is not None:
        for track_id, row in probabilities.sort_index().iterrows():
            fig.add_trace(go.Bar(y=list(labels), x=[float(row[f"p_{lab}"]) for lab in labels],
                                 orientation="h", name=f"track {track_id}",
                                 marker={"color": track_colour(int(track_id))}))
    fig.update_layout(title=title, barmode="group", height=320, xaxis={"range": [0, 1]},
                      yaxis={"autorange": "reversed"}, margin={"l": 80, "r": 10, "t": 40, "b": 30})
    return fig


def va_over_time(df: pd.DataFrame) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("valence", "arousal"),
                        vertical_spacing=0.08)
    for track_id, rows in df.groupby("track_id", sort=True):
        t_s = rows["t_ms"] / 1000.0
        for i, col in enumerate(("valence", "arousal"), start=1):
            fig.add_trace(go.Scatter(x=t_s, y=rows[col], mode="lines", name=f"track {track_id}",
                                     line={"color": track_colour(track_id)}, legendgroup=str(track_id),
                                     showlegend=i == 1), row=i, col=1)
    fig.update_yaxes(range=[-1.05, 1.05])
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(height=420, margin={"l": 40, "r": 10, "t": 30, "b": 40})
    return fig


def au_over_time(df: pd.DataFrame, aus: Sequence[str], track_id: int) -> go.Figure:
    """One track's AU probabilities over time, one line per AU (gaps where the face had none)."""
    rows = df[df["track_id"] == track_id]
    fig = go.Figure()
    for i, au in enumerate(aus):
        fig.add_trace(go.Scatter(x=rows["t_ms"] / 1000.0, y=rows[au], mode="lines", name=au,
                                 line={"color": PALETTE[i % len(PALETTE)]}, connectgaps=False))
    fig.add_hline(y=0.5, line={"dash": "dot", "color": "grey"})
    fig.update_layout(height=360, xaxis={"title": "time (s)"}, yaxis={"title": "probability", "range": [-0.02, 1.02]},
                      title=f"track {track_id}: action units", margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


def expression_timeline(df: pd.DataFrame, labels: Sequence[str]) -> go.Figure:
    fig = go.Figure()
    for track_id, rows in df.groupby("track_id", sort=True):
        fig.add_trace(go.Scatter(x=rows["t_ms"] / 1000.0, y=rows["expression"], mode="markers",
                                 name=f"track {track_id}", marker={"color": track_colour(track_id),
                                                                   "symbol": "line-ns-open", "size": 12}))
    fig.update_layout(height=320, xaxis={"title": "time (s)"},
                      # Every label on the axis, present or not, so timelines of two sessions compare.
                      yaxis={"categoryorder": "array", "categoryarray": list(labels),
                             "range": [-0.5, len(labels) - 0.5]},
                      margin={"l": 80, "r": 10, "t": 20, "b": 40})
    return fig


def share_bars(per_track: pd.DataFrame, category: str, order: Sequence[str]) -> go.Figure:
    """Seconds per category (quadrant or expression), one bar group per track."""
    fig = go.Figure()
    for track_id, rows in per_track.groupby("track_id", sort=True):
        rows = rows.set_index(category).reindex(order).fillna(0)
        fig.add_trace(go.Bar(x=list(order), y=rows["seconds"], name=f"track {track_id}",
                             marker={"color": track_colour(track_id)}))
    fig.update_layout(barmode="stack", height=300, yaxis={"title": "face-seconds (summed over tracks)"},
                      margin={"l": 40, "r": 10, "t": 20, "b": 40})
    return fig


def confusion_heatmap(matrix: np.ndarray, labels: Sequence[str], normalised: bool) -> go.Figure:
    text = [[f"{v:.2f}" if normalised else f"{int(v)}" for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(z=matrix, x=list(labels), y=list(labels), text=text, texttemplate="%{text}",
                               colorscale="Blues", hovertemplate="true %{y}<br>pred %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(title="Confusion matrix" + (" (row-normalised)" if normalised else " (counts)"),
                      xaxis={"title": "predicted"}, yaxis={"title": "true", "autorange": "reversed"},
                      height=480, margin={"l": 80, "r": 10, "t": 40, "b": 60})
    return fig


def va_scatter(true: pd.Series, pred: pd.Series, name: str, ccc: float | None, rmse: float | None) -> go.Figure:
    stats = ", ".join(s for s in (f"CCC {ccc:.3f}" if ccc is not None else "",
                                  f"RMSE {rmse:.3f}" if rmse is not None else "") if s)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[-1, 1], y=[-1, 1], mode="lines", line={"dash": "dash", "color": "#999999"},
                             name="ideal", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=true, y=pred, mode="markers", marker={"size": 5, "opacity": 0.6}, name=name))
    fig.update_layout(title=f"{name}: predicted vs true" + (f" ({stats})" if stats else ""), height=380,
                      xaxis={"title": f"true {name}", "range": [-1.05, 1.05]},
                      yaxis={"title": f"predicted {name}", "range": [-1.05, 1.05], "scaleanchor": "x"},
                      showlegend=False, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


def reliability_diagram(confidence: Sequence[float | None], accuracy: Sequence[float | None],
                        count: Sequence[int], ece: float | None, title: str = "Reliability diagram") -> go.Figure:
    """Accuracy against mean confidence per confidence bin (metrics.json's
    `expression.calibration`), the diagonal being a calibrated model; empty bins are
    left out, and each point's size and hover say how many faces it holds."""
    rows = [(c, a, n) for c, a, n in zip(confidence, accuracy, count, strict=True)
            if n and c is not None and a is not None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "#999999"},
                             name="calibrated", hoverinfo="skip"))
    if rows:
        conf, acc, n = (list(v) for v in zip(*rows))
        total = sum(n)
        fig.add_trace(go.Scatter(
            x=conf, y=acc, mode="lines+markers", name="model", customdata=n,
            marker={"size": [6 + 18 * (k / total) ** 0.5 for k in n]},
            hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata} faces<extra></extra>"))
    heading = title + (f" (ECE {ece:.3f})" if ece is not None else "")
    fig.update_layout(title=heading, height=380, showlegend=False,
                      xaxis={"title": "confidence (top probability)", "range": [0, 1.02]},
                      yaxis={"title": "accuracy", "range": [0, 1.02], "scaleanchor": "x"},
                      margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


def history_curves(history: pd.DataFrame) -> go.Figure:
    """Losses on the left, other per-epoch metrics on the right, train vs val by dash."""
    x_col = "epoch" if "epoch" in history.columns else None
    x = history[x_col] if x_col else history.index
    numeric = [c for c in history.select_dtypes("number").columns if c != x_col]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "metrics"))
    for col in numeric:
        fig.add_trace(go.Scatter(x=x, y=history[col], mode="lines+markers", name=col,
                                 line={"dash": "dot" if col.startswith("train") else "solid"}),
                      row=1, col=1 if "loss" in col else 2)
    fig.update_layout(height=340, margin={"l": 40, "r": 10, "t": 30, "b": 40})
    return fig
