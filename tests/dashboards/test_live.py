"""The live dashboard: the page served once, its figures and views updated from figures.json, the report
built again only when the database changes, GET and HEAD answered; served by uvicorn on loopback."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from dashboard_samples import TINY
from starlette.testclient import TestClient

from dashboards import live
from dashboards.live import LiveReport, live_app, make_server
from orchestrator.spec import expand
from orchestrator.store.repository import Store

ENVIRONMENT = {
    "hostname": "vm",
    "device": "cpu",
    "torch": "9.9.9-test",
    "python": "3.12",
    "git_commit": "c0ffee",
    "details": {"platform": "linux"},
}


@pytest.fixture
def client(db_url):
    """(Store, the runs of a two-run batch named like HTML, a client of the live app over that database)."""
    store = Store(db_url)
    batch = store.create_batch(
        expand({"name": "<b>live</b>", "defaults": TINY, "grid": {"model": ["transformer", "phase7-seed"]}})
    )
    report = LiveReport(db_url, (), [], refresh_s=5)
    with TestClient(live_app(report)) as client:
        yield store, store.reset_unfinished(batch.id), client
    report.close()
    store.close()


def measured(store: Store, run_id: str, weights: int = 2**20) -> None:
    store.record_result(
        run_id,
        {"status": "ok", "params": 10, "weights_bytes": weights, "activation_bytes": 2**19, "environment": ENVIRONMENT},
    )


def embedded_data(page: str) -> dict:
    start = page.index('<script type="application/json" id="pb-live-data">') + len(
        '<script type="application/json" id="pb-live-data">'
    )
    return json.loads(page[start : page.index("</script>", start)])


def test_the_page_loads_plotly_once_polls_for_figures_and_answers_head(client):
    _, _, http = client
    page = http.get("/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = page.text
    assert '<meta http-equiv="refresh"' not in text  # no reloads: the script asks for figures.json
    assert 'fetch("figures.json?since="' in text and "setTimeout(poll, 5000)" in text
    assert '<script src="plotly.min.js"></script>' in text and len(text) < 500_000  # plotly.js is not in it
    assert "&lt;b&gt;live&lt;/b&gt;" in text and "<b>live</b>" not in text
    assert embedded_data(text)["figures"] == [] and text.count('class="pb-figure"') == 0  # nothing measured
    head = http.head("/")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"].startswith("text/html")
    assert http.head("/figures.json").status_code == 200
    plotly = http.get("/plotly.min.js")
    assert plotly.status_code == 200 and "plotly.js v" in plotly.text[:1000]
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert http.get("/../etc/passwd").status_code == 404 and http.post("/").status_code == 405


def test_figures_json_reflects_a_newly_stored_run(client):
    store, runs, http = client
    first = http.get("/figures.json").json()
    assert first["figures"] == [] and "pending" in first["views"]["runs"]
    assert http.get("/figures.json", params={"since": first["marker"]}).json() == {"marker": first["marker"]}
    measured(store, runs[0].id, weights=3 * 2**20)
    second = http.get("/figures.json", params={"since": first["marker"]}).json()
    assert second["marker"] != first["marker"]
    memory, breakdown = second["figures"]  # the new result's memory bars and its stacked breakdown
    weights = next(trace for trace in memory["data"] if trace["name"].endswith(" weights"))
    assert weights["y"] == [3 / 1024] and "Memory by config and model" in memory["layout"]["title"]["text"]
    assert [trace["name"] for trace in breakdown["data"]][0] == "weights"
    assert 'id="pb-plot-0"' in second["views"]["memory"] and "9.9.9-test" in second["views"]["runs"]
    changed = {key for key in second["versions"] if second["versions"][key] != first["versions"][key]}
    assert changed == {"runs", "seed", "memory", "breakdown"}  # kernels, scaling, training, studies are unchanged
    page = http.get("/").text
    assert embedded_data(page)["marker"] == second["marker"] and page.count('class="pb-figure"') == 2


def test_the_report_is_built_again_only_when_the_database_changes(client, monkeypatch):
    store, runs, http = client
    real, builds = live.database_data, []

    def counted(*args):
        builds.append(args)
        return real(*args)

    monkeypatch.setattr(live, "database_data", counted)
    for path in ("/", "/figures.json", "/", "/figures.json"):
        assert http.get(path).status_code == 200
    assert len(builds) == 1
    store.mark_running(runs[0].id)  # a run starts
    http.get("/figures.json")
    measured(store, runs[0].id)  # and finishes
    http.get("/")
    store.record_metrics(runs[1].id, [{"kind": "train", "step": 1, "tokens": 8, "elapsed_s": 0.1, "loss": 2.0}])
    http.get("/figures.json")
    http.get("/")
    assert len(builds) == 4


def test_served_by_uvicorn_on_loopback_get_and_head(sqlite_url):
    Store(sqlite_url).close()
    server = make_server(sqlite_url, port=0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/", timeout=30) as response:
            assert response.status == 200 and "figures.json" in response.read().decode()
        with urllib.request.urlopen(urllib.request.Request(base + "/", method="HEAD"), timeout=30) as response:
            assert response.status == 200 and response.read() == b""
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/../etc/passwd", timeout=30)
        assert info.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
    assert not thread.is_alive()
    taken = make_server(sqlite_url, port=0)
    try:
        with pytest.raises(OSError):  # the port is taken: make_server fails at once, before serving
            make_server(sqlite_url, port=taken.server_address[1])
    finally:
        taken.server_close()
