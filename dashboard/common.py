"""Sidebar and file pickers shared by the pages."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from dashboard.config import (
    DashboardConfig,
    DashboardError,
    OwnerSettings,
    narrow,
    owner_settings,
    parse_dirs,
)

CONFIG_KEY = "dashboard_config"


def under_streamlit_run() -> bool:
    """Whether this process is `streamlit run streamlit_app.py` (not a test's AppTest)."""
    return Path(sys.argv[0]).name == "streamlit_app.py"


def owner() -> OwnerSettings:
    """The launch command line, environment and config file (none of them the visitor's)."""
    return owner_settings()


def sidebar_config() -> DashboardConfig:
    """The directories to scan: the owner's (fixed at launch), which the visitor may narrow."""
    settings = owner()
    text = st.sidebar.text_area(
        "Directories to scan (one per line)", value="\n".join(settings.dirs), key="dirs_text",
        help="Only files under these directories can be opened. You can remove lines or name "
             "sub-folders; folders outside the ones the dashboard was started with are refused. "
             f"Started with: {', '.join(settings.dirs)} (from {settings.source}).")
    kept, refused = narrow(parse_dirs(text), settings)
    for d in refused:
        st.sidebar.error(f"{d}: not inside the directories the dashboard was started with; refused")
    config = DashboardConfig(kept, settings.max_entries, settings)
    missing = [d for d, root in zip(config.dirs, config.roots, strict=True) if not root.is_dir()]
    if missing:
        st.sidebar.caption("Not found (yet): " + ", ".join(missing))
    st.session_state[CONFIG_KEY] = config
    return config


def get_config() -> DashboardConfig:
    config = st.session_state.get(CONFIG_KEY)
    if config is None:
        settings = owner()
        config = DashboardConfig(list(settings.dirs), settings.max_entries, settings)
    return config


def display_path(path: Path, config: DashboardConfig) -> str:
    for root, name in zip(config.roots, config.dirs, strict=True):
        if path.is_relative_to(root):
            return str(Path(name) / path.relative_to(root))
    return str(path)


def scan_note(found) -> None:
    if getattr(found, "truncated", False):
        st.caption("The scan stopped early (too many files): narrow the directories in the sidebar "
                   "to see everything.")


def pick_path(label: str, candidates: list[Path], config: DashboardConfig, key: str,
              empty_hint: str, extra_roots: tuple[Path, ...] = ()) -> Path | None:
    """A selectbox of files found under the configured directories, plus a typed
    path. Either must resolve (symlinks followed) inside them, else refused."""
    typed = st.text_input(f"…or a path to {label}", key=f"{key}_typed", placeholder="path under a scanned directory")
    if typed.strip():
        return checked(typed.strip(), config, extra_roots)
    if not candidates:
        st.info(empty_hint)
        return None
    names = [display_path(p, config) for p in candidates]
    choice = st.selectbox(label.capitalize(), names, key=key)
    scan_note(candidates)
    # A listed file may be a symlink to anywhere: the same check as a typed path.
    return checked(candidates[names.index(choice)], config, extra_roots, shown=choice)


def checked(path: str | Path, config: DashboardConfig, extra_roots: tuple[Path, ...] = (),
            shown: str | None = None) -> Path | None:
    """The resolved path, or None after a one-line refusal on the page."""
    try:
        return config.check(path, extra_roots)
    except DashboardError as exc:
        # The message names what was given (escaped), or the list entry shown; never a resolved path.
        st.error(f"{shown}: outside the scanned directories; refused" if shown else str(exc))
        return None
