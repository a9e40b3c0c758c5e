"""`phasebench runs`: tag, untag, annotate and delete stored runs (ids or unique id prefixes)."""

from __future__ import annotations

import sys

import click

from orchestrator.store.edits import Deletion, delete_runs, plan_deletion, set_note, tag_runs, untag_runs

from .common import db_option, open_store, resolve_runs

run_ids_argument = click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")


@click.group()
def runs() -> None:
    """Tag, annotate and delete stored runs."""


@runs.command("tag")
@run_ids_argument
@click.argument("tag")
@db_option
def runs_tag(run_ids, tag, db) -> None:
    """Give each run TAG; `results list --where tag=TAG` finds them.

    A tag is 1 to 100 letters, digits or _ . : + / -."""
    with open_store(db) as store:
        ids = resolve_runs(store, run_ids)
        added = tag_runs(store, ids, [tag])
    click.echo(f"tag {tag}: added to {added} of {_runs(len(ids))}")


@runs.command("untag")
@run_ids_argument
@click.argument("tag")
@db_option
def runs_untag(run_ids, tag, db) -> None:
    """Take TAG off each run."""
    with open_store(db) as store:
        ids = resolve_runs(store, run_ids)
        removed = untag_runs(store, ids, tag)
    click.echo(f"tag {tag}: taken off {removed} of {_runs(len(ids))}")


@runs.command("note")
@click.argument("run_id")
@click.argument("text")
@db_option
def runs_note(run_id, text, db) -> None:
    """Set the run's note to TEXT (an empty TEXT removes it); `results list` shows it."""
    with open_store(db) as store:
        full_id = store.resolve_run(run_id)
        set_note(store, full_id, text)
    click.echo(f"{'noted' if text else 'removed the note of'} run {full_id}")


@runs.command("delete")
@run_ids_argument
@db_option
@click.option("--yes", is_flag=True, help="Delete without asking.")
def runs_delete(run_ids, db, yes) -> None:
    """Delete the runs, the runs that reuse their results, and their results, training metrics and tags.
    Asks first (unless --yes); answering no deletes nothing and exits 1."""
    with open_store(db) as store:
        ids = resolve_runs(store, run_ids)
        if not yes and not _confirmed(_describe(plan_deletion(store, ids))):
            click.echo("nothing deleted", err=True)
            sys.exit(1)
        done = delete_runs(store, ids)
    click.echo(f"deleted {_describe(done)[0]}")


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _describe(deletion: Deletion) -> list[str]:
    """What a deletion removes, one line each: the runs and their data, then the study trials it touches."""
    removed = f"{_runs(len(deletion.run_ids))} ({', '.join(i[:10] for i in deletion.run_ids)})"
    if deletion.reusing:
        removed += f" and {_runs(len(deletion.reusing))} reusing their results"
    lines = [removed + f", with their results, tags and {deletion.metrics} training metrics"]
    by_study: dict[str, list[str]] = {}
    for study, number in deletion.trials:
        by_study.setdefault(study, []).append(f"#{number}")
    lines += [
        f"study {study} trials {', '.join(numbers)} link to these runs: the trials stay in the study "
        "with their values, their run link will point at no run"
        for study, numbers in by_study.items()
    ]
    return lines


def _confirmed(lines: list[str]) -> bool:
    """Ask on stderr whether to delete what `lines` describe; no answer (end of input) is no."""
    try:
        return click.confirm("\n".join(["delete " + lines[0], *lines[1:], "delete?"]), default=False, err=True)
    except click.exceptions.Abort:
        return False
