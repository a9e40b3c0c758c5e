"""Result records: one flat dict per run (run, result, environment, tags, note), as every reader sees them.

A skipped run shows the result of the run it reused. :class:`Filters` selects runs in SQL (bound
parameters, never SQL text); its `where` conditions (:mod:`orchestrator.store.where`) are tested on the
built records by :meth:`orchestrator.store.repository.Store.rows`, so they compare what is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..legacy import stored_execution
from .schema import METRIC_COLUMNS, Batch, Environment, Result, Run, RunTag


@dataclass(frozen=True)
class Filters:
    """Result filters: each tuple holds one field's accepted values; `where` holds conditions
    (:class:`orchestrator.store.where.Condition`) or `(field, value)` pairs meaning equality."""

    model: tuple[str, ...] = ()
    mode: tuple[str, ...] = ()
    batch: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    device: tuple[str, ...] = ()
    where: tuple[Any, ...] = ()


#: every field of a record but `config`, `extra` and `tags` -> its type (what `--where` compares)
RECORD_FIELDS: dict[str, type] = {
    "run_id": str,
    "batch": str,
    "batch_id": int,
    "index": int,
    "model": str,
    "mode": str,
    "device": str,
    "status": str,
    "config_hash": str,
    "reused_run_id": str,
    "node_id": str,
    "attempts": int,
    "study_name": str,
    "trial_number": int,
    "model_version": int,
    "execution": str,
    "started_at": str,
    "finished_at": str,
    **{name: Result.__table__.c[name].type.python_type for name in METRIC_COLUMNS},
    "stage": str,
    "error": str,
    "gpu_name": str,
    "hostname": str,
    "git_commit": str,
    "note": str,
}


def field_value(record: dict[str, Any], name: str) -> Any:
    """A record's value for `name`: a column of the record, else a config field, else an `extra` figure."""
    if name in record and name not in ("config", "extra"):
        return record[name]
    if name in (record.get("config") or {}):
        return record["config"][name]
    return (record.get("extra") or {}).get(name)


def batch_id_of(ref: str) -> int | None:
    """`ref` as a batch id: ASCII digits within the INTEGER column's range, else None (a name)."""
    return int(ref) if ref.isascii() and ref.isdigit() and int(ref) < 2**31 else None


def read_records(s: Session, filters: Filters) -> list[dict[str, Any]]:
    """The records of the runs `filters` selects (its `where` aside), in batch and index order."""
    stmt = (
        select(Run, Batch.name, Result, Environment)
        .join(Batch, Run.batch_id == Batch.id)
        .outerjoin(Result, Result.run_id == Run.id)
        .outerjoin(Environment, Result.environment_id == Environment.id)
        .order_by(Run.batch_id, Run.index)
    )
    tags = _tags_by_run(s, filters)
    records = [
        _flatten(run, name, result, env, tags.get(run.id, []))
        for run, name, result, env in s.execute(_selected(stmt, filters)).all()
    ]
    return _fill_skipped(s, records)


def _tags_by_run(s: Session, filters: Filters) -> dict[str, list[str]]:
    """Run id -> its tags (sorted), for the runs `filters` selects."""
    stmt = (
        select(RunTag.run_id, RunTag.tag)
        .join(Run, RunTag.run_id == Run.id)
        .join(Batch, Run.batch_id == Batch.id)
        .order_by(RunTag.tag)
    )
    tags: dict[str, list[str]] = {}
    for run_id, tag in s.execute(_selected(stmt, filters)).all():
        tags.setdefault(run_id, []).append(tag)
    return tags


def _selected(stmt, f: Filters):
    """`stmt` (over runs joined to their batch) restricted to the runs `f` selects."""
    if f.model:
        stmt = stmt.where(Run.model.in_(f.model))
    if f.mode:
        stmt = stmt.where(Run.mode.in_(f.mode))
    if f.status:
        stmt = stmt.where(Run.status.in_(f.status))
    if f.device:
        stmt = stmt.where(Run.device.in_(f.device))
    if f.batch:
        ids = [batch_id_of(str(b)) for b in f.batch if batch_id_of(str(b)) is not None]
        names = [b for b in f.batch if batch_id_of(str(b)) is None]
        stmt = stmt.where(Batch.id.in_(ids) | Batch.name.in_(names))
    return stmt


def _fill_skipped(s: Session, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A skipped run shows the result of the run it reused."""
    for record in records:
        if record["status"] == "skipped" and record["reused_run_id"]:
            result = s.get(Result, record["reused_run_id"])
            if result is not None:
                record.update(_result_fields(result))
                record["status"] = "skipped"
    return records


def _result_fields(result: Result | None) -> dict[str, Any]:
    if result is None:
        return {k: None for k in METRIC_COLUMNS} | {"stage": None, "error": None, "extra": {}}
    return {k: getattr(result, k) for k in METRIC_COLUMNS} | {
        "stage": result.stage,
        "error": result.error,
        "extra": result.extra,
    }


def _flatten(
    run: Run, batch_name: str, result: Result | None, env: Environment | None, tags: list[str]
) -> dict[str, Any]:
    record = {
        "run_id": run.id,
        "batch": batch_name,
        "batch_id": run.batch_id,
        "index": run.index,
        "model": run.model,
        "mode": run.mode,
        "device": run.device,
        "status": run.status,
        "config_hash": run.config_hash,
        "reused_run_id": run.reused_run_id,
        "node_id": run.node_id,
        "attempts": run.attempts,
        "study_name": run.study_name,
        "trial_number": run.trial_number,
        "model_version": run.config.get("model_version", 1),
        "execution": stored_execution(run.config),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }
    record.update(_result_fields(result))
    record["params"] = record["params"] if record["params"] is not None else run.params
    record["gpu_name"] = env.gpu_name if env else None
    record["hostname"] = env.hostname if env else None
    record["git_commit"] = env.git_commit if env else None
    record["note"] = run.note
    record["tags"] = tags
    record["config"] = run.config
    return record


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
