"""`phasebench db` (the schema) and `phasebench env` (this machine and the database it would use)."""

from __future__ import annotations

import json
import os

import click

from orchestrator.store.engine import current_revision, database_url, make_engine, mask_url

from .common import db_option, json_option


@click.group()
def db() -> None:
    """The result database's schema."""


@db.command("upgrade")
@db_option
def db_upgrade(db) -> None:
    """Create or migrate phasebench's tables to the latest revision."""
    from orchestrator.store.migrate import head_revision, upgrade

    upgrade(make_engine(db))
    click.echo(f"{mask_url(database_url(db))}: at revision {head_revision()}")


@db.command("current")
@db_option
def db_current(db) -> None:
    """Print the database's phasebench revision and the latest one."""
    from orchestrator.store.migrate import head_revision

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
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return False
    return not os.path.exists(path) and os.path.isdir(os.path.dirname(os.path.abspath(path)))


@click.command()
@db_option
@json_option
def env(db, as_json) -> None:
    """Describe this machine, the database URL (password masked) and the registered models."""
    import torch

    import models
    from orchestrator.environment import collect

    info = collect("cuda" if torch.cuda.is_available() else "cpu")
    info["database"] = mask_url(database_url(db))
    info["ray_address"] = os.environ.get("RAY_ADDRESS") or "(local)"
    info["models"] = models.names()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            click.echo(f"{key:>12}: {value}")
