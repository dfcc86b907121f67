"""The dashboard shows only what its owner chose at launch: the page may narrow
the scanned directories, never widen them; every file it opens (typed or picked
from a list) must resolve inside them; refusals and read errors quote nothing
from the file; scans are bounded; uploads live in a private temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.config import ENV_DIRS, OwnerSettings, narrow, owner_settings
from dashboard.data import find_recordings, load_recording

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
SECRET = "TOPSECRET-do-not-show"


@pytest.fixture
def site(tmp_path, recording_file, eval_dir, monkeypatch):
    """An owner's tree (recordings/, runs/) and, beside it, files it did not choose to show."""
    shown, outside = tmp_path / "shown", tmp_path / "outside"
    (shown / "recordings").mkdir(parents=True)
    (shown / "runs").mkdir()
    outside.mkdir()
    shutil.copy(recording_file, shown / "recordings" / "a.csv")
    shutil.copytree(eval_dir, shown / "runs" / "eval")
    shutil.copy(recording_file, outside / f"{SECRET}.csv")  # a valid recording, but not the owner's to show
    shutil.copytree(eval_dir, outside / "secret_run")
    (shown / "recordings" / "zz_link.csv").symlink_to(outside / f"{SECRET}.csv")
    (shown / "runs" / "zz_linked_run").symlink_to(outside / "secret_run")
    monkeypatch.setenv(ENV_DIRS, os.pathsep.join([str(shown / "recordings"), str(shown / "runs")]))
    return shown, outside


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(f"dashboard/pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_launch_settings_come_from_the_command_line_then_environment_then_config_file(tmp_path, monkeypatch):
    pytest.importorskip("tomllib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dashboard.toml").write_text('dirs = ["from_file"]\nmax_entries = 77\n')
    assert owner_settings([], {}) == OwnerSettings(("from_file",), 77, "dashboard.toml")
    assert owner_settings([], {ENV_DIRS: f"a{os.pathsep}b"}).dirs == ("a", "b")
    assert owner_settings(["x", "y", "--max-entries", "5"], {ENV_DIRS: "a"}) == \
        OwnerSettings(("x", "y"), 5, "command line")
    (tmp_path / "dashboard.toml").write_text("dirs = 'not a list'\n")
    with pytest.raises(ValueError, match="dirs must be a list"):
        owner_settings([], {})


def test_the_page_may_narrow_the_directories_never_widen_them(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    owner = OwnerSettings((str(tmp_path / "runs"),))
    kept, refused = narrow([str(tmp_path / "runs" / "a"), "/etc", str(tmp_path / "runs" / ".." / ".."), "/"],
                           owner)
    assert kept == [str(tmp_path / "runs" / "a")]
    assert refused == ["/etc", str(tmp_path / "runs" / ".." / ".."), "/"]


def test_a_widened_directory_list_is_refused_in_the_sidebar(site):
    shown, outside = site
    at = open_page("session")
    at.sidebar.text_area(key="dirs_text").input(f"{shown / 'recordings'}\n/etc\n{outside}").run()
    refusals = [e.value for e in at.sidebar.error]
    assert len(refusals) == 2 and all("refused" in m for m in refusals)
    options = at.selectbox(key="session_file").options
    assert all(str(shown / "recordings") in o for o in options)  # nothing from /etc or outside/ listed
    at.text_input(key="session_file_typed").input(str(outside / f"{SECRET}.csv")).run()
    assert any("outside the scanned directories; refused" in m for m in errors(at))
    assert not at.dataframe


@pytest.mark.parametrize("typed", ["/etc/passwd", "{shown}/recordings/../../outside/" + SECRET + ".csv"])
def test_a_typed_path_outside_is_refused_and_nothing_of_it_is_read(site, typed):
    shown, _ = site
    at = open_page("session")
    at.text_input(key="session_file_typed").input(typed.format(shown=shown)).run()
    [message] = errors(at)
    assert message.endswith("outside the scanned directories; refused") and "\n" not in message
    assert not at.dataframe and not at.get("plotly_chart")
    assert "root:" not in message  # nothing quoted from /etc/passwd


def test_a_symlink_out_picked_from_the_list_is_refused(site):
    at = open_page("session")
    box = at.selectbox(key="session_file")
    link = next(o for o in box.options if o.endswith("zz_link.csv"))
    box.select(link).run()
    [message] = errors(at)
    assert message == f"{link}: outside the scanned directories; refused"
    assert not at.dataframe and not at.get("plotly_chart")
    # …and the page still works: the owner's recording opens.
    at.selectbox(key="session_file").select(next(o for o in box.options if o.endswith("a.csv"))).run()
    assert not errors(at) and at.dataframe


def test_a_symlinked_run_folder_is_not_listed_and_refused_when_typed(site):
    shown, _ = site
    at = open_page("metrics")
    assert not [o for o in at.multiselect(key="runs_selected").options if "zz_linked_run" in o]
    at.text_input(key="runs_typed").input(str(shown / "runs" / "zz_linked_run")).run()
    assert errors(at) == [f"{shown / 'runs' / 'zz_linked_run'}: outside the scanned directories; refused"]
    assert len(at.tabs) == 1  # only the owner's run


def test_a_symlinked_file_inside_an_allowed_run_folder_is_not_read(site):
    shown, outside = site
    run = shown / "runs" / "eval"
    (run / "metrics.json").unlink()
    (run / "metrics.json").symlink_to(outside / "secret_run" / "metrics.json")
    at = open_page("metrics")
    at.multiselect(key="runs_selected").set_value([str(run)]).run()
    [message] = errors(at)
    assert "metrics.json: outside the scanned directories; refused" in message
    assert not at.dataframe


def test_a_file_that_is_not_a_recording_is_refused_without_quoting_it(site):
    shown, _ = site
    for name, content in (("passwd.csv", f"{SECRET}:x:0:0:root:/root:/bin/bash\nb:x:1:1::/:/bin/sh\n"),
                          ("ragged.csv", f"frame,{SECRET}\n1,2,3,4\n"),
                          ("binary.csv", b"\xff\xfe" + SECRET.encode() + b"\x00\x81"),
                          ("lines.jsonl", f'{{"{SECRET}": 1\n')):
        path = shown / "recordings" / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        at = open_page("session")
        at.text_input(key="session_file_typed").input(str(path)).run()
        [message] = errors(at)
        assert str(path) in message and SECRET not in message.replace(str(path), "") and "\n" not in message


def test_impossible_recording_values_are_flagged_and_left_out(site):
    shown, _ = site
    good = shown / "recordings" / "a.csv"
    lines = good.read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:5]]
    col = {name: i for i, name in enumerate(header)}
    rows[0][col["valence"]] = "999"
    rows[1][col[next(c for c in header if c.startswith("p_"))]] = "9"
    rows[2][col["expression"]] = "Bored"
    rows[3][col["t_ms"]] = "1e12"
    bad = shown / "recordings" / "impossible.csv"
    bad.write_text("\n".join([lines[0], *(",".join(r) for r in rows), *lines[5:]]) + "\n")
    recording = load_recording(bad)
    assert recording.left_out == 4 and len(recording.frame) == len(lines) - 5
    warning = recording.warning()
    for what in ("valence/arousal outside [-1, 1]", "probabilities outside [0, 1]",
                 "not one of the labels", "t_ms outside"):
        assert what in warning
    at = open_page("session")
    at.text_input(key="session_file_typed").input(str(bad)).run()
    assert [w.value for w in at.warning] == [warning] and not errors(at)
    assert at.metric[1].value == str(len(lines) - 5)  # face rows drawn: the possible ones


