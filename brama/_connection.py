"""The connection actor: a thin shell around the pure state machine in `brama._circuit`.

One actor per registration, the only writer of its cell. It turns messages into
`_circuit.step` calls and carries out what a step asks for: publish the new state to the
cell (the snapshot every reader uses), hand the events to the bus, ask its supervisor to arm
or cancel timers, log state changes. It owns nothing the cell does not hold, so a restarted or
woken actor resumes exactly where the last one stopped, and it knows nothing of `Brama`: what
it needs comes through a narrow `ConnectionContext`.

With a fleet backend the context has a link (`brama._fleet.link.FleetLink`): each circuit
message is stepped through it (the same `_circuit.step`, on the fleet's state, written by
compare-and-set) and the actor carries out its `Outcome` the same way; `FleetChanged`,
`FleetResync` and `FleetFold` come from the bridge, the backend's return and the flusher.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from brama import _circuit as circuit
from brama._cell import Cell, fast_policy
from brama._circuit import Circuit, Emit, Now
from brama._options import Options
from brama._window import TimeWindow
from brama.otp import Actor, TimerRef, get_logger
from brama.types import CircuitState, EventType

__all__ = [
    "ConnectionActor",
    "ConnectionContext",
    "ConnectionCrashedError",
    "Crash",
    "FleetChanged",
    "FleetFold",
    "FleetResync",
    "HibernateCheck",
    "RearmHibernation",
]

_log = "brama.connection"
_WAKE_GRACE = 1.0
"""Seconds (on the system's clock) a freshly started actor waits before its first idleness
check."""
_WAKE_GRACE_REAL = 0.5
"""Seconds of real time a started actor that has handled nothing yet stays up: it was woken
for a message on its way from another thread. This is about thread scheduling, not about the
simulated time of a FakeClock (which can jump past any grace before that thread runs)."""
_CIRCUIT_TYPES = frozenset(
    (circuit.Success, circuit.Failure, circuit.Release, circuit.Acquire, circuit.OpenCircuit,
     circuit.CloseCircuit, circuit.ResetCircuit, circuit.ResetExpiry, circuit.SetExpiry,
     circuit.DisableExpiry, circuit.Configure, circuit.ExpiryTick, circuit.PermitTimeout)
)
_OPTION_CHANGES = (circuit.Configure, circuit.SetExpiry)


class ConnectionContext(Protocol):
    """What a connection actor needs from the system it runs in, and nothing more."""

    def now(self) -> Now:
        """The current time on the system's clock."""
        ...

    def options(self, overrides: Mapping[str, Any]) -> tuple[int, Options]:
        """The resolved options for `overrides`, with the settings version they belong to."""
        ...

    def options_version(self) -> int:
        """The current settings version (resolved options change when it does)."""
        ...

    def wants(self) -> frozenset[EventType]:
        """The event types some subscription wants now."""
        ...

    def publish(self, cell: Cell, wall: float, events: tuple[Emit, ...]) -> None:
        """Hand `events` of `cell`, which happened at `wall`, to the event bus."""
        ...

    def arm(self, cell: Cell, key: Any, delay: float, message: Any) -> None:
        """Ask the supervisor to deliver `message` to this connection after `delay` seconds."""
        ...

    def cancel(self, cell: Cell, key: Any) -> None:
        """Ask the supervisor to cancel the connection's timer `key`."""
        ...

    def self_timer(self, delay: float, actor: Actor, message: Any) -> TimerRef:
        """A timer to this very actor (its idleness check), not kept across incarnations."""
        ...

    def registered(self, cell: Cell, actor: Actor) -> None:
        """Record the running actor of `cell` in the registry (best effort)."""
        ...

    def fleet(self) -> Any:
        """The system's fleet link (`brama._fleet.link.FleetLink`), None without a backend."""
        ...

    def rearm(self, cell: Cell, state: Circuit, now: Now) -> None:
        """Cancel the connection's timers and arm those `state` needs (an adopted state)."""
        ...


@dataclass(frozen=True, slots=True)
class HibernateCheck:
    """Self-sent tick: give the thread back if the circuit is closed and idle long enough."""


@dataclass(frozen=True, slots=True)
class RearmHibernation:
    """`hibernate_after` may have changed: measure the idleness check from the new value."""


@dataclass(frozen=True, slots=True)
class Crash:
    """Makes the actor die of an unhandled exception (for `brama.testing.crash_connection`)."""


@dataclass(frozen=True, slots=True)
class FleetChanged:
    """Another process changed the connection's fleet state (`notice`: a `ChangeNotice`)."""

    notice: Any


@dataclass(frozen=True, slots=True)
class FleetResync:
    """Join the fleet state again: the backend or the bridge's subscription came back."""


@dataclass(frozen=True, slots=True)
class FleetFold:
    """The flusher's turn: fold fast successes into the shared window, release held events."""


class ConnectionCrashedError(RuntimeError):
    """Raised on purpose by `Crash`, to exercise supervision."""


_TYPE_NAME = vars(type)["__name__"].__get__
"""The name of a class, read without its metaclass (which could run code of its own)."""


def _loggable(reason: Any) -> Any:
    """A reason as the transition log shows it, without running the caller's code inside the
    actor: a str as its characters, a plain number as it is, anything else as its type."""
    if reason is None or type(reason) in (str, int, float, bool):
        return reason
    if isinstance(reason, str):
        return str.__str__(reason)
    return f"<{_TYPE_NAME(type(reason))}>"


class ConnectionActor(Actor):
    """Handles one connection's messages; see the module docstring."""

    def __init__(self, context: ConnectionContext, cell: Cell) -> None:
        super().__init__()
        self.context = context
        self.cell = cell
        self.hibernate_timer: TimerRef | None = None
        self.last_seen = 0.0
        self.woken_at: float | None = time.monotonic()  # None once it handled a message
        self.cached: tuple[int, Mapping[str, Any], Options] | None = None
        self.fleet = context.fleet()

    def on_start(self) -> None:
        self.context.registered(self.cell, self)
        self.last_seen = self.context.now().mono
        # A woken actor is about to get the message that woke it: give it time to arrive.
        options = self._options(self.cell.circuit)
        self._arm_hibernation(max(options.hibernate_after, _WAKE_GRACE))

    def on_stop(self) -> None:
        if self.hibernate_timer is not None:
            self.hibernate_timer.cancel()

    def on_receive(self, message: Any) -> Any:
        if type(message) in _CIRCUIT_TYPES:
            return self._step(message)
        match message:
            case HibernateCheck():
                self._maybe_hibernate()
            case RearmHibernation():
                self._rearm_hibernation()
            case Crash():
                raise ConnectionCrashedError(f"connection {self.cell.key!r} crashed on request")
            case FleetChanged(notice=notice) if self.fleet is not None:
                self._fleet_apply(self.fleet.changed(self.cell, notice))
                if self.fleet.needs_resync(self.cell):  # it stepped alone: reconcile now
                    self._fleet_apply(self.fleet.resync(self.cell,
                                                        self._options(self.cell.circuit)))
            case FleetResync() if self.fleet is not None:
                self._fleet_apply(self.fleet.resync(self.cell, self._options(self.cell.circuit)))
            case FleetFold() if self.fleet is not None:
                self._fleet_apply(self.fleet.fold(self.cell, self._options(self.cell.circuit)))
            case _:
                return super().on_receive(message)
        return None

    def _options(self, state: Circuit) -> Options:
        """The resolved options of `state`, cached while neither they nor the settings change."""
        cached = self.cached
        if (
            cached is not None
            and cached[1] is state.overrides
            and cached[0] == self.context.options_version()
        ):
            return cached[2]
        version, options = self.context.options(state.overrides)
        self.cached = (version, state.overrides, options)
        return options

    def _step(self, message: circuit.Message) -> Any:
        cell, context, fleet = self.cell, self.context, self.fleet
        self.woken_at = None
        if fleet is not None:
            if fleet.needs_resync(cell):
                self._fleet_apply(fleet.resync(cell, self._options(cell.circuit)))
            before = cell.circuit
            options = self._options(before)
            outcome = fleet.step(cell, options, message, context.wants())
            self._carry_out(before, outcome.circuit, options, outcome.now, outcome.timers,
                            outcome.batches, message)
            return outcome.reply
        before = cell.circuit
        options = self._options(before)
        now = context.now()
        result = circuit.step(before, options, message, now, context.wants(), cell.fast_seen + 1)
        self._carry_out(before, result.circuit, options, now, result.timers,
                        ((now.wall, result.events),) if result.events else (), message)
        return result.reply

    def _fleet_apply(self, outcome: Any) -> None:
        """Carry out what the fleet link decided on a notice, a resync or a fold."""
        if outcome is not None:
            before = self.cell.circuit
            self._carry_out(before, outcome.circuit, self._options(outcome.circuit),
                            outcome.now, outcome.timers, outcome.batches, None)

    def _carry_out(self, before: Circuit, after: Circuit, options: Options, now: Now,
                   timers: tuple[circuit.TimerRequest, ...] | None,
                   batches: tuple[tuple[float, tuple[Emit, ...]], ...], message: Any) -> None:
        """Publish `after` as the cell's snapshot, arm `timers` (None: every timer `after`
        needs), publish the events, log a state change, look after hibernation."""
        cell, context = self.cell, self.context
        if options.windowed or cell.policy is not None:  # what the hot path must check now
            window = after.window
            # the one second in which the hot path may count successes: the time window's own
            cell.window_second = (window.second if isinstance(window, TimeWindow)
                                  else int(now.mono // 1))
            cell.policy = fast_policy(options, after, now.mono, cell.fast_seen + 1)
        cell.circuit = after
        if timers is None:
            context.rearm(cell, after, now)
        else:
            for key, delay, timer_message in timers:
                if timer_message is None:
                    context.cancel(cell, key)
                else:
                    context.arm(cell, key, delay, timer_message)
        for wall, events in batches:
            if events:
                context.publish(cell, wall, events)
        if after.state is not before.state:
            self._log_transition(before, after, message)
        if message is None:  # a fleet change: not this process's activity
            if self.hibernate_timer is None:
                self._arm_hibernation(options.hibernate_after)
            return
        self.last_seen = now.mono
        if isinstance(message, _OPTION_CHANGES):  # hibernate_after may have changed
            self._rearm_hibernation()
        elif self.hibernate_timer is None:
            self._arm_hibernation(options.hibernate_after)

    def _log_transition(self, before: Circuit, after: Circuit, message: Any) -> None:
        reason = getattr(message, "reason", None)
        get_logger(_log).info(
            "circuit_state_change",
            connection=self.cell.identifier,
            scope=self.cell.scope,
            previous_state=before.state.value,
            new_state=after.state.value,
            reason=_loggable(reason),
            failure_count=after.failure_count,
        )

    # -- hibernation --

    def _arm_hibernation(self, delay: float) -> None:
        """Check for idleness in `delay` seconds (only closed circuits ever hibernate)."""
        if self.cell.circuit.state is CircuitState.CLOSED:
            self.hibernate_timer = self.context.self_timer(delay, self, HibernateCheck())

    def _rearm_hibernation(self) -> None:
        """Replace the pending idleness check by one computed from the current options."""
        if self.hibernate_timer is not None:
            self.hibernate_timer.cancel()
            self.hibernate_timer = None
        options = self._options(self.cell.circuit)
        idle = self.context.now().mono - self.last_seen
        self._arm_hibernation(max(options.hibernate_after - idle, 0.0))

    def _maybe_hibernate(self) -> None:
        """Give the thread back if closed, nothing is queued, and no message came for a while.

        Open and half-open circuits stay awake; a closed one checks again once its state
        changes back, on the next message it handles.
        """
        self.hibernate_timer = None
        state = self.cell.circuit
        if state.state is not CircuitState.CLOSED:
            return
        options = self._options(state)
        idle = self.context.now().mono - self.last_seen
        just_woken = (
            self.woken_at is not None and time.monotonic() - self.woken_at < _WAKE_GRACE_REAL
        )
        if idle + 1e-9 >= options.hibernate_after and self.actor_inbox.empty() and not just_woken:
            self.hibernate()
        else:
            self._arm_hibernation(max(options.hibernate_after - idle, 0.0))
