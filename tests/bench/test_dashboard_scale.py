"""bench/dashboard_scale.py at a small size: the copies are distinct configs with the templates' fields, a
skipped copy reuses the run before it, and the build in a child process is measured (nothing is timed here)."""

from __future__ import annotations

from collections import Counter

from bench import dashboard_scale
from orchestrator.store.repository import Store


def test_the_bench_fills_distinct_configs_and_measures_a_build(tmp_path):
    row = dashboard_scale.measure(250, tmp_path)
    html = tmp_path / "scale-250.html"
    assert row["runs"] == 250 and row["html_bytes"] == html.stat().st_size > 1_000_000
    assert row["stdout"] == f"wrote {html} (250 runs)" and row["wall_s"] > 0 and row["peak_rss_bytes"] > 2**20
    store = Store(f"sqlite:///{tmp_path / 'scale-250.db'}", create=False)
    try:
        rows = store.rows()
    finally:
        store.close()
    statuses = Counter(r["status"] for r in rows)
    assert {"ok", "oom", "skipped", "pending"} <= set(statuses) and len({r["batch"] for r in rows}) == 3
    reused = [r for r in rows if r["status"] == "skipped"]
    assert all(r["reused_run_id"] == rows[i - 1]["run_id"] for i, r in enumerate(rows) if r["status"] == "skipped")
    hashes = Counter(r["config_hash"] for r in rows)
    assert len(hashes) == len(rows) - len(reused) and max(hashes.values()) == 2
    templates = {r["config"]["d_model"] for r in dashboard_scale.templates()}
    assert {r["config"]["d_model"] for r in rows} == templates  # every template's shape is copied
