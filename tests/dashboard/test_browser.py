"""End to end: `streamlit run streamlit_app.py` on a free port, each page opened
in headless Chromium (Debian's, driven by Playwright), the valence–arousal
plane and the confusion matrix checked to render, screenshots saved to
test-artifacts/. With AFFECTCAM_UPDATE_SCREENSHOTS=1 they also replace the
README's docs/img/dashboard_<page>.png."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import SHARED

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
README_IMAGES = REPO / "docs" / "img"
MAX_README_PNG = 300_000  # bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(workspace, model_file, recording_file, eval_dir, second_eval_dir):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) for this test")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    port = _free_port()
    # Relative directories, as a user types them, with the server started in the workspace.
    dirs = ["runs", "recordings", "models", str(SHARED / "videos")]
    env = {**os.environ, "AFFECTCAM_DASHBOARD_DIRS": os.pathsep.join(map(str, dirs)),
           "AFFECTCAM_FACE_MODEL": str(SHARED / "models" / "face_landmarker.task")}
    log = (ARTIFACTS.mkdir(exist_ok=True) or ARTIFACTS) / "streamlit_server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             # No file watching: other engineers' edits must not rerun or flood the server.
             "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
            cwd=workspace, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start (see {log}): {log.read_text()[-500:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        yield page
        browser.close()


def _settle(page, title: str, charts: int = 0, timeout_ms: int = 90_000) -> None:
    """Wait for the page's title, then for the script run to end (Streamlit's
    'running' widget gone) and Plotly to draw."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    # At least `charts` Plotly charts drawn: Streamlit loads Plotly lazily and shows
    # grey placeholders until then.
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}",
                           timeout=timeout_ms)
    page.wait_for_timeout(1000)


def _plot_with_text(page, text: str):
    return page.locator(".js-plotly-plot").filter(has_text=text)


def _shoot(page, name: str) -> Path:
    path = ARTIFACTS / f"dashboard_{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("AFFECTCAM_UPDATE_SCREENSHOTS") == "1":
        _to_readme(path, README_IMAGES / path.name)
    return path


def _to_readme(src: Path, dst: Path) -> None:
    """A palette PNG keeps the README light (< 300 KB per page)."""
    from PIL import Image

    dst.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(src).convert("RGB")
    scale = 1.0
    while True:
        resized = image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS)
        resized.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
        if dst.stat().st_size < MAX_README_PNG or scale < 0.4:
            break
        scale *= 0.85


def test_every_page_renders_in_chromium(server, browser_page, eval_dir):
    page = browser_page

    page.goto(f"{server}/session")
    _settle(page, "Session", charts=6)
    _shoot(page, "session")
    assert _plot_with_text(page, "excited").count() >= 1, "the valence–arousal plane did not render"
    assert page.locator(".js-plotly-plot").count() >= 4

    page.goto(f"{server}/metrics")
    _settle(page, "Test-set metrics", charts=3)
    _shoot(page, "metrics")
    heatmap = _plot_with_text(page, "Confusion matrix")
    assert heatmap.count() == 1 and heatmap.locator(".heatmaplayer, .hm").count() >= 1, \
        "the confusion matrix did not render"
    assert page.get_by_text("Headline metrics").count() == 1

    page.goto(f"{server}/model")
    _settle(page, "Model")
    # On a loaded machine the script's run can start after the status widget was first looked for:
    # wait for the section itself (a timeout here still fails the test).
    page.get_by_text("Backend benchmark").first.wait_for(timeout=90_000)
    _shoot(page, "model")
    assert page.get_by_text("Backend benchmark").count() == 1
    assert page.locator('[data-testid="stAlert"]').filter(has_text="Error").count() == 0

    page.goto(f"{server}/")  # the default page (Live) lives at the root
    _settle(page, "Live")
    _shoot(page, "live")
    page.get_by_role("button", name="Process").click()
    page.wait_for_selector("text=Download recording (CSV)", timeout=120_000)
    _settle(page, "Live", charts=2)
    _shoot(page, "live")
    assert _plot_with_text(page, "excited").count() >= 1, "the live valence–arousal plane did not render"
    assert page.locator('[data-testid="stImage"] img').count() >= 1

    for name in ("live", "session", "metrics", "model"):
        assert (ARTIFACTS / f"dashboard_{name}.png").stat().st_size > 10_000


def _alerts(page, text: str):
    return page.locator('[data-testid="stAlert"]').filter(has_text=text)


def _alert_shown(page, text: str) -> bool:
    alert = _alerts(page, text)
    alert.first.wait_for(timeout=30_000)
    return alert.count() == 1


def _type_into(page, label: str, value: str, submit: str = "Enter") -> None:
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(value)
    box.press(submit)
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def test_out_of_bounds_paths_are_refused_in_chromium(server, browser_page, workspace, tmp_path):
    """A widened directory list, a symlink out of a scanned directory picked from the
    list, a typed /etc/passwd and a `..` path: each refused, and the page still works."""
    page = browser_page
    outside = tmp_path / "outside_secret.csv"
    outside.write_text((workspace / "recordings" / "clip.csv").read_text())
    link = workspace / "recordings" / "zz_outside.csv"
    link.symlink_to(outside)
    try:
        page.goto(f"{server}/session")
        _settle(page, "Session", charts=6)

        _type_into(page, "Directories to scan (one per line)", "runs\nrecordings\nmodels\n/etc", "Control+Enter")
        assert _alert_shown(page, "/etc: not inside the directories the dashboard was started with; refused")

        page.locator('[data-testid="stSelectbox"]').filter(has_text="A recording").click()
        page.get_by_role("option", name="recordings/zz_outside.csv").click()
        page.wait_for_timeout(500)
        _settle(page, "Session")
        assert _alert_shown(page, "recordings/zz_outside.csv: outside the scanned directories; refused")
        assert page.locator(".js-plotly-plot").count() == 0  # nothing of the outside file drawn

        for typed in ("/etc/passwd", f"recordings/../../{outside.parent.name}/{outside.name}"):
            _type_into(page, "…or a path to a recording", typed)
            assert _alert_shown(page, f"{typed}: outside the scanned directories; refused")
            assert page.get_by_text("root:").count() == 0

        _type_into(page, "…or a path to a recording", "")  # the page still works: back to the list
        page.locator('[data-testid="stSelectbox"]').filter(has_text="A recording").click()
        page.get_by_role("option", name="recordings/clip.csv").click()
        _settle(page, "Session", charts=6)
        assert _plot_with_text(page, "excited").count() >= 1
        _shoot(page, "refusals")
    finally:
        link.unlink()
