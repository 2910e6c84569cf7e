"""Helpers for testing code that uses Brama: a fake clock, forced states, crashes.

The pytest plugin (fixtures `brama_system` and `brama_clock`) lives in `brama.testing.plugin`
and is registered through the `pytest11` entry point. Every helper takes `system=None` for the
default system and `scope=None`, like the facade methods, and works through the public
actor messages, so the connection emits the same events as in production. The hooks at the
end (`flush_events`, `kill`, `default_system`, `pending_timers`) are for tests of Brama itself
and of code built on it that must see what the public API does not show.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Literal

from pykka import ActorRef

from brama import _default
from brama._connection import FleetFold
from brama._system import Brama
from brama.errors import NotFoundError
from brama.otp import FakeClock, safe_repr
from brama.otp import kill as otp_kill
from brama.types import CircuitState

__all__ = [
    "FakeClock",
    "Part",
    "add_failures",
    "crash_connection",
    "default_system",
    "flush_events",
    "kill",
    "pending_timers",
    "set_state",
    "simulate_failures",
    "simulate_recovery",
    "sync_fleet",
]

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


def _system(system: Brama | None) -> Brama:
    if system is not None and not isinstance(system, Brama):
        raise TypeError(
            f"system must be a brama.Brama or None (the default), got {safe_repr(system)}"
        )
    return _default.get() if system is None else system


def crash_connection(identifier: str, *, scope: str | None = None,
                     system: Brama | None = None) -> None:
    """Make the connection's actor die of an unhandled exception, to test supervision."""
    brama = _system(system)
    cell = brama.lookup(identifier, scope)
    if cell is None:
        raise NotFoundError(f"connection {str.__str__(identifier)!r} is not registered")
    brama.runtime.crash(cell)


def set_state(identifier: str, state: CircuitState | str, *, scope: str | None = None,
              system: Brama | None = None) -> None:
    """Force the circuit into `state` ("closed", "open" or "half_open", or a CircuitState).

    closed is `close_circuit` (failure count 0, backoff reset, even if already closed); open is
    `open_circuit` (nothing happens if already open, so the deadline stays); half_open is
    `open_circuit` then `reset_expiry` (nothing happens if already half-open).
    Raises ConfigError (a ValueError) naming `state` for anything else.
    """
    target = CircuitState.coerce(state)
    brama = _system(system)
    current = brama.status(identifier, scope=scope).state
    reason = "brama.testing.set_state"
    if target is _CLOSED:
        brama.close_circuit(identifier, scope=scope, reason=reason)
    elif target is _OPEN:
        if current is not _OPEN:
            brama.open_circuit(identifier, scope=scope, reason=reason)
    elif current is not _HALF_OPEN:
        if current is not _OPEN:
            brama.open_circuit(identifier, scope=scope, reason=reason)
        brama.reset_expiry(identifier, scope=scope)


def _check_count(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(
            f"count must be an int >= 0, got {type(count).__name__}: {safe_repr(count)}"
        )
    if count < 0:
        raise ValueError(f"count must be an int >= 0, got {safe_repr(count)}")
    return count


def add_failures(identifier: str, count: int, *, scope: str | None = None,
                 system: Brama | None = None) -> None:
    """Report `count` failures (reason "brama.testing.add_failures"), as failing calls would.

    NotFoundError if the connection is unknown, even for `count=0`.
    """
    number = _check_count(count)
    brama = _system(system)
    brama.status(identifier, scope=scope)
    for _ in range(number):
        brama.failure(identifier, scope=scope, reason="brama.testing.add_failures")


simulate_failures = add_failures
"""Alias of `add_failures`."""


def simulate_recovery(identifier: str, *, scope: str | None = None,
                      system: Brama | None = None) -> None:
    """Bring the circuit back to closed the way a recovering dependency would.

    open: `reset_expiry` (half-open now), then successes until it closes
    (`success_threshold` of them); half-open: successes until it closes; closed: one success,
    which clears the failure count.
    """
    brama = _system(system)
    status = brama.status(identifier, scope=scope)
    if status.state is _CLOSED:
        brama.success(identifier, scope=scope)
        return
    if status.state is _OPEN:
        brama.reset_expiry(identifier, scope=scope)
        status = brama.status(identifier, scope=scope)
    # Bounded in case something else re-opens the circuit meanwhile.
    for _ in range(status.success_threshold + 1):
        if status.state is not _HALF_OPEN:
            break
        brama.success(identifier, scope=scope)
        status = brama.status(identifier, scope=scope)


# -- hooks for tests that must see below the public API -----------------------------------


def flush_events(*, system: Brama | None = None, timeout: float = 5.0) -> None:
    """Wait until every event published so far was handed to its subscriptions (also while
    the bus actor is being restarted: its pending events go out once it is back)."""
    _system(system).runtime.flush(timeout)


def sync_fleet(*systems: Brama, timeout: float = 5.0) -> None:
    """Bring systems sharing a backend to one view, for tests: each system's fast counts are
    flushed (and folded into shared rate windows), every transition is heard and its events
    published on every bus, then each system reads the fleet's counts again. Without it a
    system sees the others' transitions within milliseconds and their counts within seconds.
    Systems without a backend are skipped; TimeoutError if the notices do not come in time.
    """
    fleets = [(s, s.runtime) for s in systems if s.runtime.fleet is not None]

    def barrier() -> None:  # every actor handled what it was told before (and folded)
        for _, runtime in fleets:
            for cell in list(runtime.table.values()):
                runtime.ask(cell, FleetFold())

    for _, runtime in fleets:
        for cell in list(runtime.table.values()):
            runtime.fleet.flush(cell)
    barrier()
    deadline = time.monotonic() + timeout
    for system, runtime in fleets:
        while not runtime.fleet.caught_up():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{system!r} did not hear the fleet's transitions in time")
            time.sleep(0.001)
    barrier()
    for _, runtime in fleets:
        for cell in list(runtime.table.values()):
            runtime.fleet.flush(cell, read=True)
        runtime.flush(timeout)


Part = Literal["registry", "events", "connections", "janitor", "bridge", "flusher"]


def kill(part: Part, *, how: Literal["stop", "crash"] = "crash",
         system: Brama | None = None) -> ActorRef[Any] | None:
    """Stop or crash a part of the system's supervision tree ("registry", "events",
    "connections", "janitor", and with a backend "bridge" and "flusher"); returns the actor
    killed (None if it was not running). Its supervisor restarts it, as in production."""
    runtime = _system(system).runtime
    ref = runtime.part(part)
    if ref is None or not ref.is_alive():
        return None
    if how == "stop":
        ref.stop()
    else:
        otp_kill(ref, RuntimeError(f"{part} killed by brama.testing.kill"))
    return ref


def pending_timers(*, system: Brama | None = None) -> int:
    """How many timers (expiry ticks, permit timeouts, sweeps, idleness checks) are pending."""
    pending: int = _system(system).runtime.timers.pending
    return pending


@contextlib.contextmanager
def default_system(system: Brama) -> Iterator[Brama]:
    """Make `system` the default for the block (module functions and decorators without
    `system=` use it), restoring the previous default afterwards without stopping it."""
    if not isinstance(system, Brama):
        raise TypeError(f"system must be a brama.Brama, got {safe_repr(system)}")
    previous = _default.swap(system)
    try:
        yield system
    finally:
        _default.swap(previous)
