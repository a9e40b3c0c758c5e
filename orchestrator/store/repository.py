"""Reads and writes of the result database.

The driver is the single writer: it creates batches and runs, records status transitions, and writes
each result once (the run id is the result's primary key; a second write of the same run is a no-op).
Every method opens and commits its own short transaction, so a crash loses at most the run in flight.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..errors import UserError
from ..spec import Spec
from .engine import make_engine
from .migrate import ensure_schema
from .schema import FINISHED, METRIC_COLUMNS, UNFINISHED, Batch, Environment, Result, Run, utcnow


@dataclass(frozen=True)
class Filters:
    """Result filters; `where` compares config fields by value (bound parameters, never SQL text)."""

    model: tuple[str, ...] = ()
    mode: tuple[str, ...] = ()
    batch: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    device: tuple[str, ...] = ()
    where: tuple[tuple[str, Any], ...] = ()


class Store:
    """The result database at `url` (created at the head revision when empty)."""

    def __init__(self, url: str | None = None, create: bool = True):
        self.engine: Engine = make_engine(url)
        ensure_schema(self.engine, create=create)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self.sessions()

    # -- writes -----------------------------------------------------------------------------------
    def create_batch(self, spec: Spec, rerun: bool = False) -> Batch:
        """Insert a batch and one run per config; configs already finished elsewhere become `skipped`."""
        with self.session() as s, s.begin():
            batch = Batch(name=spec.name, description=spec.description, spec=spec.source, status="pending")
            s.add(batch)
            s.flush()
            cached = {} if rerun else self._finished_by_hash(s, [r.config_hash for r in spec.runs])
            for r in spec.runs:
                reused = cached.get(r.config_hash)
                s.add(Run(id=uuid.uuid4().hex, batch_id=batch.id, index=r.index, config_hash=r.config_hash,
                          config=r.config, model=r.model, mode=r.config["mode"], device=r.config["device"],
                          params=r.params, status="skipped" if reused else "pending", reused_run_id=reused))
            return batch

    @staticmethod
    def _finished_by_hash(s: Session, hashes: list[str]) -> dict[str, str]:
        rows = s.execute(select(Run.config_hash, Run.id).where(Run.config_hash.in_(hashes),
                                                                Run.status.in_(FINISHED))
                         .order_by(Run.finished_at)).all()
        return {h: run_id for h, run_id in rows}

    def set_batch_status(self, batch_id: int, status: str) -> None:
        with self.session() as s, s.begin():
            batch = s.get(Batch, batch_id)
            batch.status = status
            batch.finished_at = utcnow() if status == "done" else None

    def mark_running(self, run_id: str) -> None:
        with self.session() as s, s.begin():
            run = s.get(Run, run_id)
            run.status, run.started_at, run.attempts = "running", utcnow(), run.attempts + 1

    def reset_unfinished(self, batch_id: int) -> list[Run]:
        """Runs of the batch still pending or running (those are set back to pending), in order."""
        with self.session() as s, s.begin():
            runs = s.scalars(select(Run).where(Run.batch_id == batch_id, Run.status.in_(UNFINISHED))
                             .order_by(Run.index)).all()
            for run in runs:
                run.status = "pending"
            return list(runs)

    def record_result(self, run_id: str, outcome: dict[str, Any]) -> bool:
        """Store a run's outcome once; returns False when the run already had a result."""
        with self.session() as s, s.begin():
            if s.get(Result, run_id) is not None:
                return False
            run = s.get(Run, run_id)
            env = outcome.get("environment")
            env_id = self._environment_id(s, env) if env else None
            metrics = {k: outcome.get(k) for k in METRIC_COLUMNS if k in outcome}
            s.add(Result(run_id=run_id, environment_id=env_id, status=outcome["status"],
                         phase=outcome.get("phase"), error=outcome.get("error"),
                         extra=outcome.get("extra") or {}, **metrics))
            run.status, run.finished_at = outcome["status"], utcnow()
            run.node_id = outcome.get("node_id") or run.node_id
            return True

    @staticmethod
    def _environment_id(s: Session, env: dict[str, Any]) -> int:
        from ..environment import environment_hash
        digest = environment_hash(env)
        found = s.scalars(select(Environment.id).where(Environment.env_hash == digest)).first()
        if found is not None:
            return found
        row = Environment(env_hash=digest, **{k: v for k, v in env.items() if k in Environment.__table__.columns})
        s.add(row)
        s.flush()
        return row.id

    # -- reads ------------------------------------------------------------------------------------
    def find_batch(self, ref: str | int) -> Batch:
        """A batch by id, or the latest batch of that name; UserError if there is none."""
        with self.session() as s:
            batch = None
            if isinstance(ref, int) or str(ref).isdigit():
                batch = s.get(Batch, int(ref))
            if batch is None:
                batch = s.scalars(select(Batch).where(Batch.name == str(ref)).order_by(Batch.id.desc())).first()
            if batch is None:
                raise UserError(f"batch: no batch named or numbered {ref!r}")
            return batch

    def batches(self) -> list[Batch]:
        with self.session() as s:
            return list(s.scalars(select(Batch).order_by(Batch.id)).all())

    def run_counts(self, batch_id: int) -> dict[str, int]:
        with self.session() as s:
            statuses = s.scalars(select(Run.status).where(Run.batch_id == batch_id)).all()
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        return counts

    def rows(self, filters: Filters = Filters()) -> list[dict[str, Any]]:
        """Flat records (run + result + environment), one per run, in batch and index order."""
        stmt = (select(Run, Batch.name, Result, Environment).join(Batch, Run.batch_id == Batch.id)
                .outerjoin(Result, Result.run_id == Run.id)
                .outerjoin(Environment, Result.environment_id == Environment.id)
                .order_by(Run.batch_id, Run.index))
        stmt = _apply_filters(stmt, filters)
        with self.session() as s:
            out = [_flatten(run, name, result, env) for run, name, result, env in s.execute(stmt).all()]
            return self._fill_skipped(s, out)

    @staticmethod
    def _fill_skipped(s: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A skipped run shows the metrics of the run it reused."""
        for row in rows:
            if row["status"] == "skipped" and row["reused_run_id"]:
                result = s.get(Result, row["reused_run_id"])
                if result is not None:
                    row.update(_result_fields(result))
                    row["status"] = "skipped"
        return rows


def _apply_filters(stmt, f: Filters):
    if f.model:
        stmt = stmt.where(Run.model.in_(f.model))
    if f.mode:
        stmt = stmt.where(Run.mode.in_(f.mode))
    if f.status:
        stmt = stmt.where(Run.status.in_(f.status))
    if f.device:
        stmt = stmt.where(Run.device.in_(f.device))
    if f.batch:
        ids = [int(b) for b in f.batch if str(b).isdigit()]
        names = [b for b in f.batch if not str(b).isdigit()]
        stmt = stmt.where(Batch.id.in_(ids) | Batch.name.in_(names))
    for key, value in f.where:
        stmt = stmt.where(_json_equals(key, value))
    return stmt


def _json_equals(key: str, value: Any):
    """Config field `key` equals `value`, typed by the value; the key is a JSON path, never SQL."""
    field = Run.config[key]
    if isinstance(value, bool):
        return field.as_boolean() == value
    if isinstance(value, (int, float)):
        return field.as_float() == float(value)
    return field.as_string() == str(value)


def _result_fields(result: Result | None) -> dict[str, Any]:
    if result is None:
        return {k: None for k in METRIC_COLUMNS} | {"phase": None, "error": None, "extra": {}}
    return {k: getattr(result, k) for k in METRIC_COLUMNS} | {
        "phase": result.phase, "error": result.error, "extra": result.extra}


def _flatten(run: Run, batch_name: str, result: Result | None, env: Environment | None) -> dict[str, Any]:
    row = {"run_id": run.id, "batch": batch_name, "batch_id": run.batch_id, "index": run.index,
           "model": run.model, "mode": run.mode, "device": run.device, "status": run.status,
           "config_hash": run.config_hash, "reused_run_id": run.reused_run_id, "node_id": run.node_id,
           "attempts": run.attempts, "study_name": run.study_name, "trial_number": run.trial_number,
           "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at)}
    row.update(_result_fields(result))
    row["params"] = row["params"] if row["params"] is not None else run.params
    row["gpu_name"] = env.gpu_name if env else None
    row["hostname"] = env.hostname if env else None
    row["git_commit"] = env.git_commit if env else None
    row["config"] = run.config
    return row


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None

