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
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import interrupts
from .environment import REPO_ROOT, git_state
from .errors import UserError
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


#: how long joining a cluster may wait for its head to answer before the driver gives up
CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """UserError naming --address when `host:port` (or `ray://host:port`) does not accept a connection
    within `timeout_s` (Ray itself keeps retrying for minutes). `auto` and addresses without a port are
    left to Ray."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise UserError(
            f"--address: cannot reach the Ray head at {target} ({reason} after at most {timeout_s:g} s)"
        ) from None


def init_ray(address: str | None = None) -> None:
    """Start a fresh local Ray (no address) or join a cluster (`--address` / RAY_ADDRESS).

    Without an address Ray would otherwise join whatever cluster /tmp/ray/ray_current_cluster names, a dead
    one included; `address="local"` always starts a new instance. Ray installs its own SIGTERM handler in
    the driver (log and die); the process's own SIGTERM and SIGINT handlers (the CLI's: stop the drive,
    orchestrator.interrupts) are put back.
    """
    import ray

    if ray.is_initialized():
        return
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
    address = address or os.environ.get("RAY_ADDRESS")
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": {"PYTHONPATH": path}},
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address:
        ray.init(address=address, **kwargs)  # the API checked first that it answers (check_reachable)
    else:
        ray.init(address="local", include_dashboard=False, **kwargs)
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


def remote_executes() -> dict[bool, Any]:
    """The task functions by `isolate`: a fresh worker process per run (max_calls=1), or reused workers."""
    import ray

    from .worker import execute, execute_isolated

    return {True: ray.remote(max_calls=1)(execute_isolated), False: ray.remote(max_calls=0)(execute)}


def metrics_queue():
    """The queue training workers stream their metrics through: a Ray actor that uses no CPU, pinned to the
    driver's node so that losing a worker node never loses the queue."""
    import ray
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})


def drain_metrics(queue) -> dict[str, list[dict[str, Any]]]:
    """Everything in the metrics queue now, grouped by run id."""
    pending: dict[str, list[dict[str, Any]]] = {}
    while not queue.empty():
        for run_id, rows in queue.get_nowait_batch(queue.qsize()):
            pending.setdefault(run_id, []).extend(rows)
    return pending


def task_options(config: dict[str, Any], max_retries: int) -> dict[str, Any]:
    """Ray options of a run's task: GPUs, CPUs, custom resources, accelerator type, retries."""
    gpus, cpus = Capacity.needs(config)
    options = {"num_gpus": gpus, "num_cpus": cpus, "max_retries": max_retries}
    if config.get("resources"):
        options["resources"] = dict(config["resources"])
    if config.get("accelerator_type"):
        options["accelerator_type"] = config["accelerator_type"]
    return options


@dataclass
class Capacity:
    """What the cluster can run at once; runs are admitted only when their resources are free, so a
    run's timeout clock starts when it can really start (not while it waits in Ray's queue)."""

    gpus: float
    cpus: float
    max_parallel: int | None = None
    used_gpus: float = 0.0
    used_cpus: float = 0.0
    count: int = 0

    @classmethod
    def of_cluster(cls, max_parallel: int | None) -> Capacity:
        import ray

        resources = ray.cluster_resources()
        return cls(float(resources.get("GPU", 0.0)), float(resources.get("CPU", 1.0)), max_parallel)

    @staticmethod
    def needs(config: dict[str, Any]) -> tuple[float, float]:
        return (float(config["num_gpus"]) if config["device"] == "cuda" else 0.0), float(config["num_cpus"])

    def impossible(self, config: dict[str, Any]) -> str | None:
        gpus, cpus = self.needs(config)
        if gpus > self.gpus or cpus > self.cpus:
            return f"needs {gpus:g} GPU and {cpus:g} CPU; the Ray cluster has {self.gpus:g} GPU and {self.cpus:g} CPU"
        return None

    def fits(self, config: dict[str, Any]) -> bool:
        if self.max_parallel is not None and self.count >= self.max_parallel:
            return False
        if self.count == 0:
            return True
        gpus, cpus = self.needs(config)
        return self.used_gpus + gpus <= self.gpus + 1e-9 and self.used_cpus + cpus <= self.cpus + 1e-9

    def take(self, config: dict[str, Any], sign: int = 1) -> None:
        gpus, cpus = self.needs(config)
        self.used_gpus += sign * gpus
        self.used_cpus += sign * cpus
        self.count += sign


