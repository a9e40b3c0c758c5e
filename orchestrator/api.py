"""The Python API: the CLI's operations for notebooks and scripts.

>>> from orchestrator import api
>>> outcome = api.run("examples/quickstart.yaml", db="sqlite:///pb.db")
>>> rows = api.results(db="sqlite:///pb.db", model=["phase8-seed"], where=["seq_len>=8192", "status!=ok"])
>>> frame = api.results_frame(db="sqlite:///pb.db")        # needs pandas
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .runner import BatchOutcome, Runner, check_reachable, cluster_auto_device, refuse_impossible
from .spec import Spec, expand, load_spec, load_spec_file
from .store.edits import checked_tags, tag_batch
from .store.migrate import check_database
from .store.repository import Filters, Store
from .store.where import parse_where
from .user_code import IMPORTS_KEY, check_source, import_all, with_extra_imports

__all__ = ["Filters", "plan", "resume", "results", "results_frame", "run"]
from .store.schema import Run
from .worker import isolation_scheme

ResultCallback = Callable[[Run, dict[str, Any]], None]


def plan(spec: str | Path | dict[str, Any], allow_large: bool = False, imports: Iterable[str] = ()) -> Spec:
    """Validate a spec (a path or a parsed mapping) and resolve its runs; writes nothing. `imports` (module
    names or paths relative to the working directory) are added to the spec's own (docs/custom-models.md)."""
    imports = list(imports)
    if not imports:
        return expand(spec, allow_large) if isinstance(spec, dict) else load_spec(spec, allow_large)
    data = spec if isinstance(spec, dict) else load_spec_file(spec)
    return expand(with_extra_imports(data, imports) if isinstance(data, dict) else data, allow_large)


def run(
    spec: str | Path | dict[str, Any] | Spec,
    db: str | None = None,
    address: str | None = None,
    rerun: bool = False,
    allow_large: bool = False,
    max_parallel: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    on_result: ResultCallback | None = None,
    tags: Iterable[str] = (),
    imports: Iterable[str] = (),
) -> BatchOutcome:
    """Validate, store and run a batch; returns the per-status counts.

    `on_batch(batch_id, n_runs_to_do)` is called once the batch is stored, `on_result(run, outcome)`
    after each finished run; every run of the batch carries `tags`; `imports` as in :func:`plan`.
    """
    tags = checked_tags(tags)
    isolation_scheme()  # before anything is stored
    if address:
        check_reachable(address)
    with cluster_auto_device(address):  # `device: auto` is decided by the nodes the runs will land on
        resolved = spec if isinstance(spec, Spec) else plan(spec, allow_large, imports)
    check_database(db)  # a bad --db is refused before Ray starts
    refuse_impossible(resolved.runs, address)
    store = Store(db)
    try:
        batch = store.create_batch(resolved, rerun=rerun)
        tag_batch(store, batch.id, tags)
        return _run_stored(store, batch.id, address, max_parallel, on_batch, on_result)
    finally:
        store.close()


def resume(
    batch: str | int,
    db: str | None = None,
    address: str | None = None,
    max_parallel: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    on_result: ResultCallback | None = None,
    imports: Iterable[str] = (),
) -> BatchOutcome:
    """Finish the pending and interrupted runs of a stored batch (by id or name), with the model code its
    spec imports."""
    isolation_scheme()
    if address:
        check_reachable(address)
    store = Store(db, create=False)
    try:
        stored = store.find_batch(batch)
        import_all(with_extra_imports(stored.spec, list(imports))[IMPORTS_KEY])
        for config in store.unfinished_configs(stored.id):
            check_source(config)
        return _run_stored(store, store.find_batch(batch).id, address, max_parallel, on_batch, on_result)
    finally:
        store.close()


def _run_stored(store: Store, batch_id: int, address, max_parallel, on_batch, on_result) -> BatchOutcome:
    if on_batch is not None:
        counts = store.run_counts(batch_id)
        on_batch(batch_id, counts.get("pending", 0) + counts.get("running", 0))
    return Runner(store, address=address, max_parallel=max_parallel, on_result=on_result).run_batch(batch_id)


def _values(value: Any) -> tuple:
    """One filter value or an iterable of them -> a tuple (a string is one value, not its characters)."""
    return (value,) if isinstance(value, (str, int)) else tuple(value)


def results(
    db: str | None = None,
    model: Iterable[str] = (),
    mode: Iterable[str] = (),
    batch: Iterable[str] = (),
    status: Iterable[str] = (),
    device: Iterable[str] = (),
    where: Mapping[str, Any] | Iterable[str] | str | None = None,
) -> list[dict[str, Any]]:
    """Result records (one dict per run) matching every given filter. A filter is one value or several
    (`model="phase7"` or `model=["phase7", "phase8"]`); `where` is a mapping of field to value
    (`{"seq_len": 16384}`) or conditions as `phasebench results list --where` reads them
    (`"seq_len>=8192"`, `["status!=ok", "model in phase7,phase8", "tag=baseline"]`; see
    :mod:`orchestrator.store.where`). A field no record or config holds is a ValueError naming it."""
    filters = Filters(
        _values(model),
        _values(mode),
        tuple(str(b) for b in _values(batch)),
        _values(status),
        _values(device),
        parse_where(where),
    )
    store = Store(db, create=False)
    try:
        return store.rows(filters)
    finally:
        store.close()


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """One result record as flat columns: its own fields, then every config field it does not already
    have, then the scalar `extra` figures as `extra.<name>`."""
    flat = {k: v for k, v in record.items() if k not in ("config", "extra")}
    flat.update({k: v for k, v in (record.get("config") or {}).items() if k not in flat})
    scalars = (str, int, float, bool, type(None))
    flat.update({f"extra.{k}": v for k, v in (record.get("extra") or {}).items() if isinstance(v, scalars)})
    return flat


def results_frame(db: str | None = None, **filters: Any):
    """:func:`results` as a flat pandas DataFrame: one column per result field, config field and scalar
    `extra` figure (:func:`flat_record`). pandas must be installed."""
    import pandas as pd

    return pd.DataFrame.from_records([flat_record(r) for r in results(db, **filters)])
