"""affectcam dashboard: `streamlit run streamlit_app.py`.

Pages live in dashboard/pages/ (thin scripts) and dashboard/*_page.py (the
code). The sidebar takes the directories to scan; see dashboard/config.py.
"""

from pathlib import Path

import streamlit as st

from dashboard.common import sidebar_config

HERE = Path(__file__).resolve().parent

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
