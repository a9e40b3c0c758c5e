"""What runs inside a Ray worker: one configuration's job, its environment and the node it ran on."""

from __future__ import annotations

import os
import threading
from typing import Any


def execute(config: dict[str, Any], git: dict[str, Any], run_id: str | None = None, metrics=None) -> dict[str, Any]:
    """Run the job a resolved config asks for and describe where it ran (called in the worker).

    `metrics` (a `ray.util.queue.Queue`) receives `(run_id, rows)` while a training run goes on.
    """
    import ray

    from .environment import collect
    from .spec import check_model_version, stored_config

    config = stored_config(config)  # a config stored before a run field existed lacks it
    check_model_version(config)
    if config["fault"] == "exit":
        os._exit(1)  # injected worker death: Ray retries, then the run is stored as failed
    if config["fault"] == "hang":
        threading.Event().wait()  # injected hang: only the runner's timeout_s ends it
    if config["job"] == "train":
        from .train import run_training

        emit = (lambda rows: metrics.put((run_id, rows))) if metrics is not None else None
        outcome = run_training(config, emit)
    else:
        from .measure import run_benchmark

        outcome = run_benchmark(config)
    outcome["environment"] = collect(config["device"], git)
    outcome.setdefault("extra", {})["worker_pid"] = os.getpid()
    outcome["node_id"] = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return outcome


def execute_isolated(*args, **kwargs) -> dict[str, Any]:
    """:func:`execute` under its own name, so that Ray can register it with `max_calls=1` (a fresh
    worker process per run) beside the reusable :func:`execute`."""
    return execute(*args, **kwargs)
