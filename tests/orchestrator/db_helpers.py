"""Read a test database directly (not through phasebench), as an outside observer would."""

from __future__ import annotations

import sqlalchemy as sa


def query(url: str, sql: str, **params) -> list:
    """All rows of `sql` on the database at `url`."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()


def count(url: str, sql: str, **params) -> int:
    """The single value of `sql`; 0 while the tables do not exist yet (SQLite: OperationalError,
    PostgreSQL: ProgrammingError)."""
    try:
        return query(url, sql, **params)[0][0]
    except sa.exc.DBAPIError:
        return 0
