"""The dashboard in a real browser (headless Chromium through selenium): the built file and the served
page load without console errors, every figure draws, the filters and the detail view work, a batch
named like a script stays text; a PNG of every view is kept under the test's tmp dir.

Needs Debian's `chromium` and `chromium-driver` (.ci/provision installs them): without them these tests
fail, they do not skip.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli
from dashboard_samples import EVIL, GIB, TINY, kernel_file, result_row, sweep_rows
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from dashboards.live import make_server
from dashboards.report import write_report
from dashboards.screenshots import CHROMEDRIVER, CHROMIUM, chromium, screenshot_view, view_ids, wait_for_figures
from dashboards.sources import read_kernels
from orchestrator.spec import expand
from orchestrator.store.repository import Store

ROWS = "#pb-run-table tbody tr"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver (bash .ci/provision)")
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def kernels_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kernels") / "kernels.json"
    path.write_text(json.dumps(kernel_file()))
    return path


@pytest.fixture(scope="module")
def built_page(tmp_path_factory, kernels_path) -> str:
    """The file:// URL of a dashboard built from an export (a sweep, GPU memory rows, an evil batch)."""
    folder = tmp_path_factory.mktemp("built")
    memory = [
        result_row(
            m,
            mode=mode,
            weights_bytes=GIB,
            static_bytes=static * GIB,
            peak_bytes=5 * GIB,
            activation_bytes=(5 - static) * GIB,
            logits_bytes=GIB // 8,
        )
        for m in ("transformer", "phase8")
        for mode, static in (("inference", 1), ("train", 3))
    ]
    export = folder / "export.json"
    export.write_text(json.dumps(sweep_rows() + memory + [result_row("phase7", device="cpu", batch=EVIL)]))
    out = folder / "index.html"
    code, _, err = run_cli(
        "dashboard", "build", "--from-export", str(export), "--kernels", str(kernels_path), "--out", str(out)
    )
    assert code == 0, err
    return out.as_uri()


@pytest.fixture(scope="module")
def served_url(tmp_path_factory, kernels_path):
    """The live page of a database holding a batch named like a script, with kernel results."""
    url = f"sqlite:///{tmp_path_factory.mktemp('served') / 'pb.db'}"
    store = Store(url)
    batch = store.create_batch(expand({"name": EVIL, "defaults": TINY, "grid": {"model": ["transformer", "phase8"]}}))
    for run in store.reset_unfinished(batch.id):
        store.record_result(
            run.id,
            {
                "status": "ok",
                "stage": "done",
                "params": 10,
                "weights_bytes": 2**20,
                "static_bytes": 2**20,
                "activation_bytes": 2**19,
                "tokens_per_s": 5.0,
                "environment": {
                    "hostname": "vm",
                    "device": "cpu",
                    "torch": "9.9.9-test",
                    "python": "3.12",
                    "git_commit": "c0ffee",
                },
            },
        )
    store.close()
    server = make_server(url, port=0, refresh_s=3600, kernels=read_kernels([str(kernels_path)]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def reload(browser, timeout_s: float = 30.0) -> None:
    """Reload and wait for the new document: `refresh` may return while the old one is still there."""
    browser.execute_script("window.pbOldDocument = true;")
    browser.refresh()
    deadline = time.monotonic() + timeout_s
    while browser.execute_script("return window.pbOldDocument === true || document.readyState !== 'complete';"):
        assert time.monotonic() < deadline, "the page did not reload"
        time.sleep(0.05)
    wait_for_figures(browser)


def load(browser, url: str) -> list[dict]:
    """Open `url` afresh (no remembered filters), wait for the figures; returns the SEVERE console lines."""
    browser.get(url)
    browser.execute_script("sessionStorage.clear();")
    browser.get_log("browser")  # drop what the first load logged: the second is the one checked
    reload(browser)
    return [line for line in browser.get_log("browser") if line["level"] == "SEVERE"]


def figures_drawn(browser) -> tuple[int, int]:
    plots = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    drawn = [p for p in plots if p.find_elements(By.CSS_SELECTOR, "svg.main-svg *")]
    return len(plots), len(drawn)


def visible_runs(browser) -> list[str]:
    return [
        line.get_attribute("data-model") for line in browser.find_elements(By.CSS_SELECTOR, ROWS) if line.is_displayed()
    ]


def test_built_file_loads_without_errors_and_draws_every_figure(browser, built_page, tmp_path_factory):
    assert load(browser, built_page) == []
    total, drawn = figures_drawn(browser)
    assert total == drawn == 6  # memory bars and breakdown (inference, train), scaling, kernels
    assert browser.execute_script("return window.pwned") is None
    browser.find_element(By.CSS_SELECTOR, ROWS).click()
    folder = tmp_path_factory.mktemp("screenshots")
    shots = [screenshot_view(browser, view, folder / f"{view}.png") for view in view_ids(browser)]
    assert [p.name for p in shots] == [
        f"pb-{v}.png" for v in ("runs", "seed", "memory", "breakdown", "scaling", "kernels", "training", "studies")
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 5000 for p in shots)


def test_served_page_loads_without_errors_and_shows_the_script_batch_as_text(browser, served_url):
    assert load(browser, served_url) == []
    total, drawn = figures_drawn(browser)
    assert total == drawn == 3  # memory bars, breakdown, kernels
    assert browser.execute_script("return window.pwned") is None
    cells = browser.find_elements(By.CSS_SELECTOR, f"{ROWS} td:first-child")
    assert [c.text for c in cells] == [EVIL, EVIL]
    cells[1].click()
    (shown,) = [d for d in browser.find_elements(By.CSS_SELECTOR, ".pb-detail") if d.is_displayed()]
    assert EVIL in shown.find_element(By.TAG_NAME, "h3").text
    assert "from the result database" in shown.text and "9.9.9-test" in shown.text and "c0ffee" in shown.text


def test_filters_change_the_visible_runs_and_survive_a_reload(browser, built_page):
    load(browser, built_page)
    everything = visible_runs(browser)
    assert len(everything) == len(sweep_rows()) + 5
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="model"]')).select_by_value("transformer")
    assert visible_runs(browser) == ["transformer"] * 6
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="status"]')).select_by_value("oom")
    assert visible_runs(browser) == ["transformer"]
    assert browser.find_element(By.ID, "pb-run-count").text == f"1 of {len(everything)} runs shown"
    reload(browser)  # the live page reloads itself: the choice is remembered for the session
    assert visible_runs(browser) == ["transformer"]
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="model"]')).select_by_value("")
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="status"]')).select_by_value("")
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="batch"]')).select_by_value(EVIL)
    assert visible_runs(browser) == ["phase7"]


