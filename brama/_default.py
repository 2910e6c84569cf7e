"""The default system: the one home of the state behind the module-level functions.

It starts lazily on first use (`get()`), like an OTP application started on demand;
`shutdown()` stops it and a later call starts a new one. `swap` lets `brama.testing` make a
test's own system the default for the duration of the test.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from typing import Any

from brama._system import Brama
from brama.errors import BramaError

__all__ = ["cells", "current", "get", "shutdown", "start", "swap", "system"]

_lock = threading.Lock()
system: Brama | None = None
"""The default system, or None (a plain read for hot paths; use `get()` to start one)."""
cells: Mapping[Any, Any] = {}
"""The default system's cells (empty when there is none): read by the inlined hot path."""


def _set(new: Brama | None) -> None:
    global system, cells
    system = new
    cells = {} if new is None else new.cells


def current() -> Brama | None:
    """The default system if one is running, without starting one (a plain read)."""
    return system


def get() -> Brama:
    """The default system, started (with default options) on first use."""
    current_system = system
    if current_system is not None and current_system.running:
        return current_system
    with _lock:
        if system is None or not system.running:
            _set(Brama())
        assert system is not None
        return system


def start(**options: Any) -> Brama:
    """Start the default system with `options`; BramaError if one is already running."""
    with _lock:
        if system is not None and system.running:
            raise BramaError("the default Brama system is already running; shutdown() it first")
        started = Brama(**options)
        _set(started)
        return started


def shutdown() -> None:
    """Stop the default system; idempotent. A later call starts a fresh one."""
    with _lock:
        stopping = system
        _set(None)
    if stopping is not None:
        stopping.stop()


def swap(new: Brama | None) -> Brama | None:
    """Make `new` the default (None: none yet); returns the previous one, not stopped."""
    with _lock:
        previous = system
        _set(new)
    return previous


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
