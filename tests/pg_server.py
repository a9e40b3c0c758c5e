"""The PostgreSQL server the tests share (tests/conftest.py's pg_url): a lock by which the pytest-xdist processes
of one run hold it together, or one test alone (a test that restarts it)."""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from pathlib import Path

import sqlalchemy as sa


def lock_file(url: str) -> Path:
    """The lock file of the server at `url` (one per port), in the system's temporary directory."""
    return Path(tempfile.gettempdir()) / f"phasebench-test-pg-{sa.engine.make_url(url).port}.lock"


@contextlib.contextmanager
def server_lock(exclusive: bool, path: Path):
    """Hold the server whose lock file is `path` (lock_file), shared with other tests or alone, for the whole
    block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
