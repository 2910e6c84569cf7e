"""The connection actor: a thin shell around the pure state machine in `brama.circuit`.

One actor per `(scope, identifier)`, the only writer of its connection's state. It turns
messages into `circuit.step` calls and carries out what a step asks for: publish the new
state to the connection's `Cell` (the snapshot every reader uses), hand events to the event
bus, arm timers, log state changes. It owns no state the cell does not hold, so a restarted
or woken actor resumes exactly where the last one stopped.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brama import circuit
from brama.circuit import Circuit, Now
from brama.log import get_logger, safe_text
from brama.otp._actor import Actor
from brama.types import CircuitState, ConnectionStatus, Event, EventType

if TYPE_CHECKING:
    from brama.system import Brama

__all__ = [
    "Cell",
    "ConnectionActor",
    "Crash",
    "HibernateCheck",
    "Key",
    "RearmHibernation",
    "key_of",
]

Key = str | tuple[str, str]
"""A connection's key in the system's table: the identifier alone when it has no scope (the
common case, looked up on the hot path without building a tuple), else `(scope, identifier)`."""


def key_of(scope: str | None, identifier: str) -> Key:
    """The table key of `(scope, identifier)`; hot paths inline the same expression."""
    return identifier if scope is None else (scope, identifier)

_log = "brama.connection"
_WAKE_GRACE = 1.0
"""Seconds a freshly started actor stays up before its first idleness check."""
_CIRCUIT_MESSAGES = typing.get_args(circuit.Message)


def _count_value(counter: itertools.count[int]) -> int:
    # itertools.count is incremented atomically by next() (one C call under the GIL) and only
    # exposes its position through repr: "count(N)".
    return int(repr(counter)[6:-1])


class Cell:
    """One connection's row in the system's table: the published snapshot plus fast counters.

    The actor replaces `circuit` (one reference assignment) after every step; readers take
    the reference once and read a consistent, immutable state. The counters are bumped by
    callers on the hot path without the actor, atomically.
    """

    __slots__ = (
        "circuit",
        "fast_rejections",
        "fast_successes",
        "identifier",
        "key",
        "last_fast_success",
        "metadata",
        "scope",
        "type",
    )

    def __init__(
        self,
        identifier: str,
        scope: str | None,
        type_: str,
        metadata: Mapping[str, Any],
        state: Circuit,
    ) -> None:
        self.identifier = identifier
        self.scope = scope
        self.key: Key = key_of(scope, identifier)
        self.type = type_
        self.metadata = metadata
        self.circuit = state
        self.fast_successes = itertools.count()
        self.fast_rejections = itertools.count()
        self.last_fast_success: float | None = None

    def status(self, options: circuit.Options) -> ConnectionStatus:
        """The public status: the published state, merged with the hot path's counters."""
        return self.status_later(options)()

    def status_later(
        self, options: circuit.Options, state: Circuit | None = None
    ) -> Callable[[], ConnectionStatus]:
        """Capture the status now (a few reads) and build the object only when called."""
        state = self.circuit if state is None else state
        successes = _count_value(self.fast_successes)
        rejections = _count_value(self.fast_rejections)
        last_fast_success = self.last_fast_success

        def build() -> ConnectionStatus:
            return circuit.to_status(
                state,
                options,
                identifier=self.identifier,
                scope=self.scope,
                type=self.type,
                metadata=self.metadata,
                extra_successes=successes,
                extra_rejections=rejections,
                last_fast_success=last_fast_success,
            )

        return build


@dataclass(frozen=True)
class HibernateCheck:
    """Self-sent tick: give the thread back if the circuit is closed and idle long enough."""


@dataclass(frozen=True)
class RearmHibernation:
    """`hibernate_after` may have changed: measure the idleness check from the new value."""


@dataclass(frozen=True)
class Crash:
    """Makes the actor die of an unhandled exception (for `brama.testing.crash_connection`)."""


class ConnectionCrashed(RuntimeError):
    """Raised on purpose by `Crash`, to exercise supervision."""