def collect_outcome(ref) -> dict[str, Any]:
    """A finished task's outcome; a dead worker or a lost task becomes a `failed` outcome."""
    import ray
    from ray.exceptions import RayError

    try:
        return ray.get(ref)
    except RayError as exc:  # the job itself never raises: this is a dead worker or a lost task
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"status": "failed", "phase": None, "error": f"{type(exc).__name__}: {first}"[:4000]}


class Runner:
    """Runs the unfinished runs of a batch on Ray and writes each result as it arrives."""

    def __init__(
        self,
        store: Store,
        address: str | None = None,
        max_parallel: int | None = None,
        max_retries: int = 2,
        on_result: Callable[[Run, dict[str, Any]], None] | None = None,
    ):
        self.store = store
        self.address = address
        self.max_parallel = max_parallel
        self.max_retries = max_retries
        self.on_result = on_result or (lambda run, outcome: None)
        self.metrics = None

    def run_batch(self, batch_id: int) -> BatchOutcome:
        runs = self.store.reset_unfinished(batch_id)
        outcome = BatchOutcome(batch_id)
        if runs:
            init_ray(self.address)
            self.store.set_batch_status(batch_id, "running")
            try:
                self._drive(runs, Capacity.of_cluster(self.max_parallel))
            except KeyboardInterrupt:
                self.store.set_batch_status(batch_id, "interrupted")
                outcome.interrupted = True
        if not outcome.interrupted:
            self.store.set_batch_status(batch_id, "done")
        outcome.counts = self.store.run_counts(batch_id)
        return outcome

    def _drive(self, runs: list[Run], capacity: Capacity) -> None:
        import ray

        executes = remote_executes()
        git = git_state()
        self.metrics = metrics_queue() if any(r.config["job"] == "train" for r in runs) else None
        queue = []
        for run in runs:
            reason = capacity.impossible(run.config)
            if reason:
                self._finish(run, {"status": "failed", "phase": None, "error": reason})
            else:
                queue.append(run)
        queue.reverse()
        in_flight: dict[Any, InFlight] = {}
        interrupts.delivered()  # a stop handled before this drive is not this drive's
        try:
            while queue or in_flight:
                while queue and capacity.fits(queue[-1].config):
                    run = queue.pop()
                    execute = executes[run.config.get("isolate", True)]
                    ref = execute.options(**task_options(run.config, self.max_retries)).remote(
                        run.config, git, run.id, self.metrics
                    )
                    self.store.mark_running(run.id)
                    capacity.take(run.config)
                    in_flight[ref] = InFlight(run, time.monotonic())
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
                interrupts.check()  # a Ctrl-C a callback swallowed
                self._drain_metrics()
                for ref in ready:
                    job = in_flight.pop(ref)
                    capacity.take(job.run.config, -1)
                    self._finish(job.run, collect_outcome(ref))
                for job in self._expire(in_flight):
                    capacity.take(job.run.config, -1)
        except KeyboardInterrupt:
            interrupts.delivered()
            for ref in in_flight:
                ray.cancel(ref, force=True)
            # every run of this drive still `running`: the in-flight ones, and one the signal caught between
            # mark_running and in_flight, or inside _finish before its result was stored
            self.store.mark_pending([run.id for run in runs])
            raise
        finally:
            if self.metrics is not None:
                self._drain_metrics()
                self.metrics.shutdown()
                self.metrics = None

    def _expire(self, in_flight: dict[Any, InFlight]) -> list[InFlight]:
        """Cancel (kill) and record the runs past their timeout; returns them."""
        import ray

        now, expired = time.monotonic(), []
        for ref, job in list(in_flight.items()):
            limit = float(job.run.config["timeout_s"])
            if now - job.started > limit:
                ray.cancel(ref, force=True)  # kills the worker process
                del in_flight[ref]
                self._finish(job.run, {"status": "timeout", "phase": None, "error": f"exceeded timeout_s={limit:g}"})
                expired.append(job)
        return expired

    def _drain_metrics(self) -> None:
        """Write the training metrics that workers streamed since the last call."""
        if self.metrics is None:
            return
        for run_id, rows in drain_metrics(self.metrics).items():
            self.store.record_metrics(run_id, rows)

    def _finish(self, run: Run, outcome: dict[str, Any]) -> None:
        self._drain_metrics()  # a worker puts its metrics before it returns: they are all here now
        self.store.record_result(run.id, outcome)
        self.on_result(run, outcome)
