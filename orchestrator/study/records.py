"""Reading a study: flat trial records, the best trials and the Pareto front, summaries and exports."""

from __future__ import annotations

from typing import Any

from ..store.engine import database_url
from .spec import (
    BATCH_ATTR,
    SPEC_ATTR,
    Objective,
    StudySpec,
    parse_study_spec,
)
from .storage import close_storage, load_study, open_storage, spec_of


def trial_records(study, spec: StudySpec) -> list[dict[str, Any]]:
    """One flat record per trial: number, state, objective values by metric, params (`param_<name>`),
    constraint, feasibility, model, run link, error, times."""
    records = []
    for t in study.get_trials(deepcopy=False):
        constraints = t.user_attrs.get("constraints")
        record = {
            "number": t.number,
            "state": t.state.name,
            "model": t.user_attrs.get("model") or spec.model_of(t.params),
        }
        for i, o in enumerate(spec.objectives):
            record[o.metric] = t.values[i] if t.values is not None else None
        record.update({f"param_{k}": v for k, v in t.params.items()})
        record["constraint"] = constraints[0] if constraints else None
        record["feasible"] = (constraints[0] <= 0) if constraints and t.state.name == "COMPLETE" else None
        record["status"] = t.user_attrs.get("status")
        record["infeasible_because"] = infeasible_reason(record) if record["feasible"] is False else None
        record["run_id"] = t.user_attrs.get("run_id")
        record["reused_run_id"] = t.user_attrs.get("reused_run_id")
        record["config_hash"] = t.user_attrs.get("config_hash")
        record["error"] = t.user_attrs.get("error")
        record["started"] = t.datetime_start.isoformat() if t.datetime_start else None
        record["completed"] = t.datetime_complete.isoformat() if t.datetime_complete else None
        record["duration_s"] = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_start and t.datetime_complete
            else None
        )
        records.append(record)
    return records


def infeasible_reason(record: dict[str, Any]) -> str:
    """Why a completed trial is infeasible: it ran out of memory, or its peak exceeded the study's budget."""
    if record["status"] == "oom":
        return "out of memory"
    return f"peak {record['constraint']:.2f} GiB over the VRAM budget"


def pareto_front(
    records: list[dict[str, Any]], objectives: tuple[Objective, ...] | list[Objective]
) -> list[dict[str, Any]]:
    """The feasible COMPLETE records that no other feasible record dominates."""
    pool = [r for r in records if r["state"] == "COMPLETE" and r["feasible"]]
    signs = [1.0 if o.direction == "minimize" else -1.0 for o in objectives]
    keys = [[s * r[o.metric] for s, o in zip(signs, objectives, strict=False)] for r in pool]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b, strict=False)) and any(x < y for x, y in zip(a, b, strict=False))

    return [r for r, k in zip(pool, keys, strict=False) if not any(dominates(other, k) for other in keys)]


def best_records(records: list[dict[str, Any]], objectives, limit: int | None = 1) -> list[dict[str, Any]]:
    """Single objective: the best feasible COMPLETE trials (best first); several: the Pareto set."""
    if len(objectives) > 1:
        return pareto_front(records, objectives)
    o = objectives[0]
    pool = [r for r in records if r["state"] == "COMPLETE" and r["feasible"]]
    pool.sort(key=lambda r: r[o.metric], reverse=o.direction == "maximize")
    return pool[:limit] if limit else pool


def open_study(name: str, db: str | None):
    url = database_url(db)
    storage = open_storage(url, create=False)
    try:
        study = load_study(storage, name)
        return storage, study, spec_of(study)
    except BaseException:
        close_storage(storage)
        raise


def study_summary(name: str, db: str | None = None, top: int = 5) -> dict[str, Any]:
    """Progress (trials by state), the best feasible trials (single objective) or the Pareto set."""
    storage, study, spec = open_study(name, db)
    try:
        records = trial_records(study, spec)
    finally:
        close_storage(storage)
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return {
        "name": spec.name,
        "description": spec.description,
        "objectives": [o.label for o in spec.objectives],
        "metrics": [o.metric for o in spec.objectives],
        "sampler": spec.sampler,
        "pruner": spec.pruner,
        "vram_budget_gb": spec.vram_budget_gb,
        "batch_id": study.user_attrs.get(BATCH_ATTR),
        "trials": len(records),
        "states": states,
        "feasible": sum(1 for r in records if r["feasible"]),
        "infeasible": [r for r in records if r["feasible"] is False],
        "best": best_records(records, spec.objectives, limit=top),
        "pareto": pareto_front(records, spec.objectives) if len(spec.objectives) > 1 else None,
    }


def list_studies(db: str | None = None) -> list[dict[str, Any]]:
    """Every study in the database, oldest first: name, description, objectives, trials by state."""
    import optuna
    from optuna.trial import TrialState

    storage = open_storage(database_url(db), create=False)
    try:
        listed = []
        for name in optuna.get_all_study_names(storage):  # in the order they were created
            study = load_study(storage, name)
            source = study.user_attrs.get(SPEC_ATTR)
            spec = parse_study_spec(source) if source is not None else None
            trials = study.get_trials(deepcopy=False, states=tuple(TrialState))
            states: dict[str, int] = {}
            for trial in trials:
                states[trial.state.name] = states.get(trial.state.name, 0) + 1
            listed.append(
                {
                    "name": name,
                    "description": spec.description if spec else "(not created by phasebench)",
                    "objectives": [o.label for o in spec.objectives] if spec else [],
                    "trials": len(trials),
                    "states": states,
                }
            )
        return listed
    finally:
        close_storage(storage)


def best(name: str, db: str | None = None) -> dict[str, Any]:
    """The best feasible trial (single objective) or the Pareto set (several), as `{"best": [...]}`."""
    summary = study_summary(name, db, top=1)
    return {"name": summary["name"], "objectives": summary["objectives"], "best": summary["best"]}


def export(name: str, db: str | None = None) -> list[dict[str, Any]]:
    """Every trial of the study as a flat record (see :func:`trial_records`)."""
    storage, study, spec = open_study(name, db)
    try:
        return trial_records(study, spec)
    finally:
        close_storage(storage)


def load(name: str, db: str | None = None):
    """(Optuna study, StudySpec) for dashboards; the storage stays open for the study's lifetime."""
    _, study, spec = open_study(name, db)
    return study, spec
