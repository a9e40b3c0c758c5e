"""Run phasebench's Alembic migrations and check a database's schema version."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ..errors import UserError
from .engine import current_revision, make_engine, mask_url


def _script_location() -> str:
    """The folder of the Alembic scripts: the top-level `migrations` package, found by name and not imported (its
    env.py imports this store's schema, so the store stays below it)."""
    spec = importlib.util.find_spec("migrations")
    if spec is None or spec.origin is None:
        raise RuntimeError("phasebench's migrations package is not installed beside orchestrator")
    return str(Path(spec.origin).parent)


SCRIPT_LOCATION = _script_location()
MIGRATION_LOCK_ID = 0x7062_6D69  # "pbmi": the advisory lock phasebench's migrations take on PostgreSQL
MIGRATION_ATTEMPTS = 3


def include_name(name, type_, parent_names) -> bool:
    """Only phasebench's tables: Optuna's (and anyone else's) in the same database are left alone."""
    return type_ != "table" or name.startswith("pb_")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory(SCRIPT_LOCATION).get_current_head()


def known_revisions() -> set[str]:
    return {rev.revision for rev in ScriptDirectory(SCRIPT_LOCATION).walk_revisions()}


def newer_schema(current: str) -> UserError:
    return UserError(
        f"--db: schema revision {current} is newer than this phasebench ({head_revision()}); upgrade phasebench"
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    current = current_revision(engine)  # also: an unreachable database is a UserError here
    if current is not None and current not in known_revisions():
        raise newer_schema(current)
    for attempt in range(MIGRATION_ATTEMPTS):
        try:
            _upgrade_serialised(engine, revision)
            return
        except DBAPIError:  # another process migrated the same empty database at the same moment
            if attempt == MIGRATION_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
            if revision == "head" and current_revision(engine) == head_revision():
                return


def _upgrade_serialised(engine: Engine, revision: str) -> None:
    """One migration transaction; on PostgreSQL an advisory lock makes concurrent drivers take turns
    (the second then finds the schema at head). SQLite's transactional DDL rolls a loser back whole."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def ensure_schema(engine: Engine, create: bool = True) -> None:
    """Make sure the database is at the head revision.

    An empty database is created (when `create`); an older one must be upgraded by the user
    (`phasebench db upgrade`); a newer or unknown revision is refused.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        if not create:
            raise UserError(f"--db: {mask_url(str(engine.url))} has no phasebench tables; run `phasebench db upgrade`")
        upgrade(engine)
        return
    if current not in known_revisions():
        raise newer_schema(current)
    raise UserError(f"--db: schema revision {current} is older than {head}; run `phasebench db upgrade`")


def check_database(url: str | None) -> None:
    """Refuse what `Store(url)` would refuse (a bad URL or path, a file that is not a database, a schema
    from an older or newer phasebench) without writing anything: a new SQLite file is not created."""
    engine = make_engine(url)
    try:
        database = engine.url.database  # never None for SQLite: make_engine refuses an in-memory database
        if engine.url.get_backend_name() == "sqlite" and database is not None and not Path(database).exists():
            return
        if current_revision(engine) is not None:
            ensure_schema(engine, create=False)
    finally:
        engine.dispose()
