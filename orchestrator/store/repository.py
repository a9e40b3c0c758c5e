"""Reads and writes of the result database.

The driver is the single writer: it creates batches and runs, records status transitions, and writes
each result once (the run id is the result's primary key; a second write of the same run is a no-op).
Every method opens and commits its own short transaction, so a crash loses at most the run in flight.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import UserError
from ..spec import Spec
from .engine import make_engine
from .migrate import ensure_schema
from .records import Filters, batch_id_of, read_records
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
from .where import as_conditions

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


def new_run(
    batch_id: int, index: int, config: dict[str, Any], digest: str, params: int, status: str, reused: str | None
) -> Run:
    """A run row of a batch (or a study's batch), with a fresh id; `reused` is the run it is answered by."""
    return Run(
        id=uuid.uuid4().hex,
        batch_id=batch_id,
        index=index,
        config_hash=digest,
        config=config,
        model=config["model"],
        mode=config["mode"],
        device=config["device"],
        params=params,
        status=status,
        reused_run_id=reused,
    )


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
                status = "skipped" if reused else "pending"
                s.add(new_run(batch.id, r.index, r.config, r.config_hash, r.params, status, reused))
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
            assert batch is not None, f"no batch {batch_id}"
            batch.status = status
            batch.finished_at = utcnow() if status == "done" else None

    @retried
    def mark_running(self, run_id: str) -> None:
        with self.session() as s, s.begin():
            run = s.get(Run, run_id)
            assert run is not None, f"no run {run_id}"
            run.status, run.started_at, run.attempts = "running", utcnow(), run.attempts + 1

    @retried
    def mark_pending(self, run_ids: list[str]) -> None:
        """Set runs that are still `running` (cancelled before they returned a result) back to pending."""
        with self.session() as s, s.begin():
            for run in s.scalars(select(Run).where(Run.id.in_(run_ids), Run.status == "running")):
                run.status = "pending"

    @retried
    def unfinished_configs(self, batch_id: int) -> list[dict[str, Any]]:
        """The configs of the batch's runs still pending or running (read only)."""
        with self.session() as s:
            return list(s.scalars(select(Run.config).where(Run.batch_id == batch_id, Run.status.in_(UNFINISHED))))

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
    def add_trial_run(
        self,
        batch_id: int,
        study_name: str,
        trial_number: int,
        config: dict[str, Any],
        digest: str,
        params: int,
        status: str,
        reused_run_id: str | None,
    ) -> str:
        """A study trial's run in the study's batch (`pending`, or `skipped` with the run it reuses)."""
        run = new_run(batch_id, trial_number, config, digest, params, status, reused_run_id)
        run.study_name, run.trial_number = study_name, trial_number
        with self.session() as s, s.begin():
            s.add(run)
        return run.id

    @retried
    def finished_run_of(self, digest: str) -> str | None:
        """The run id of a finished result with this config hash, or None."""
        with self.session() as s:
            return self.finished_by_hash(s, [digest]).get(digest)

    @retried
    def has_result(self, run_id: str) -> bool:
        with self.session() as s:
            return s.get(Result, run_id) is not None

    @retried
    def run_summary(self, run_id: str) -> dict[str, Any]:
        """What a study needs of a stored run: status, error, device, params, speed, peaks, val_loss."""
        with self.session() as s:
            run, result = s.get(Run, run_id), s.get(Result, run_id)
            assert run is not None and result is not None, f"run {run_id} has no stored result"
            return {
                "status": result.status,
                "error": result.error,
                "device": run.device,
                "params": result.params if result.params is not None else run.params,
                "tokens_per_s": result.tokens_per_s,
                "peak_bytes": result.peak_bytes,
                "peak_rss_bytes": result.peak_rss_bytes,
                "val_loss": (result.extra or {}).get("val_loss"),
            }

    def fail_unfinished_trial_runs(self, study_name: str, trial_numbers: list[int], error: str) -> None:
        """Store the still pending or running runs of these trials of the study as failed with `error`."""
        if not trial_numbers:
            return
        with self.session() as s:
            run_ids = s.scalars(
                select(Run.id).where(
                    Run.study_name == study_name,
                    Run.trial_number.in_(trial_numbers),
                    Run.status.in_(UNFINISHED),
                )
            ).all()
        for run_id in run_ids:
            self.record_result(run_id, {"status": "failed", "stage": None, "error": error})

    @retried
    def record_result(self, run_id: str, outcome: dict[str, Any]) -> bool:
        """Store a run's outcome once; returns False when the run already had a result, also when another
        writer stored it between this one's check and its insert (the unique run id refuses the second)."""
        try:
            return self._insert_result(run_id, outcome)
        except IntegrityError:
            if self.has_result(run_id):
                return False
            raise

    def _insert_result(self, run_id: str, outcome: dict[str, Any]) -> bool:
        with self.session() as s, s.begin():
            if s.get(Result, run_id) is not None:
                return False
            run = s.get(Run, run_id)
            assert run is not None, f"no run {run_id}"
            env = outcome.get("environment")
            env_id = self._environment_id(s, env) if env else None
            metrics = {k: outcome.get(k) for k in METRIC_COLUMNS if k in outcome}
            s.add(
                Result(
                    run_id=run_id,
                    environment_id=env_id,
                    status=outcome["status"],
                    stage=outcome.get("stage"),
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
            have: set[tuple[str, int]] = set(
                s.execute(select(TrainMetric.kind, TrainMetric.step).where(TrainMetric.run_id == run_id)).all()
            )
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
            if isinstance(ref, int) or batch_id_of(str(ref)) is not None:
                batch = s.get(Batch, int(ref))
            if batch is None:
                batch = s.scalars(select(Batch).where(Batch.name == str(ref)).order_by(Batch.id.desc())).first()
            if batch is None:
                raise UserError(f"batch: no batch named or numbered {ref!r}")
            return batch

    def batches(self) -> list[Batch]:
        with self.session() as s:
            return list(s.scalars(select(Batch).order_by(Batch.id)).all())

    def cancel_requested(self, batch_id: int) -> bool:
        """Whether `phasebench cancel` asked the batch's drivers to stop."""
        with self.session() as s:
            return bool(s.execute(select(Batch.cancel_requested).where(Batch.id == batch_id)).scalar())

    def clear_cancel(self, batch_id: int) -> None:
        """Forget a cancel request (a driver that starts anew runs)."""
        with self.session() as s, s.begin():
            s.execute(update(Batch).where(Batch.id == batch_id).values(cancel_requested=False))

    def run_counts(self, batch_id: int) -> dict[str, int]:
        with self.session() as s:
            statuses = s.scalars(select(Run.status).where(Run.batch_id == batch_id)).all()
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        return counts

    def rows(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        """Flat records (run, result, environment, tags, note; :mod:`.records`), one per run, in batch and
        index order, of the runs that pass every filter (all runs without filters)."""
        filters = filters or Filters()
        with self.session() as s:
            records = read_records(s, filters)
        conditions = as_conditions(filters.where)
        return [r for r in records if all(c.matches(r) for c in conditions)]

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
