"""Stop requests (Ctrl-C, SIGTERM) that cannot be lost.

While a dispatch loop runs (inside :func:`polled`), the signal handler only records the request; the loop
calls :func:`check` at every poll, which raises KeyboardInterrupt there, at a point where the loop can
cancel what is in flight cleanly. A second request before the loop got to the first one raises at once
(the way out of a call that hangs). Outside a loop the handler raises KeyboardInterrupt wherever Python
is; when that is inside a callback whose exceptions Python swallows (a weakref callback or a `__del__`,
seen in a SQLAlchemy one), the raise is lost, and the next :func:`check` raises it again.
Thread-safety: the flags are `threading.Event`s; the handler runs in the main thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pending = threading.Event()
_polling = threading.Event()


def request() -> None:
    """The handler's body: remember the stop; raise it here unless a loop polls for it (and has not yet
    taken an earlier one)."""
    again = _pending.is_set()
    _pending.set()
    if again or not _polling.is_set():
        raise KeyboardInterrupt


def check() -> None:
    """Raise a requested stop that has not been handled yet."""
    if _pending.is_set():
        raise KeyboardInterrupt


def delivered() -> None:
    """A handler took the stop (or a new drive starts): nothing is pending any more."""
    _pending.clear()


@contextmanager
def polled() -> Iterator[None]:
    """Inside, a stop request only sets the flag that :func:`check` raises."""
    _polling.set()
    try:
        yield
    finally:
        _polling.clear()
