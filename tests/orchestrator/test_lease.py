"""One driver per batch (orchestrator/store/lease.py): a second driver refuses, `phasebench cancel` stops
the first cleanly, and a driver killed with SIGKILL shows as `driver lost` once its lease runs out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from db_helpers import count

from orchestrator.orphans import descendants, process_table

REPO = Path(__file__).resolve().parents[2]
TINY = {"model": "transformer", "vocab_size": 64, "d_model": 32, "n_layers": 1, "n_heads": 2, "device": "cpu"}
LEASE_S = 4  # short, so that a lost driver shows within the test
ENV = os.environ | {"PYTHONPATH": str(REPO), "PHASEBENCH_LEASE_S": str(LEASE_S)}


def slow_batch(tmp_path: Path) -> Path:
    """Four runs, one at a time; the first hangs until cancelled."""
    cases = [{"fault": "hang", "timeout_s": 300}] + [{"seed": i} for i in range(3)]
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump({"name": "slow", "defaults": TINY | {"seq_len": 16}, "cases": cases}))
    return path


def phasebench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "phasebench", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180, env=ENV)


def start_driver(spawn, tmp_path: Path, url: str, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "phasebench", "run", *args, "--db", url, "--no-progress", "--max-parallel", "1"]
    return spawn(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def batch_status(url: str, cwd: Path) -> str:
    return json.loads(phasebench("status", "--json", "--db", url, cwd=cwd).stdout)[0]["status"]


def test_a_second_driver_refuses_and_cancel_stops_the_first_cleanly(tmp_path, sqlite_url, spawn):
    first = start_driver(spawn, tmp_path, sqlite_url, str(slow_batch(tmp_path)))
    wait_for(lambda: Path(sqlite_url[10:]).exists() and count(sqlite_url, RUNNING) == 1, 120)

    second = phasebench("run", "--resume", "slow", "--db", sqlite_url, "--no-progress", cwd=tmp_path)
    assert second.returncode == 2, second.stderr
    assert "batch 1 is being run by another driver" in second.stderr and second.stderr.count("\n") == 1
    assert count(sqlite_url, RUNNING) == 1  # the second driver changed nothing

    cancelled = phasebench("cancel", "slow", "--db", sqlite_url, cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == "batch 1 cancelled: 1 cancelled, 3 pending"
    _, err = first.communicate(timeout=60)
    assert first.returncode == 1 and "cancelled: the runs in flight are stored as cancelled" in err
    assert batch_status(sqlite_url, tmp_path) == "cancelled"
    assert count(sqlite_url, "SELECT count(*) FROM pb_results WHERE status = 'cancelled'") == 1

    resumed = phasebench("run", "--resume", "slow", "--db", sqlite_url, "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # the pending runs were left resumable
    assert count(sqlite_url, "SELECT count(*) FROM pb_results WHERE status = 'ok'") == 3


def test_a_killed_driver_shows_as_lost_once_its_lease_runs_out_and_another_takes_over(tmp_path, sqlite_url, spawn):
    first = start_driver(spawn, tmp_path, sqlite_url, str(slow_batch(tmp_path)))
    wait_for(lambda: Path(sqlite_url[10:]).exists() and count(sqlite_url, RUNNING) == 1, 120)
    assert batch_status(sqlite_url, tmp_path) == "running"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    wait_for(lambda: batch_status(sqlite_url, tmp_path) == "driver lost", LEASE_S + 10)

    cancelled = phasebench("cancel", "slow", "--db", sqlite_url, cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled (no driver was running it)" in cancelled.stdout
    assert count(sqlite_url, "SELECT count(*) FROM pb_runs WHERE status = 'pending'") == 4


RUNNING = "SELECT count(*) FROM pb_runs WHERE status = 'running'"


def test_two_study_drivers_leave_each_others_trials_alone_and_cancel_stops_both(tmp_path, sqlite_url, spawn):
    """Several drivers may run one study (Optuna's way): a driver that starts fails only the trials of
    drivers that are gone (it once failed every RUNNING trial, a live driver's included); `phasebench
    cancel` of the study's batch stops them all."""
    study = {
        "name": "slow-study",
        "defaults": {k: v for k, v in TINY.items() if k != "d_model"} | {"seq_len": 16, "fault": "hang"},
        "space": {"d_model": {"choices": [16, 32]}},
        "objectives": ["maximize tokens_per_s"],
        "sampler": {"type": "random", "seed": 0},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert phasebench("study", "create", "study.yaml", "--db", sqlite_url, cwd=tmp_path).returncode == 0

    def driver(trials: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "phasebench", "study", "run", "slow-study", "--trials", str(trials)]
        return spawn(
            cmd + ["--db", sqlite_url, "--no-progress"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )

    first = driver(1)
    wait_for(lambda: count(sqlite_url, RUNNING) == 1, 120)
    second = driver(2)  # one more trial: its own
    wait_for(lambda: count(sqlite_url, RUNNING) == 2, 120)
    assert count(sqlite_url, "SELECT count(*) FROM trials WHERE state = 'RUNNING'") == 2

    assert phasebench("cancel", "slow-study", "--db", sqlite_url, cwd=tmp_path).returncode == 0
    for proc in (first, second):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and "cancelled by `phasebench cancel`: continue with" in err, err
    assert count(sqlite_url, RUNNING) == 0
    errors = "SELECT count(*) FROM pb_results WHERE error = 'cancelled by `phasebench cancel`'"
    assert count(sqlite_url, errors) == 2  # neither trial was failed as a dead driver's


def test_nothing_of_a_killed_drivers_local_ray_is_left_running(tmp_path, sqlite_url, spawn):
    """SIGKILL to the driver alone (not its process group): Ray's agents used to outlive it, orphaned;
    the driver's watcher (orchestrator/orphans.py) kills every process the driver had below it."""
    first = start_driver(spawn, tmp_path, sqlite_url, str(slow_batch(tmp_path)))
    wait_for(lambda: Path(sqlite_url[10:]).exists() and count(sqlite_url, RUNNING) == 1, 120)
    time.sleep(2)  # the watcher notes the tree once a second
    below = descendants(first.pid, process_table())
    assert any(title(pid).startswith("ray::DashboardAgent") for pid in below), [title(p) for p in below]
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)

    def all_gone() -> bool:
        table = process_table()
        return not [pid for pid, started in below.items() if table.get(pid, (0, None))[1] == started]

    wait_for(all_gone, 30)


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
