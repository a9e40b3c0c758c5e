"""Several drivers may run one study at once (Optuna's way): each holds a lease of its own among the
study's user attributes, renewed as it drives, and tags every trial it asks with its name. A driver
that starts fails only the RUNNING trials whose driver is gone, so it never touches a live driver's
trials, and no trial's run executes twice."""

from __future__ import annotations

import time
from typing import Any

from ..store.lease import HEARTBEAT_S, LEASE_S, gone, this_driver

DRIVER_ATTR = "driver"
LEASE_PREFIX = "driver_lease:"


class DriverLease:
    """This process's lease among the drivers of one study. Not thread-safe: used from the driver's loop."""

    def __init__(self, study):
        self.study, self.me, self.renewed = study, this_driver(), 0.0

    def renew(self) -> bool:
        """Renew the lease when it is due; True when it was (the driver's cue for its other periodic work)."""
        now = time.time()
        if now - self.renewed < HEARTBEAT_S:
            return False
        self.study.set_user_attr(LEASE_PREFIX + self.me, now + LEASE_S)
        self.renewed = now
        return True

    def release(self) -> None:
        self.study.set_user_attr(LEASE_PREFIX + self.me, 0.0)

    def tag(self, trial) -> None:
        trial.set_user_attr(DRIVER_ATTR, self.me)


def abandoned(trial, leases: dict[str, Any]) -> bool:
    """Whether a trial's driver is gone, given the study's user attributes (`leases`); a trial asked before
    drivers tagged their trials counts as abandoned."""
    driver = trial.user_attrs.get(DRIVER_ATTR)
    return gone(driver, leases.get(LEASE_PREFIX + driver) if driver else None)
