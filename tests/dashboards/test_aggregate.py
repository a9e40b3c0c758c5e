"""Views that stay bounded at any number of stored runs: the latest measured run of each config, counts of
every run, tables capped with a count. What SQL picks from a database (both backends) equals what
latest_per_config picks from the same rows in memory."""

from __future__ import annotations

import pytest
from dashboard_samples import TINY, result_row

from dashboards import common, gather
from dashboards.common import RunSet, latest_per_config
from dashboards.gather import records_of, stored_runs
from dashboards.report import build_html, memory_figures
from orchestrator.spec import expand
from orchestrator.store.records import Filters
from orchestrator.store.repository import Store

MIB = 2**20
GRID = {"model": ["transformer", "phase8"], "seq_len": [16, 32]}


def record(store: Store, run, status: str, weights_mib: int = 1) -> None:
    metrics = {"weights_bytes": weights_mib * MIB, "activation_bytes": MIB} if status == "ok" else {}
    store.record_result(run.id, {"status": status, "params": 10, **metrics})


@pytest.fixture
def stored(db_url):
    """Four batches over five configs: "first" measures four; "second" reruns them (transformer and phase8 at
    16 measured again at 5 MiB, transformer at 32 failed, phase8 at 32 left pending); "third" runs transformer
    at 64, which fails; "fourth" submits the four again and skips them all (each has an ok result)."""
    store = Store(db_url)
    first = store.create_batch(expand({"name": "first", "defaults": TINY, "grid": GRID}))
    for run in store.reset_unfinished(first.id):
        record(store, run, "ok")
    second = store.create_batch(expand({"name": "second", "defaults": TINY, "grid": GRID}), rerun=True)
    for run in store.reset_unfinished(second.id):
        if run.config["seq_len"] == 16:
            record(store, run, "ok", weights_mib=5)
        elif run.model == "transformer":
            record(store, run, "failed")
    grid = {"model": ["transformer"], "seq_len": [64]}
    third = store.create_batch(expand({"name": "third", "defaults": TINY, "grid": grid}))
    record(store, store.reset_unfinished(third.id)[0], "failed")
    store.create_batch(expand({"name": "fourth", "defaults": TINY, "grid": GRID}))
    yield db_url, store
    store.close()


def picked(rows) -> list[tuple[str, str, int]]:
    return [(r["batch"], r["model"], r["config"]["seq_len"]) for r in rows]


def same_runs(a: RunSet, b: RunSet) -> None:
    assert [r["run_id"] for r in a.recent] == [r["run_id"] for r in b.recent]
    assert [r["run_id"] for r in a.configs] == [r["run_id"] for r in b.configs]
    assert (a.counts, a.n_configs, a.batches) == (b.counts, b.n_configs, b.batches)


def test_sql_picks_the_latest_measured_run_of_each_config_as_in_memory(stored):
    _, store = stored
    runs = stored_runs(store, Filters())
    assert picked(runs.configs) == [
        ("first", "transformer", 32),  # its rerun failed: the measured run stays
        ("first", "phase8", 32),  # its rerun is pending
        ("second", "transformer", 16),
        ("second", "phase8", 16),
        ("third", "transformer", 64),  # never measured: its last finished run
    ]  # the later skipped runs of "fourth" show these same results: the ok runs are preferred
    assert runs.total == 13 and runs.n_configs == 5 and runs.batches == ("first", "fourth", "second", "third")
    assert runs.counts[("transformer", "inference", "cpu", "failed")] == 2
    assert runs.counts[("phase8", "inference", "cpu", "skipped")] == 2
    same_runs(runs, RunSet.of(store.rows()))
    for batch in ("second", "fourth"):  # "fourth" alone: its skipped runs stand for their configs
        selected = Filters(batch=(batch,))
        same_runs(stored_runs(store, selected), RunSet.of(store.rows(selected)))
    assert {r["status"] for r in stored_runs(store, Filters(batch=("fourth",))).configs} == {"skipped"}
    one = store.rows()[5]
    assert records_of(store, Filters(), {one["run_id"]}) == [one]  # only the runs asked for are read


def test_caps_keep_the_latest_and_the_page_says_how_many_there_are(stored, monkeypatch):
    db, store = stored
    for module in (common, gather):
        monkeypatch.setattr(module, "RECENT_RUNS", 3)
        monkeypatch.setattr(module, "CONFIGS", 2)
    runs = stored_runs(store, Filters())
    assert [(r["batch"], r["index"]) for r in runs.recent] == [("fourth", 1), ("fourth", 2), ("fourth", 3)]
    assert picked(runs.configs) == [("second", "phase8", 16), ("third", "transformer", 64)]
    assert runs.total == 13 and runs.n_configs == 5
    same_runs(runs, RunSet.of(store.rows()))
    page = build_html(gather.gather(db))
    assert "Showing 3 of 13 runs (the latest)." in page and "Showing 2 of 5 configs (the latest)." in page
    assert page.count('class="pb-detail"') == 3  # the run table lists (and details) only the latest runs


def test_memory_view_draws_one_bar_per_config_from_its_latest_ok_run(stored):
    """A config measured in two batches is one bar, the later measurement; a failed rerun leaves the earlier."""
    _, store = stored
    for rows in (gather.gather(stored[0]).runs.configs, store.rows()):  # picked in SQL, or by the view itself
        (figure,) = memory_figures(rows)
        weights = {trace.name: dict(zip(trace.x, trace.y, strict=True)) for trace in figure.data}
        assert weights["transformer weights"] == {
            "d32 L1 N16 B1": pytest.approx(5 / 1024),
            "d32 L1 N32 B1": pytest.approx(1 / 1024),
        }
        assert [len(trace.x) for trace in figure.data if trace.name.endswith("weights")] == [2, 2]


def test_memory_view_deduplicates_rows_in_memory_by_config_hash():
    first = result_row("phase8", batch="b1", weights_bytes=MIB, peak_bytes=2 * MIB, activation_bytes=MIB)
    rerun = first | {"run_id": "rerun", "batch": "b2", "weights_bytes": 3 * MIB}
    failed = first | {"run_id": "failed", "batch": "b3", "status": "failed", "weights_bytes": 9 * MIB}
    (figure,) = memory_figures([first, rerun, failed])
    assert [list(trace.y) for trace in figure.data] == [[3 / 1024], [2 / 1024], [1 / 1024]]
    assert [r["run_id"] for r in latest_per_config([first, rerun, failed])] == ["rerun"]


def test_exported_rows_join_the_database_runs_they_are_not_in(stored):
    db, store = stored
    stored_rows = store.rows()
    extra = result_row("phase7", batch="exported", weights_bytes=MIB, activation_bytes=MIB)
    data = gather.gather(db, exported=[stored_rows[0], extra])  # the first is the database's own run
    assert data.runs.total == 14 and data.runs.n_configs == 6 and "exported" in data.runs.batches
    assert data.runs.recent[-1] is extra and data.runs.configs[-1] is extra
    only = gather.gather(None, batches=["exported"], exported=[stored_rows[0], extra], read_db=False)
    assert [r["run_id"] for r in only.runs.recent] == [extra["run_id"]] and only.runs.total == 1
