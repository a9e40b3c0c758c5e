"""What runs inside a Ray worker: one configuration's job, its environment and the node it ran on."""
from __future__ import annotations

import os
from typing import Any


def execute(config: dict[str, Any], git: dict[str, Any]) -> dict[str, Any]:
    """Run the job a resolved config asks for and describe where it ran (called in the worker)."""
    import ray

    from .environment import collect
    from .measure import run_benchmark

    if config.get("fault") == "exit":
        os._exit(1)  # injected worker death: Ray retries, then the run is stored as failed
    outcome = run_benchmark(config)
    outcome["environment"] = collect(config["device"], git)
    outcome["node_id"] = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return outcome
