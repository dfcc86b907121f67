"""Every dashboard page driven with streamlit.testing.v1.AppTest on the fixtures:
the numbers shown must be the numbers in the files."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from affect.labels import quadrant
from affect.recording import labels_from_columns
from dashboard.data import read_spec
from dashboard.summary import QUADRANT_ORDER, summary_csv

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 120


@pytest.fixture
def app(workspace, monkeypatch):
    dirs = [workspace / n for n in ("runs", "recordings", "models", "videos")]
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(map(str, dirs)))

    def open_page(page: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
        if page != "live":
            at.switch_page(f"dashboard/pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def arr(value) -> np.ndarray:
    """A Plotly JSON array: a plain list or a typed array ({"dtype", "bdata"})."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape else data
    return np.asarray(value)


def chart_titled(at: AppTest, prefix: str) -> dict:
    found = [c for c in charts(at) if str(c["layout"].get("title", {}).get("text", "")).startswith(prefix)]
    assert found, f"no chart titled {prefix!r}"
    return found[0]


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a {column!r} column"
    return found[0]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


# --- Session -----------------------------------------------------------------------------


def test_session_shows_the_recordings_counts_per_quadrant_and_expression(app, recording_file):
    at = app("session")
    assert not errors(at)
    raw = pd.read_csv(recording_file)
    quadrants = pd.Series([quadrant(v, a) for v, a in zip(raw["valence"], raw["arousal"], strict=True)])
    shown_q = frame_with(at, "quadrant").set_index("quadrant")["frames"]
    assert list(shown_q.index) == QUADRANT_ORDER
    for name in QUADRANT_ORDER:
        assert shown_q[name] == int((quadrants == name).sum())
    assert shown_q.sum() == len(raw)
    shown_e = frame_with(at, "expression").set_index("expression")["frames"]
    assert list(shown_e.index) == labels_from_columns(raw.columns)
    for name, count in raw["expression"].value_counts().items():
        assert shown_e[name] == count
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Face rows"] == str(len(raw))
    assert metrics["Tracks"] == str(raw["track_id"].nunique())
    tracks = frame_with(at, "mean_valence").set_index("track_id")
    for track_id, rows in raw.groupby("track_id"):
        assert tracks.loc[track_id, "frames"] == len(rows)
        assert tracks.loc[track_id, "mean_valence"] == pytest.approx(rows["valence"].mean())


