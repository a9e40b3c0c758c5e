"""Optuna's storage on the results database: open, load, and create a study with its phasebench batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..store.engine import database_url, mask_url
from ..store.repository import Store
from ..store.schema import Batch
from .spec import (
    BATCH_ATTR,
    SPEC_ATTR,
    StudySpec,
    load_study_spec,
    parse_study_spec,
)


def open_storage(url: str, create: bool):
    """Optuna's RDBStorage on the results URL; with create=False, UserError when it has no Optuna tables
    (so that reading a study from the wrong database writes nothing)."""
    import optuna
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from ..store.engine import SQLITE_BUSY_TIMEOUT_S, make_engine

    if not create:
        parsed = make_url(url)
        if (
            parsed.get_backend_name() == "sqlite"
            and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists()
        ):
            raise UserError(f"study: {mask_url(url)} does not exist; create a study with `phasebench study create`")
        engine = make_engine(url)
        try:
            has = inspect(engine).has_table("studies")
        finally:
            engine.dispose()
        if not has:
            raise UserError(
                f"study: {mask_url(url)} holds no Optuna studies; create one with `phasebench study create`"
            )
    kwargs = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    )
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def close_storage(storage) -> None:
    storage.remove_session()
    storage.engine.dispose()


def load_study(storage, name: str, sampler=None, pruner=None):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise UserError(f"study: no study named {name!r}") from None


def running_trial(storage, study, number: int):
    """The live `optuna.trial.Trial` of the study's trial `number` (through the storage's public API)."""
    from optuna.trial import Trial

    study_id = storage.get_study_id_from_name(study.study_name)
    return Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def spec_of(study) -> StudySpec:
    source = study.user_attrs.get(SPEC_ATTR)
    if source is None:
        raise UserError(f"study: {study.study_name!r} was not created by phasebench (no {SPEC_ATTR} attribute)")
    return parse_study_spec(source)


def create_study(spec: str | Path | dict[str, Any], db: str | None = None) -> StudySpec:
    """Validate a study spec, then store the Optuna study and its phasebench batch."""
    import optuna

    parsed = parse_study_spec(spec) if isinstance(spec, dict) else load_study_spec(spec)
    url = database_url(db)
    store = Store(url)
    storage = open_storage(url, create=True)
    try:
        if parsed.name in {s.study_name for s in storage.get_all_studies()}:
            raise UserError(
                f"study: {parsed.name!r} already exists; continue it with `phasebench study run {parsed.name}`"
            )
        try:
            study = optuna.create_study(storage=storage, study_name=parsed.name, directions=parsed.directions)
        except optuna.exceptions.DuplicatedStudyError:
            raise UserError(f"study: {parsed.name!r} already exists") from None
        with store.session() as s, s.begin():
            batch = Batch(
                name=parsed.name,
                description=parsed.description or f"Optuna study {parsed.name}",
                spec=parsed.source,
                status="pending",
            )
            s.add(batch)
            s.flush()
            batch_id = batch.id
        study.set_user_attr(SPEC_ATTR, parsed.source)
        study.set_user_attr(BATCH_ATTR, batch_id)
        study.set_user_attr("objectives", [o.label for o in parsed.objectives])
        return parsed
    finally:
        close_storage(storage)
        store.close()
