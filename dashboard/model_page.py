"""Model page: the spec a model file carries (ONNX metadata) and its benchmark table."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from affect.spec import ModelSpec
from dashboard.common import display_path, get_config, pick_path
from dashboard.config import DashboardError
from dashboard.data import ModelInfo, find_models, load_model, model_roots


def spec_table(spec: ModelSpec) -> pd.DataFrame:
    """Every spec field as text, in the order a reader asks about them."""
    rows = [
        ("labels", ", ".join(spec.labels)), ("classes", str(len(spec.labels))),
        ("input size", f"{spec.input_size} × {spec.input_size} RGB"),
        ("mean", json.dumps(spec.mean)), ("std", json.dumps(spec.std)),
        ("crop", json.dumps(spec.crop)), ("backbone", spec.backbone), ("trained on", spec.trained_on or "—"),
        ("version", spec.version or "—"), ("landmarks", str(spec.num_landmarks)),
        ("action units", ", ".join(spec.au_names) or "—"), ("outputs", ", ".join(spec.output_names)),
    ]
    return pd.DataFrame(rows, columns=["field", "value"])


def render() -> None:
    st.title("Model")
    config = get_config()
    path = pick_path("a model file", find_models(config.existing_roots(), config.max_entries), config,
                     key="model_file", extra_roots=model_roots(),
                     empty_hint="No .onnx models under the scanned directories; export one with "
                                "`python -m export onnx runs/NAME/checkpoint.pt`.")
    if path is None:
        return
    try:
        info = load_model(path, check=lambda p: config.check(p, model_roots()))
    except DashboardError as exc:
        st.error(str(exc))
        return
    show_model(info, display_path(info.path, config))


def bench_hint(shown: str) -> str:
    """The command that writes the table this page looks for, runnable as written from the
    directory the dashboard was started in (`shown` is the path as the page lists it)."""
    path = Path(shown)  # export bench writes OUT.md and OUT.json; the page reads bench.json beside the model
    return f"python -m export bench {shlex.quote(str(path))} --out {shlex.quote(str(path.with_name('bench')))}"


def show_model(info: ModelInfo, shown: str | None = None) -> None:
    st.caption(f"{info.path} · {info.path.stat().st_size / 1e6:.2f} MB")
    st.subheader("Spec")
    st.dataframe(spec_table(info.spec), hide_index=True, key="spec_table")
    st.subheader("Backend benchmark")
    if info.bench is not None:
        table = info.bench.drop(columns=[c for c in info.bench.columns if c.startswith("extra")])
        st.dataframe(table, hide_index=True, key="bench_table")
        if info.bench_markdown:
            with st.expander("As markdown"):
                st.markdown(info.bench_markdown)
    elif info.bench_markdown:
        st.markdown(info.bench_markdown)
    else:
        st.info(f"No benchmark next to {info.path.name} (bench.json or {info.path.stem}.bench.json); "
                f"write one with `{bench_hint(shown or str(info.path))}`")
