"""The Corpus page on a real corpus made by `python -m realtime.batch` (two short clips
of the shared video with manifest metadata, and a corrupt one): the numbers shown are
the table's, grouping works, and in Chromium the plane and the shares draw and a session
opens on the Session page."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pandas as pd
import pytest
from conftest import SHARED
from streamlit.testing.v1 import AppTest
from test_browser import streamlit_server

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "streamlit_app.py"
MODEL = REPO / "realtime" / "models" / "affectcam_default.int8.onnx"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CLIP_FRAMES = 20


@pytest.fixture(scope="module")
def corpus(workspace) -> Path:
    """recordings/corpus, written by the corpus command itself."""
    clip, face_model = SHARED / "videos" / "short_hamilton_clip.mp4", SHARED / "models" / "face_landmarker.task"
    if not (clip.is_file() and face_model.is_file()):
        pytest.skip(f"{clip} or {face_model} not found: the corpus is made from ../shared")
    from realtime.batch import main as batch_main

    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(200)]
    cap.release()
    videos = workspace / "videos" / "corpus"
    videos.mkdir(parents=True, exist_ok=True)
    for name, start in (("s1", 90), ("s2", 170)):
        writer = cv2.VideoWriter(str(videos / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0,
                                 (frames[0].shape[1], frames[0].shape[0]))
        for image in frames[start:start + CLIP_FRAMES]:
            writer.write(image)
        writer.release()
    (videos / "broken.mp4").write_bytes((videos / "s1.mp4").read_bytes()[:2000])
    manifest = videos / "manifest.csv"
    manifest.write_text("path,participant,condition\ns1.mp4,P01,control\ns2.mp4,P02,stress\nbroken.mp4,P03,stress\n")
    out = workspace / "recordings" / "corpus"
    code = batch_main([str(manifest), "-o", str(out), "--workers", "1", "--no-progress", "--model", str(MODEL),
                       "--face-model", str(face_model)])
    assert code == 1  # the broken one
    return out


@pytest.fixture
def corpus_app(workspace, corpus, monkeypatch):
    dirs = [workspace / n for n in ("runs", "recordings", "models", "videos")]
    monkeypatch.setenv("AFFECTCAM_DASHBOARD_DIRS", os.pathsep.join(map(str, dirs)))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("dashboard/pages/corpus.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_corpus_page_shows_the_table_of_the_corpus_command(corpus_app, corpus):
    at = corpus_app
    table = pd.read_parquet(corpus / "corpus.parquet")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sessions"] == str(len(table)) == "3"
    assert metrics["Read"] == "2" and metrics["Failed"] == "1"
    assert any("broken.mp4" in w.value for w in at.warning)
    shown = at.dataframe[0].value
    assert list(shown["participant"]) == ["P01", "P02", "P03"]
    assert shown["valence_mean"].iloc[:2].tolist() == pytest.approx(table["valence_mean"].iloc[:2].tolist())


def test_grouping_by_a_metadata_column_averages_per_group(corpus_app, corpus):
    at = corpus_app
    at.selectbox(key="corpus_group").select("condition").run()
    at.multiselect(key="corpus_filter").set_value(["control", "stress"]).run()
    groups = at.dataframe[1].value.set_index("condition")
    table = pd.read_parquet(corpus / "corpus.parquet")
    done = table[table["status"] == "done"].set_index("condition")
    assert groups.loc["control", "valence_mean"] == pytest.approx(done.loc["control", "valence_mean"])
    at.multiselect(key="corpus_filter").set_value(["stress"]).run()
    assert len(at.dataframe[1].value) == 1


def test_a_path_outside_the_scanned_directories_is_refused(corpus_app, tmp_path):
    at = corpus_app
    at.text_input(key="corpus_dir_typed").input(str(tmp_path)).run()
    assert any("outside the scanned directories; refused" in e.value for e in at.error)
    assert not at.dataframe


def test_a_corpus_table_linked_from_outside_is_refused(corpus_app, corpus, workspace, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "corpus.parquet").write_bytes((corpus / "corpus.parquet").read_bytes())
    linked = workspace / "recordings" / "linked_corpus"
    linked.mkdir()
    (linked / "corpus.parquet").symlink_to(outside / "corpus.parquet")
    try:
        at = corpus_app
        at.text_input(key="corpus_dir_typed").input(str(linked)).run()
        assert any("outside the scanned directories; refused" in e.value for e in at.error)
        assert not at.dataframe
    finally:
        (linked / "corpus.parquet").unlink()
        linked.rmdir()


# --- in Chromium ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_server(workspace, corpus):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) for this test")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    env = {**os.environ, "AFFECTCAM_DASHBOARD_DIRS": os.pathsep.join(["runs", "recordings", "models"])}
    with streamlit_server(workspace, env, "streamlit_corpus_server.log") as (url, _proc):
        yield url


def _settle(page, title: str, charts: int = 0, timeout_ms: int = 90_000) -> None:
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}",
                           timeout=timeout_ms)
    page.wait_for_timeout(1000)


@pytest.mark.browser
@pytest.mark.slow
def test_the_corpus_page_renders_and_opens_a_session_in_chromium(corpus_server, corpus):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{corpus_server}/corpus")
            _settle(page, "Corpus", charts=2)
            plane = page.locator(".js-plotly-plot").filter(has_text="Sessions on the valence")
            assert plane.count() == 1 and plane.locator(".point").count() >= 2, "the sessions did not draw"
            assert page.locator(".js-plotly-plot").filter(has_text="Expression shares").count() == 1
            assert page.get_by_text("P01").count() >= 1 or page.locator('[data-testid="stDataFrame"]').count() >= 1

            page.locator('[data-testid="stSelectbox"]').filter(has_text="Group by").click()
            page.get_by_role("option", name="condition").click()
            _settle(page, "Corpus", charts=2)
            assert page.locator(".js-plotly-plot").filter(has_text="stress").count() >= 1  # the legend's groups
            page.screenshot(path=str(ARTIFACTS / "dashboard_corpus.png"))

            page.get_by_role("button", name="Replay on the Session page").click()
            page.wait_for_url("**/session", timeout=90_000)
            _settle(page, "Session", charts=4)
            typed = page.get_by_role("textbox", name="…or a path to a recording", exact=True)
            assert typed.input_value().endswith("recording.csv")
            # The Session page's own plane (the corpus page's charts may linger while it draws).
            plane = page.locator(".js-plotly-plot").filter(has_text="Valence–arousal at")
            plane.first.wait_for(timeout=90_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard_corpus_session.png"))
            assert plane.filter(has_text="excited").count() == 1
            assert page.locator('[data-testid="stAlert"]').filter(has_text="refused").count() == 0
        finally:
            browser.close()
