"""The report's data, read from the database so that what is read does not grow with the number of stored
runs: runs counted by model, mode, device and status in SQL, the records (:mod:`orchestrator.store.records`)
of only the runs the views show (the latest runs, and the latest measured run of the most recent configs,
chosen in SQL), their training curves and the studies; exported rows join them (:class:`RunSet`).
:func:`change_marker` tells the live page when to read again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import case, distinct, event, func, select
from sqlalchemy.orm import with_loader_criteria

from orchestrator.store.records import Filters, _selected, read_records
from orchestrator.store.repository import Store
from orchestrator.store.schema import UNFINISHED, Batch, Run, TrainMetric

from .common import CONFIGS, MEASURED, RECENT_RUNS, ReportData, RunSet, curve_runs

#: the most run ids one IN (...) of a query holds
IN_CHUNK = 10_000


def gather(
    db: str | None,
    batches: Iterable[str] = (),
    exported: Iterable[dict[str, Any]] = (),
    kernels: Iterable[dict[str, Any]] = (),
    read_db: bool = True,
) -> ReportData:
    """The report's data: the runs of `db` (all batches, or those named by name or id; not read when
    `read_db` is false) with their training curves and studies, then the `exported` rows of those batches
    (dashboards.sources.read_exports) that the database does not hold, and the `kernels` results
    (dashboards.sources.read_kernels)."""
    batches = tuple(str(b) for b in batches)
    exported = [r for r in exported if in_batches(r, batches)]
    if not read_db:
        return ReportData(RunSet.of(exported), kernels=list(kernels))
    store = Store(db, create=False)
    try:
        data = database_data(store, db, batches, kernels)
        known = stored_ids(store, [r["run_id"] for r in exported])
    finally:
        store.close()
    later = RunSet.of([r for r in exported if r["run_id"] not in known])
    return dataclasses.replace(data, runs=data.runs.merged(later))


def in_batches(row: dict[str, Any], batches: tuple[str, ...]) -> bool:
    return not batches or str(row["batch"]) in batches or str(row.get("batch_id")) in batches


def database_data(
    store: Store, db: str | None, batches: tuple[str, ...], kernels: Iterable[dict[str, Any]] = ()
) -> ReportData:
    """The report's data from the open `store` of `db` (its URL opens the studies' Optuna storage)."""
    filters = Filters(batch=batches)
    runs = stored_runs(store, filters)
    curves = {r["run_id"]: store.metrics(r["run_id"]) for r in curve_runs(runs.configs)}
    attach_environments(store, runs.recent)
    return ReportData(runs, curves, studies_of(store, db, runs, filters), list(kernels))


def runs_of(filters: Filters, *columns):
    """SELECT `columns` FROM the runs (joined to their batch) that `filters` selects."""
    return _selected(select(*columns).select_from(Run).join(Batch, Run.batch_id == Batch.id), filters)


def stored_runs(store: Store, filters: Filters) -> RunSet:
    """The RunSet of the runs `filters` selects: counted and picked in SQL, records read for the picked."""
    with store.session() as s:
        latest_first = (Run.batch_id.desc(), Run.index.desc())
        recent = s.scalars(runs_of(filters, Run.id).order_by(*latest_first).limit(RECENT_RUNS)).all()
        configs = s.scalars(latest_config_ids(filters)).all()
        counts = Counter({tuple(key): n for *key, n in s.execute(run_counts(filters))})
        n_configs = s.scalar(runs_of(filters, func.count(distinct(Run.config_hash))).where(finished()))
        batches = tuple(s.scalars(runs_of(filters, Batch.name).distinct().order_by(Batch.name)))
    records = {r["run_id"]: r for r in records_of(store, filters, {*recent, *configs})}
    return RunSet(
        [records[i] for i in reversed(recent)], [records[i] for i in reversed(configs)], counts, n_configs, batches
    )


def finished():
    """The condition that a run is neither pending nor running."""
    return Run.status.not_in(UNFINISHED)


def latest_config_ids(filters: Filters):
    """The SQL form of :func:`dashboards.common.latest_per_config`: per config hash, the id of its last ok
    run, else of its last skipped one, else of its last finished one; the CONFIGS most recent, latest first."""
    preference = case(*((Run.status == status, i) for i, status in enumerate(MEASURED)), else_=len(MEASURED))
    rank = func.row_number().over(
        partition_by=Run.config_hash, order_by=(preference, Run.batch_id.desc(), Run.index.desc())
    )
    ranked = (
        runs_of(filters, Run.id, Run.batch_id, Run.index.label("position"), rank.label("rank"))
        .where(finished())
        .subquery()
    )
    return (
        select(ranked.c.id)
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.batch_id.desc(), ranked.c.position.desc())
        .limit(CONFIGS)
    )


def run_counts(filters: Filters):
    """(model, mode, device, status, runs) of each group (dashboards.common.summary_key)."""
    key = (Run.model, Run.mode, Run.device, Run.status)
    return runs_of(filters, *key, func.count()).group_by(*key)


def records_of(store: Store, filters: Filters, run_ids: set[str]) -> list[dict[str, Any]]:
    """The records of just these runs, as read_records builds them: the ids are added to every query of
    runs it makes (with_loader_criteria)."""
    if not run_ids:
        return []
    only = with_loader_criteria(Run, Run.id.in_(sorted(run_ids)))
    with store.session() as s:

        @event.listens_for(s, "do_orm_execute")
        def restrict(state) -> None:
            if state.is_select:
                state.statement = state.statement.options(only)

        return read_records(s, filters)


def stored_ids(store: Store, run_ids: list[str]) -> set[str]:
    """Those of `run_ids` that the database holds."""
    with store.session() as s:
        return {
            found
            for start in range(0, len(run_ids), IN_CHUNK)
            for found in s.scalars(select(Run.id).where(Run.id.in_(run_ids[start : start + IN_CHUNK])))
        }


def attach_environments(store: Store, rows: list[dict[str, Any]]) -> None:
    """Set each row's `environment` to the store's record of the machine that measured it (a skipped run:
    the run it reused), or None."""
    measured_by = {r["run_id"]: r.get("reused_run_id") or r["run_id"] for r in rows}
    found = store.environments(measured_by.values())
    for r in rows:
        r["environment"] = found.get(measured_by[r["run_id"]])


def studies_of(store: Store, db: str | None, runs: RunSet, filters: Filters) -> dict[str, list]:
    """Each study's figures by name, for every study with a run that `filters` selects."""
    from orchestrator import study as studies

    from .study import run_context, study_figures

    with store.session() as s:
        names = s.scalars(runs_of(filters, Run.study_name).where(Run.study_name.is_not(None)).distinct()).all()
    shown = runs.configs + runs.recent
    return {
        name: study_figures(*studies.load(name, db), where=run_context([r for r in shown if r["study_name"] == name]))
        for name in sorted(names)
    }


def change_marker(store: Store) -> str:
    """A fingerprint of the database that moves when a batch or run is added, a run changes status, starts
    or finishes, or a training metric is stored: runs per status, the latest start, finish, metric and
    batch."""
    latest = (func.max(Run.started_at), func.max(Run.finished_at))
    with store.session() as s:
        statuses = s.execute(select(Run.status, func.count()).group_by(Run.status).order_by(Run.status)).all()
        times = s.execute(select(*latest)).one()
        ids = (s.scalar(select(func.max(TrainMetric.id))), s.scalar(select(func.max(Batch.id))))
    state = json.dumps([[list(row) for row in statuses], [str(t) for t in times], ids])
    return hashlib.sha256(state.encode()).hexdigest()[:16]
