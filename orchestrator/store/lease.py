"""One driver per batch: a lease on the batch row, renewed by the driver's heartbeat.

A driver takes the lease before it runs a batch's runs; a second driver (a second `run --resume` of the
same batch, on any machine sharing the database) finds it held and refuses, naming the holder. The
holder renews it every few seconds while it dispatches and gives it back when it stops; a driver killed
with SIGKILL leaves a lease that runs out after `LEASE_S` (at once on the host it ran on, where its
process is seen to be gone), and from then on `status` says `driver lost` and another driver may take the
batch. The heartbeat also reads a `phasebench cancel` request.
Taking and renewing are single conditional UPDATEs, atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import os
import socket
import time

from sqlalchemy import select, update

from ..errors import UserError
from .schema import Batch

#: how long a lease lasts without a heartbeat (`PHASEBENCH_LEASE_S`: longer for a slow shared database)
LEASE_S = float(os.environ.get("PHASEBENCH_LEASE_S", 30.0))
#: how often the holder renews it (and reads a cancel request)
HEARTBEAT_S = min(5.0, LEASE_S / 3)


def this_driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def gone(driver: str | None, lease_until: float | None, now: float | None = None) -> bool:
    """Whether a lease holder is gone: no holder, its lease ran out, or a process of this host that no
    longer exists (a driver killed here frees its batch at once, not after LEASE_S)."""
    now = time.time() if now is None else now
    if driver is None or lease_until is None or lease_until < now:
        return True
    host, _, pid = driver.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def driver_lost(batch: Batch) -> bool:
    """A batch marked running whose driver is gone (or that predates leases)."""
    return batch.status == "running" and gone(batch.driver, batch.lease_until)


class BatchLease:
    """The lease of one batch held by this process. Not thread-safe: used from the driver's loop."""

    def __init__(self, store, batch_id: int):
        self.store, self.batch_id, self.me = store, batch_id, this_driver()
        self.renewed = 0.0

    def acquire(self) -> None:
        """Take the lease, or raise a UserError naming the live driver that holds it."""
        with self.store.session() as s:
            holder, until = s.execute(select(Batch.driver, Batch.lease_until).where(Batch.id == self.batch_id)).one()
        now = time.time()
        if holder != self.me and not gone(holder, until, now):
            raise UserError(
                f"batch {self.batch_id} is being run by another driver ({holder}); wait for it, or stop it "
                f"with `phasebench cancel {self.batch_id}`"
            )
        seen = Batch.driver.is_(None) if holder is None else Batch.driver == holder
        with self.store.session() as s, s.begin():
            taken = s.execute(  # taken only if nobody else took it since it was read: one atomic UPDATE
                update(Batch)
                .where(Batch.id == self.batch_id, seen)
                .values(driver=self.me, lease_until=now + LEASE_S, cancel_requested=False)
            ).rowcount
        if not taken:
            raise UserError(f"batch {self.batch_id} was just taken by another driver; wait for it")
        self.renewed = now

    def heartbeat(self) -> bool:
        """Renew the lease when it is due; True when a cancel was requested (or the lease was lost)."""
        now = time.time()
        if now - self.renewed < HEARTBEAT_S:
            return False
        with self.store.session() as s, s.begin():
            held = s.execute(
                update(Batch)
                .where(Batch.id == self.batch_id, Batch.driver == self.me)
                .values(lease_until=now + LEASE_S)
            ).rowcount
            cancel = s.execute(select(Batch.cancel_requested).where(Batch.id == self.batch_id)).scalar()
        self.renewed = now
        return bool(cancel) or not held

    def release(self) -> None:
        with self.store.session() as s, s.begin():
            s.execute(
                update(Batch)
                .where(Batch.id == self.batch_id, Batch.driver == self.me)
                .values(driver=None, lease_until=None)
            )


def request_cancel(store, batch_id: int) -> str | None:
    """Ask the batch's driver to stop; returns the live driver that will, or None when no driver runs it."""
    with store.session() as s, s.begin():
        batch = s.get(Batch, batch_id)
        batch.cancel_requested = True
        return None if gone(batch.driver, batch.lease_until) else batch.driver


def wait_until_released(store, batch_id: int, timeout_s: float) -> bool:
    """Wait until no driver holds the batch (True), or `timeout_s` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with store.session() as s:
            holder = s.execute(select(Batch.driver).where(Batch.id == batch_id)).scalar()
        if holder is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
