"""The one dispatcher: runs on Ray under the cluster's capacity, for batches and studies alike.

A client (the batch runner, the study driver) decides *what* runs; the dispatcher runs it: each run is a
Ray task that runs in a process of its own (forked by a fork server, :mod:`orchestrator.worker`, so
allocator state, workspaces and autotune caches never leak between runs) or on a reused worker
(`isolate: false`), with `num_gpus` / `num_cpus` / custom resources from its config. A run is admitted
only when its resources are free, so its `timeout_s` clock starts when it can really start; a run past it
is force-cancelled (its worker killed) and stored as `timeout`. A run whose worker died is resubmitted up
to `max_retries` times, each attempt counted in its `attempts` and timed on its own. Training metrics
that workers stream are stored as they arrive. Every result is written through the store, once, as the
run ends.

Not thread-safe: one dispatcher per drive, used from the driver's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from models.config import ConfigError

from . import interrupts
from .environment import git_state
from .store.repository import Store

#: how long one poll waits for a run to finish before it checks timeouts, metrics and stop requests
WAIT_S = 0.25

Item = TypeVar("Item")


def remote_executes() -> dict[bool, Any]:
    """The task functions by `isolate`: a process of its own per run (forked by a reused fork server in a
    worker pool of its own, or with `PHASEBENCH_ISOLATION=process` a fresh worker, max_calls=1), or a
    reused worker (:mod:`orchestrator.worker`)."""
    import ray

    from .worker import FORK_SERVER_ENV, execute, execute_forked, execute_isolated, isolation_scheme

    if isolation_scheme() == "fork":
        isolated = ray.remote(max_calls=0, runtime_env={"env_vars": {FORK_SERVER_ENV: "1"}})(execute_forked)
    else:
        isolated = ray.remote(max_calls=1)(execute_isolated)
    return {True: isolated, False: ray.remote(max_calls=0)(execute)}


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


def task_options(config: dict[str, Any]) -> dict[str, Any]:
    """Ray options of a run's task: GPUs, CPUs, custom resources, accelerator type. Ray retries nothing:
    the dispatcher resubmits a run whose worker died, so that each attempt is counted and timed."""
    gpus, cpus = Capacity.needs(config)
    options: dict[str, Any] = {"num_gpus": gpus, "num_cpus": cpus, "max_retries": 0}
    if config.get("resources"):
        options["resources"] = dict(config["resources"])
    if config.get("accelerator_type"):
        options["accelerator_type"] = config["accelerator_type"]
    return options


def failed(error: str) -> dict[str, Any]:
    """The outcome of a run that ended without a result of its own (refused, timed out, pruned, lost)."""
    return {"status": "failed", "stage": None, "error": error}


def collect_outcome(ref) -> tuple[dict[str, Any], bool]:
    """A finished task's outcome, and whether another attempt may succeed: a dead worker or a lost node
    becomes a `failed` outcome worth retrying; an exception in the task (a bug) is not."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    try:
        return ray.get(ref), False
    except RayError as exc:  # the job itself never raises: this is a dead worker or a lost task
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return failed(f"{type(exc).__name__}: {first}"), not isinstance(exc, RayTaskError)


GIB = 2**30


def memory_lower_bound(config: dict[str, Any], params: int) -> int:
    """Bytes a run needs at the least: its weights; in training also their gradients, and with AdamW its
    two fp32 moments. Activations, workspaces and the CUDA context come on top."""
    weight = 2 if config["precision"].startswith("pure_") else 4
    per_param = {"inference": weight, "train_no_optim": 2 * weight}.get(config["mode"], 2 * weight + 8)
    return params * per_param


