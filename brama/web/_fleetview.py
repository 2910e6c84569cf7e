"""The whole fleet on one page: a system on the fleet's backend that registers, read-only in
effect, every connection the fleet has (`python -m brama dashboard --backend URL`).

A `Brama(backend=..., namespace=...)` system shares the circuit of each connection it has
registered: its registration *joins* the fleet state (it never creates or resets one that
exists), its bridge relays every other process's transition into the local snapshot and
publishes the transition's events (with `data["origin"]`) on the local bus. What it lacks is
the list of connections, which no process registered here. `FleetView` supplies it:

- every `interval` seconds (default 2), one discovery pass (`brama._fleet.discover`: a SCAN
  of the namespace's state keys, no writes) on a background thread; each connection found
  that is not registered here yet is registered with the system's default options, and a
  connection this view registered that is gone from Redis (its keys expired or were
  deleted) is unregistered. Connections registered here by other code are left alone.
- the last change's origin and time of each connection, read in the same pass (the
  transition script keeps them next to the state), so a circuit tripped before the page was
  opened still says who tripped it; live changes come with their origin on `/events`.
- a failed pass (Redis down, a timeout, a refusal) changes nothing: the rows keep their last
  known state, `summary()` says the backend is unavailable and why, and the next pass tries
  again. The thread survives anything a pass raises (it is logged), and `close()` stops it.

Being registered makes the dashboard a member of the fleet, passive but real: it calls no
dependency, so it never counts an outcome or trips a circuit, but like every member it may be
the one that writes an open circuit's half-opening when its deadline passes (the first
member's write wins; the others' are no-ops). Its reads refresh no key's TTL: a connection the
workers abandoned expires as it would without a dashboard, and the next pass drops it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import brama
from brama._fleet import (
    BackendUnavailable,
    FleetConfig,
    describe,
    discover,
    last_changes,
)
from brama.errors import AlreadyRegisteredError, BramaError
from brama.otp import get_logger, safe_repr
from brama.types import ConnectionStatus

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["DEFAULT_INTERVAL", "FleetView"]

DEFAULT_INTERVAL: Final = 2.0
"""Seconds between two discovery passes."""

_log = get_logger("brama.web")
Connection = tuple[str | None, str]


class FleetView:
    """Keeps `system` registered to every connection of its fleet (see the module docstring).

    `refresh()` runs one pass now (what the thread does every `interval`; tests call it to
    drive discovery deterministically); `start()` starts the thread, `close()` stops it (and
    unregisters nothing: the system's own shutdown does that). Thread-safe.
    """

    def __init__(self, system: brama.Brama, config: FleetConfig, *,
                 interval: float = DEFAULT_INTERVAL) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not (
                0.01 <= interval <= 3600):
            raise ValueError(f"interval={interval!r} must be a number of seconds from 0.01 "
                             "to 3600")
        self.system = system
        self.config = config
        self.interval = float(interval)
        self._client: Redis = config.client()
        self._lock = threading.Lock()  # one pass at a time
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registered: set[Connection] = set()
        self._changes: dict[Connection, Mapping[str, Any]] = {}
        self._available: bool | None = None  # None: no pass yet
        self._error: str | None = None
        self._passes = 0
        self._discovered_at: float | None = None

    def __repr__(self) -> str:
        return (f"<FleetView {self.config!r} {len(self._registered)} connections, "
                f"every {self.interval:g}s>")

    # -- the background loop --

    def start(self) -> FleetView:
        """Run a first pass now, then one every `interval` on a daemon thread."""
        self.refresh()
        with self._state_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="brama-fleet-view",
                                                daemon=True)
                self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread (waiting for a pass in progress, bounded) and close the client;
        idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.config.timeout * 4 + 2.0)
        with contextlib.suppress(Exception):  # closing a broken pool must not raise
            self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # a bug in a pass must not end the view
                _log.error("fleet_view_pass_failed", error=safe_repr(exc), exc_info=True)

    # -- one pass --

    def refresh(self) -> bool:
        """One discovery pass; True when the backend answered."""
        with self._lock:
            if self._stop.is_set() and self._thread is not None:
                return False
            namespace = self.config.namespace
            try:
                found = discover(self._client, namespace)
                changes = last_changes(self._client, namespace, found)
            except BackendUnavailable as exc:
                self._failed(exc)
                return False
            for connection in found:
                if connection not in self._registered:
                    self._register(connection)
            for connection in self._registered - set(found):
                self._unregister(connection)
            with self._state_lock:
                self._changes = {c: {"origin": change.origin, "at": change.at,
                                     "version": change.version}
                                 for c, change in changes.items()}
                self._available, self._error = True, None
                self._passes += 1
                self._discovered_at = self.system.clock.time()
            return True

    def _failed(self, error: BaseException) -> None:
        with self._state_lock:
            first = self._available is not False
            self._available, self._error = False, describe(error.__cause__ or error)
            self._passes += 1
        if first:
            _log.warning("fleet_view_backend_unavailable", backend=self.config.display_url,
                         error=self._error)

    def _register(self, connection: Connection) -> None:
        scope, identifier = connection
        try:
            self.system.register(identifier, scope=scope)
        except AlreadyRegisteredError:
            return  # registered here by other code (the demo): not ours to unregister
        except (BramaError, TypeError, ValueError) as exc:
            _log.warning("fleet_view_register_failed", connection=identifier, scope=scope,
                         error=safe_repr(exc))
            return
        self._registered.add(connection)

    def _unregister(self, connection: Connection) -> None:
        scope, identifier = connection
        self._registered.discard(connection)
        with contextlib.suppress(BramaError):
            self.system.unregister(identifier, scope=scope)

    # -- what the page shows --

    def summary(self) -> dict[str, Any]:
        """The `fleet` object of `/api/connections`."""
        with self._state_lock:
            return {
                "backend": self.config.display_url,
                "namespace": self.config.namespace,
                "available": self._available is not False,
                "error": self._error,
                "discovered": len(self._registered),
                "discovered_at": self._discovered_at,
                "passes": self._passes,
                "interval": self.interval,
            }

    def row(self, status: ConnectionStatus) -> dict[str, Any]:
        """The fleet fields of one connection's row: `last_change` (`origin`, `at`, `version`)
        or None when unknown."""
        with self._state_lock:
            change = self._changes.get((status.scope, status.identifier))
        return {"last_change": None if change is None else dict(change)}
