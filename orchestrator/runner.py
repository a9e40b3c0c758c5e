"""The batch runner: a batch's unfinished runs, dispatched on Ray (:mod:`orchestrator.dispatch`).

The runner decides what runs (the batch's pending runs, in order; those the cluster can never hold are
stored as failed at once) and what a stop means for a batch: Ctrl-C or SIGTERM cancels the runs in
flight, sets them back to pending and marks the batch `interrupted`: `phasebench run --resume BATCH`
finishes it. Also here: starting or joining Ray, and checking that a cluster answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import interrupts, orphans, user_code
from .dispatch import Capacity, Dispatcher
from .environment import REPO_ROOT
from .errors import UserError
from .spec import AUTO_DEVICE, ResolvedRun
from .store.lease import BatchLease
from .store.repository import Store
from .store.schema import Run


@dataclass
class BatchOutcome:
    batch_id: int
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    cancelled: bool = False


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


RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _auth_notice_filter(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


#: the user code this process's Ray job ships to its workers
_SHIPPED_WITH_RAY: set[str] = set()


def init_ray(address: str | None = None) -> None:
    """Start a fresh local Ray (no address) or join a cluster (`--address` / RAY_ADDRESS).

    Without an address Ray would otherwise join whatever cluster /tmp/ray/ray_current_cluster names, a dead
    one included; `address="local"` always starts a new instance. Ray installs its own SIGTERM handler in
    the driver (log and die); the process's own SIGTERM and SIGINT handlers (the CLI's: stop the drive,
    orchestrator.interrupts) are put back. Ray's notice that the local cluster it starts uses token
    authentication (it does, unchanged) is left out of the driver's stderr, which holds only phasebench's
    own lines. The user's model code imported so far goes to every worker with the job (`py_modules`,
    orchestrator/user_code.py); a Ray started before more code was imported is started again.
    """
    import ray

    shipped = user_code.shipped_roots()
    if ray.is_initialized():
        if set(shipped) <= _SHIPPED_WITH_RAY:
            return
        ray.shutdown()
    logging.getLogger(RAY_AUTH_LOGGER).addFilter(_auth_notice_filter)
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
    address = address or os.environ.get("RAY_ADDRESS")
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    runtime_env: dict[str, Any] = {"env_vars": {"PYTHONPATH": path}}
    if shipped:
        runtime_env["py_modules"] = shipped
    kwargs: dict[str, Any] = {
        "runtime_env": runtime_env,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address:
        ray.init(address=address, **kwargs)  # the API checked first that it answers (check_reachable)
    else:
        orphans.watch_this_driver(REPO_ROOT)  # what the local Ray leaves if this driver is killed gets killed
        ray.init(address="local", include_dashboard=False, **kwargs)
    _SHIPPED_WITH_RAY.clear()
    _SHIPPED_WITH_RAY.update(shipped)
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


@contextlib.contextmanager
def cluster_auto_device(address: str | None) -> Iterator[None]:
    """Inside: `device: auto` resolves to `cuda` when any node of the cluster at `address` (or RAY_ADDRESS)
    has a GPU, else `cpu`; a CPU head with GPU workers runs `auto` on the GPUs. Without a cluster address,
    this machine decides (its local Ray is this machine)."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        yield
        return
    import ray

    init_ray(address)
    token = AUTO_DEVICE.set("cuda" if ray.cluster_resources().get("GPU", 0.0) > 0 else "cpu")
    try:
        yield
    finally:
        AUTO_DEVICE.reset(token)


def refuse_impossible(runs: list[ResolvedRun], address: str | None) -> None:
    """Raise the ConfigError of the first run that no node of the cluster can ever hold (a device, GPU or
    CPU count it lacks, or a lower bound of memory above its largest device), before anything is stored."""
    init_ray(address)
    capacity = Capacity.of_cluster(None)
    for run in runs:
        if reason := capacity.impossible(run.config, run.params):
            raise reason


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

    def run_batch(self, batch_id: int) -> BatchOutcome:
        """Run the batch's unfinished runs under its lease: a second driver of the same batch refuses."""
        lease = BatchLease(self.store, batch_id)
        lease.acquire()
        try:
            return self._run_leased(batch_id, lease)
        finally:
            lease.release()

    def _run_leased(self, batch_id: int, lease: BatchLease) -> BatchOutcome:
        runs = self.store.reset_unfinished(batch_id)
        outcome = BatchOutcome(batch_id)
        if runs:
            init_ray(self.address)
            self.store.set_batch_status(batch_id, "running")
            try:
                outcome.cancelled = self._drive(runs, Capacity.of_cluster(self.max_parallel), lease)
            except KeyboardInterrupt:
                outcome.interrupted = True
        status = "interrupted" if outcome.interrupted else "cancelled" if outcome.cancelled else "done"
        self.store.set_batch_status(batch_id, status)
        outcome.counts = self.store.run_counts(batch_id)
        return outcome

    def _drive(self, runs: list[Run], capacity: Capacity, lease: BatchLease) -> bool:
        """Dispatch the runs in order; True when `phasebench cancel` stopped the drive."""
        train = any(r.config["job"] == "train" for r in runs)
        with Dispatcher[Run](self.store, capacity, self.max_retries, stream_metrics=train) as dispatch:
            queue = []
            for run in runs:
                if reason := dispatch.refusal(run.config, run.params):
                    self.on_result(run, dispatch.fail(run.id, str(reason)))
                else:
                    queue.append(run)
            queue.reverse()
            try:
                while queue or dispatch.busy:
                    while queue and dispatch.fits(queue[-1].config):
                        run = queue.pop()
                        dispatch.submit(run, run.id, run.config)
                    for run, outcome in dispatch.wait():
                        self.on_result(run, outcome)
                    if lease.heartbeat():
                        self._cancel(dispatch)
                        return True
            except KeyboardInterrupt:
                interrupts.delivered()
                dispatch.abandon()
                # every run of this drive still `running`: the in-flight ones, and one the signal caught
                # between its submission and its record, or before its result was stored
                self.store.mark_pending([run.id for run in runs])
                raise
        return False

    def _cancel(self, dispatch: Dispatcher[Run]) -> None:
        """`phasebench cancel`: the runs in flight end, stored as cancelled; pending ones stay resumable."""
        for run in dispatch.cancel_all():
            outcome = dispatch.fail(run.id, "cancelled by `phasebench cancel`", status="cancelled")
            self.on_result(run, outcome)
