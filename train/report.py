"""Plots and the markdown report of an evaluation or a training run.

Every figure is rendered with matplotlib's Agg backend (no display needed on a
training box) into memory and written atomically, so a killed run never
leaves a truncated PNG that the dashboard would then fail to open.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from affect.files import atomic_write_bytes, atomic_write_text  # noqa: E402
from affect.metrics import HEADLINE, ccc  # noqa: E402


class ReportError(ValueError):
    """A history or metrics file that cannot be plotted or reported."""


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# --- figures -------------------------------------------------------------------------------------

def plot_confusion(metrics: dict[str, Any], out_png: str | os.PathLike) -> Path:
    """Row-normalised confusion matrix, each cell annotated with its count."""
    expr = metrics.get("expression")
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if not expr:
        ax.text(0.5, 0.5, "no expression labels in this dataset", ha="center", va="center")
        ax.axis("off")
        return _save(fig, out_png)
    labels = expr["labels"]
    counts = np.asarray(expr["confusion"])
    norm = np.asarray(expr.get("confusion_normalised") or
                      counts / np.maximum(counts.sum(axis=1, keepdims=True), 1))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{metrics.get('dataset', '')}: accuracy {_fmt(expr.get('accuracy'))}, "
                 f"macro-F1 {_fmt(expr.get('macro_f1'))}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, out_png)


def plot_va_scatter(va_true: np.ndarray, va_pred: np.ndarray, out_png: str | os.PathLike) -> Path:
    """Predicted vs true valence and arousal, CCC in each title; NaN targets left out."""
    t = np.asarray(va_true, np.float64).reshape(-1, 2)
    p = np.asarray(va_pred, np.float64).reshape(-1, 2)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), layout="constrained")
    for j, (ax, name) in enumerate(zip(axes, ("valence", "arousal"), strict=True)):
        keep = np.isfinite(t[:, j])
        if not keep.any():
            ax.text(0.5, 0.5, f"no {name} targets", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name)
            continue
        ax.scatter(t[keep, j], p[keep, j], s=6, alpha=0.4)
        ax.plot([-1, 1], [-1, 1], color="grey", lw=1, ls="--")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(f"{name}: CCC {_fmt(ccc(t[keep, j], p[keep, j]))} (n={int(keep.sum())})")
    return _save(fig, out_png)


def plot_examples(images: Sequence[np.ndarray], titles: Sequence[str], out_png: str | os.PathLike,
                  heading: str = "", cols: int = 6) -> Path:
    """Grid of RGB uint8 faces with a caption under each (e.g. "true Sad / pred Fear 0.71")."""
    n = len(images)
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, f"no {heading or 'examples'}", ha="center", va="center")
        ax.axis("off")
        return _save(fig, out_png)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.2 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k])
            ax.set_title(titles[k], fontsize=7)
    if heading:
        fig.suptitle(heading)
    return _save(fig, out_png)


def _read_history(history_csv: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(history_csv)
    if not path.is_file():
        raise ReportError(f"{path}: training history not found")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "epoch" not in rows[0]:
        raise ReportError(f"{path}: no epochs recorded (expected an 'epoch' column and at least one row)")

    def num(v: str | None) -> float:
        try:
            return float(v) if v not in (None, "") else math.nan
        except ValueError:
            return math.nan

    return {key: np.array([num(r.get(key)) for r in rows]) for key in rows[0]}


def write_curves(history_csv: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """curves.png of a training run: losses (train vs val) and the validation
    metrics per epoch, from the run's history.csv."""
    h = _read_history(history_csv)
    epoch = h["epoch"]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    loss_keys = [k for k in h if k.endswith("loss") and k.startswith(("train_", "val_"))]
    for key in loss_keys:
        if np.isfinite(h[key]).any():
            ax_loss.plot(epoch, h[key], marker="o", ms=3, label=key,
                         ls="-" if key.startswith("train_") else "--")
    ax_loss.set_xlabel("epoch")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_metric.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_title("loss")
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)
    metric_keys = [k for k in h if k.startswith(("train_", "val_")) and "loss" not in k
                   and k not in ("train_steps",)]
    for key in metric_keys:
        if np.isfinite(h[key]).any():
            ax_metric.plot(epoch, h[key], marker="o", ms=3, label=key,
                           ls="-" if key.startswith("train_") else "--")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title("metrics (train vs val)")
    if ax_metric.lines:
        ax_metric.legend(fontsize=8)
    return _save(fig, out_png)


