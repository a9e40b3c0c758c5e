"""The Ray runner: one isolated task per run, bounded concurrency, retries, timeouts, streaming.

Each run is a Ray task with `max_calls=1` (a fresh worker process per configuration, so allocator
state, workspaces and autotune caches never leak between runs), `num_gpus` / `num_cpus` from the
config, and `max_retries` for worker death. The driver waits for whichever task finishes first and
writes its result at once; a run past its `timeout_s` is force-cancelled (its worker is killed) and
stored as `timeout`. Ctrl-C cancels the runs in flight, sets them back to pending and marks the batch
`interrupted`: `phasebench run --resume BATCH` finishes it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .environment import REPO_ROOT, git_state
from .store.repository import Store
from .store.schema import Run

WAIT_S = 0.25


@dataclass
class InFlight:
    run: Run
    started: float


@dataclass
class BatchOutcome:
    batch_id: int
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False


def init_ray(address: str | None = None) -> None:
    """Start local Ray (no address) or join a cluster (`--address` / RAY_ADDRESS)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": {"PYTHONPATH": path}}, "log_to_driver": False,
                              "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(include_dashboard=False, **kwargs)


def _remote_execute():
    import ray

    from .worker import execute
    return ray.remote(max_calls=1)(execute)


def task_options(config: dict[str, Any], max_retries: int) -> dict[str, Any]:
    gpus = float(config["num_gpus"]) if config["device"] == "cuda" else 0.0
    return {"num_gpus": gpus, "num_cpus": float(config["num_cpus"]), "max_retries": max_retries}


def default_parallelism() -> int:
    import ray

    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0)) + int(resources.get("CPU", 1)))


class Runner:
    """Runs the unfinished runs of a batch on Ray and writes each result as it arrives."""

    def __init__(self, store: Store, address: str | None = None, max_parallel: int | None = None,
                 max_retries: int = 2, on_result: Callable[[Run, dict[str, Any]], None] | None = None):
        self.store = store
        self.address = address
        self.max_parallel = max_parallel
        self.max_retries = max_retries
        self.on_result = on_result or (lambda run, outcome: None)

    def run_batch(self, batch_id: int) -> BatchOutcome:
        runs = self.store.reset_unfinished(batch_id)
        outcome = BatchOutcome(batch_id)
        if runs:
            init_ray(self.address)
            self.store.set_batch_status(batch_id, "running")
            try:
                self._drive(runs, self.max_parallel or default_parallelism())
            except KeyboardInterrupt:
                self.store.set_batch_status(batch_id, "interrupted")
                outcome.interrupted = True
        if not outcome.interrupted:
            self.store.set_batch_status(batch_id, "done")
        outcome.counts = self.store.run_counts(batch_id)
        return outcome

    def _drive(self, runs: list[Run], max_parallel: int) -> None:
        import ray

        execute = _remote_execute()
        git = git_state()
        queue = list(reversed(runs))
        in_flight: dict[Any, InFlight] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < max_parallel:
                    run = queue.pop()
                    ref = execute.options(**task_options(run.config, self.max_retries)).remote(run.config, git)
                    self.store.mark_running(run.id)
                    in_flight[ref] = InFlight(run, time.monotonic())
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    job = in_flight.pop(ref)
                    self._finish(job.run, self._collect(ref))
                self._expire(in_flight)
        except KeyboardInterrupt:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise

    @staticmethod
    def _collect(ref) -> dict[str, Any]:
        import ray
        from ray.exceptions import RayError

        try:
            return ray.get(ref)
        except RayError as exc:  # the job itself never raises: this is a dead worker or a lost task
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {"status": "failed", "phase": None, "error": f"{type(exc).__name__}: {first}"[:4000]}

    def _expire(self, in_flight: dict[Any, InFlight]) -> None:
        import ray

        now = time.monotonic()
        for ref, job in list(in_flight.items()):
            limit = float(job.run.config["timeout_s"])
            if now - job.started > limit:
                ray.cancel(ref, force=True)  # kills the worker process
                del in_flight[ref]
                self._finish(job.run, {"status": "timeout", "phase": None,
                                       "error": f"exceeded timeout_s={limit:g}"})

    def _finish(self, run: Run, outcome: dict[str, Any]) -> None:
        self.store.record_result(run.id, outcome)
        self.on_result(run, outcome)
