"""`phasebench results`: list, show, export stored results and a training run's curve."""

from __future__ import annotations

import json
from typing import Any

import click

from orchestrator import api
from orchestrator.errors import UserError
from orchestrator.formatting import ANNOTATION_COLUMNS, LISTED_COLUMNS, list_columns, render, sorted_by

from .common import FORMATS, db_option, emit, json_option, open_store


def filter_options(func):
    for option in reversed(
        [
            click.option("--model", multiple=True, help="Model name (repeatable)."),
            click.option("--mode", multiple=True, type=click.Choice(["inference", "train_no_optim", "train"])),
            click.option("--batch", multiple=True, help="Batch name or id (repeatable)."),
            click.option("--status", multiple=True, help="Run status (repeatable)."),
            click.option("--device", multiple=True, type=click.Choice(["cuda", "cpu"])),
            click.option(
                "--where",
                multiple=True,
                metavar="COND",
                help="FIELD OP VALUE (OP: = != < <= > >=) or FIELD in A,B on a result field, config field "
                "or tag (repeatable; all must hold).",
            ),
        ]
    ):
        func = option(func)
    return func


def filtered_results(db, model, mode, batch, status, device, where) -> list[dict[str, Any]]:
    return api.results(db, model=model, mode=mode, batch=batch, status=status, device=device, where=where)


@click.group()
def results() -> None:
    """Query and export stored results."""


@results.command("list")
@db_option
@filter_options
@click.option("--format", "fmt", type=FORMATS, default="table")
@click.option("--columns", metavar="A,B,...", help="Show these columns (headers, result fields, config fields).")
@click.option("--sort", "sort_key", metavar="[-]FIELD", help="Order by a field (a leading - for descending).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Show at most N runs.")
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, metavar="N", help="Skip the first N runs (after --sort)."
)
def results_list(db, model, mode, batch, status, device, where, fmt, columns, sort_key, limit, offset) -> None:
    """One line per run: its id, the config fields the listed runs differ in, memory and speed, for
    training runs the final loss, validation loss and bits per byte, and the runs' tags and notes."""
    records = filtered_results(db, model, mode, batch, status, device, where)
    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    _check_fields(records, {"--columns": names or [], "--sort": [sort_key.lstrip("-")] if sort_key else []})
    if sort_key:
        records = sorted_by(records, sort_key)
    shown = records[offset : offset + limit if limit else None]
    if fmt != "table":
        shown = [{k: v for k, v in r.items() if k not in ("config", "extra")} for r in shown]
    click.echo(render(shown, fmt, list_columns(shown, names)))
    if len(shown) < len(records):  # a note beside JSON or CSV goes to stderr, so stdout stays parseable
        click.echo(
            f"{len(shown)} of {len(records)} runs" + (f" (offset {offset})" if offset else ""), err=fmt != "table"
        )


def _check_fields(records: list[dict[str, Any]], wanted: dict[str, list[str]]) -> None:
    """A UserError naming the option and the first field no listed record has (column headers, result
    fields, config fields, `extra` figures); nothing to check when no run is listed."""
    known = {name for header, key, _ in LISTED_COLUMNS + ANNOTATION_COLUMNS for name in (header, key)}
    for record in records:
        known |= set(record) | set(record.get("config") or {}) | set(record.get("extra") or {})
    for option, names in wanted.items():
        unknown = [n for n in names if n not in known]
        if records and unknown:
            raise UserError(f"{option}: unknown field {unknown[0]!r}")


@results.command("show")
@click.argument("run_id")
@db_option
@json_option
def results_show(run_id, db, as_json) -> None:
    """Everything stored about one run (id or unique id prefix)."""
    with open_store(db) as store:
        full_id = store.resolve_run(run_id)
        record = next(r for r in store.rows() if r["run_id"] == full_id)
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    for key, value in record.items():
        click.echo(f"{key:>20}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


CURVE_COLUMNS = (
    ("kind", "kind", str),
    ("step", "step", str),
    ("tokens", "tokens", lambda v: f"{v:,}"),
    ("time s", "elapsed_s", lambda v: f"{v:.1f}"),
    ("loss", "loss", lambda v: f"{v:.4f}"),
    ("val loss", "val_loss", lambda v: f"{v:.4f}"),
    ("bits/byte", "bits_per_byte", lambda v: f"{v:.4f}"),
    ("lr", "lr", lambda v: f"{v:.2e}"),
    ("grad norm", "grad_norm", lambda v: f"{v:.3f}"),
    ("tok/s", "tokens_per_s", lambda v: f"{v:,.0f}"),
)


@results.command("curves")
@click.argument("run_id")
@db_option
@click.option("--kind", type=click.Choice(["all", "train", "eval"]), default="all")
@click.option("--format", "fmt", type=FORMATS, default="table")
def results_curves(run_id, db, kind, fmt) -> None:
    """The training curve of one run (id or unique prefix): every step and evaluation."""
    with open_store(db) as store:
        rows = store.metrics(store.resolve_run(run_id))
    rows = [r for r in rows if kind == "all" or r["kind"] == kind]
    click.echo(render(rows, fmt, CURVE_COLUMNS))


@results.command("export")
@db_option
@filter_options
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="File to write (default stdout).")
def results_export(db, model, mode, batch, status, device, where, fmt, out) -> None:
    """Every field of the matching runs (config and extras included)."""
    emit(render(filtered_results(db, model, mode, batch, status, device, where), fmt), out)
