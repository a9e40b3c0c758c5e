"""The live dashboard: served on loopback, rebuilt from the database on every request."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from dashboards.live import make_server
from orchestrator.spec import expand
from orchestrator.store.repository import Store

TINY = {"vocab_size": 256, "d_model": 32, "n_layers": 1, "n_heads": 2, "device": "cpu"}


@pytest.fixture
def served(sqlite_url):
    store = Store(sqlite_url)
    batch = store.create_batch(
        expand({"name": "<b>live</b>", "defaults": TINY, "grid": {"model": ["transformer", "phase7-seed"]}})
    )
    server = make_server(sqlite_url, port=0, refresh_s=5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store, batch, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    store.close()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
        return response.read().decode()


def test_page_is_rebuilt_from_the_database_on_every_load(served):
    store, batch, base = served
    first = get(base + "/")
    assert '<meta http-equiv="refresh" content="5">' in first
    assert "&lt;b&gt;live&lt;/b&gt;" in first and "<b>live</b>" not in first
    assert first.count('class="pb-figure"') == 0  # nothing measured yet
    run = store.reset_unfinished(batch.id)[0]
    environment = {
        "hostname": "vm",
        "device": "cpu",
        "torch": "9.9.9-test",
        "triton": None,
        "driver": None,
        "python": "3.12",
        "git_commit": "c0ffee",
        "git_dirty": False,
        "details": {"platform": "linux"},
    }
    store.record_result(
        run.id,
        {
            "status": "ok",
            "phase": "done",
            "params": 10,
            "weights_bytes": 2**20,
            "activation_bytes": 2**19,
            "tokens_per_s": 5.0,
            "environment": environment,
        },
    )
    second = get(base + "/")
    assert second.count('class="pb-figure"') == 2  # the new result is there without restarting anything
    assert "9.9.9-test" in second and "from the result database" in second  # the stored environment, in details


def test_only_the_report_is_served_and_only_on_loopback(served):
    _, _, base = served
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/../etc/passwd", timeout=30)
    assert info.value.code == 404
    server = make_server(None, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
