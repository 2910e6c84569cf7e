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

__all__ = ["cells", "current", "get", "shutdown", "start", "swap"]

_lock = threading.Lock()
_system: Brama | None = None
cells: Mapping[Any, Any] = {}
"""The default system's cells (empty when there is none): read by the inlined hot path."""


def _set(system: Brama | None) -> None:
    global _system, cells
    _system = system
    cells = {} if system is None else system.cells


def current() -> Brama | None:
    """The default system if one is running, without starting one (a plain read)."""
    return _system


def get() -> Brama:
    """The default system, started (with default options) on first use."""
    system = _system
    if system is not None and system.running:
        return system
    with _lock:
        if _system is None or not _system.running:
            _set(Brama())
        assert _system is not None
        return _system


def start(**options: Any) -> Brama:
    """Start the default system with `options`; BramaError if one is already running."""
    with _lock:
        if _system is not None and _system.running:
            raise BramaError("the default Brama system is already running; shutdown() it first")
        system = Brama(**options)
        _set(system)
        return system


def shutdown() -> None:
    """Stop the default system; idempotent. A later call starts a fresh one."""
    with _lock:
        system = _system
        _set(None)
    if system is not None:
        system.stop()


def swap(system: Brama | None) -> Brama | None:
    """Make `system` the default (None: none yet); returns the previous one, not stopped."""
    with _lock:
        previous = _system
        _set(system)
    return previous


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
