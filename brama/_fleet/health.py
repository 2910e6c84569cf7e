"""Whether the fleet backend answers: fail fast while it does not, probe it in the background.

A caller that finds Redis dead has already waited up to one timeout; nobody after it should.
`Availability` flips to unavailable on the first connection-level failure, and from then on
`check()` raises `BackendUnavailable` at once, with no I/O, until the keeper thread's probe
succeeds. The probe backs off (`probe_min` doubling to `probe_max`, with ±20 % jitter so a
fleet restarting together does not reconnect in lockstep): one probe per process at a time,
never one per caller, so a recovering Redis sees no reconnect storm.

The same thread runs a periodic job while the backend is available (the store samples the
server clock with it) and is the only thread that calls `on_unavailable` and `on_restored`:
exactly once per change, alternating, never concurrently, never on a caller's thread. A
callback that raises is logged and contained.

The keeper starts with the first `check()` and again in a forked child (threads do not
survive a fork); `close()` stops it within one wait.
"""

from __future__ import annotations

import os
import random
import threading
import weakref
from collections.abc import Callable
from typing import Final

from brama._fleet.errors import BackendUnavailable, describe
from brama.otp import get_logger

__all__ = ["Availability"]

_log: Final = "brama.fleet.health"
_JITTER: Final = 0.2
_JOIN: Final = 2.0
"""Longest wait for the keeper thread to end in `close()` (it is a daemon thread)."""


class Availability:
    """The backend's availability, its reconnection probe and its periodic job."""

    def __init__(
        self,
        probe: Callable[[], None],
        *,
        name: str,
        probe_min: float,
        probe_max: float,
        periodic: Callable[[], None] | None = None,
        period: float = 30.0,
        on_unavailable: Callable[[BaseException], None] | None = None,
        on_restored: Callable[[], None] | None = None,
    ) -> None:
        self.probe = probe
        self.name = name
        self.probe_min = probe_min
        self.probe_max = probe_max
        self.periodic = periodic
        self.period = period
        self.on_unavailable = on_unavailable
        self.on_restored = on_restored
        self.available = True
        """Read without a lock: a stale read only costs one more or one fewer attempt."""
        self.error: BaseException | None = None
        self.changes = 0
        """How many times availability changed (for diagnosis and tests)."""
        self.probes = 0
        """How many probes the keeper sent (one per backoff step while unavailable)."""
        self._closed = False
        self._init_threading()
        _instances.add(self)

    def _init_threading(self) -> None:
        self._pid = os.getpid()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable ({describe(self.error)})"
        return f"<Availability {self.name} {state}>"

    def check(self) -> None:
        """Return if the backend is believed available; else raise BackendUnavailable now."""
        if self._thread is None or self._pid != os.getpid():
            self._ensure_keeper()
        if not self.available:
            raise BackendUnavailable(
                f"fleet backend {self.name} is unavailable "
                f"({describe(self.error)}); probing in the background"
            )

    def failed(self, error: BaseException) -> None:
        """A connection-level failure: unavailable from now until a probe succeeds."""
        with self._wake:
            if not self.available or self._closed:
                return
            self.available = False
            self.error = error
            self.changes += 1
            self._wake.notify_all()
        self._ensure_keeper()

    def close(self) -> None:
        """Stop the keeper thread (bounded wait); later checks still answer, nothing probes."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN)
            if thread.is_alive():
                get_logger(_log).warning("fleet_keeper_still_running", backend=self.name)

    def _ensure_keeper(self) -> None:
        if self._pid != os.getpid():  # a forked child: no keeper thread came along
            self._init_threading()
        with self._wake:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._run, name=f"brama-fleet-keeper {self.name}", daemon=True)
            self._thread.start()

    # -- the keeper thread --

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug: log it; the next check() starts a new keeper
            get_logger(_log).error("fleet_keeper_crashed", backend=self.name, exc_info=exc)
            with self._wake:
                self._thread = None

    def _loop(self) -> None:
        while not self._closed:
            if self.available:
                if self._wait(self.period, available=True):
                    self._run_periodic()
                continue
            self._callback("on_unavailable", self.on_unavailable, self.error)
            delay = self.probe_min
            while True:
                self._wait(_jittered(delay), available=False)
                if self._closed:
                    return
                if self._probe():
                    break
                delay = min(delay * 2.0, self.probe_max)
            self._callback("on_restored", self.on_restored)

    def _wait(self, seconds: float, *, available: bool) -> bool:
        """Wait up to `seconds` (woken by `failed` and `close`); True if, after it, the keeper
        is still open and availability is still `available`."""
        with self._wake:
            if self._closed or self.available is not available:
                return False
            self._wake.wait(seconds)
            return not self._closed and self.available is available

    def _run_periodic(self) -> None:
        if self.periodic is None:
            return
        try:
            self.periodic()
        except BackendUnavailable:
            pass  # the job's own failure report already flipped availability
        except Exception as exc:
            get_logger(_log).warning("fleet_periodic_failed", backend=self.name,
                                     error=describe(exc))

    def _probe(self) -> bool:
        """One probe; on success the backend is available again."""
        self.probes += 1
        try:
            self.probe()
        except Exception as exc:
            self.error = exc
            get_logger(_log).debug("fleet_probe_failed", backend=self.name,
                                   error=describe(exc))
            return False
        with self._wake:
            self.available = True
            self.error = None
            self.changes += 1
        get_logger(_log).info("fleet_backend_restored", backend=self.name)
        return True

    def _callback(self, name: str, callback: Callable[..., None] | None,
                  *args: object) -> None:
        if name == "on_unavailable":
            get_logger(_log).warning("fleet_backend_unavailable", backend=self.name,
                                     error=describe(self.error))
        if callback is None:
            return
        try:
            callback(*args)
        except BaseException as exc:  # user code: contained, like every handler in Brama
            get_logger(_log).error("fleet_callback_failed", callback=name, backend=self.name,
                                   exc_info=exc)


def _jittered(delay: float) -> float:
    return delay * random.uniform(1.0 - _JITTER, 1.0 + _JITTER)


_instances: weakref.WeakSet[Availability] = weakref.WeakSet()


def _after_fork() -> None:
    """Locks held by a parent's thread at fork time would never be released in the child."""
    for availability in list(_instances):
        availability._init_threading()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
