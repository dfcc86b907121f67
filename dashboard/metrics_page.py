"""Test-set metrics page: what `python -m train eval` (and `fit`) wrote into run/eval directories."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import streamlit as st

from affect.compare import compare
from affect.errors import first_line
from affect.metrics import HEADLINE
from dashboard import charts
from dashboard.common import checked, display_path, get_config, scan_note
from dashboard.config import DashboardError
from dashboard.data import RunDir, find_run_dirs, load_run

# predictions.csv column names as written by train/evaluate.py, with the spellings tolerated.
VA_COLUMNS = {
    "valence": (("valence_true", "true_valence", "valence"), ("valence_pred", "pred_valence")),
    "arousal": (("arousal_true", "true_arousal", "arousal"), ("arousal_pred", "pred_arousal")),
}


def ci_of(metrics: dict, ci_key: str | None) -> tuple[float, float] | None:
    """A headline metric's bootstrap interval from metrics.json's top-level "ci"."""
    ci = (metrics.get("ci") or {}).get(ci_key) if ci_key else None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return float(ci[0]), float(ci[1])
    return None


def headline_table(metrics: dict) -> pd.DataFrame:
    """The headline numbers in affect.metrics.HEADLINE order, with intervals where stored."""
    rows = []
    for section_name, key, ci_key, higher_better in HEADLINE:
        section = metrics.get(section_name)
        if not isinstance(section, dict) or key not in section:
            continue
        value = section[key]
        ci = ci_of(metrics, ci_key)
        rows.append({"section": section_name, "metric": key,
                     "value": float(value) if isinstance(value, (int, float)) else np.nan,
                     "ci_low": ci[0] if ci else np.nan, "ci_high": ci[1] if ci else np.nan,
                     "better": "higher" if higher_better else "lower"})
    return pd.DataFrame(rows, columns=["section", "metric", "value", "ci_low", "ci_high", "better"])


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _bins_ok(calibration: object) -> bool:
    """metrics.json's `expression.calibration` holds three lists of one length (numbers or null)."""
    if not isinstance(calibration, dict):
        return False
    lists = [calibration.get(k) for k in ("confidence", "accuracy", "count")]
    return (all(isinstance(v, list) for v in lists) and len({len(v) for v in lists}) == 1
            and all(x is None or isinstance(x, (int, float)) for v in lists for x in v))


def _column(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in df.columns), None)


def render() -> None:
    st.title("Test-set metrics")
    config = get_config()
    found = find_run_dirs(config.existing_roots(), config.max_entries)
    names = [display_path(p, config) for p in found]
    chosen = st.multiselect("Run / eval directories", names, default=names[:1], key="runs_selected")
    scan_note(found)
    typed = st.text_input("…or add a directory path", key="runs_typed", placeholder="path under a scanned directory")
    # A listed folder may be a symlink to anywhere: the same check as a typed one.
    paths = [checked(found[names.index(n)], config, shown=n) for n in chosen]
    if typed.strip():
        paths.append(checked(typed.strip(), config))
    paths = [p for p in paths if p is not None]
    if not paths:
        if not found:
            st.info("No run or eval directories under the scanned directories; write one with "
                    "`python -m train eval MODEL --out runs/NAME`.")
        return
    runs: list[RunDir] = []
    for path in paths:
        try:
            runs.append(load_run(path, check=config.check))
        except DashboardError as exc:
            st.error(str(exc))
    if not runs:
        return
    tabs = st.tabs([display_path(r.path, config) for r in runs])
    for i, (tab, run) in enumerate(zip(tabs, runs, strict=True)):
        with tab:
            show_run(run, key=f"run{i}")
    show_compare(runs, config)