class ConnectionActor(Actor):
    """Handles one connection's messages; see the module docstring."""

    def __init__(self, system: Brama, cell: Cell) -> None:
        super().__init__()
        self.system = system
        self.cell = cell
        self.address = system._connection_address(cell)
        self.hibernate_timer: Any = None
        self.last_seen = 0.0

    def on_start(self) -> None:
        self.system._registry.register(self.cell.key, self.actor_ref)
        now = self.system._now()
        self.last_seen = now.mono
        for timer in circuit.resume_timers(self.cell.circuit, now):
            self.system._timers.send_after(timer.delay, self.address, timer.message)
        # A woken actor is about to get the message that woke it: give it time to arrive.
        options = self.system._options_for(self.cell.circuit)
        self._arm_hibernation(max(options.hibernate_after, _WAKE_GRACE))

    def on_stop(self) -> None:
        if self.hibernate_timer is not None:
            self.hibernate_timer.cancel()

    def on_receive(self, message: Any) -> Any:
        match message:
            case HibernateCheck():
                self._maybe_hibernate()
                return None
            case RearmHibernation():
                self._rearm_hibernation()
                return None
            case Crash():
                raise ConnectionCrashed(f"connection {self.cell.key!r} crashed on request")
            case _ if isinstance(message, _CIRCUIT_MESSAGES):
                return self._step(message)
            case _:
                return super().on_receive(message)

    def _step(self, message: circuit.Message) -> Any:
        cell = self.cell
        before = cell.circuit
        options = self.system._options_for(before)
        now = self.system._now()
        result = circuit.step(before, options, message, now)
        cell.circuit = result.circuit
        for timer in result.timers:
            self.system._timers.send_after(timer.delay, self.address, timer.message)
        if result.events:
            self._emit(result.events, now)
        if result.circuit.state is not before.state:
            self._log_transition(before, result)
        self.last_seen = now.mono
        if isinstance(message, circuit.Configure):  # hibernate_after may have changed
            self._rearm_hibernation()
        elif self.hibernate_timer is None:
            self._arm_hibernation(options.hibernate_after)
        return result.reply

    def _emit(self, emits: tuple[circuit.Emit, ...], now: Now) -> None:
        bus = self.system._bus
        cell = self.cell
        for emit in emits:
            if bus.wanted(emit.event):
                bus.publish(
                    emit.event,
                    Event(emit.event, now.wall, cell.identifier, cell.scope, emit.data),
                )

    def _log_transition(self, before: Circuit, result: circuit.Step) -> None:
        change = next(
            (e for e in result.events if e.event is EventType.STATE_CHANGE), None
        )
        reason = None if change is None else change.data.get("reason")
        get_logger(_log).info(
            "circuit_state_change",
            connection=self.cell.identifier,
            scope=self.cell.scope,
            previous_state=before.state.value,
            new_state=result.circuit.state.value,
            reason=None if reason is None else safe_text(reason),
            failure_count=result.circuit.failure_count,
        )

    # -- hibernation --

    def _arm_hibernation(self, delay: float) -> None:
        """Check for idleness in `delay` seconds (only closed circuits ever hibernate)."""
        if self.cell.circuit.state is CircuitState.CLOSED:
            self.hibernate_timer = self.system._timers.send_after(
                delay, self.actor_ref, HibernateCheck()
            )

    def _rearm_hibernation(self) -> None:
        """Replace the pending idleness check by one computed from the current options."""
        if self.hibernate_timer is not None:
            self.hibernate_timer.cancel()
            self.hibernate_timer = None
        options = self.system._options_for(self.cell.circuit)
        idle = self.system._now().mono - self.last_seen
        self._arm_hibernation(max(options.hibernate_after - idle, 0.0))

    def _maybe_hibernate(self) -> None:
        """Give the thread back if closed, nothing is queued, and no message came for a while.

        Open and half-open circuits stay awake (their timers need the actor); a closed one
        checks again once its state changes back, on the next message it handles.
        """
        self.hibernate_timer = None
        state = self.cell.circuit
        if state.state is not CircuitState.CLOSED:
            return
        options = self.system._options_for(state)
        idle = self.system._now().mono - self.last_seen
        if idle + 1e-9 >= options.hibernate_after and self.actor_inbox.empty():
            self.hibernate()
        else:
            self._arm_hibernation(max(options.hibernate_after - idle, 0.0))


def child_id(key: Key) -> Hashable:
    """The supervisor child id of a connection."""
    return ("connection", key)
