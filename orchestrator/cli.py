"""`phasebench`: run specs, follow batches, query results, manage the database, build dashboards.

Exit codes: 0 success, 1 a run failed or timed out (results are still stored), 2 bad input.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
import yaml

from . import api
from .errors import ConfigError, UserError
from .formatting import RESULT_COLUMNS, render, text_table
from .store.engine import database_url, mask_text, mask_url

FORMATS = click.Choice(["table", "json", "csv"])
db_option = click.option("--db", envvar="PHASEBENCH_DB", help="SQLAlchemy URL (default sqlite:///phasebench.db).")
address_option = click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: local Ray).")


def filter_options(func):
    for option in reversed([
        click.option("--model", multiple=True, help="Model name (repeatable)."),
        click.option("--mode", multiple=True, type=click.Choice(["inference", "train_no_optim", "train"])),
        click.option("--batch", multiple=True, help="Batch name or id (repeatable)."),
        click.option("--status", multiple=True, help="Run status (repeatable)."),
        click.option("--device", multiple=True, type=click.Choice(["cuda", "cpu"])),
        click.option("--where", multiple=True, metavar="KEY=VALUE", help="Config field equals value."),
    ]):
        func = option(func)
    return func


def config_field_names() -> set[str]:
    import dataclasses

    import models
    from .spec import RUN_FIELD_TYPES
    names = set(RUN_FIELD_TYPES)
    for name in models.names():
        names.update(f.name for f in dataclasses.fields(models.get(name).config_cls))
    return names


def parse_where(items: tuple[str, ...]) -> dict[str, Any]:
    known = config_field_names()
    where = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--where: expected KEY=VALUE (got {item!r})")
        if key not in known:
            raise UserError(f"--where: unknown config field {key!r}")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        where[key] = value if isinstance(value, (str, int, float, bool)) else raw
    return where


def filtered_results(db, model, mode, batch, status, device, where) -> list[dict[str, Any]]:
    return api.results(db, model=model, mode=mode, batch=batch, status=status, device=device,
                       where=parse_where(where))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="phasebench")
def cli() -> None:
    """Orchestrate O(N) language-model experiments on Ray and keep every result in one database."""


# --------------------------------------------------------------------------------------------- run
@cli.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@db_option
@address_option
@click.option("--dry-run", is_flag=True, help="Validate and list the resolved configs; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--rerun", is_flag=True, help="Run configs even if the database already has their result.")
@click.option("--resume", "resume_batch", metavar="BATCH", help="Finish the unfinished runs of a stored batch.")
@click.option("--yes", is_flag=True, help="Allow grids of more than 10,000 configs.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Runs in flight at once.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(spec, db, address, dry_run, as_json, rerun, resume_batch, yes, max_parallel, no_progress) -> None:
    """Run the batch described by SPEC (a YAML file), or --resume a stored one."""
    if bool(spec) == bool(resume_batch):
        raise UserError("run: give either SPEC or --resume BATCH")
    if dry_run:
        if not spec:
            raise UserError("--dry-run: needs SPEC")
        plan = api.plan(spec, allow_large=yes)
        records = [{"index": r.index, "hash": r.config_hash, "params": r.params, **r.config} for r in plan.runs]
        click.echo(json.dumps(records, indent=2) if as_json else _plan_table(plan.name, records))
        return
    progress = _Progress(enabled=not no_progress and not as_json)
    kwargs = dict(db=db, address=address, max_parallel=max_parallel, on_batch=progress.start, on_result=progress.update)
    try:
        if spec:
            outcome = api.run(spec, rerun=rerun, allow_large=yes, **kwargs)
        else:
            outcome = api.resume(resume_batch, **kwargs)
    finally:
        progress.close()
    rows = api.results(db, batch=[str(outcome.batch_id)])
    if as_json:
        click.echo(json.dumps({"batch_id": outcome.batch_id, "counts": outcome.counts,
                               "interrupted": outcome.interrupted, "runs": rows}, indent=2, default=str))
    else:
        click.echo(text_table(rows))
        click.echo(f"batch {outcome.batch_id}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items())))
    if outcome.interrupted:
        click.echo(f"interrupted: finish with `phasebench run --resume {outcome.batch_id}`", err=True)
        sys.exit(130)
    if outcome.counts.get("failed") or outcome.counts.get("timeout"):
        sys.exit(1)


def _plan_table(name: str, records: list[dict[str, Any]]) -> str:
    columns = (("#", "index", str), ("hash", "hash", str), ("model", "model", str), ("mode", "mode", str),
               ("device", "device", str), ("d_model", "d_model", str), ("layers", "n_layers", str),
               ("batch", "batch_size", str), ("seq", "seq_len", str), ("precision", "precision", str),
               ("params", "params", lambda v: f"{v:,}"))
    return f"{name}: {len(records)} configs\n" + text_table(records, columns)


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


# ------------------------------------------------------------------------------------------ status
@cli.command()
@click.argument("batch", required=False)
@db_option
@click.option("--json", "as_json", is_flag=True)
def status(batch, db, as_json) -> None:
    """Show every batch's progress, or one BATCH's runs."""
    from .store.repository import Store
    store = Store(db, create=False)
    try:
        if batch is None:
            records = [{"id": b.id, "name": b.name, "status": b.status, "created": b.created_at.isoformat(),
                        **{"runs": sum(c.values()), **c}} for b in store.batches()
                       for c in [store.run_counts(b.id)]]
            columns = (("id", "id", str), ("name", "name", str), ("status", "status", str),
                       ("runs", "runs", str), ("ok", "ok", str), ("pending", "pending", str),
                       ("running", "running", str), ("skipped", "skipped", str), ("oom", "oom", str),
                       ("failed", "failed", str), ("timeout", "timeout", str), ("created", "created", str))
        else:
            found = store.find_batch(batch)
            records = store.rows(api.Filters(batch=(str(found.id),)))
            latest = store.latest_metric([r["run_id"] for r in records])
            for r in records:  # training runs: where they are, visible while they run
                r["step"] = latest.get(r["run_id"], {}).get("step")
                r["train_loss"] = latest.get(r["run_id"], {}).get("loss")
            columns = RESULT_COLUMNS + (("step", "step", str), ("train loss", "train_loss", lambda v: f"{v:.4f}"))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
    else:
        click.echo(text_table(records, columns))


# ----------------------------------------------------------------------------------------- results
@cli.group()
def results() -> None:
    """Query and export stored results."""


@results.command("list")
@db_option
@filter_options
@click.option("--format", "fmt", type=FORMATS, default="table")
def results_list(db, model, mode, batch, status, device, where, fmt) -> None:
    """One line per run."""
    records = filtered_results(db, model, mode, batch, status, device, where)
    if fmt != "table":
        records = [{k: v for k, v in r.items() if k not in ("config", "extra")} for r in records]
    click.echo(render(records, fmt))


@results.command("show")
@click.argument("run_id")
@db_option
@click.option("--json", "as_json", is_flag=True)
def results_show(run_id, db, as_json) -> None:
    """Everything stored about one run (id or unique id prefix)."""
    from .store.repository import Store
    store = Store(db, create=False)
    try:
        full_id = store.resolve_run(run_id)
        record = next(r for r in store.rows() if r["run_id"] == full_id)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    for key, value in record.items():
        click.echo(f"{key:>20}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


CURVE_COLUMNS = (("kind", "kind", str), ("step", "step", str), ("tokens", "tokens", lambda v: f"{v:,}"),
                 ("time s", "elapsed_s", lambda v: f"{v:.1f}"), ("loss", "loss", lambda v: f"{v:.4f}"),
                 ("val loss", "val_loss", lambda v: f"{v:.4f}"), ("bits/byte", "bits_per_byte", lambda v: f"{v:.4f}"),
                 ("lr", "lr", lambda v: f"{v:.2e}"), ("grad norm", "grad_norm", lambda v: f"{v:.3f}"),
                 ("tok/s", "tokens_per_s", lambda v: f"{v:,.0f}"))


@results.command("curves")
@click.argument("run_id")
@db_option
@click.option("--kind", type=click.Choice(["all", "train", "eval"]), default="all")
@click.option("--format", "fmt", type=FORMATS, default="table")
def results_curves(run_id, db, kind, fmt) -> None:
    """The training curve of one run (id or unique prefix): every step and evaluation."""
    from .store.repository import Store
    store = Store(db, create=False)
    try:
        rows = store.metrics(store.resolve_run(run_id))
    finally:
        store.close()
    rows = [r for r in rows if kind == "all" or r["kind"] == kind]
    click.echo(render(rows, fmt, CURVE_COLUMNS))


@results.command("export")
@db_option
@filter_options
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="File to write (default stdout).")
def results_export(db, model, mode, batch, status, device, where, fmt, out) -> None:
    """Every field of the matching runs (config and extras included)."""
    text = render(filtered_results(db, model, mode, batch, status, device, where), fmt)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text)


# ---------------------------------------------------------------------------------------------- db
@cli.group()
def db() -> None:
    """The result database's schema."""


