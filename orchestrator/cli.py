"""`phasebench`: run specs, follow batches, query results, manage the database, build dashboards.

Exit codes: 0 success, 1 a run failed or timed out (results are still stored), 2 bad input.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import click

from . import api, interrupts
from .errors import ConfigError, UserError
from .formatting import LISTED_COLUMNS, list_columns, render, sorted_by, text_table
from .spec import config_field_types, parse_value
from .store.engine import database_url, mask_text, mask_url

FORMATS = click.Choice(["table", "json", "csv"])
db_option = click.option("--db", envvar="PHASEBENCH_DB", help="SQLAlchemy URL (default sqlite:///phasebench.db).")
address_option = click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: local Ray).")


def filter_options(func):
    for option in reversed(
        [
            click.option("--model", multiple=True, help="Model name (repeatable)."),
            click.option("--mode", multiple=True, type=click.Choice(["inference", "train_no_optim", "train"])),
            click.option("--batch", multiple=True, help="Batch name or id (repeatable)."),
            click.option("--status", multiple=True, help="Run status (repeatable)."),
            click.option("--device", multiple=True, type=click.Choice(["cuda", "cpu"])),
            click.option("--where", multiple=True, metavar="KEY=VALUE", help="Config field equals value."),
        ]
    ):
        func = option(func)
    return func


def parse_where(items: tuple[str, ...]) -> dict[str, Any]:
    if not items:
        return {}
    kinds = config_field_types()  # loads the model families (and torch): only when there is a filter
    where = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--where: expected KEY=VALUE (got {item!r})")
        if key not in kinds:
            raise UserError(f"--where: unknown config field {key!r}")
        value = parse_value(raw) if raw else ""
        value = value if isinstance(value, (str, int, float, bool)) else raw
        kind = kinds[key]
        if kind is str:
            value = raw
        elif kind is bool and not isinstance(value, bool):
            raise UserError(f"--where: {key} is true or false (got {raw!r})")
        elif kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"--where: {key} is a number (got {raw!r})")
        where[key] = value
    return where


def filtered_results(db, model, mode, batch, status, device, where) -> list[dict[str, Any]]:
    return api.results(db, model=model, mode=mode, batch=batch, status=status, device=device, where=parse_where(where))


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
    json_out = sys.stdout
    if as_json:  # stdout carries the JSON only: Ray's threads print "(raylet) worker died" lines there, also
        sys.stdout = sys.stderr  # after the batch, so every print goes to stderr until the process exits
    try:
        if spec:
            outcome = api.run(spec, rerun=rerun, allow_large=yes, **kwargs)
        else:
            outcome = api.resume(resume_batch, **kwargs)
    finally:
        progress.close()
    rows = api.results(db, batch=[str(outcome.batch_id)])
    if as_json:
        click.echo(
            json.dumps(
                {
                    "batch_id": outcome.batch_id,
                    "counts": outcome.counts,
                    "interrupted": outcome.interrupted,
                    "runs": rows,
                },
                indent=2,
                default=str,
            ),
            file=json_out,
        )
    else:
        click.echo(text_table(rows))
        click.echo(f"batch {outcome.batch_id}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items())))
    if outcome.interrupted:
        again = _command("run", "--resume", outcome.batch_id, db=db, address=address, max_parallel=max_parallel)
        click.echo(f"interrupted: finish with `{again}`", err=True)
        sys.exit(130)
    if outcome.counts.get("failed") or outcome.counts.get("timeout"):
        sys.exit(1)


def _command(*words: Any, **options: Any) -> str:
    """A `phasebench` command line with every option that was given (None: left out), quoted for a shell;
    a database password is masked."""
    parts = ["phasebench", *map(str, words)]
    for name, value in options.items():
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", mask_url(value) if name == "db" else str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _plan_table(name: str, records: list[dict[str, Any]]) -> str:
    columns = (
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
        ("params", "params", lambda v: f"{v:,}"),
    )
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
            records = [
                {
                    "id": b.id,
                    "name": b.name,
                    "status": b.status,
                    "created": b.created_at.isoformat(),
                    **{"runs": sum(c.values()), **c},
                }
                for b in store.batches()
                for c in [store.run_counts(b.id)]
            ]
            columns = (
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
        else:
            found = store.find_batch(batch)
            records = store.rows(api.Filters(batch=(str(found.id),)))
            latest = store.latest_metric([r["run_id"] for r in records])
            for r in records:  # training runs: where they are, visible while they run
                r["step"] = latest.get(r["run_id"], {}).get("step")
                r["train_loss"] = latest.get(r["run_id"], {}).get("loss")
            columns = LISTED_COLUMNS + (("step", "step", str), ("train loss", "train_loss", lambda v: f"{v:.4f}"))
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
@click.option("--columns", metavar="A,B,...", help="Show these columns (headers, result fields, config fields).")
@click.option("--sort", "sort_key", metavar="[-]FIELD", help="Order by a field (a leading - for descending).")
def results_list(db, model, mode, batch, status, device, where, fmt, columns, sort_key) -> None:
    """One line per run: its id, the config fields the listed runs differ in, memory and speed, and for
    training runs the final loss, validation loss and bits per byte."""
    records = filtered_results(db, model, mode, batch, status, device, where)
    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    known = _field_names(records)
    for option, wanted in (("--columns", names or []), ("--sort", [sort_key.lstrip("-")] if sort_key else [])):
        unknown = [n for n in wanted if n not in known]
        if records and unknown:
            raise UserError(f"{option}: unknown field {unknown[0]!r}")
    if sort_key:
        records = sorted_by(records, sort_key)
    if fmt != "table":
        records = [{k: v for k, v in r.items() if k not in ("config", "extra")} for r in records]
    click.echo(render(records, fmt, list_columns(records, names)))


def _field_names(records: list[dict[str, Any]]) -> set[str]:
    """What --columns and --sort accept: column headers, result fields, config fields, `extra` figures."""
    known = {header for header, _, _ in LISTED_COLUMNS} | {key for _, key, _ in LISTED_COLUMNS}
    for record in records:
        known |= set(record) | set(record.get("config") or {}) | set(record.get("extra") or {})
    return known


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
    _emit(render(filtered_results(db, model, mode, batch, status, device, where), fmt), out)


def _emit(text: str, out: str | None) -> None:
    """`text` to the file `out` (a UserError naming --out when it cannot be written), else to stdout."""
    if not out:
        click.echo(text)
        return
    try:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise UserError(f"--out: cannot write {out}: {exc.strerror}") from None


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

    engine = make_engine(db)  # checks the URL; opens nothing yet
    current = None if _sqlite_file_missing(db) else current_revision(engine)
    click.echo(f"current: {current or '(empty)'}\nhead: {head_revision()}")


def _sqlite_file_missing(db: str | None) -> bool:
    """A SQLite URL whose folder exists but whose file does not (reading it must not create it)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(database_url(db))
    except Exception:  # noqa: BLE001  (make_engine reports a bad URL)
        return False
    path = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and bool(path)
        and path != ":memory:"
        and not os.path.exists(path)
        and os.path.isdir(os.path.dirname(os.path.abspath(path)))
    )


