from dashboard.live_page import render

render()
