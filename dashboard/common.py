"""Sidebar and file pickers shared by the pages."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from dashboard.config import DashboardConfig, DashboardError, default_dirs, parse_dirs

CONFIG_KEY = "dashboard_config"


def sidebar_config() -> DashboardConfig:
    """The directories to scan, typed in the sidebar (default: $AFFECTCAM_DASHBOARD_DIRS or runs/, recordings/)."""
    text = st.sidebar.text_area(
        "Directories to scan (one per line)", value="\n".join(default_dirs()), key="dirs_text",
        help="Only files under these directories can be opened. Default from $AFFECTCAM_DASHBOARD_DIRS "
             f"({os.pathsep}-separated) or runs/ and recordings/.")
    config = DashboardConfig(parse_dirs(text))
    missing = [d for d, root in zip(config.dirs, config.roots, strict=True) if not root.is_dir()]
    if missing:
        st.sidebar.caption("Not found (yet): " + ", ".join(missing))
    st.session_state[CONFIG_KEY] = config
    return config


def get_config() -> DashboardConfig:
    return st.session_state.get(CONFIG_KEY) or DashboardConfig()


def display_path(path: Path, config: DashboardConfig) -> str:
    for root, name in zip(config.roots, config.dirs, strict=True):
        if path.is_relative_to(root):
            return str(Path(name) / path.relative_to(root))
    return str(path)


def pick_path(label: str, candidates: list[Path], config: DashboardConfig, key: str,
              empty_hint: str) -> Path | None:
    """A selectbox of files found under the configured directories, plus a typed
    path that must lie under one of them (refused otherwise)."""
    typed = st.text_input(f"…or a path to {label}", key=f"{key}_typed", placeholder="path under a scanned directory")
    if typed.strip():
        try:
            return config.check(typed.strip())
        except DashboardError as exc:
            st.error(str(exc))
            return None
    if not candidates:
        st.info(empty_hint)
        return None
    names = [display_path(p, config) for p in candidates]
    choice = st.selectbox(label.capitalize(), names, key=key)
    return candidates[names.index(choice)]