@pytest.mark.parametrize("edit, problem", [
    (lambda m: m.update(expression="oops"), '"expression" must be an object'),
    (lambda m: m["expression"]["confusion"].pop(), '"expression.confusion" must be a'),
    (lambda m: m["expression"]["confusion"][0].append(1), '"expression.confusion" must be a'),
    (lambda m: m["valence"].update(ccc="high"), '"valence.ccc" must be a number'),
    (lambda m: m.update(ci=[1, 2]), '"ci" must be an object'),
])
def test_metrics_json_with_wrong_types_is_one_line_on_the_page_and_in_compare(site, capsys, edit, problem):
    shown, _ = site
    bad = shown / "runs" / "a_bad"  # sorts first: the page opens on it
    shutil.copytree(shown / "runs" / "eval", bad)
    metrics = json.loads((bad / "metrics.json").read_text())
    edit(metrics)
    (bad / "metrics.json").write_text(json.dumps(metrics))
    at = open_page("metrics")
    [message] = errors(at)
    assert message.startswith(str(bad / "metrics.json")) and problem in message and "\n" not in message
    at.multiselect(key="runs_selected").set_value([str(bad), str(shown / "runs" / "eval")]).run()
    assert not at.exception and len(at.tabs) == 1  # the good run still shows
    from train.__main__ import main as train_main

    assert train_main(["compare", str(shown / "runs" / "eval"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert problem in err and str(bad) in err and err.count("\n") == 1 and "Traceback" not in err


def test_scanning_stops_after_a_bounded_number_of_entries(tmp_path):
    from affect.labels import EXPRESSIONS
    from affect.recording import csv_columns

    header = ",".join(csv_columns(EXPRESSIONS)) + "\n"  # only recordings are listed
    big = tmp_path / "big"
    for i in range(40):
        (big / f"d{i:02d}").mkdir(parents=True)
        for j in range(10):
            (big / f"d{i:02d}" / f"{j}.csv").write_text(header)
    found = find_recordings([big], max_entries=100)
    # bounded by entries read, not by a wall-clock limit (a timed assertion races the CPU)
    assert found.truncated and 0 < len(found) < 100
    assert not find_recordings([big], max_entries=10_000).truncated


def test_an_uploaded_video_lives_in_a_private_folder_removed_afterwards(recording_file):
    from dashboard.live_page import private_copy

    class Upload:
        name = "../../evil name.MP4"

        def getvalue(self) -> bytes:
            return b"not really a video"

    with private_copy(Upload()) as path:
        folder = path.parent
        assert path.read_bytes() == b"not really a video" and path.suffix == ".mp4"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert folder.name.startswith("affectcam-upload-")
    assert not folder.exists()


def test_the_repository_serves_on_localhost_by_default():
    tomllib = pytest.importorskip("tomllib")

    config = tomllib.loads((APP.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
