"""The result store on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from db_helpers import count

from orchestrator.errors import UserError
from orchestrator.spec import expand
from orchestrator.store.edits import delete_runs, plan_deletion, set_note, tag_batch, tag_runs, untag_runs
from orchestrator.store.engine import VERSION_TABLE, current_revision, make_engine
from orchestrator.store.migrate import head_revision, include_name, upgrade
from orchestrator.store.records import RECORD_FIELDS
from orchestrator.store.repository import MAX_ERROR_CHARS, Filters, Store
from orchestrator.store.schema import Base, Result, Run
from orchestrator.store.where import parse_where

TINY = {"vocab_size": 256, "d_model": 64, "n_layers": 2, "n_heads": 4, "device": "cpu"}


def tiny_spec(name="t", **grid):
    return expand(
        {
            "name": name,
            "defaults": TINY,
            "grid": {"model": ["transformer", "phase8-seed"], "mode": ["inference", "train"]} | grid,
        }
    )


def ok_outcome(**metrics):
    return {
        "status": "ok",
        "stage": "done",
        "params": 10,
        "tokens_per_s": 123.0,
        "weights_bytes": 40,
        "environment": {
            "hostname": "h",
            "device": "cpu",
            "torch": "x",
            "python": "3",
            "git_commit": "abc",
            "git_dirty": False,
            "details": {},
        },
        "node_id": "node-1",
    } | metrics


def test_upgrade_head_on_empty_db_and_no_autogenerate_diff(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": VERSION_TABLE, "include_name": include_name}
            ),
            Base.metadata,
        )
    assert diff == []
    tables = set(sa.inspect(engine).get_table_names())
    assert {"pb_batches", "pb_runs", "pb_results", "pb_environments", "pb_run_tags", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # Optuna's default version table stays free


def test_round_trip(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    runs = store.reset_unfinished(batch.id)
    assert len(runs) == 4 and [r.index for r in runs] == [0, 1, 2, 3]
    store.mark_running(runs[0].id)
    assert store.record_result(runs[0].id, ok_outcome(peak_bytes=7, extra={"k": [1, 2]}))
    rows = store.rows(Filters(batch=(str(batch.id),)))
    assert [r["status"] for r in rows] == ["ok", "pending", "pending", "pending"]
    first = rows[0]
    assert first["tokens_per_s"] == 123.0 and first["peak_bytes"] == 7 and first["extra"] == {"k": [1, 2]}
    assert first["hostname"] == "h" and first["git_commit"] == "abc" and first["node_id"] == "node-1"
    assert first["config"]["d_model"] == 64 and first["attempts"] == 1
    store.close()


def test_result_written_once(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    run = store.reset_unfinished(batch.id)[0]
    assert store.record_result(run.id, ok_outcome())
    assert not store.record_result(run.id, ok_outcome(tokens_per_s=999.0))
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Result)) == 1
        assert s.get(Result, run.id).tokens_per_s == 123.0
    store.close()


def test_a_result_stored_between_the_check_and_the_insert_is_kept_once(db_url, monkeypatch):
    """Two writers can both find no result and both insert (SQLite takes its write lock at the insert; two
    study drivers cancelled at once did): the unique run id refuses the second, which then reports the run
    as already stored instead of raising."""
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    run = store.reset_unfinished(batch.id)[0]
    assert store.record_result(run.id, ok_outcome())  # the other writer's
    real_get, stale = sa.orm.Session.get, []

    def get_before_the_other_commit(session, entity, ident, *args, **kwargs):
        if entity is Result and not stale:
            stale.append(ident)
            return None
        return real_get(session, entity, ident, *args, **kwargs)

    monkeypatch.setattr(sa.orm.Session, "get", get_before_the_other_commit)
    assert not store.record_result(run.id, ok_outcome(tokens_per_s=999.0))
    monkeypatch.undo()
    assert stale == [run.id]
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Result)) == 1
        assert s.get(Result, run.id).tokens_per_s == 123.0
    store.close()


def test_a_huge_error_message_is_stored_cut_to_its_bound(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    run = store.reset_unfinished(batch.id)[0]
    store.record_result(run.id, {"status": "failed", "stage": None, "error": "RuntimeError: " + "x" * 619_000})
    with store.session() as s:
        error = s.get(Result, run.id).error
    assert len(error) == MAX_ERROR_CHARS and error.startswith("RuntimeError: x") and error.endswith("(cut off)")
    store.close()


def test_environment_rows_are_shared(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    for run in store.reset_unfinished(batch.id):
        store.record_result(run.id, ok_outcome())
    with store.session() as s:
        assert s.scalar(sa.text("SELECT count(*) FROM pb_environments")) == 1
    store.close()


def test_finished_configs_are_skipped_unless_rerun(db_url):
    store = Store(db_url)
    first = store.create_batch(tiny_spec())
    runs = store.reset_unfinished(first.id)
    store.record_result(runs[0].id, ok_outcome())
    store.record_result(runs[1].id, {"status": "failed", "stage": "forward", "error": "boom"})
    store.record_result(runs[2].id, {"status": "oom", "stage": "backward", "error": "OOM"})
    second = store.create_batch(tiny_spec())
    statuses = [r.status for r in store.reset_unfinished(second.id)]
    assert statuses == ["pending", "pending"]  # the failed run and the never-run one
    rows = store.rows(Filters(batch=(str(second.id),)))
    assert [r["status"] for r in rows] == ["skipped", "pending", "skipped", "pending"]
    assert rows[0]["tokens_per_s"] == 123.0 and rows[0]["reused_run_id"] == runs[0].id
    third = store.create_batch(tiny_spec(), rerun=True)
    assert len(store.reset_unfinished(third.id)) == 4
    store.close()


def test_a_bumped_model_version_is_measured_anew_and_shown(db_url, monkeypatch):
    """After a model's math changes (its registry version), the same knobs are not served from the cache."""
    import dataclasses

    from models import registry

    store = Store(db_url)
    first = store.create_batch(tiny_spec())
    for run in store.reset_unfinished(first.id):
        store.record_result(run.id, ok_outcome())
    entry = registry.get("phase8-seed")
    monkeypatch.setitem(registry._REGISTRY, "phase8-seed", dataclasses.replace(entry, version=entry.version + 1))
    second = store.create_batch(tiny_spec())
    rows = store.rows(Filters(batch=(str(second.id),)))
    assert [(r["model"], r["status"]) for r in rows] == [
        ("transformer", "skipped"),
        ("transformer", "skipped"),
        ("phase8-seed", "pending"),
        ("phase8-seed", "pending"),
    ]
    assert [r["model_version"] for r in rows] == [1, 1, entry.version + 1, entry.version + 1]
    store.close()


