"""Results survive crashes: a killed driver, a restarting PostgreSQL server, two drivers at once."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from cli_helpers import REPO
from cli_helpers import TINY_TRAIN as TINY
from db_helpers import count

from orchestrator import api

PG_DATA = os.environ.get("PB_PG_DATA", "/tmp/phasebench-pg")


def spec_file(tmp_path: Path, name: str, n: int, first_seed: int = 0) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "defaults": TINY,
                "cases": [{"model": "transformer", "seed": first_seed + i} for i in range(n)],
            }
        )
    )
    return path


def driver(spawn, spec: Path, url: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "phasebench", "run", str(spec), "--db", url, "--no-progress", *extra]
    return spawn(
        cmd,
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_sigkill_driver_then_resume_runs_only_the_unfinished(tmp_path, sqlite_url, spawn):
    proc = driver(spawn, spec_file(tmp_path, "killed", 5), sqlite_url, "--max-parallel", "1")
    wait_for(lambda: count(sqlite_url, "SELECT count(*) FROM pb_results") >= 2, 180, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        before = dict(conn.execute(sa.text("SELECT run_id, created_at FROM pb_results")).all())
    assert 2 <= len(before) < 5
    assert count(sqlite_url, "SELECT count(*) FROM pb_runs WHERE status IN ('pending', 'running')") == 5 - len(before)
    resumed = subprocess.run(
        [sys.executable, "-m", "phasebench", "run", "--resume", "killed", "--db", sqlite_url, "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert resumed.returncode == 0, resumed.stderr
    with engine.connect() as conn:
        after = dict(conn.execute(sa.text("SELECT run_id, created_at FROM pb_results")).all())
        attempts = dict(conn.execute(sa.text("SELECT id, attempts FROM pb_runs")).all())
    engine.dispose()
    assert len(after) == 5 and all(after[k] == v for k, v in before.items())  # finished runs untouched
    assert all(attempts[run_id] == 1 for run_id in before)  # and not run again


def restart_postgres() -> None:
    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    command = f"{pg_ctl} -D {PG_DATA} -m fast -w restart -l {PG_DATA}/server.log"
    as_postgres = ["su", "postgres", "-s", "/bin/bash", "-c", command] if os.geteuid() == 0 else ["bash", "-c", command]
    subprocess.run(as_postgres, check=True, capture_output=True, timeout=60)


@pytest.mark.restarts_postgres
def test_postgres_restart_mid_batch_loses_and_duplicates_nothing(local_ray, pg_url, tmp_path):
    data = yaml.safe_load(spec_file(tmp_path, "pg-restart", 5).read_text())
    done: dict = {}
    thread = threading.Thread(target=lambda: done.update(outcome=api.run(data, db=pg_url, max_parallel=1)))
    thread.start()
    wait_for(lambda: count(pg_url, "SELECT count(*) FROM pb_results") >= 1, 180)
    restart_postgres()
    thread.join(timeout=300)
    assert not thread.is_alive() and done["outcome"].counts == {"ok": 5}
    assert count(pg_url, "SELECT count(*) FROM pb_results") == 5
    assert count(pg_url, "SELECT count(DISTINCT run_id) FROM pb_results") == 5


def test_two_drivers_and_a_study_write_one_database_at_once(db_url, tmp_path, spawn):
    study = tmp_path / "study.yaml"
    fixed = {k: v for k, v in TINY.items() if k != "seq_len"} | {"model": "phase8-seed"}
    study.write_text(
        yaml.safe_dump(
            {
                "name": "beside",
                "defaults": fixed,
                "space": {"seq_len": {"choices": [8, 16, 24]}},
                "objectives": ["maximize tokens_per_s"],
                "sampler": {"type": "grid", "seed": 0},
            }
        )
    )
    env = os.environ | {"PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "phasebench"]
    created = subprocess.run(
        cli + ["study", "create", str(study), "--db", db_url], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    procs = [
        driver(spawn, spec_file(tmp_path, f"driver{i}", 3, first_seed=10 * i), db_url, "--max-parallel", "1")
        for i in range(2)
    ]
    procs.append(
        spawn(
            cli + ["study", "run", "beside", "--trials", "3", "--parallel", "1", "--db", db_url, "--no-progress"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    )
    with ThreadPoolExecutor(len(procs)) as pool:  # drain every pipe at once: a full pipe blocks its writer
        outputs = list(pool.map(lambda p: p.communicate(timeout=400), procs))
    for proc, (out, err) in zip(procs, outputs, strict=False):
        assert proc.returncode == 0, err
        assert "locked" not in (out + err).lower()
    assert count(db_url, "SELECT count(*) FROM pb_results") == 9
    assert count(db_url, "SELECT count(DISTINCT run_id) FROM pb_results") == 9
    assert count(db_url, "SELECT count(*) FROM pb_runs WHERE study_name = 'beside'") == 3
    assert count(db_url, "SELECT count(*) FROM pb_batches WHERE status = 'done'") == 3  # the study's batch too
    assert count(db_url, "SELECT count(*) FROM trials WHERE state = 'COMPLETE'") == 3


def task_processes(name: str) -> set[int]:
    """Pids of the Ray workers now running task `name` (Ray titles them `ray::<name>`)."""
    pids = set()
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"ray::{name}"):
            pids.add(int(cmdline.split("/")[2]))
    return pids


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except OSError:
        return None


def test_a_hung_run_times_out_its_worker_is_killed_and_the_batch_goes_on(local_ray, sqlite_url):
    cases = [{"model": "transformer", "fault": "hang", "timeout_s": 4}, {"model": "transformer", "seed": 1}]
    seen: set[int] = set()
    children: set[int] = set()  # runs forked by a fork server
    done = {}
    driver = threading.Thread(
        target=lambda: done.update(
            outcome=api.run({"name": "hang", "defaults": TINY, "cases": cases}, db=sqlite_url, max_parallel=2)
        )
    )
    driver.start()
    while driver.is_alive():
        now = task_processes("execute_forked")  # the fork servers and their children
        seen |= now
        children |= {pid for pid in now if parent_of(pid) in now}
        time.sleep(0.1)
    assert done["outcome"].counts == {"timeout": 1, "ok": 1}
    status = {r["index"]: r["status"] for r in api.results(db=sqlite_url)}
    assert status == {0: "timeout", 1: "ok"}
    assert children, "never saw the hung run's process"
    deadline = time.monotonic() + 60  # the kill goes through the raylet: 15 s was too short on a loaded 2-core VM
    while seen & task_processes("execute_forked"):
        assert time.monotonic() < deadline, f"worker still alive: {seen & task_processes('execute_forked')}"
        time.sleep(0.2)
