"""`phasebench run` and `phasebench status`: run a spec as a batch, follow batches."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from orchestrator import api
from orchestrator.errors import UserError
from orchestrator.formatting import LISTED_COLUMNS, text_table
from orchestrator.store.edits import checked_tags
from orchestrator.store.lease import driver_lost, request_cancel, wait_until_released

from .common import (
    address_option,
    command_line,
    db_option,
    imports_option,
    json_option,
    open_store,
    settings_option,
    spec_source,
)


@click.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@db_option
@address_option
@click.option("--dry-run", is_flag=True, help="Validate and list the resolved configs; run nothing.")
@json_option
@click.option("--rerun", is_flag=True, help="Run configs even if the database already has their result.")
@click.option("--resume", "resume_batch", metavar="BATCH", help="Finish the unfinished runs of a stored batch.")
@click.option("--yes", is_flag=True, help="Allow grids of more than 10,000 configs.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Runs in flight at once.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@settings_option
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag every run of the batch (repeatable).")
@imports_option
def run(
    spec, db, address, dry_run, as_json, rerun, resume_batch, yes, max_parallel, no_progress, settings, tags, imports
):
    """Run the batch described by SPEC (a YAML file), or --resume a stored one."""
    if bool(spec) == bool(resume_batch):
        raise UserError("run: give either SPEC or --resume BATCH")
    if resume_batch and (settings or tags):
        raise UserError("--set, --tag: need SPEC (a resumed batch keeps its spec)")
    if dry_run and not spec:
        raise UserError("--dry-run: needs SPEC")
    tags = checked_tags(tags)
    source = spec_source(spec, settings, imports) if spec else None
    if dry_run:
        _list_plan(api.plan(source, allow_large=yes), as_json)
        return
    progress = _Progress(enabled=not no_progress and not as_json)
    kwargs = dict(db=db, address=address, max_parallel=max_parallel, on_batch=progress.start, on_result=progress.update)
    json_out = sys.stdout
    if as_json:  # stdout carries the JSON only: Ray's threads print "(raylet) worker died" lines there, also
        sys.stdout = sys.stderr  # after the batch, so every print goes to stderr until the process exits
    try:
        if spec:
            outcome = api.run(source, rerun=rerun, allow_large=yes, tags=tags, **kwargs)
        else:
            outcome = api.resume(resume_batch, imports=imports, **kwargs)
    finally:
        progress.close()
    _report(outcome, api.results(db, batch=[str(outcome.batch_id)]), as_json, json_out)
    again = command_line("run", "--resume", outcome.batch_id, db=db, address=address, max_parallel=max_parallel)
    if outcome.interrupted:
        click.echo(f"interrupted: finish with `{again}`", err=True)
        sys.exit(130)
    if outcome.cancelled:
        click.echo(f"cancelled: the runs in flight are stored as cancelled; run the rest with `{again}`", err=True)
        sys.exit(1)
    if outcome.counts.get("failed") or outcome.counts.get("timeout"):
        sys.exit(1)


def _list_plan(plan, as_json: bool) -> None:
    """`run --dry-run`: the resolved configs, with their hash, parameters and execution mode."""
    records = [{"index": r.index, "hash": r.config_hash, "params": r.params, **r.config} for r in plan.runs]
    click.echo(json.dumps(records, indent=2) if as_json else _plan_table(plan.name, records))


def _report(outcome: api.BatchOutcome, rows: list[dict[str, Any]], as_json: bool, json_out) -> None:
    """A finished (or interrupted) batch: its runs' table and counts, or one JSON document on `json_out`."""
    if as_json:
        document = {
            "batch_id": outcome.batch_id,
            "counts": outcome.counts,
            "interrupted": outcome.interrupted,
            "runs": rows,
        }
        click.echo(json.dumps(document, indent=2, default=str), file=json_out)
        return
    click.echo(text_table(rows))
    click.echo(f"batch {outcome.batch_id}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items())))


_PLAN_COLUMNS = (
    ("#", "index", str),
    ("hash", "hash", str),
    ("model", "model", str),
    ("mode", "mode", str),
    ("device", "device", str),
    ("d_model", "d_model", str),
    ("layers", "n_layers", str),
    ("batch", "batch_size", str),
    ("seq", "seq_len", str),
    ("precision", "precision", str),
    ("execution", "execution", str),
)


def _plan_table(name: str, records: list[dict[str, Any]]) -> str:
    """The columns above, then every other config field that takes two values or more within one model (a
    grid's `kernels: [triton, torch]`, say), so that no two rows read alike but for their hash; then the
    parameters. A field one model has and another lacks, or sets otherwise, goes with the model column."""
    shown = {key for _, key, _ in _PLAN_COLUMNS} | {"params"}
    fields = dict.fromkeys(key for r in records for key in r if key not in shown)
    columns = (
        *_PLAN_COLUMNS,
        *((key, key, str) for key in fields if _varies_within_a_model(key, records)),
        ("params", "params", lambda v: f"{v:,}"),
    )
    return f"{name}: {len(records)} configs\n" + text_table(records, columns)


def _varies_within_a_model(key: str, records: list[dict[str, Any]]) -> bool:
    values: dict[Any, set[str]] = {}
    for r in records:
        if key in r:
            values.setdefault(r.get("model"), set()).add(json.dumps(r[key], sort_keys=True, default=str))
    return any(len(v) > 1 for v in values.values())


class _Progress:
    """A tqdm bar over a batch's runs, on stderr."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def start(self, batch_id: int, total: int) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"batch {batch_id}", unit="run", file=sys.stderr, dynamic_ncols=True)

    def update(self, run, outcome: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{run.model} {run.mode}: {outcome['status']}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


BATCH_COLUMNS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("id", "id", str),
    ("name", "name", str),
    ("status", "status", str),
    ("runs", "runs", str),
    ("ok", "ok", str),
    ("pending", "pending", str),
    ("running", "running", str),
    ("skipped", "skipped", str),
    ("oom", "oom", str),
    ("failed", "failed", str),
    ("timeout", "timeout", str),
    ("created", "created", str),
)
#: `status BATCH`: the listed columns, and where a training run is (visible while it runs)
BATCH_RUN_COLUMNS = LISTED_COLUMNS + (("step", "step", str), ("train loss", "train_loss", lambda v: f"{v:.4f}"))


@click.command()
@click.argument("batch", required=False)
@db_option
@json_option
def status(batch, db, as_json) -> None:
    """Show every batch's progress, or one BATCH's runs."""
    with open_store(db) as store:
        if batch is None:
            records, columns = _batches(store), BATCH_COLUMNS
        else:
            records, columns = _batch_runs(store, batch), BATCH_RUN_COLUMNS
    click.echo(json.dumps(records, indent=2, default=str) if as_json else text_table(records, columns))


def _batches(store) -> list[dict[str, Any]]:
    """One record per batch: its status (`driver lost` for a running batch whose driver's lease ran out)
    and its runs counted by status."""
    return [
        {
            "id": b.id,
            "name": b.name,
            "status": "driver lost" if driver_lost(b) else b.status,
            "created": b.created_at.isoformat(),
            **{"runs": sum(c.values()), **c},
        }
        for b in store.batches()
        for c in [store.run_counts(b.id)]
    ]


def _batch_runs(store, batch: str) -> list[dict[str, Any]]:
    """The records of one batch's runs, with a training run's latest step and loss."""
    records = store.rows(api.Filters(batch=(str(store.find_batch(batch).id),)))
    latest = store.latest_metric([r["run_id"] for r in records])
    for r in records:
        r["step"] = latest.get(r["run_id"], {}).get("step")
        r["train_loss"] = latest.get(r["run_id"], {}).get("loss")
    return records


@click.command()
@click.argument("batch")
@db_option
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the batch's driver to stop.",
)
def cancel(batch, db, wait_s) -> None:
    """Stop BATCH cleanly: its driver ends the runs in flight (stored as cancelled) and leaves the pending
    ones for `run --resume`. Without a live driver the batch is marked cancelled at once."""
    with open_store(db) as store:
        found = store.find_batch(batch)
        if found.status not in ("pending", "running", "interrupted"):
            raise UserError(f"cancel: batch {found.id} ({found.name}) is {found.status}; nothing to cancel")
        driver = request_cancel(store, found.id)
        if driver is None:
            store.reset_unfinished(found.id)  # runs a dead driver left `running` are pending again
            store.set_batch_status(found.id, "cancelled")
            click.echo(f"batch {found.id} cancelled (no driver was running it); its unfinished runs stay resumable")
            return
        click.echo(f"asked the driver of batch {found.id} ({driver}) to stop", err=True)
        if not wait_until_released(store, found.id, wait_s):
            raise UserError(f"cancel: the driver of batch {found.id} did not stop within {wait_s:g} s")
        counts = store.run_counts(found.id)
        click.echo(f"batch {found.id} cancelled: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}")
