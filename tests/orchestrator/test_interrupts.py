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


def test_inside_a_polling_loop_a_request_waits_for_the_check_and_a_second_one_raises_at_once():
    interrupts.delivered()
    with interrupts.polled():
        interrupts.request()  # recorded, not raised: the loop is mid-way through a submission, say
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # the loop's next poll
        with pytest.raises(KeyboardInterrupt):
            interrupts.request()  # not yet delivered: a second Ctrl-C forces its way out
        interrupts.delivered()
        interrupts.check()
    with pytest.raises(KeyboardInterrupt):
        interrupts.request()  # no loop polls any more: raised where it lands
    interrupts.delivered()
