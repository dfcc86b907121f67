from dashboard.session_page import render

render()
