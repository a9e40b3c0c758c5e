"""A stop request survives a KeyboardInterrupt that Python swallows inside a callback."""

from __future__ import annotations

import gc
import weakref

import pytest

from orchestrator import interrupts


class _Thing:
    pass


def test_an_interrupt_raised_inside_a_finalizer_is_raised_again_at_the_next_check():
    interrupts.delivered()
    thing = _Thing()
    weakref.finalize(thing, interrupts.request)  # where the signal landed once: a SQLAlchemy weakref callback
    del thing
    gc.collect()  # the finalizer's KeyboardInterrupt is printed and ignored by Python
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()
    interrupts.delivered()
    interrupts.check()  # handled: nothing pending any more


def test_without_a_request_check_does_nothing():
    interrupts.delivered()
    interrupts.check()