# --------------------------------------------------------------------------------------------- env
@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True)
def env(db, as_json) -> None:
    """Describe this machine, the database URL (password masked) and the registered models."""
    import torch

    import models

    from .environment import collect

    info = collect("cuda" if torch.cuda.is_available() else "cpu")
    info["database"] = mask_url(database_url(db))
    info["ray_address"] = os.environ.get("RAY_ADDRESS") or "(local)"
    info["models"] = models.names()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            click.echo(f"{key:>12}: {value}")


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# --------------------------------------------------------------------------------------- dashboard
@cli.group()
def dashboard() -> None:
    """Plotly dashboards of stored results."""
    _quiet_optuna()  # the study figures build in-memory studies, each announced at INFO


kernels_option = click.option(
    "--kernels", multiple=True, metavar="FILE", help="bench/kernels.py JSON to show in the kernel view (repeatable)."
)


@dashboard.command("build")
@db_option
@click.option(
    "--from-export",
    "exports",
    multiple=True,
    metavar="FILE",
    help="Rows written by `results export --format json` (repeatable); the database is then read "
    "only when --db (or PHASEBENCH_DB) is given too.",
)
@kernels_option
@click.option("--batch", multiple=True, help="Batch name or id (repeatable; default all).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
def dashboard_build(db, exports, kernels, batch, out) -> None:
    """Write a self-contained HTML report (plotly.js embedded, works offline)."""
    from dashboards.live import report_html
    from dashboards.sources import read_exports, read_kernels

    exported, benchmarks = read_exports(exports), read_kernels(kernels)
    text, n_runs = report_html(db, batch, exported=exported, kernels=benchmarks, read_db=bool(db or not exports))
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--out: cannot write {out}: {exc.strerror}") from None
    click.echo(f"wrote {path} ({n_runs} runs)")


@dashboard.command("serve")
@db_option
@kernels_option
@click.option("--batch", multiple=True, help="Batch name or id (repeatable; default all).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--refresh",
    "refresh_s",
    default=10,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds between page reloads.",
)
def dashboard_serve(db, kernels, batch, host, port, refresh_s) -> None:
    """Serve the report, rebuilt from the database on every load, while batches and studies run."""
    from dashboards.live import make_server
    from dashboards.sources import read_kernels

    from .store.repository import Store

    benchmarks = read_kernels(kernels)  # read once: a bad file is a one-line error now
    Store(db, create=False).close()  # a missing or old database is a one-line error now, not per request
    try:
        server = make_server(db, batch, host, port, refresh_s, kernels=benchmarks)
    except OSError as exc:
        raise UserError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"serving http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# ------------------------------------------------------------------------------------------- study
@cli.group()
def study() -> None:
    """Optuna studies over architectures and context lengths, stored in the result database."""
    _quiet_optuna()


def _study_table(records: list[dict[str, Any]], metrics: list[str]) -> str:
    params = list(dict.fromkeys(k for r in records for k in r if k.startswith("param_")))
    number = lambda v: f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"  # noqa: E731
    columns = (
        (("#", "number", str), ("state", "state", str), ("model", "model", str))
        + tuple((m, m, number) for m in metrics)
        + tuple((p[len("param_") :], p, str) for p in params if p != "param_model")
        + (
            ("feasible", "feasible", str),
            ("constraint", "constraint", lambda v: f"{v:.3f}"),
            ("run", "run_id", lambda v: v[:8]),
            ("reused", "reused_run_id", lambda v: v[:8]),
        )
    )
    return text_table(records, columns)


@study.command("create")
@click.argument("spec", type=click.Path(dir_okay=False))
@db_option
def study_create(spec, db) -> None:
    """Validate a study SPEC (YAML) and store it (Optuna tables beside phasebench's)."""
    from . import study as studies

    parsed = studies.create_study(spec, db=db)
    click.echo(
        f"created study {parsed.name} ({', '.join(o.label for o in parsed.objectives)}; sampler "
        f"{parsed.sampler}) in {mask_url(database_url(db))}\n"
        f"run it with `phasebench study run {parsed.name} --trials N --parallel K`"
    )


@study.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def study_list(db, as_json) -> None:
    """Every study in the database: its trials by state, objectives and description."""
    from . import study as studies

    listed = studies.list_studies(db)
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    for row in listed:
        row["by_state"] = ", ".join(f"{k.lower()} {v}" for k, v in sorted(row["states"].items())) or "-"
        row["objective"] = "; ".join(row["objectives"]) or "-"
    columns = (
        ("study", "name", str),
        ("trials", "trials", str),
        ("states", "by_state", str),
        ("objectives", "objective", str),
        ("description", "description", str),
    )
    click.echo(text_table(listed, columns))


@study.command("run")
@click.argument("name")
@click.option("--trials", type=click.IntRange(min=1), required=True, help="Trials the study should hold in total.")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True, help="Trials in flight at once.")
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Ray retries of a trial whose worker died.",
)
@db_option
@address_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def study_run(name, trials, parallel, max_retries, db, address, as_json, no_progress) -> None:
    """Run or continue study NAME until it holds --trials trials (each one an isolated Ray task)."""
    from . import study as studies

    bar = {}

    def on_start(done: int, todo: int) -> None:
        if not no_progress and not as_json and todo:
            from tqdm import tqdm

            bar["bar"] = tqdm(
                total=todo, desc=f"study {name} ({done} done)", unit="trial", file=sys.stderr, dynamic_ncols=True
            )

    def on_trial(report) -> None:
        if "bar" in bar:
            shown = ", ".join(f"{v:.4g}" for v in report.values) if report.values else (report.error or "")[:60]
            bar["bar"].set_postfix_str(
                f"#{report.number} {report.state}{' (cached)' if report.reused else ''}: {shown}"
            )
            bar["bar"].update(1)

    try:
        outcome = studies.run_study(
            name,
            trials,
            parallel,
            db=db,
            address=address,
            max_retries=max_retries,
            on_start=on_start,
            on_trial=on_trial,
        )
    finally:
        if "bar" in bar:
            bar["bar"].close()
    summary = studies.study_summary(name, db)
    if as_json:
        import dataclasses

        click.echo(json.dumps({"outcome": dataclasses.asdict(outcome), "summary": summary}, indent=2, default=str))
    else:
        click.echo(_study_text(summary))
        extra = f"; {outcome.stale_failed} left running by a stopped driver marked FAIL" if outcome.stale_failed else ""
        click.echo(
            "this session: "
            + (", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items())) or "nothing to do")
            + (f" ({outcome.reused} answered from the database)" if outcome.reused else "")
            + extra
        )
    if outcome.interrupted:
        again = _command(
            "study",
            "run",
            name,
            "--trials",
            trials,
            parallel=parallel if parallel != 1 else None,
            db=db,
            address=address,
        )
        click.echo(f"interrupted: continue with `{again}`", err=True)
        sys.exit(130)
    if outcome.counts.get("FAIL"):
        sys.exit(1)


def _study_text(summary: dict[str, Any]) -> str:
    states = ", ".join(f"{k} {v}" for k, v in sorted(summary["states"].items())) or "no trials yet"
    budget = f", VRAM budget {summary['vram_budget_gb']:g} GiB" if summary["vram_budget_gb"] else ""
    lines = [
        f"study {summary['name']}: {', '.join(summary['objectives'])} (sampler {summary['sampler']}{budget})",
        f"trials {summary['trials']}: {states}; feasible {summary['feasible']}",
    ]
    if summary["pareto"] is not None:
        lines += [f"Pareto set ({len(summary['pareto'])} trials):", _study_table(summary["pareto"], summary["metrics"])]
    elif summary["best"]:
        lines += ["best feasible trials:", _study_table(summary["best"], summary["metrics"])]
    else:
        lines.append("no feasible completed trial yet")
    if summary["infeasible"]:
        lines.append(f"infeasible trials ({len(summary['infeasible'])}):")
        for r in summary["infeasible"]:
            params = ", ".join(f"{k[6:]}={v}" for k, v in r.items() if k.startswith("param_"))
            lines.append(f"  #{r['number']} {params}: {r['infeasible_because']}")
    return "\n".join(lines)


@study.command("show")
@click.argument("name")
@db_option
@click.option("--json", "as_json", is_flag=True)
def study_show(name, db, as_json) -> None:
    """Progress, the best feasible trials, and the Pareto set of a multi-objective study."""
    from . import study as studies

    summary = studies.study_summary(name, db)
    click.echo(json.dumps(summary, indent=2, default=str) if as_json else _study_text(summary))


@study.command("best")
@click.argument("name")
@db_option
@click.option("--json", "as_json", is_flag=True)
def study_best(name, db, as_json) -> None:
    """The best feasible trial (one objective) or the Pareto set (several)."""
    from . import study as studies

    found = studies.best(name, db)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
    else:
        metrics = [label.split()[1] for label in found["objectives"]]
        click.echo(_study_table(found["best"], metrics) if found["best"] else "no feasible completed trial yet")


@study.command("export")
@click.argument("name")
@db_option
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="File to write (default stdout).")
def study_export(name, db, fmt, out) -> None:
    """Every trial: state, objective values, parameters, constraint, linked run."""
    from . import study as studies

    _emit(render(studies.export(name, db), fmt), out)


def _terminate(signum, frame) -> None:
    """SIGTERM (`timeout`, `kill`, a scheduler's preemption) stops a driver the way Ctrl-C does: runs in
    flight are marked, trials told FAIL, and the batch or study can be resumed. A second SIGTERM kills."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    interrupts.request()


def _interrupt(signum, frame) -> None:
    """Ctrl-C, recorded so that a raise swallowed by a callback is raised again (orchestrator.interrupts)."""
    interrupts.request()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit 2; nothing prints a password."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    args = argv if argv is not None else sys.argv[1:]
    url = _db_from_argv(args) or database_url()  # for masking what is printed
    try:
        for arg in args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"argument {arg!r} is not valid UTF-8") from None
        cli.main(args=argv, prog_name="phasebench", standalone_mode=False)
    except (ConfigError, UserError) as exc:
        click.echo(f"error: {_one_line(mask_text(str(exc), url))}", err=True)
        sys.exit(2)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help, as asked for
        click.echo(exc.format_message())
    except click.UsageError as exc:
        click.echo(f"error: {_one_line(mask_text(exc.format_message(), url))}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _db_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--db="):
            return arg[5:]
    return None


if __name__ == "__main__":
    main()