def test_filters_and_where_are_bound_parameters(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec(seq_len=[32, 64]))
    assert len(store.rows(Filters(model=("phase8-seed",)))) == 4
    assert len(store.rows(Filters(where=(("seq_len", 32),)))) == 4
    assert len(store.rows(Filters(where=(("seq_len", 32), ("mode", "train"))))) == 2
    assert len(store.rows(Filters(where=(("causal", True),)))) == 4  # transformer is causal
    hostile = ["x' OR '1'='1", "1; DROP TABLE pb_runs; --", "') OR 1=1 --"]
    for value in hostile:
        assert store.rows(Filters(where=(("model", value),))) == []
        assert store.rows(Filters(model=(value,), batch=(value,))) == []
    assert len(store.rows(Filters(batch=(str(batch.id), "t")))) == 8  # the tables are intact
    store.close()


def test_find_batch(db_url):
    store = Store(db_url)
    a = store.create_batch(tiny_spec("alpha"))
    b = store.create_batch(tiny_spec("alpha"))
    assert store.find_batch("alpha").id == b.id
    assert store.find_batch(str(a.id)).id == a.id
    with pytest.raises(UserError, match="no batch named or numbered 'beta'"):
        store.find_batch("beta")
    store.close()


def test_newer_and_older_schema_refused(db_url):
    Store(db_url).close()
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num='9999_future'")
    with pytest.raises(UserError, match="newer than this phasebench"):
        Store(db_url)
    engine.dispose()


