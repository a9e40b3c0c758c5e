"""Shared fixtures: a real SQLite file and a real PostgreSQL database per test, one local Ray per process.

The README's test command runs the suite in two pytest-xdist processes: nothing here is shared between tests
but the PostgreSQL server (each test its own database), so they may run side by side, except a test marked
restarts_postgres, which has the server to itself (tests/pg_server.py)."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from pg_server import lock_file, server_lock

# Inductor's CPU code without SIMD (scalar C++ loops): the compiled-block tests still check inductor's output
# against eager, and a first compile (CI's cache is always cold) costs half the CPU: 394 s -> 199 s for the compile
# tests, serially on the CPU VM. Set before torch reads it: every process the tests start (CLIs, Ray workers)
# inherits it.
os.environ.setdefault("TORCHINDUCTOR_VEC_ISA_OK", "0")

PG_URL = os.environ.get("PHASEBENCH_TEST_PG_URL", "postgresql://phasebench:phasebench@127.0.0.1:54329/phasebench_test")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'pb.db'}"


@pytest.fixture
def pg_url(request):
    """A fresh PostgreSQL database on the provisioned server (see .ci/provision), dropped afterwards; the server
    held shared, or alone for a test marked restarts_postgres (server_lock)."""
    with server_lock(request.node.get_closest_marker("restarts_postgres") is not None, lock_file(PG_URL)):
        yield from _fresh_database()


def _fresh_database():
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"pbt_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable: run `bash .ci/provision` ({exc.orig})")
    url = sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:
    """Every store test runs against both backends (as optuna does with its storages)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session of this process (starting Ray costs seconds on 2 cores)."""
    import ray

    from orchestrator.runner import init_ray

    init_ray()
    yield ray
    ray.shutdown()


def pytest_collection_finish(session):
    """The Triton interpreter's shortcuts (tests/triton_interpreter.py), once the test modules are imported: triton
    is imported after a module sets TRITON_INTERPRET=1, or its own jit functions (tl.sum) would not interpret."""
    from triton_interpreter import install

    install()


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
