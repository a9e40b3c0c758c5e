"""The one dispatcher (orchestrator.dispatch) serves batches and studies alike: the same faults end the
same way on either path, stored through the store once."""

from __future__ import annotations

import optuna
import pytest

from orchestrator import api
from orchestrator import study as studies

TINY = {
    "vocab_size": 64,
    "d_model": 32,
    "n_heads": 2,
    "n_layers": 1,
    "device": "cpu",
    "seq_len": 16,
    "steps": 1,
    "warmup_steps": 0,
    # per attempt: a retried run starts a fresh worker that imports torch and the models again, ~3 s alone on 2 cores
    # but past 20 s once in CI beside another test process, where the dead worker's third attempt then timed out
    "timeout_s": 60,
}
FAULTS = ["none", "raise", "exit", "hang"]
#: a batch's case may set its own timeout: its hung run waits 10 s, not 60 (a study's trials share the defaults')
BATCH_HANG_TIMEOUT_S = 10

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_as_batch(db: str) -> None:
    cases = [{"model": "transformer", "fault": fault} for fault in FAULTS]
    cases[FAULTS.index("hang")]["timeout_s"] = BATCH_HANG_TIMEOUT_S
    api.run({"name": "faults", "defaults": TINY, "cases": cases}, db=db, max_parallel=len(FAULTS))


def run_as_study(db: str) -> None:
    spec = {
        "name": "faults",
        "defaults": TINY | {"model": "transformer"},
        "space": {"fault": {"choices": FAULTS}},
        "objectives": ["maximize params"],
        "sampler": {"type": "grid"},
    }
    studies.create_study(spec, db=db)
    studies.run_study("faults", trials=len(FAULTS), parallel=len(FAULTS), db=db)


def ending(row: dict) -> tuple[str, str | None]:
    """A run's status and the first words of its error."""
    error = row["error"]
    return row["status"], error.split(":")[0] if error else None


@pytest.mark.parametrize("path", [run_as_batch, run_as_study], ids=["batch", "study"])
def test_faults_end_the_same_way_through_a_batch_and_a_study(local_ray, sqlite_url, path):
    path(sqlite_url)
    rows = api.results(db=sqlite_url)
    assert sorted(row["config"]["fault"] for row in rows) == sorted(FAULTS)  # one row each, none lost or doubled
    endings = {row["config"]["fault"]: ending(row) for row in rows}
    assert endings["none"] == ("ok", None)
    assert endings["raise"] == ("failed", "RuntimeError")
    assert endings["exit"][0] == "failed" and "Worker" in endings["exit"][1]  # the worker died, Ray gave up
    hang_limit = BATCH_HANG_TIMEOUT_S if path is run_as_batch else TINY["timeout_s"]
    assert endings["hang"] == ("timeout", f"exceeded timeout_s={hang_limit}")
    assert all(row["finished_at"] for row in rows)
    attempts = {row["config"]["fault"]: row["attempts"] for row in rows}
    assert attempts == {"none": 1, "raise": 1, "exit": 3, "hang": 1}  # a dead worker: 2 retries, each counted
