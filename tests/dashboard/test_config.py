"""Which directories the dashboard may read."""

from __future__ import annotations

import os

import pytest

from dashboard.config import DEFAULT_DIRS, DashboardConfig, PathNotAllowed, default_dirs, parse_dirs


def test_directories_come_from_the_environment_or_default_to_runs_and_recordings():
    assert default_dirs({}) == list(DEFAULT_DIRS) == ["runs", "recordings"]
    assert default_dirs({"AFFECTCAM_DASHBOARD_DIRS": f"a{os.pathsep} b {os.pathsep}"}) == ["a", "b"]
    assert parse_dirs("runs\n\n  /data/videos \n") == ["runs", "/data/videos"]


def test_paths_under_a_configured_directory_are_allowed(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    config = DashboardConfig([str(tmp_path / "runs")])
    assert config.check(tmp_path / "runs" / "a" / "metrics.json") == tmp_path / "runs" / "a" / "metrics.json"


@pytest.mark.parametrize("escape", ["../secrets.csv", "../runs_evil/x.csv", "link/x.csv"])
def test_paths_that_leave_the_configured_directories_are_refused(tmp_path, escape):
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "runs_evil").mkdir()
    (runs / "link").symlink_to(tmp_path)  # a symlink out counts as outside
    config = DashboardConfig([str(runs)])
    with pytest.raises(PathNotAllowed, match="outside the scanned directories"):
        config.check(runs / escape)
