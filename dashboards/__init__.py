"""Plotly reports of stored results: the HTML report and the live page (dashboards/live.py)."""
