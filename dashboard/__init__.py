"""The Streamlit dashboard's pages and helpers (`streamlit run streamlit_app.py`).

It reads what the other rooms write — recordings, run/eval directories,
model files — and never re-implements a metric or a crop.
"""