def test_session_scrubber_puts_each_track_at_its_last_point_before_that_time(app, recording_file):
    at = app("session")
    raw = pd.read_csv(recording_file)
    times = np.unique(raw["t_ms"])
    chosen = float(times[len(times) // 2]) / 1000.0
    slider = next(s for s in at.slider if s.label == "time (s)")
    slider.set_value(chosen).run()
    plane = chart_titled(at, "Valence–arousal at")
    now = {tr["name"]: (tr["x"], tr["y"]) for tr in plane["data"] if str(tr.get("name", "")).endswith(" now")}
    trail_s = next(s for s in at.slider if s.label == "trail (s)").value
    # Tracks seen within the trail window before the chosen time, each at its latest point.
    window = raw[(raw["t_ms"] <= chosen * 1000 + 1e-6) & (raw["t_ms"] >= chosen * 1000 - trail_s * 1000 - 1e-6)]
    expected = window.sort_values("t_ms").groupby("track_id").tail(1)
    assert len(expected) >= 1
    assert set(now) == {f"track {t} now" for t in expected["track_id"]}
    for _, row in expected.iterrows():
        x, y = now[f"track {row['track_id']} now"]
        assert arr(x)[0] == pytest.approx(row["valence"]) and arr(y)[0] == pytest.approx(row["arousal"])
    # Quadrant names on the plane come from affect.labels.QUADRANTS.
    names = {a["text"] for a in plane["layout"]["annotations"]}
    assert set(QUADRANT_ORDER) <= names


def test_session_summary_export_matches_the_recording(recording_file):
    raw = pd.read_csv(recording_file)
    labels = labels_from_columns(raw.columns)
    summary = pd.read_csv(io.StringIO(summary_csv(raw, labels)))
    overall = summary[(summary["track"] == "all") & (summary["kind"] == "expression")].set_index("name")
    assert overall["frames"].sum() == len(raw)
    for name, count in raw["expression"].value_counts().items():
        assert overall.loc[name, "frames"] == count
    means = summary[summary["kind"] == "mean"].set_index(["track", "name"])["value"]
    for track_id, rows in raw.groupby("track_id"):
        assert means[(str(track_id), "arousal")] == pytest.approx(rows["arousal"].mean())


@pytest.mark.parametrize("content, problem", [
    ("this is not, a recording\n1,2\n", "missing columns"),
    ("", "not a readable CSV"),
    ("frame,t_ms,track_id,x,y,w,h,det_score,expression,confidence,p_Happy,valence,arousal\n", "no rows"),
    ("frame,t_ms,track_id,x,y,w,h,det_score,expression,confidence,p_Happy,valence,arousal\n"
     "0,0,1,1,1,1,1,0.9,Happy,0.9,0.9,oops,0.1\n", "non-numeric"),
])
def test_session_bad_recording_is_a_one_line_error(app, workspace, content, problem):
    bad = workspace / "recordings" / "bad.csv"
    bad.write_text(content)
    try:
        at = app("session")
        at.text_input(key="session_file_typed").input(str(bad)).run()
        assert not at.exception
        [message] = errors(at)
        assert str(bad) in message and problem in message and "\n" not in message
        assert at.title[0].value == "Session"  # the page is still there
    finally:
        bad.unlink()


def test_a_path_outside_the_configured_directories_is_refused(app, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("frame\n1\n")
    at = app("session")
    at.text_input(key="session_file_typed").input(str(outside)).run()
    [message] = errors(at)
    assert "outside the scanned directories" in message
    assert not at.dataframe  # nothing of that file was read


# --- Test-set metrics ----------------------------------------------------------------------


def test_metrics_page_shows_the_numbers_in_metrics_json(app, eval_dir):
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    at = app("metrics")
    assert not errors(at)
    headline = frame_with(at, "metric").set_index(["section", "metric"])
    assert headline.loc[("expression", "accuracy"), "value"] == pytest.approx(metrics["expression"]["accuracy"])
    assert headline.loc[("expression", "accuracy"), "ci_low"] == pytest.approx(metrics["ci"]["accuracy"][0])
    assert headline.loc[("valence", "ccc"), "value"] == pytest.approx(metrics["valence"]["ccc"])
    assert headline.loc[("arousal", "ccc"), "ci_high"] == pytest.approx(metrics["ci"]["arousal_ccc"][1])
    shown = {m.label: m.value for m in at.metric}
    assert shown["Accuracy"] == f"{metrics['expression']['accuracy']:.3f}"
    assert shown["Valence CCC"] == f"{metrics['valence']['ccc']:.3f}"
    lo, hi = metrics["ci"]["accuracy"]
    assert any(f"CI [{lo:.3f}, {hi:.3f}]" in c.value for c in at.caption)
    per_class = frame_with(at, "precision").set_index("class")
    for label, row in metrics["expression"]["per_class"].items():
        assert per_class.loc[label, "support"] == row["support"]
        assert per_class.loc[label, "f1"] == pytest.approx(row["f1"])


def test_confusion_heatmap_shows_counts_then_normalised(app, eval_dir):
    expression = json.loads((eval_dir / "metrics.json").read_text())["expression"]
    at = app("metrics")
    heat = chart_titled(at, "Confusion matrix (counts)")["data"][0]
    assert heat["type"] == "heatmap"
    assert np.array_equal(arr(heat["z"]), np.asarray(expression["confusion"]))
    assert heat["x"] == expression["labels"]
    at.radio(key="run0_confusion_mode").set_value("normalised").run()
    heat = chart_titled(at, "Confusion matrix (row-normalised)")["data"][0]
    assert np.allclose(arr(heat["z"]), np.asarray(expression["confusion_normalised"]))


def test_va_scatter_plots_predictions_csv_with_ccc_and_rmse_from_metrics_json(app, eval_dir):
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    predictions = pd.read_csv(eval_dir / "predictions.csv")
    at = app("metrics")
    for name in ("valence", "arousal"):
        chart = chart_titled(at, f"{name}: predicted vs true")
        title = chart["layout"]["title"]["text"]
        assert f"CCC {metrics[name]['ccc']:.3f}" in title and f"RMSE {metrics[name]['rmse']:.3f}" in title
        points = chart["data"][1]
        keep = predictions[[f"true_{name}", f"pred_{name}"]].dropna()
        assert np.allclose(arr(points["x"]), keep[f"true_{name}"]) and np.allclose(arr(points["y"]), keep[f"pred_{name}"])


def test_reliability_diagram_plots_the_calibration_bins_of_metrics_json(app, eval_dir):
    expression = json.loads((eval_dir / "metrics.json").read_text())["expression"]
    bins = expression.get("calibration")
    if bins is None:
        pytest.skip("the stand-in eval folder has no calibration bins (no train room here)")
    at = app("metrics")
    chart = chart_titled(at, "Reliability diagram")
    assert f"ECE {expression['ece']:.3f}" in chart["layout"]["title"]["text"]
    kept = [i for i, n in enumerate(bins["count"]) if n]
    points = chart["data"][1]
    assert np.allclose(arr(points["x"]), [bins["confidence"][i] for i in kept])
    assert np.allclose(arr(points["y"]), [bins["accuracy"][i] for i in kept])
    assert list(arr(points["customdata"])) == [bins["count"][i] for i in kept]
    assert sum(bins["count"]) == expression["n"]


def test_compare_table_covers_the_chosen_runs(app, eval_dir, second_eval_dir):
    at = app("metrics")
    at.multiselect(key="runs_selected").set_value([str(eval_dir), str(second_eval_dir)]).run()
    assert not errors(at), errors(at)
    assert len(at.tabs) == 2
    assert any("| metric | eval_a | eval_b |" in md.value for md in at.markdown)
    table = frame_with(at, "run")
    assert {"eval_a", "eval_b"} <= set(table["run"])
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    accuracy = table[(table["metric"] == "expression accuracy") & (table["run"] == "eval_a")]["value"]
    assert float(accuracy.iloc[0]) == pytest.approx(metrics["expression"]["accuracy"])


def test_run_dir_without_metrics_json_is_an_error_and_other_runs_still_show(app, workspace, eval_dir):
    broken = workspace / "runs" / "no_metrics"
    broken.mkdir(exist_ok=True)
    (broken / "predictions.csv").write_text("path,true_label\nx.jpg,Happy\n")
    try:
        at = app("metrics")
        at.multiselect(key="runs_selected").set_value([str(eval_dir), str(broken)]).run()
        assert not at.exception
        [message] = errors(at)
        assert "no_metrics" in message and "no metrics.json" in message
        assert any("Confusion matrix" in str(c["layout"].get("title")) for c in charts(at))
    finally:
        for f in broken.iterdir():
            f.unlink()
        broken.rmdir()


# --- Model ---------------------------------------------------------------------------------


def test_model_page_shows_the_spec_and_the_bench_table(app, model_file):
    spec = read_spec(model_file)
    at = app("model")
    assert not errors(at)
    table = frame_with(at, "field").set_index("field")["value"]
    assert table["labels"] == ", ".join(spec.labels)
    assert table["input size"].startswith(f"{spec.input_size} × {spec.input_size}")
    assert json.loads(table["std"]) == pytest.approx(spec.std)
    assert table["backbone"] == spec.backbone
    bench = frame_with(at, "p50_ms")
    expected = json.loads((model_file.parent / "bench.json").read_text())["rows"]
    assert list(bench["p50_ms"]) == pytest.approx([row["p50_ms"] for row in expected])
    assert list(bench["backend"]) == [row["backend"] for row in expected]


@pytest.mark.parametrize("kind, problem", [("no_metadata", "no affect.* metadata"),
                                           ("garbage", "not a readable ONNX model")])
def test_model_without_metadata_or_unreadable_is_a_one_line_error(app, workspace, kind, problem, tiny_onnx_writer):
    write_tiny_onnx = tiny_onnx_writer
    path = workspace / "models" / f"{kind}.onnx"
    if kind == "garbage":
        path.write_bytes(b"\x00not onnx at all" * 10)
    else:
        write_tiny_onnx(path, with_metadata=False)
    try:
        at = app("model")
        at.text_input(key="model_file_typed").input(str(path)).run()
        assert not at.exception
        [message] = errors(at)
        assert str(path) in message and problem in message
    finally:
        path.unlink()


def test_session_au_panel_shows_each_tracks_au_probabilities_and_most_active(app, workspace):
    from affect.aus import AU_NAMES
    from affect.recording import FaceRow, write_csv_header

    path = workspace / "recordings" / "aus.csv"
    labels = ["Happy", "Sad"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = write_csv_header(fh, labels, AU_NAMES)
        for frame in range(20):
            aus = np.full(len(AU_NAMES), 0.1)
            aus[AU_NAMES.index("AU12")] = 0.9 if frame < 15 else 0.2  # active in 15 of 20 frames
            row = FaceRow(frame, frame * 33.3, 1, 10, 10, 50, 50, 0.9, "Happy", 0.8, [0.8, 0.2], 0.5, 0.1,
                          aus=None if frame == 19 else aus.tolist())  # the last face had none
            writer.writerow(row.as_csv_row(AU_NAMES))
    try:
        at = app("session")
        at.text_input(key="session_file_typed").input(str(path)).run()
        assert not at.exception and not errors(at)
        chart = chart_titled(at, "track 1: action units")
        assert [t["name"] for t in chart["data"]] == list(AU_NAMES)
        top = frame_with(at, "active_share").iloc[0]
        assert top["au"] == "AU12" and top["frames"] == 19 and top["active_share"] == pytest.approx(15 / 19)
    finally:
        path.unlink()


def test_the_au_panel_counts_active_at_the_models_own_thresholds_beside_the_recording(app, workspace):
    from affect.aus import AU_NAMES
    from affect.recording import FaceRow, write_au_thresholds, write_csv_header

    path = workspace / "recordings" / "aus_own.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = write_csv_header(fh, ["Happy", "Sad"], AU_NAMES)
        for frame in range(10):
            aus = np.full(len(AU_NAMES), 0.1)
            aus[AU_NAMES.index("AU12")] = 0.6  # active at 0.5, not at the model's 0.8
            aus[AU_NAMES.index("AU25")] = 0.3  # not active at 0.5, active at the model's 0.2
            writer.writerow(FaceRow(frame, frame * 33.3, 1, 10, 10, 50, 50, 0.9, "Happy", 0.8, [0.8, 0.2], 0.5, 0.1,
                                    aus=aus.tolist()).as_csv_row(AU_NAMES))
    sidecar = write_au_thresholds(path, {"AU12": 0.8, "AU25": 0.2}, "model")
    try:
        at = app("session")
        at.text_input(key="session_file_typed").input(str(path)).run()
        assert not at.exception and not errors(at)
        table = frame_with(at, "active_share").set_index("au")
        assert table.index[0] == "AU25" and table.loc["AU25", "active_share"] == 1.0
        assert "AU12" not in table.index or table.loc["AU12", "active_share"] == 0.0
        assert any("the model's threshold for that AU" in c.value for c in at.caption)
    finally:
        path.unlink()
        sidecar.unlink()


def test_a_recording_without_au_columns_has_no_au_panel(app, recording_file):
    from dashboard.data import load_recording

    assert load_recording(recording_file).frame.shape[0] > 0
    at = app("session")
    assert not at.exception and not errors(at)
    assert "Action units" not in [h.value for h in at.subheader]