def test_clicking_a_run_opens_its_detail_view(browser, built_page):
    load(browser, built_page)
    assert not [d for d in browser.find_elements(By.CSS_SELECTOR, ".pb-detail") if d.is_displayed()]
    lines = browser.find_elements(By.CSS_SELECTOR, ROWS)
    lines[-1].click()
    (shown,) = [d for d in browser.find_elements(By.CSS_SELECTOR, ".pb-detail") if d.is_displayed()]
    assert shown.find_element(By.TAG_NAME, "h3").text.startswith(f"Run {EVIL} #")
    assert "seq_len" in shown.text and "git_commit" in shown.text and "abc123" in shown.text
    assert "pb-selected" in lines[-1].get_attribute("class")
    assert browser.execute_script("return window.pwned") is None


def test_a_report_loading_a_shared_plotlyjs_opens_from_disk(browser, tmp_path):
    shared = tmp_path / "plotly.min.js"
    page = write_report(sweep_rows(), tmp_path / "reports" / "sweep.html", plotlyjs=shared)
    assert load(browser, page.as_uri()) == []
    assert figures_drawn(browser) == (1, 1)  # the sequence-length sweep, drawn by the shared plotly.js


def test_served_page_updates_in_place_when_a_run_finishes(browser, tmp_path):
    """A new result reaches the open page without a reload: its figure redrawn in the same element, the runs
    view replaced (status ok), no console error."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = Store(url)
    spec = {"name": "live", "defaults": TINY | {"model": "transformer"}, "grid": {"seq_len": [16, 32]}}
    batch = store.create_batch(expand(spec))
    first, second = store.reset_unfinished(batch.id)
    outcome = {"status": "ok", "params": 10, "weights_bytes": 2**20, "activation_bytes": 2**19}
    store.record_result(first.id, outcome)
    server = make_server(url, port=0, refresh_s=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert load(browser, f"http://127.0.0.1:{server.server_address[1]}/") == []
        browser.execute_script("window.pbSamePage = true; document.getElementById('pb-plot-0').pbSameSlot = true;")
        bars = "return document.getElementById('pb-plot-0').data[0].x.length;"
        assert browser.execute_script(bars) == 1
        store.record_result(second.id, outcome | {"weights_bytes": 2**21})
        deadline = time.monotonic() + 60  # a poll a second; the wait ends as soon as the bar is drawn
        while browser.execute_script(bars) != 2:
            assert time.monotonic() < deadline, "the new result never reached the page"
            time.sleep(0.1)
        assert browser.execute_script("return window.pbSamePage && document.getElementById('pb-plot-0').pbSameSlot;")
        assert [c.text for c in browser.find_elements(By.CSS_SELECTOR, f"{ROWS} td:nth-child(9)")] == ["ok", "ok"]
        assert [line for line in browser.get_log("browser") if line["level"] == "SEVERE"] == []
    finally:
        server.shutdown()
        server.server_close()
        store.close()
