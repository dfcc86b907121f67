from dashboard.corpus_page import render

render()
