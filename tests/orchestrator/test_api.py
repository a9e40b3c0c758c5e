"""The notebook API over a real result database: the committed H200 long-context batch (a copy, migrated
to the head revision as `phasebench db upgrade` does)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from db_helpers import query

from orchestrator import api
from orchestrator.store.engine import make_engine
from orchestrator.store.migrate import upgrade

DB = Path(__file__).resolve().parents[2] / "results" / "long-context" / "long-context.db"


@pytest.fixture
def url(tmp_path):
    shutil.copy(DB, tmp_path / "lc.db")
    url = f"sqlite:///{tmp_path / 'lc.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_the_api_reports_the_stage_each_committed_run_reached(url):
    """The committed evidence was upgraded in place (`phase` renamed `stage`, its values kept)."""
    stored = query(url, "SELECT run_id, stage FROM pb_results ORDER BY run_id")
    assert stored and {stage for _, stage in stored} >= {"done"}
    by_run = {r["run_id"]: r["stage"] for r in api.results(url) if r["status"] != "skipped"}
    assert all(by_run[run_id] == stage for run_id, stage in stored)


def test_filters_combine_and_match_the_configs(url):
    rows = api.results(url, model=["phase7"], mode=["train"], status=["ok"], where={"seq_len": 16384})
    assert rows and {r["model"] for r in rows} == {"phase7"}
    assert all(r["config"]["seq_len"] == 16384 and r["mode"] == "train" for r in rows)
    assert len(rows) == len({r["run_id"] for r in rows})
    by_batch = api.results(url, batch=["long-context-1.3b"])
    stored = query(
        url,
        "SELECT count(*) FROM pb_results r JOIN pb_runs u ON u.id = r.run_id JOIN pb_batches b ON b.id = u.batch_id "
        "WHERE b.name = 'long-context-1.3b'",
    )[0][0]
    assert 0 < len(by_batch) == stored and all(r["config"]["d_model"] == 2048 for r in by_batch)


def test_results_frame_is_the_records_as_a_dataframe(url):
    import pandas  # noqa: F401  (the test extra installs it)

    rows = api.results(url, status=["ok"])
    frame = api.results_frame(url, status=["ok"])
    assert len(frame) == len(rows) and {"run_id", "model", "tokens_per_s", "seq_len", "d_model"} <= set(frame.columns)
    assert "config" not in frame.columns and "extra" not in frame.columns
    by_id = frame.set_index("run_id")
    assert all(by_id.loc[r["run_id"], "seq_len"] == r["config"]["seq_len"] for r in rows)
    assert sorted(frame["run_id"]) == sorted(r["run_id"] for r in rows)
    assert (frame["tokens_per_s"] > 0).all()


def test_a_single_filter_value_is_one_value_and_an_unknown_field_an_error(url):
    assert api.results(url, model="phase7") == api.results(url, model=["phase7"]) != []
    with pytest.raises(ValueError, match="where: unknown field 'seqlen'"):
        api.results(url, where={"seqlen": 16384})
    with pytest.raises(ValueError, match="where: unknown field 'seqlen'"):
        api.results(url, where="seqlen>=16384")
    with pytest.raises(ValueError, match="where: seq_len is a number"):
        api.results(url, where=["seq_len>=long"])


def test_where_takes_the_expressions_of_the_command_line(url):
    rows = api.results(url)
    long_ok = api.results(url, where=["seq_len>=16384", "status=ok", "model in phase7,phase8"])
    assert long_ok == [
        r
        for r in rows
        if r["config"]["seq_len"] >= 16384 and r["status"] == "ok" and r["model"] in ("phase7", "phase8")
    ]
    assert long_ok and api.results(url, where="seq_len>=16384") != long_ok
    not_ok = api.results(url, where="status!=ok")
    assert not_ok and all(r["status"] != "ok" for r in not_ok) and len(not_ok) < len(rows)
    fast = api.results(url, where=["tokens_per_s>1e5"])
    assert fast and all(r["tokens_per_s"] > 1e5 for r in fast)
    assert api.results(url, where={"seq_len": 16384}) == api.results(url, where="seq_len=16384")