def show_run(run: RunDir, key: str) -> None:
    m = run.metrics
    expression = m.get("expression") or {}
    valence, arousal = m.get("valence") or {}, m.get("arousal") or {}
    st.caption(f"dataset: {m.get('dataset', '?')} · n = {m.get('n', '?')} · model: {m.get('model', '?')}")
    cols = st.columns(4)
    for col, (label, section, k, ci_key) in zip(cols, (
            ("Accuracy", expression, "accuracy", "accuracy"), ("Macro-F1", expression, "macro_f1", "macro_f1"),
            ("Valence CCC", valence, "ccc", "valence_ccc"), ("Arousal CCC", arousal, "ccc", "arousal_ccc")), strict=True):
        value, ci = _number(section.get(k)), ci_of(m, ci_key)
        col.metric(label, "—" if value is None else f"{value:.3f}")
        if ci:
            col.caption(f"{m.get('ci_level') or 0.95:.0%} CI [{ci[0]:.3f}, {ci[1]:.3f}]")
    level = m.get("ci_level") or 0.95
    st.subheader(f"Headline metrics ({level:.0%} bootstrap interval where stored)")
    st.dataframe(headline_table(m), hide_index=True, key=f"{key}_headline")

    labels = expression.get("labels") or []
    confusion = expression.get("confusion")
    if confusion and labels:
        st.subheader("Confusion matrix")
        mode = st.radio("Show", ["counts", "normalised"], horizontal=True, key=f"{key}_confusion_mode")
        counts = np.asarray(confusion, dtype=float)
        if not np.isfinite(counts).all():
            st.warning(f"{run.path / 'metrics.json'}: the confusion matrix has non-numbers (NaN or "
                       f"infinite counts); not drawn")
            counts = None
        if counts is None:
            pass
        elif mode == "normalised":
            stored = expression.get("confusion_normalised")
            if stored:
                matrix = np.asarray(stored, dtype=float)
            else:  # row-normalise for display only; rows with no samples stay 0
                sums = counts.sum(axis=1, keepdims=True)
                matrix = np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)
        else:
            matrix = counts
        if counts is not None:
            st.plotly_chart(charts.confusion_heatmap(np.nan_to_num(matrix), labels, mode == "normalised"),
                            key=f"{key}_confusion")
    else:
        st.warning(f"{run.path / 'metrics.json'}: no expression confusion matrix")
    per_class = expression.get("per_class")
    if isinstance(per_class, dict) and per_class:
        st.subheader("Per-class precision, recall, F1")
        table = pd.DataFrame.from_dict(per_class, orient="index").rename_axis("class").reset_index()
        st.dataframe(table, hide_index=True, key=f"{key}_per_class")

    calibration = expression.get("calibration")
    st.subheader("Calibration: do the probabilities mean what they say?")
    if _bins_ok(calibration):
        st.plotly_chart(charts.reliability_diagram(calibration["confidence"], calibration["accuracy"],
                                                   calibration["count"], _number(expression.get("ece"))),
                        key=f"{key}_reliability")
        confidence = _number(expression.get("mean_confidence"))
        if confidence is not None and _number(expression.get("accuracy")) is not None:
            st.caption(f"mean top probability {confidence:.3f} against accuracy {expression['accuracy']:.3f}; "
                       "points below the diagonal are over-confident, above it under-confident")
    else:
        st.info(f"{run.path / 'metrics.json'}: no calibration bins (written by `python -m train eval` since the "
                "temperature was added); re-run eval to draw the reliability diagram")

    show_va(run, valence, arousal, key)

    examples = sorted(n for n in run.images if n.startswith("examples_"))
    if examples:
        st.subheader("Examples")
        for col, name in zip(st.columns(len(examples)), examples, strict=True):
            col.image(str(run.images[name]), caption=name.removesuffix(".png").replace("_", " "))
    if run.history is not None and not run.history.empty:
        st.subheader("Training curves")
        st.plotly_chart(charts.history_curves(run.history), key=f"{key}_curves")
    elif "curves.png" in run.images:
        st.subheader("Training curves")
        st.image(str(run.images["curves.png"]))


def va_pairs(run: RunDir, name: str):
    """(true, predicted) valence or arousal rows in predictions.csv, or None when the set has none."""
    if run.predictions is None:
        return None
    true_col = _column(run.predictions, VA_COLUMNS[name][0])
    pred_col = _column(run.predictions, VA_COLUMNS[name][1])
    if true_col is None or pred_col is None:
        return None
    rows = run.predictions[[true_col, pred_col]].apply(pd.to_numeric, errors="coerce")
    rows = rows[np.isfinite(rows).all(axis=1)]
    return None if rows.empty else (rows[true_col], rows[pred_col])


def show_va(run: RunDir, valence: dict, arousal: dict, key: str) -> None:
    """The predicted-vs-true scatters, only for the dimensions the set has (FER2013, RAF-DB and
    CK+ have no valence/arousal: one line says so, no empty charts)."""
    pairs = {name: va_pairs(run, name) for name in ("valence", "arousal")}
    if run.predictions is None:
        if valence or arousal:
            st.info(f"{run.path}: no readable predictions.csv for the valence/arousal scatter")
        return
    if all(p is None for p in pairs.values()):
        st.caption(f"dataset {run.metrics.get('dataset', '?')}: no valence/arousal labels, so no "
                   "valence/arousal charts")
        return
    st.subheader("Valence and arousal: predicted vs true")
    drawn = [(name, section) for name, section in (("valence", valence), ("arousal", arousal))
             if pairs[name] is not None]
    for col, (name, section) in zip(st.columns(len(drawn)), drawn, strict=True):
        true, pred = pairs[name]
        col.plotly_chart(charts.va_scatter(true, pred, name, _number(section.get("ccc")),
                                           _number(section.get("rmse"))), key=f"{key}_{name}_scatter")


def show_compare(runs: list[RunDir], config) -> None:
    st.subheader("Compare")
    refused: list[str] = []
    try:
        # Every file compare opens (run.json, config.yaml, bench/latency JSON, the model's
        # training run) passes the same check as the page's own reads.
        markdown, csv_text = compare([str(r.path) for r in runs], allowed=config.allowed, refused=refused)
    except Exception as exc:  # a page must not die on one odd run; the message names it
        st.error(f"compare: {first_line(exc)}")
        return
    for line in refused:
        st.error(line)
    # The refusals were shown above, one line each.
    body = [line for line in markdown.removeprefix("# Comparison").splitlines() if not line.startswith("**Not read:**")]
    st.markdown("\n".join(body).strip())
    st.download_button("Download compare table (CSV)", csv_text, file_name="compare.csv", mime="text/csv",
                       key="compare_download")
    try:
        table = pd.read_csv(io.StringIO(csv_text))
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return
    with st.expander("As a table (metric, run, value, interval)"):
        st.dataframe(table, hide_index=True, key="compare_table")