@dataclass
class Capacity:
    """What the cluster can run at once; runs are admitted only when their resources are free, so a
    run's timeout clock starts when it can really start (not while it waits in Ray's queue). The largest
    node's GPUs, CPUs and memory (and, where known, its GPU memory) say what can never run."""

    gpus: float
    cpus: float
    max_parallel: int | None = None
    node_gpus: float | None = None
    node_cpus: float | None = None
    node_memory: float | None = None  # bytes of RAM Ray gives tasks on the largest node
    gpu_memory: float | None = None  # bytes of the largest GPU, where the driver can see it
    used_gpus: float = 0.0
    used_cpus: float = 0.0
    count: int = 0

    @classmethod
    def of_cluster(cls, max_parallel: int | None) -> Capacity:
        import ray

        total = ray.cluster_resources()
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        largest = {key: max((node.get(key, 0.0) for node in nodes), default=0.0) for key in ("GPU", "CPU", "memory")}
        return cls(
            float(total.get("GPU", 0.0)),
            float(total.get("CPU", 1.0)),
            max_parallel,
            node_gpus=largest["GPU"],
            node_cpus=largest["CPU"],
            node_memory=largest["memory"] or None,
            gpu_memory=_local_gpu_memory() if len(nodes) == 1 else None,
        )

    @staticmethod
    def needs(config: dict[str, Any]) -> tuple[float, float]:
        return (float(config["num_gpus"]) if config["device"] == "cuda" else 0.0), float(config["num_cpus"])

    def impossible(self, config: dict[str, Any], params: int | None = None) -> ConfigError | None:
        """Why no node of this cluster can ever run `config` (a ConfigError naming the field), or None."""
        gpus, cpus = self.needs(config)
        node_gpus = self.gpus if self.node_gpus is None else self.node_gpus
        node_cpus = self.cpus if self.node_cpus is None else self.node_cpus
        if gpus and not node_gpus:
            return ConfigError("device", "cuda", "the Ray cluster has no GPU")
        if gpus > node_gpus:
            return ConfigError(
                "num_gpus", gpus, f"no node of the Ray cluster has that many GPUs (at most {node_gpus:g})"
            )
        if cpus > node_cpus:
            return ConfigError(
                "num_cpus", cpus, f"no node of the Ray cluster has that many CPUs (at most {node_cpus:g})"
            )
        limit, where = (self.gpu_memory, "GPU") if gpus else (self.node_memory, "node's memory")
        bound = memory_lower_bound(config, params) if params is not None else 0
        if limit and bound > limit:
            return ConfigError(
                "model",
                config["model"],
                f"needs at least {bound / GIB:,.1f} GiB for {params:,} parameters in mode {config['mode']} "
                f"({config['precision']}), more than the largest {where} ({limit / GIB:,.1f} GiB)",
            )
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


def _local_gpu_memory() -> float | None:
    """Bytes of the largest GPU this (one-node) cluster's driver sees, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return float(max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())))


@dataclass
class Task(Generic[Item]):
    """A run in flight: the client's item, its run id and config, and when it started."""

    item: Item
    run_id: str
    config: dict[str, Any]
    started: float
    attempt: int = 1


