"""Database URLs, engines and schema versions.

The default URL is `sqlite:///phasebench.db` in the working directory (WAL, busy timeout);
`--db` / `PHASEBENCH_DB` take any SQLAlchemy URL. Passwords never appear in what this module prints.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, SQLAlchemyError

from ..errors import UserError

DEFAULT_URL = "sqlite:///phasebench.db"
VERSION_TABLE = "pb_alembic_version"
SQLITE_BUSY_TIMEOUT_S = 60


def database_url(url: str | None = None) -> str:
    """`url`, else `PHASEBENCH_DB`, else the default; a `postgres://` URL (as many hosts write it) is read as
    the `postgresql://` SQLAlchemy expects."""
    if url is not None and not url.strip():
        raise UserError("--db: is empty (leave it out for the default, sqlite:///phasebench.db)")
    url = url or os.environ.get("PHASEBENCH_DB") or DEFAULT_URL
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+")[0] == "postgres":
        return "postgresql" + scheme[len("postgres") :] + sep + rest
    return url


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"


def mask_text(text: str, url: str) -> str:
    """`text` with the password of `url` masked where a message can carry it: as a URL's password field
    (`user:PASSWORD@`, raw or percent-encoded) or a connection string's `password=PASSWORD`. Other text is
    left alone, so a short password does not mangle the words around it."""
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        return text
    if not password:
        return text
    for form in {str(password), quote(str(password), safe="")}:
        text = text.replace(f":{form}@", ":***@").replace(f"password={form}", "password=***")
    return text


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str | None = None, must_exist: bool = False) -> Engine:
    """An engine for `url`; UserError (exit 2) for a malformed URL or an unusable SQLite path."""
    url = database_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(f"--db: not a valid database URL: {mask_url(url)}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.query:
            raise UserError(f"--db: query parameters are not supported in a SQLite URL: {mask_url(url)}")
        _check_sqlite_path(parsed.database)
        if must_exist and parsed.database not in (None, "", ":memory:") and not Path(parsed.database).exists():
            raise UserError(
                f"--db: {mask_url(url)} has no phasebench tables (no such file); run `phasebench db upgrade`"
            )
        try:
            engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        except ArgumentError as exc:
            raise UserError(f"--db: cannot use {mask_url(url)}: {mask_text(str(exc).splitlines()[0], url)}") from None
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (ImportError, SQLAlchemyError) as exc:
        raise UserError(f"--db: cannot use {mask_url(url)}: {mask_text(str(exc).splitlines()[0], url)}") from None


def _check_sqlite_path(database: str | None) -> None:
    if not database or database == ":memory:":
        raise UserError("--db: an in-memory SQLite database loses every result when phasebench exits; give a file")
    if Path(database).exists() and not Path(database).is_file():
        raise UserError(f"--db: {database} is not a regular file")
    folder = Path(database).resolve().parent
    if not folder.is_dir():
        raise UserError(f"--db: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (Path(database).exists() and not os.access(database, os.R_OK | os.W_OK)):
        raise UserError(f"--db: {database} is not readable and writable")


def current_revision(engine: Engine) -> str | None:
    """The phasebench schema revision stored in the database (None for an empty database)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            return _stored_revision(engine)
        except DatabaseError as exc:  # unreachable, refused, or a file that is not a database
            if _sqlite_busy(engine, exc) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            first_line = (str(exc.orig).strip().splitlines() or [""])[0]
            reason = mask_text(first_line, engine.url.render_as_string(hide_password=False))
            raise UserError(f"--db: cannot open {mask_url(str(engine.url))}: {reason}") from None


def _stored_revision(engine: Engine) -> str | None:
    if not inspect(engine).has_table(VERSION_TABLE):
        return None
    with engine.connect() as conn:
        row = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").first()
    return row[0] if row else None


def _sqlite_busy(engine: Engine, exc: DatabaseError) -> bool:
    """SQLite's "database is locked" returned at once, busy timeout or not: where waiting could deadlock, or while
    another process first opens the file (its switch to WAL), SQLite skips the busy handler. Seen once in the
    suite's concurrent first opens (tests/orchestrator/test_store.py); the caller retries until the timeout."""
    return engine.dialect.name == "sqlite" and "database is locked" in str(exc.orig)
