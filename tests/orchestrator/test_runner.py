"""The runner end to end through a real local Ray on CPU, with tiny models."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from cli_helpers import REPO, start_until_result
from cli_helpers import TINY_TRAIN as TINY
from db_helpers import count

from orchestrator import api
from orchestrator.dispatch import Capacity, task_options


def spec(name, cases, **defaults):
    return {"name": name, "defaults": TINY | defaults, "cases": cases}


def test_every_status_through_local_ray(local_ray, sqlite_url):
    cases = [
        {"model": "transformer", "mode": "train"},  # ok
        {
            "model": "phase8-seed",
            "d_model": 8,
            "n_heads": 2,
            "vocab_size": 1_000_000,  # oom: 17 TB of logits
            "batch_size": 64,
            "seq_len": 65536,
            "embed_rank_ratio": 0.5,
            "ffn_rank_ratio": 0.5,
            "timeout_s": 120,
        },
        {"model": "phase8-seed", "fault": "raise"},  # failed
        {
            "model": "transformer",
            "mode": "train",
            "d_model": 512,
            "n_heads": 8,  # timeout
            "n_layers": 8,
            "seq_len": 2048,
            "steps": 50,
            "timeout_s": 2,
        },
        {"model": "phase7-seed", "mode": "train_no_optim"},  # ok, after the timeout
    ]
    streamed = []

    def on_result(run, outcome):
        with sa.create_engine(sqlite_url).connect() as conn:  # already stored when the callback runs
            stored = conn.execute(sa.text("SELECT status FROM pb_results WHERE run_id = :id"), {"id": run.id}).scalar()
        streamed.append((run.index, outcome["status"], stored))

    outcome = api.run(spec("statuses", cases), db=sqlite_url, max_parallel=2, on_result=on_result)
    assert outcome.counts == {"ok": 2, "oom": 1, "failed": 1, "timeout": 1}
    assert sorted(streamed) == [
        (0, "ok", "ok"),
        (1, "oom", "oom"),
        (2, "failed", "failed"),
        (3, "timeout", "timeout"),
        (4, "ok", "ok"),
    ]
    rows = {r["index"]: r for r in api.results(db=sqlite_url)}
    assert rows[0]["tokens_per_s"] > 0 and rows[0]["static_bytes"] > rows[0]["weights_bytes"] > 0
    assert rows[0]["saved_tensor_bytes"] > 0 and rows[0]["loss"] > 0 and rows[0]["node_id"]
    assert rows[1]["stage"] == "forward" and "can't allocate memory" in rows[1]["error"]
    assert rows[2]["stage"] == "forward" and "injected fault" in rows[2]["error"]
    assert "timeout_s=2" in rows[3]["error"]
    assert rows[4]["mode"] == "train_no_optim" and rows[4]["static_bytes"] == rows[4]["weights_bytes"]


def test_dead_worker_is_retried_then_failed(local_ray, sqlite_url):
    outcome = api.run(
        spec("crash", [{"model": "transformer", "fault": "exit"}, {"model": "transformer"}]), db=sqlite_url
    )
    assert outcome.counts == {"failed": 1, "ok": 1}
    failed = [r for r in api.results(db=sqlite_url) if r["status"] == "failed"][0]
    assert "WorkerCrashedError" in failed["error"] or "died" in failed["error"]


def test_rerun_dedupe_and_skip(local_ray, sqlite_url):
    data = spec("dedupe", [{"model": "transformer"}, {"model": "phase8-seed"}])
    assert api.run(data, db=sqlite_url).counts == {"ok": 2}
    assert api.run(data, db=sqlite_url).counts == {"skipped": 2}
    assert api.run(data, db=sqlite_url, rerun=True).counts == {"ok": 2}
    with sa.create_engine(sqlite_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pb_results")).scalar() == 4


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_results_and_resume_finishes_only_the_rest(tmp_path, sqlite_url, spawn, stop):
    cases = [{"model": "transformer", "seed": i} for i in range(5)]
    spec_file = tmp_path / "slow.yaml"
    spec_file.write_text(yaml.safe_dump(spec("ctrlc", cases)))
    args = ["run", str(spec_file), "--db", sqlite_url, "--max-parallel", "1", "--no-progress"]
    proc = start_until_result(spawn, args, tmp_path, lambda: count(sqlite_url, "SELECT count(*) FROM pb_results"))
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    hint = re.search(r"finish with `([^`]+)`", err).group(1)  # copied as printed, it resumes this batch
    assert hint == f"phasebench run --resume 1 --db {sqlite_url} --max-parallel 1"
    done = count(sqlite_url, "SELECT count(*) FROM pb_results")
    assert 1 <= done < 5
    assert count(sqlite_url, "SELECT count(*) FROM pb_runs WHERE status = 'pending'") == 5 - done  # none left running
    assert count(sqlite_url, "SELECT count(*) FROM pb_batches WHERE status = 'interrupted'") == 1
    resumed = subprocess.run(
        [sys.executable, "-m", "phasebench", *shlex.split(hint)[1:], "--no-progress", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert count(sqlite_url, "SELECT count(*) FROM pb_results") == 5
    assert count(sqlite_url, "SELECT count(DISTINCT run_id) FROM pb_results") == 5
    assert count(sqlite_url, "SELECT count(*) FROM pb_runs WHERE attempts > 1") == 0 or done < 5
    assert count(sqlite_url, "SELECT count(*) FROM pb_batches WHERE status = 'done'") == 1


def test_an_interrupt_just_after_mark_running_leaves_no_run_running(local_ray, sqlite_url, monkeypatch):
    """The signal can land between a run's mark_running and its entry in the in-flight table (seen as a
    flaky ctrl-c test above: one run left `running`); every run of the batch must still end pending or done."""
    from orchestrator.store.repository import Store

    mark_running = Store.mark_running

    def then_interrupt(self, run_id):
        mark_running(self, run_id)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "mark_running", then_interrupt)
    outcome = api.run(spec("interrupt-window", [{"model": "transformer", "seed": i} for i in range(3)]), db=sqlite_url)
    assert outcome.interrupted
    assert count(sqlite_url, "SELECT count(*) FROM pb_runs WHERE status = 'running'") == 0
    assert count(sqlite_url, "SELECT count(*) FROM pb_runs WHERE status = 'pending'") == 3


def test_quickstart_spec_runs(local_ray, sqlite_url):
    outcome = api.run(REPO / "examples" / "quickstart.yaml", db=sqlite_url)
    rows = api.results(db=sqlite_url)
    assert outcome.counts == {"ok": len(rows)}
    assert {r["model"] for r in rows} == set(__import__("models").names())
    assert {r["mode"] for r in rows} == {"inference", "train"}


def test_isolation_is_a_fresh_process_per_run_unless_turned_off(local_ray, sqlite_url):
    cases = [{"model": "transformer", "seed": i} for i in range(3)]
    api.run(spec("isolated", cases), db=sqlite_url, max_parallel=1)
    api.run(spec("shared", cases, isolate=False), db=sqlite_url, max_parallel=1)
    pids = {}
    for row in api.results(db=sqlite_url):
        pids.setdefault(row["batch"], []).append(row["extra"]["worker_pid"])
    assert len(set(pids["isolated"])) == 3
    assert len(set(pids["shared"])) == 1


def test_a_stale_ray_address_file_does_not_capture_the_driver(tmp_path, sqlite_url):
    """`ray start` leaves ray_current_cluster behind; a dead address there must not stop a local run."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="pbray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # nothing listens on the discard port
    spec_file = tmp_path / "stale.yaml"
    spec_file.write_text(yaml.safe_dump(spec("stale", [{"model": "transformer", "seed": 0}])))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "phasebench", "run", str(spec_file), "--db", sqlite_url, "--no-progress"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env | {"PYTHONPATH": str(REPO), "RAY_TMPDIR": str(ray_tmp)},
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert count(sqlite_url, "SELECT count(*) FROM pb_results WHERE status = 'ok'") == 1


def test_half_gpu_runs_pack_two_per_gpu_and_the_ray_options_say_so():
    half = {"device": "cuda", "num_gpus": 0.5, "num_cpus": 1}
    assert task_options(half) == {"num_gpus": 0.5, "num_cpus": 1.0, "max_retries": 0}  # the dispatcher retries
    capacity = Capacity(gpus=1, cpus=8)
    admitted = 0
    while capacity.fits(half):
        capacity.take(half)
        admitted += 1
    assert admitted == 2
    capacity.take(half, sign=-1)
    assert capacity.fits(half)
    cpu_run = {"device": "cpu", "num_gpus": 0.5, "num_cpus": 1}  # a CPU run never holds a GPU
    assert task_options(cpu_run)["num_gpus"] == 0.0
    refusal = Capacity(gpus=1, cpus=8).impossible({"device": "cuda", "num_gpus": 2, "num_cpus": 1})
    assert str(refusal) == "num_gpus: no node of the Ray cluster has that many GPUs (at most 1) (got 2.0)"
