"""`phasebench study`: Optuna studies stored beside the results (Optuna loads inside the verbs)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from orchestrator.formatting import render, text_table
from orchestrator.store.engine import database_url, mask_url

from .common import (
    address_option,
    command_line,
    db_option,
    emit,
    imports_option,
    json_option,
    quiet_optuna,
    settings_option,
    spec_source,
)


@click.group()
def study() -> None:
    """Optuna studies over architectures and context lengths, stored in the result database."""
    quiet_optuna()


@study.command("create")
@click.argument("spec", type=click.Path(dir_okay=False))
@db_option
@settings_option
@imports_option
def study_create(spec, db, settings, imports) -> None:
    """Validate a study SPEC (YAML) and store it (Optuna tables beside phasebench's)."""
    from orchestrator import study as studies

    parsed = studies.create_study(spec_source(spec, settings, imports), db=db)
    click.echo(
        f"created study {parsed.name} ({', '.join(o.label for o in parsed.objectives)}; sampler "
        f"{parsed.sampler}) in {mask_url(database_url(db))}\n"
        f"run it with `phasebench study run {parsed.name} --trials N --parallel K`"
    )


@study.command("list")
@db_option
@json_option
def study_list(db, as_json) -> None:
    """Every study in the database: its trials by state, objectives and description."""
    from orchestrator import study as studies

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
    from orchestrator import study as studies

    progress = _TrialProgress(name, enabled=not no_progress and not as_json)
    try:
        outcome = studies.run_study(
            name,
            trials,
            parallel,
            db=db,
            address=address,
            max_retries=max_retries,
            on_start=progress.start,
            on_trial=progress.update,
        )
    finally:
        progress.close()
    summary = studies.study_summary(name, db)
    if as_json:
        import dataclasses

        click.echo(json.dumps({"outcome": dataclasses.asdict(outcome), "summary": summary}, indent=2, default=str))
    else:
        click.echo(_study_text(summary) + "\n" + _session_line(outcome))
    if outcome.interrupted or outcome.cancelled:
        again = command_line(
            "study",
            "run",
            name,
            "--trials",
            trials,
            parallel=parallel if parallel != 1 else None,
            db=db,
            address=address,
        )
        how = "interrupted" if outcome.interrupted else "cancelled by `phasebench cancel`"
        click.echo(f"{how}: continue with `{again}`", err=True)
        sys.exit(130 if outcome.interrupted else 1)
    if outcome.counts.get("FAIL"):
        sys.exit(1)


class _TrialProgress:
    """A tqdm bar over the trials a `study run` adds, on stderr."""

    def __init__(self, name: str, enabled: bool):
        self.name, self.enabled, self.bar = name, enabled, None

    def start(self, done: int, todo: int) -> None:
        if self.enabled and todo:
            from tqdm import tqdm

            desc = f"study {self.name} ({done} done)"
            self.bar = tqdm(total=todo, desc=desc, unit="trial", file=sys.stderr, dynamic_ncols=True)

    def update(self, report) -> None:
        if self.bar is not None:
            shown = ", ".join(f"{v:.4g}" for v in report.values) if report.values else (report.error or "")[:60]
            self.bar.set_postfix_str(f"#{report.number} {report.state}{' (cached)' if report.reused else ''}: {shown}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _session_line(outcome) -> str:
    """What this `study run` did: trials by state, those answered from the database, stale ones failed."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items())) or "nothing to do"
    reused = f" ({outcome.reused} answered from the database)" if outcome.reused else ""
    stale = f"; {outcome.stale_failed} left running by a stopped driver marked FAIL" if outcome.stale_failed else ""
    return f"this session: {counts}{reused}{stale}"


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
@json_option
def study_show(name, db, as_json) -> None:
    """Progress, the best feasible trials, and the Pareto set of a multi-objective study."""
    from orchestrator import study as studies

    summary = studies.study_summary(name, db)
    click.echo(json.dumps(summary, indent=2, default=str) if as_json else _study_text(summary))


@study.command("best")
@click.argument("name")
@db_option
@json_option
def study_best(name, db, as_json) -> None:
    """The best feasible trial (one objective) or the Pareto set (several)."""
    from orchestrator import study as studies

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
    from orchestrator import study as studies

    emit(render(studies.export(name, db), fmt), out)
