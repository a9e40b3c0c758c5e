"""Reads and writes of the result database.

The driver is the single writer: it creates batches and runs, records status transitions, and writes
each result once (the run id is the result's primary key; a second write of the same run is a no-op).
Every method opens and commits its own short transaction, so a crash loses at most the run in flight.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import UserError
from ..legacy import stored_execution
from ..spec import Spec
from .engine import make_engine
from .migrate import ensure_schema
from .schema import (
    FINISHED,
    METRIC_COLUMNS,
    METRIC_FIELDS,
    UNFINISHED,
    Batch,
    Environment,
    Result,
    Run,
    TrainMetric,
    utcnow,
)

RETRY_FOR_S = 120.0
log = logging.getLogger(__name__)


def retried(method):
    """Retry a write transaction while the database is unreachable (a restarting server, a dropped
    connection, a locked SQLite file), for up to RETRY_FOR_S seconds. Every write is idempotent or
    runs in one transaction that rolled back, so a retry neither loses nor duplicates a record."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        deadline, pause = time.monotonic() + RETRY_FOR_S, 0.25
        while True:
            try:
                return method(self, *args, **kwargs)
            except (OperationalError, DBAPIError) as exc:
                transient = isinstance(exc, OperationalError) or exc.connection_invalidated
                if not transient or time.monotonic() > deadline:
                    raise
                log.warning("database unavailable (%s); retrying %s", type(exc.orig).__name__, method.__name__)
                self.engine.dispose()
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    return wrapper


#: the longest error message a result row stores (a failed run's traceback, in `extra`, keeps the detail)
MAX_ERROR_CHARS = 4000


