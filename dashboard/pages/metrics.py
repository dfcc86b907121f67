from dashboard.metrics_page import render

render()
