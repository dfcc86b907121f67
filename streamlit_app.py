"""affectcam dashboard: `streamlit run streamlit_app.py` (or `python -m dashboard`, which
checks the launch options before the server starts).

Pages live in dashboard/pages/ (thin scripts) and dashboard/*_page.py (the
code). The sidebar takes the directories to scan; see dashboard/config.py.
"""

import os
import sys
from pathlib import Path

import streamlit as st

from dashboard.common import sidebar_config, under_streamlit_run
from dashboard.config import DashboardError, owner_settings

HERE = Path(__file__).resolve().parent

try:
    owner_settings()
except DashboardError as exc:
    # A malformed dashboard.toml or option: the server refuses to run (one line, status 2)
    # rather than show the error on every page to every visitor.
    if under_streamlit_run():
        print(f"dashboard: {exc}; not serving", file=sys.stderr, flush=True)
        os._exit(2)
    st.error(f"dashboard: {exc}")
    st.stop()

st.set_page_config(page_title="affectcam", page_icon="🙂", layout="wide")
page = st.navigation([
    st.Page(HERE / "dashboard/pages/live.py", title="Live", default=True),  # the default page is at /
    st.Page(HERE / "dashboard/pages/session.py", title="Session", url_path="session"),
    st.Page(HERE / "dashboard/pages/corpus.py", title="Corpus", url_path="corpus"),
    st.Page(HERE / "dashboard/pages/metrics.py", title="Test-set metrics", url_path="metrics"),
    st.Page(HERE / "dashboard/pages/model.py", title="Model", url_path="model"),
])
sidebar_config()
page.run()