def test_empty_database_not_created_when_reading(sqlite_url, tmp_path):
    with pytest.raises(UserError, match="no phasebench tables"):
        Store(sqlite_url, create=False)


def test_unusable_sqlite_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path}/missing/dir/pb.db")
    with pytest.raises(UserError, match="not a valid database URL"):
        make_engine("::not a url::")


def test_sqlite_uses_wal_and_busy_timeout(sqlite_url):
    store = Store(sqlite_url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30000
    store.close()


def test_run_ids_are_unique_per_batch_index(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    with store.session() as s:
        runs = s.scalars(sa.select(Run).where(Run.batch_id == batch.id)).all()
    assert len({r.id for r in runs}) == 4
    store.close()


def test_concurrent_first_opens_migrate_once(db_url):
    """Several driver processes opening the same empty database at once: one migrates, the others wait
    (PostgreSQL advisory lock) or retry (SQLite), and nobody fails."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys; from orchestrator.store.repository import Store; Store(sys.argv[1]).close()"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").all() == [(head_revision(),)]
    engine.dispose()


def test_a_locked_sqlite_file_is_retried_until_the_busy_timeout(tmp_path, monkeypatch):
    """SQLite can answer "database is locked" at once, its busy handler skipped (another process switching a new
    file to WAL; a wait that could deadlock): the revision read is retried, and any other error is not."""
    import sqlite3

    from orchestrator.store import engine as engine_module

    store_engine = make_engine(f"sqlite:///{tmp_path / 'pb.db'}")
    upgrade(store_engine)
    read = engine_module._stored_revision
    answers = []

    def locked_twice(engine):
        answers.append(len(answers))
        if len(answers) <= 2:
            raise sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))
        return read(engine)

    monkeypatch.setattr(engine_module, "_stored_revision", locked_twice)
    assert current_revision(store_engine) == head_revision() and len(answers) == 3

    def broken(engine):
        answers.append(len(answers))
        raise sa.exc.DatabaseError("SELECT 1", {}, sqlite3.DatabaseError("file is not a database"))

    answers.clear()
    monkeypatch.setattr(engine_module, "_stored_revision", broken)
    with pytest.raises(UserError, match="file is not a database"):
        current_revision(store_engine)
    assert len(answers) == 1
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_S", 0)
    monkeypatch.setattr(engine_module, "_stored_revision", locked_twice)
    answers.clear()
    with pytest.raises(UserError, match="database is locked"):
        current_revision(store_engine)
    store_engine.dispose()


def test_a_restarted_attempt_replaces_the_curve_after_its_start(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    run = store.reset_unfinished(batch.id)[0]
    first = [{"kind": "train", "step": s, "tokens": s, "elapsed_s": 1.0, "loss": 9.0} for s in range(1, 6)]
    assert store.record_metrics(run.id, [{"kind": "restart", "step": 0}] + first) == 5
    assert store.record_metrics(run.id, first[:2]) == 0  # streamed twice: stored once
    again = [{"kind": "restart", "step": 2}] + [
        {"kind": "train", "step": s, "tokens": s, "elapsed_s": 2.0, "loss": 1.0} for s in range(3, 8)
    ]
    assert store.record_metrics(run.id, again) == 5
    curve = store.metrics(run.id)
    assert [(m["step"], m["loss"]) for m in curve] == [(1, 9.0), (2, 9.0)] + [(s, 1.0) for s in range(3, 8)]
    store.close()


def test_concurrent_writers_share_one_environment_row(db_url):
    """Two drivers storing results from the same machine at the same moment: one environment row."""
    import threading

    Store(db_url).close()
    stores = [Store(db_url) for _ in range(4)]
    runs = []
    for store in stores:
        batch = store.create_batch(tiny_spec(), rerun=True)
        runs.append(store.reset_unfinished(batch.id)[0].id)
    barrier, errors = threading.Barrier(4), []

    def write(store, run_id):
        barrier.wait()
        try:
            store.record_result(run_id, ok_outcome())
        except Exception as exc:  # noqa: BLE001  (asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, runs, strict=False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with stores[0].session() as s:
        assert s.scalar(sa.text("SELECT count(*) FROM pb_environments")) == 1
        assert s.scalar(sa.text("SELECT count(*) FROM pb_results")) == 4
    for store in stores:
        store.close()


def test_the_stage_migration_keeps_what_the_phase_column_held(db_url):
    """Results stored at revision 0003 (column `phase`) read back as `stage` after `db upgrade`."""
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        batches, runs, results = (
            sa.Table(t, sa.MetaData(), autoload_with=conn) for t in ("pb_batches", "pb_runs", "pb_results")
        )
        batch = conn.execute(
            batches.insert().values(name="old", description="", spec={}, status="done", created_at=now)
        )
        for i, phase in enumerate(["done", "backward", None]):
            conn.execute(
                runs.insert().values(
                    id=f"run{i}",
                    batch_id=batch.inserted_primary_key[0],
                    index=i,
                    config_hash=f"{i:016x}",
                    config={"model": "transformer"},
                    model="transformer",
                    mode="train",
                    device="cpu",
                    params=1,
                    status="oom",
                    attempts=1,
                    created_at=now,
                )
            )
            conn.execute(results.insert().values(run_id=f"run{i}", status="oom", phase=phase, extra={}, created_at=now))
    upgrade(engine)
    engine.dispose()
    store = Store(db_url, create=False)
    assert [r["stage"] for r in store.rows()] == ["done", "backward", None]
    store.close()


def test_a_record_holds_every_field_where_compares(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    store.record_result(store.reset_unfinished(batch.id)[0].id, ok_outcome())
    for record in store.rows():
        assert set(record) == set(RECORD_FIELDS) | {"tags", "config", "extra"}
    store.close()


def test_where_conditions_compare_what_a_record_shows(db_url):
    """Comparisons on result fields, config fields and tags; a skipped run is compared on the result it
    reuses; a run without the field matches only `!=`."""
    store = Store(db_url)
    first = store.create_batch(tiny_spec(seq_len=[32, 64]))
    runs = store.reset_unfinished(first.id)  # transformer then phase8-seed, inference then train, 32 then 64
    for i, run in enumerate(runs[:4]):
        store.record_result(run.id, ok_outcome(tokens_per_s=100.0 * (i + 1)))
    store.record_result(runs[4].id, {"status": "oom", "stage": "backward", "error": "OOM"})
    store.create_batch(tiny_spec(seq_len=[32, 64]))  # reuses the five finished configs
    tag_runs(store, [runs[0].id, runs[5].id], ["fast"])

    def selected(*conditions):
        return [(r["batch_id"], r["index"]) for r in store.rows(Filters(where=parse_where(conditions)))]

    assert selected("tokens_per_s>=300") == [(1, 2), (1, 3), (2, 2), (2, 3)]
    assert selected("stage=backward") == [(1, 4), (2, 4)]
    assert selected("status!=ok", "batch_id=1") == [(1, i) for i in range(4, 8)]
    assert selected("model in phase8-seed,gpt", "seq_len<64", "mode=train") == [(1, 6), (2, 6)]
    assert selected("tokens_per_s!=100", "batch_id=1") == [(1, i) for i in range(1, 8)]
    assert selected("tokens_per_s<150") == [(1, 0), (2, 0)]
    assert selected("tag=fast") == [(1, 0), (1, 5)]
    assert selected("tag in slow,fast", "tag!=fast") == []
    assert len(selected("precision=fp32", "causal=true")) == 8  # the seed stand-ins are not causal
    store.close()


def test_where_names_an_unknown_field_and_a_value_of_the_wrong_type():
    for conditions, message in [
        (["seqlen>=3"], "--where: unknown field 'seqlen'"),
        (["seq_len>=many"], "--where: seq_len is a number (got 'many')"),
        (["causal=3"], "--where: causal is true or false (got '3')"),
        (["tag<a"], "--where: tag takes =, != or in (got '<')"),
        (["seq_len"], "--where: expected FIELD OP VALUE"),
        ({"seqlen": 3}, "--where: unknown field 'seqlen'"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)) as info:
            parse_where(conditions)
        assert isinstance(info.value, ValueError)  # the Python API's callers catch a ValueError


def test_tags_and_notes_are_shown_on_the_records(db_url):
    store = Store(db_url)
    batch = store.create_batch(tiny_spec())
    ids = [r.id for r in store.reset_unfinished(batch.id)]
    assert tag_runs(store, ids[:2], ["b", "a"]) == 4
    assert tag_runs(store, ids[:3], ["a"]) == 1  # a tag a run has is kept once
    assert tag_batch(store, batch.id, ["all"]) == 4
    assert untag_runs(store, ids, "b") == 2
    set_note(store, ids[0], "first try")
    records = store.rows()
    assert [r["tags"] for r in records] == [["a", "all"], ["a", "all"], ["a", "all"], ["all"]]
    assert [r["note"] for r in records] == ["first try", None, None, None]
    set_note(store, ids[0], "")
    assert store.rows()[0]["note"] is None
    for bad in ("", "two words", "a,b", "x" * 101):
        with pytest.raises(UserError, match="tag: .* is not 1 to 100 letters"):
            tag_runs(store, ids, [bad])
    with pytest.raises(UserError, match="note: at most"):
        set_note(store, ids[0], "x" * 2001)
    store.close()


def test_deleting_a_run_takes_the_runs_reusing_it_and_their_data(db_url):
    store = Store(db_url)
    first = store.create_batch(tiny_spec())
    runs = store.reset_unfinished(first.id)
    for run in runs[:2]:
        store.record_result(run.id, ok_outcome())
    store.record_metrics(runs[0].id, [{"kind": "train", "step": 1, "tokens": 1, "elapsed_s": 1.0}])
    tag_runs(store, [runs[0].id, runs[1].id], ["keep"])
    second = store.create_batch(tiny_spec())  # its runs 0 and 1 reuse runs[0] and runs[1]
    reusing = store.rows(Filters(batch=(str(second.id),)))[0]["run_id"]
    with store.session() as s, s.begin():  # a study trial answered from the same result
        s.add(
            Run(
                id="trial3",
                batch_id=second.id,
                index=99,
                config_hash=runs[0].config_hash,
                config=runs[0].config,
                model=runs[0].model,
                mode=runs[0].mode,
                device="cpu",
                params=1,
                status="skipped",
                reused_run_id=runs[0].id,
                study_name="search",
                trial_number=3,
            )
        )
    plan = plan_deletion(store, [runs[0].id, runs[0].id])
    assert plan.run_ids == (runs[0].id,) and set(plan.reusing) == {reusing, "trial3"}
    assert plan.metrics == 1 and plan.trials == (("search", 3),)
    store.mark_running(runs[2].id)
    with pytest.raises(UserError, match=f"run: {runs[2].id[:10]} is running"):
        delete_runs(store, [runs[0].id, runs[2].id])
    assert delete_runs(store, [runs[0].id]) == plan
    remaining = {r["run_id"] for r in store.rows()}
    assert len(remaining) == 6 and remaining.isdisjoint(plan.removed)
    assert [count(db_url, f"SELECT count(*) FROM {t}") for t in ("pb_results", "pb_train_metrics", "pb_run_tags")] == [
        1,
        0,
        1,
    ]
    store.close()