@db.command("upgrade")
@db_option
def db_upgrade(db) -> None:
    """Create or migrate phasebench's tables to the latest revision."""
    from .store.engine import make_engine
    from .store.migrate import head_revision, upgrade
    engine = make_engine(db)
    upgrade(engine)
    click.echo(f"{mask_url(database_url(db))}: at revision {head_revision()}")


@db.command("current")
@db_option
def db_current(db) -> None:
    """Print the database's phasebench revision and the latest one."""
    from .store.engine import current_revision, make_engine
    from .store.migrate import head_revision
    engine = make_engine(db)
    click.echo(f"current: {current_revision(engine) or '(empty)'}\nhead: {head_revision()}")


# --------------------------------------------------------------------------------------------- env
@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True)
def env(db, as_json) -> None:
    """Describe this machine, the database URL (password masked) and the registered models."""
    import models
    from .environment import collect
    import torch
    info = collect("cuda" if torch.cuda.is_available() else "cpu")
    info["database"] = mask_url(database_url(db))
    info["ray_address"] = os.environ.get("RAY_ADDRESS") or "(local)"
    info["models"] = models.names()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            click.echo(f"{key:>12}: {value}")


# --------------------------------------------------------------------------------------- dashboard
@cli.group()
def dashboard() -> None:
    """Plotly dashboards of stored results."""


@dashboard.command("build")
@db_option
@click.option("--batch", multiple=True, help="Batch name or id (repeatable; default all).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
def dashboard_build(db, batch, out) -> None:
    """Write a self-contained HTML report (plotly.js embedded, works offline)."""
    from dashboards.report import is_training, write_report
    from .store.repository import Store
    rows = api.results(db, batch=batch)
    store = Store(db, create=False)
    try:
        curves = {r["run_id"]: store.metrics(r["run_id"]) for r in rows if is_training(r)}
    finally:
        store.close()
    path = write_report(rows, out, curves=curves)
    click.echo(f"wrote {path} ({len(rows)} runs)")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit 2; nothing prints a password."""
    url = database_url(_db_from_argv(argv if argv is not None else sys.argv[1:]))
    try:
        cli.main(args=argv, prog_name="phasebench", standalone_mode=False)
    except (ConfigError, UserError) as exc:
        click.echo(f"error: {mask_text(str(exc), url)}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _db_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--db="):
            return arg[5:]
    return None


if __name__ == "__main__":
    main()
