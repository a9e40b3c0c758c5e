"""Stop requests (Ctrl-C, SIGTERM) that cannot be lost.

The signal handler records the request and raises KeyboardInterrupt wherever Python is. When that is
inside a callback whose exceptions Python swallows (a weakref callback or a `__del__`, seen in a SQLAlchemy
one), the raise is lost; the driver loops call :func:`check` at every poll, which raises it again.
Thread-safety: the flag is a `threading.Event`; the handler runs in the main thread.
"""

from __future__ import annotations

import threading
from typing import NoReturn

_pending = threading.Event()


def request() -> NoReturn:
    """The handler's body: remember the stop, then raise it here."""
    _pending.set()
    raise KeyboardInterrupt


def check() -> None:
    """Raise a requested stop that has not been handled yet."""
    if _pending.is_set():
        raise KeyboardInterrupt


def delivered() -> None:
    """A handler took the stop (or a new drive starts): nothing is pending any more."""
    _pending.clear()