def bounded_error(message: str | None) -> str | None:
    """`message` cut to MAX_ERROR_CHARS, the cut marked."""
    if message is None or len(message) <= MAX_ERROR_CHARS:
        return message
    return message[: MAX_ERROR_CHARS - 14] + " ... (cut off)"


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
        self.engine: Engine = make_engine(url, must_exist=not create)
        ensure_schema(self.engine, create=create)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self.sessions()

    # -- writes -----------------------------------------------------------------------------------
    @retried
    def create_batch(self, spec: Spec, rerun: bool = False) -> Batch:
        """Insert a batch and one run per config; configs already finished elsewhere become `skipped`."""
        with self.session() as s, s.begin():
            batch = Batch(name=spec.name, description=spec.description, spec=spec.source, status="pending")
            s.add(batch)
            s.flush()
            cached = {} if rerun else self.finished_by_hash(s, [r.config_hash for r in spec.runs])
            for r in spec.runs:
                reused = cached.get(r.config_hash)
                s.add(
                    Run(
                        id=uuid.uuid4().hex,
                        batch_id=batch.id,
                        index=r.index,
                        config_hash=r.config_hash,
                        config=r.config,
                        model=r.model,
                        mode=r.config["mode"],
                        device=r.config["device"],
                        params=r.params,
                        status="skipped" if reused else "pending",
                        reused_run_id=reused,
                    )
                )
            return batch

    @staticmethod
    def finished_by_hash(s: Session, hashes: list[str]) -> dict[str, str]:
        rows = s.execute(
            select(Run.config_hash, Run.id)
            .where(Run.config_hash.in_(hashes), Run.status.in_(FINISHED))
            .order_by(Run.finished_at)
        ).all()
        return {h: run_id for h, run_id in rows}

    @retried
    def set_batch_status(self, batch_id: int, status: str) -> None:
        with self.session() as s, s.begin():
            batch = s.get(Batch, batch_id)
            batch.status = status
            batch.finished_at = utcnow() if status == "done" else None

    @retried
    def mark_running(self, run_id: str) -> None:
        with self.session() as s, s.begin():
            run = s.get(Run, run_id)
            run.status, run.started_at, run.attempts = "running", utcnow(), run.attempts + 1

    @retried
    def mark_pending(self, run_ids: list[str]) -> None:
        """Set runs that are still `running` (cancelled before they returned a result) back to pending."""
        with self.session() as s, s.begin():
            for run in s.scalars(select(Run).where(Run.id.in_(run_ids), Run.status == "running")):
                run.status = "pending"

    @retried
    def reset_unfinished(self, batch_id: int) -> list[Run]:
        """Runs of the batch still pending or running (those are set back to pending), in order."""
        with self.session() as s, s.begin():
            runs = s.scalars(
                select(Run).where(Run.batch_id == batch_id, Run.status.in_(UNFINISHED)).order_by(Run.index)
            ).all()
            for run in runs:
                run.status = "pending"
            return list(runs)

    @retried
    def record_result(self, run_id: str, outcome: dict[str, Any]) -> bool:
        """Store a run's outcome once; returns False when the run already had a result."""
        with self.session() as s, s.begin():
            if s.get(Result, run_id) is not None:
                return False
            run = s.get(Run, run_id)
            env = outcome.get("environment")
            env_id = self._environment_id(s, env) if env else None
            metrics = {k: outcome.get(k) for k in METRIC_COLUMNS if k in outcome}
            s.add(
                Result(
                    run_id=run_id,
                    environment_id=env_id,
                    status=outcome["status"],
                    phase=outcome.get("phase"),
                    error=bounded_error(outcome.get("error")),
                    extra=outcome.get("extra") or {},
                    **metrics,
                )
            )
            run.status, run.finished_at = outcome["status"], utcnow()
            run.node_id = outcome.get("node_id") or run.node_id
            return True

    @retried
    def record_metrics(self, run_id: str, metrics: list[dict[str, Any]]) -> int:
        """Store training metrics of a run; a (kind, step) already stored is skipped. A row of kind
        `restart` (a new attempt of the run starting after `step`, e.g. a retried worker) first removes
        the metrics past that step, so the curve is the last attempt's. Returns rows added."""
        if not metrics:
            return 0
        with self.session() as s, s.begin():
            have = set(s.execute(select(TrainMetric.kind, TrainMetric.step).where(TrainMetric.run_id == run_id)).all())
            added = 0
            for m in metrics:
                if m["kind"] == "restart":
                    s.execute(delete(TrainMetric).where(TrainMetric.run_id == run_id, TrainMetric.step > m["step"]))
                    have = {(kind, step) for kind, step in have if step <= m["step"]}
                    continue
                if (m["kind"], m["step"]) in have:
                    continue
                have.add((m["kind"], m["step"]))
                s.add(
                    TrainMetric(
                        run_id=run_id, kind=m["kind"], step=m["step"], **{k: m.get(k) for k in METRIC_FIELDS if k in m}
                    )
                )
                added += 1
            return added

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        """A run's training metrics (train steps and evaluations), in step order."""
        with self.session() as s:
            rows = s.scalars(
                select(TrainMetric).where(TrainMetric.run_id == run_id).order_by(TrainMetric.step, TrainMetric.kind)
            ).all()
            return [{"kind": r.kind, "step": r.step, **{k: getattr(r, k) for k in METRIC_FIELDS}} for r in rows]

    def latest_metric(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The last training step stored for each of the runs (those with any)."""
        with self.session() as s:
            last = (
                select(TrainMetric.run_id, func.max(TrainMetric.step).label("step"))
                .where(TrainMetric.run_id.in_(run_ids), TrainMetric.kind == "train")
                .group_by(TrainMetric.run_id)
                .subquery()
            )
            rows = (
                s.execute(
                    select(TrainMetric).join(
                        last,
                        (TrainMetric.run_id == last.c.run_id)
                        & (TrainMetric.step == last.c.step)
                        & (TrainMetric.kind == "train"),
                    )
                )
                .scalars()
                .all()
            )
            return {r.run_id: {"step": r.step, "loss": r.loss, "tokens": r.tokens} for r in rows}

    def resolve_run(self, prefix: str) -> str:
        """The full id of the one run whose id starts with `prefix`; UserError otherwise."""
        with self.session() as s:
            ids = s.scalars(select(Run.id).where(Run.id.startswith(prefix, autoescape=True)).limit(2)).all()
        if len(ids) != 1:
            raise UserError(f"run: {prefix!r} matches {'no' if not ids else 'more than one'} run")
        return ids[0]

    @staticmethod
    def _environment_id(s: Session, env: dict[str, Any]) -> int:
        """The id of the environment row equal to `env`, inserted if new. Another driver may insert the
        same row at the same moment: the insert runs in a savepoint and a conflict means "read it"."""
        from ..environment import environment_hash

        digest = environment_hash(env)
        for _ in range(2):
            found = s.scalars(select(Environment.id).where(Environment.env_hash == digest)).first()
            if found is not None:
                return found
            try:
                with s.begin_nested():
                    row = Environment(
                        env_hash=digest, **{k: v for k, v in env.items() if k in Environment.__table__.columns}
                    )
                    s.add(row)
                return row.id
            except IntegrityError:
                continue  # inserted by someone else between our read and our write
        raise RuntimeError(f"environment {digest[:12]} could be neither read nor inserted")

    # -- reads ------------------------------------------------------------------------------------
    def find_batch(self, ref: str | int) -> Batch:
        """A batch by id, or the latest batch of that name; UserError if there is none."""
        with self.session() as s:
            batch = None
            if isinstance(ref, int) or _batch_id(str(ref)) is not None:
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
        stmt = (
            select(Run, Batch.name, Result, Environment)
            .join(Batch, Run.batch_id == Batch.id)
            .outerjoin(Result, Result.run_id == Run.id)
            .outerjoin(Environment, Result.environment_id == Environment.id)
            .order_by(Run.batch_id, Run.index)
        )
        stmt = _apply_filters(stmt, filters)
        with self.session() as s:
            out = [_flatten(run, name, result, env) for run, name, result, env in s.execute(stmt).all()]
            return self._fill_skipped(s, out)

    def environments(self, run_ids) -> dict[str, dict[str, Any]]:
        """The full environment record of each of `run_ids` that has a result (run id -> record)."""
        stmt = (
            select(Result.run_id, Environment)
            .join(Environment, Result.environment_id == Environment.id)
            .where(Result.run_id.in_(set(run_ids)))
        )
        with self.session() as s:
            return {
                run_id: {
                    c.name: getattr(env, c.name)
                    for c in Environment.__table__.columns
                    if c.name not in ("id", "env_hash")
                }
                for run_id, env in s.execute(stmt).all()
            }

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
        ids = [_batch_id(str(b)) for b in f.batch if _batch_id(str(b)) is not None]
        names = [b for b in f.batch if _batch_id(str(b)) is None]
        stmt = stmt.where(Batch.id.in_(ids) | Batch.name.in_(names))
    for key, value in f.where:
        stmt = stmt.where(_json_equals(key, value))
    return stmt


def _batch_id(ref: str) -> int | None:
    """`ref` as a batch id: ASCII digits within the INTEGER column's range, else None (a name)."""
    return int(ref) if ref.isascii() and ref.isdigit() and int(ref) < 2**31 else None


def _json_equals(key: str, value: Any):
    """Config field `key` equals `value`, typed by the value; the key is a JSON path, never SQL."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise UserError(f"--where: not a config field name: {key!r}")
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
        "phase": result.phase,
        "error": result.error,
        "extra": result.extra,
    }


def _flatten(run: Run, batch_name: str, result: Result | None, env: Environment | None) -> dict[str, Any]:
    row = {
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
    row.update(_result_fields(result))
    row["params"] = row["params"] if row["params"] is not None else run.params
    row["gpu_name"] = env.gpu_name if env else None
    row["hostname"] = env.hostname if env else None
    row["git_commit"] = env.git_commit if env else None
    row["config"] = run.config
    return row


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