class Dispatcher(Generic[Item]):
    """Submits runs, waits for whichever ends first, stores its result and hands it back to the client.

    `on_metrics(run_id, rows)` sees every batch of streamed training metrics after they are stored (the
    study driver reports validation losses to its pruner there). Use as a context manager: leaving it
    stores the metrics still queued and ends the queue. Inside it a stop request (Ctrl-C, SIGTERM) is a
    flag (:func:`orchestrator.interrupts.polled`) that surfaces as a KeyboardInterrupt from :meth:`wait`;
    the client then calls :meth:`abandon`.
    """

    def __init__(
        self,
        store: Store,
        capacity: Capacity,
        max_retries: int,
        stream_metrics: bool,
        on_metrics: Callable[[str, list[dict[str, Any]]], None] | None = None,
    ):
        self.store, self.capacity, self.max_retries = store, capacity, max_retries
        self.on_metrics = on_metrics or (lambda run_id, rows: None)
        self.metrics = metrics_queue() if stream_metrics else None
        self.executes = remote_executes()
        self.git = git_state()
        self.in_flight: dict[Any, Task[Item]] = {}

    def __enter__(self) -> Dispatcher[Item]:
        interrupts.delivered()  # a stop handled before this drive is not this drive's
        self._polling = interrupts.polled()
        self._polling.__enter__()  # from here a stop is raised by wait(), between two polls
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.metrics is not None:
                self._store_metrics(report=False)  # what is left; no client decisions any more
        finally:
            self._polling.__exit__(None, None, None)
            if self.metrics is not None:
                self.metrics.shutdown()
                self.metrics = None

    @property
    def busy(self) -> bool:
        return bool(self.in_flight)

    def refusal(self, config: dict[str, Any], params: int | None = None) -> ConfigError | None:
        """Why this cluster can never run `config` (with `params` parameters), or None."""
        return self.capacity.impossible(config, params)

    def fits(self, config: dict[str, Any]) -> bool:
        """Whether `config` can start now."""
        return self.capacity.fits(config)

    def submit(self, item: Item, run_id: str, config: dict[str, Any]) -> None:
        """Start the run `run_id` as a Ray task; `item` comes back with its outcome."""
        self.capacity.take(config)
        self._launch(Task(item, run_id, config, time.monotonic()))

    def _launch(self, task: Task[Item]) -> None:
        """One attempt of a task: its clock starts now, and the run's `attempts` counts it."""
        execute = self.executes[task.config.get("isolate", True)]
        ref = execute.options(**task_options(task.config)).remote(task.config, self.git, task.run_id, self.metrics)
        self.store.mark_running(task.run_id)
        task.started = time.monotonic()
        self.in_flight[ref] = task

    def fail(self, run_id: str, error: str, status: str = "failed") -> dict[str, Any]:
        """Store a run that will not be dispatched (as failed, or as `oom` when it cannot fit); returns its
        outcome."""
        outcome = failed(error) | {"status": status}
        self.store.record_result(run_id, outcome)
        return outcome

    def wait(self) -> list[tuple[Item, dict[str, Any]]]:
        """Wait up to WAIT_S for runs to end; returns the (item, outcome) of those that ended, timed out
        ones included, each already stored."""
        import ray

        ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_S)
        interrupts.check()  # a Ctrl-C a callback swallowed
        self._store_metrics(report=True)  # a worker puts its metrics before it returns: all here now
        ended = []
        for ref in [ref for ref in ready if ref in self.in_flight]:  # not pruned meanwhile
            outcome, retry = collect_outcome(ref)
            if retry and self.in_flight[ref].attempt <= self.max_retries:
                self._retry(ref)
            else:
                ended.append((self._end(ref, outcome).item, outcome))
        for ref, limit in self._late():
            outcome = {"status": "timeout", "stage": None, "error": f"exceeded timeout_s={limit:g}"}
            ended.append((self._end(ref, outcome).item, outcome))
        return ended

    def cancel(self, item: Item, error: str) -> None:
        """End the run of `item` now (its worker killed) and store it as failed with `error`."""
        import ray

        ref = next(ref for ref, task in self.in_flight.items() if task.item is item)
        ray.cancel(ref, force=True)
        self._end(ref, failed(error))

    def cancel_all(self) -> list[Item]:
        """Kill every run in flight without storing a result (the client decides what they become)."""
        import ray

        for ref in self.in_flight:
            ray.cancel(ref, force=True)
        return self.abandon()

    def abandon(self) -> list[Item]:
        """Forget every run in flight without storing a result or cancelling its task: for a driver that
        stops (Ctrl-C, SIGTERM) and exits, whose Ray job ends with it, and its tasks' workers with the job
        (a forked run with its server). Force-cancelling a task whose reply is already on its way crashes
        the driver inside Ray 2.60 ("Tried to complete task that was not pending"), and a stop must
        never crash."""
        items = [task.item for task in self.in_flight.values()]
        self.in_flight.clear()
        return items

    def _late(self) -> Iterator[tuple[Any, float]]:
        """Cancel (kill) the runs past their timeout; yields (ref, timeout_s) of each."""
        import ray

        now = time.monotonic()
        for ref, task in list(self.in_flight.items()):
            limit = float(task.config["timeout_s"])
            if now - task.started > limit:
                ray.cancel(ref, force=True)  # kills the worker process
                yield ref, limit

    def _retry(self, ref) -> None:
        """Another attempt of a run whose worker died; it keeps the capacity it holds."""
        task = self.in_flight.pop(ref)
        task.attempt += 1
        self._launch(task)

    def _end(self, ref, outcome: dict[str, Any]) -> Task[Item]:
        task = self.in_flight.pop(ref)
        self.capacity.take(task.config, -1)
        self.store.record_result(task.run_id, outcome)
        return task

    def _store_metrics(self, report: bool) -> None:
        if self.metrics is None:
            return
        for run_id, rows in drain_metrics(self.metrics).items():
            self.store.record_metrics(run_id, rows)
            if report:
                self.on_metrics(run_id, rows)