# --- report.md -----------------------------------------------------------------------------------

def headline_rows(metrics: dict[str, Any]) -> list[tuple[str, Any, list | None]]:
    """(name, value, [lo, hi] or None) for each headline metric present in `metrics`."""
    ci = metrics.get("ci") or {}
    rows = []
    for section, key, ci_key, _ in HEADLINE:
        sec = metrics.get(section)
        if not sec or key not in sec:
            continue
        rows.append((f"{section} {key}", sec[key], ci.get(ci_key) if ci_key else None))
    return rows


def report_markdown(metrics: dict[str, Any], images: Sequence[str] = (), extra: str = "") -> str:
    """The report.md text: headline table with CIs, per-class table, notes, figures."""
    level = int(round(100 * float(metrics.get("ci_level", 0.95))))
    lines = [f"# Evaluation of {metrics.get('model', 'model')} on {metrics.get('dataset', 'dataset')}", "",
             f"{metrics.get('n', 0)} samples."]
    if metrics.get("note"):
        lines += ["", f"**Note:** {metrics['note']}."]
    if extra:
        lines += ["", extra]
    lines += ["", "## Headline metrics", "", f"| metric | value | {level} % CI |", "| --- | --- | --- |"]
    for name, value, ci in headline_rows(metrics):
        ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
        lines.append(f"| {name} | {_fmt(value)} | {ci_text} |")
    expr = metrics.get("expression")
    if expr:
        lines += ["", "## Per class", "", "| class | precision | recall | F1 | support |",
                  "| --- | --- | --- | --- | --- |"]
        for label, row in expr["per_class"].items():
            lines.append(f"| {label} | {_fmt(row['precision'])} | {_fmt(row['recall'])} | "
                         f"{_fmt(row['f1'])} | {row['support']} |")
        lines += ["", f"Top-2 accuracy {_fmt(expr.get('top2_accuracy'))}; expected calibration error "
                      f"(15 bins) {_fmt(expr.get('ece'))}."]
    for name in ("valence", "arousal"):
        sec = metrics.get(name)
        if sec:
            lines.append(f"- {name}: RMSE {_fmt(sec['rmse'])}, MAE {_fmt(sec['mae'])}, PCC {_fmt(sec['pcc'])}, "
                         f"SAGR {_fmt(sec['sagr'])}, CCC {_fmt(sec['ccc'])} (n={sec.get('n', '?')})")
    aus = metrics.get("action_units")
    if aus:
        lines += ["", "## Action units", "",
                  f"Micro-F1 {_fmt(aus.get('f1_micro'))}, macro-F1 {_fmt(aus.get('f1_macro'))}, binary accuracy "
                  f"{_fmt(aus.get('binary_accuracy'))}, mAP {_fmt(aus.get('map'))} (present at probability ≥ "
                  + (f"{aus.get('threshold', 0.5)})." if aus.get("threshold", 0.5) != "per AU" else
                     "the model's threshold for that AU, chosen on its training run's validation part)."), "",
                  "| AU | threshold | precision | recall | F1 | AP | support |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, row in aus["per_au"].items():
            lines.append(f"| {name} | {_fmt(row.get('threshold', aus.get('threshold', 0.5)))} | "
                         f"{_fmt(row.get('precision'))} | {_fmt(row.get('recall'))} | {_fmt(row['f1'])} | "
                         f"{_fmt(row['ap'])} | {row['support']} |")
    if images:
        lines += ["", "## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in images]
    return "\n".join(lines) + "\n"


def write_report(metrics: dict[str, Any], out_md: str | os.PathLike, images: Sequence[str] = (),
                 extra: str = "") -> Path:
    return atomic_write_text(out_md, report_markdown(metrics, images, extra))
