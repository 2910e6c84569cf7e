"""`Brama`: one system of supervised connection actors, and the facade of the public API.

The supervision tree of a system:

    root Supervisor (one_for_one, max_restarts / max_seconds from the options)
    ├── connections: Supervisor (one_for_one), one dormant-or-running ConnectionActor each
    └── janitor: Janitor (inactivity sweeps every cleanup_interval)

beside a `TimerService` (expiry ticks, permit timeouts, sweeps, hibernation checks) and an
`EventBus` (subscriptions). Reads (`available` on a closed or open circuit, `status`,
`connections`) use the snapshot in each connection's `Cell`; everything that changes a
circuit goes through its actor.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRef

from brama import circuit
from brama.circuit import Circuit, Now
from brama.config import (
    CONNECTION_OPTIONS,
    GLOBAL_OPTIONS,
    Options,
    Settings,
    validate_duration,
    validate_options,
)
from brama.connection import (
    Cell,
    ConnectionActor,
    Crash,
    Key,
    RearmHibernation,
    child_id,
    key_of,
)
from brama.errors import (
    AlreadyRegisteredError,
    BramaError,
    CircuitOpenError,
    ConfigError,
    NotFoundError,
)
from brama.groups import GroupsMixin
from brama.log import get_logger
from brama.otp import (
    Address,
    ChildNotFoundError,
    ChildSpec,
    RestartIntensityExceeded,
    StartContext,
    Supervisor,
)
from brama.otp._actor import Actor, call
from brama.otp._clock import SYSTEM_CLOCK, Clock
from brama.otp._eventbus import EventBus, Subscription
from brama.otp._registry import Registry
from brama.otp._timers import TimerService
from brama.types import CircuitState, ConnectionStatus, Event, EventType
from brama.validation import check_identifier, check_scope, in_scope

__all__ = ["Brama"]

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_SUCCESS = EventType.SUCCESS
_CALL_TIMEOUT = 30.0
_RESENDS = 10
_RESTART_WAIT = 5.0
_log = "brama.system"


def _check_key(identifier: Any, scope: Any) -> Key:
    return key_of(check_scope(scope), check_identifier(identifier))


class _ConnectionAddress(Address):
    """Where messages for one connection go: its current actor, woken or restarted as needed.

    Bound to one registration (its `Cell`): once the connection is unregistered, messages to
    the address are refused with `ChildNotFoundError`, even if the same name is registered
    again, so a stale timer of an old registration cannot touch a new one. The running actor
    is found in the registry (a direct read); a connection without one (dormant, or dead and
    not yet restarted) is started through the connections supervisor, looked up at send time
    so the address stays valid across restarts of that supervisor. Timers hold these.
    """

    __slots__ = ("cell", "system")
    attempts = _RESENDS

    def __init__(self, system: Brama, cell: Cell) -> None:
        self.system = system
        self.cell = cell

    def __str__(self) -> str:
        return f"connection {self.cell.key!r}"

    def ask(self, message: Any, *, timeout: float | None = _CALL_TIMEOUT) -> Any:
        """Like `Address.ask`, but never waits longer than `_CALL_TIMEOUT` by default."""
        return super().ask(message, timeout=timeout)

    def resolve(self) -> ActorRef[Any]:
        system, cell = self.system, self.cell
        for _attempt in range(_RESENDS):
            if system._cells.get(cell.key) is not cell:
                raise ChildNotFoundError(f"connection {cell.key!r} is no longer registered")
            ref = system._registry.whereis(cell.key)
            if ref is not None:
                return ref
            supervisor = system._connections_sup
            try:
                return supervisor.ensure_child(child_id(cell.key))
            except (ActorDeadError, RestartIntensityExceeded):
                system._await_connections_supervisor(supervisor)
            except ChildNotFoundError:
                # Registered while that supervisor was being replaced: record it again.
                if system._cells.get(cell.key) is cell:
                    supervisor.start_child(system._child_spec(cell.key), start=False)
        raise ActorDeadError(f"connection {cell.key!r} could not be started")


class Sweep:
    """Janitor tick: remove connections inactive for longer than `inactive_threshold`."""


class Rearm:
    """Janitor message: `cleanup_interval` changed; count the next sweep from now."""


class Janitor(Actor):
    """Sweeps inactive connections every `cleanup_interval` seconds."""

    def __init__(self, system: Brama) -> None:
        super().__init__()
        self.system = system
        self.timer: Any = None

    def on_start(self) -> None:
        self._arm()

    def on_stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        interval = self.system._settings.get("cleanup_interval")
        self.timer = self.system._timers.send_after(interval, self.actor_ref, Sweep())

    def on_receive(self, message: Any) -> Any:
        match message:
            case Sweep():
                self.timer = None
                try:
                    self.system._sweep()
                finally:
                    self._arm()
                return None
            case Rearm():
                self._arm()
                return None
            case _:
                return super().on_receive(message)


class Brama(GroupsMixin):
    """An independent Brama system: its own supervisor tree, registry of connections, timers
    and event bus. Stop it with `stop()` or use it as a context manager."""

    def __init__(self, **options: Any) -> None:
        self._settings = Settings(options)
        clock = self._settings.get("clock")
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._cells: dict[Key, Cell] = {}
        self._groups: dict[str, tuple[tuple[str | None, str], ...]] = {}
        self._lock = threading.RLock()
        self._supervisor_changed = threading.Condition()
        self._stopped = False
        self._timers = TimerService(self._clock, name="brama-timers")
        self._bus = EventBus(name="brama-events")
        self._interest = self._bus.interest
        self._wall = self._clock.time
        self._registry = Registry(name="brama-registry")
        self._connections_sup: Supervisor = None  # type: ignore[assignment]  # set by the root
        self._root: Supervisor | None = None
        try:
            self._root = Supervisor(
                [
                    ChildSpec("connections", self._start_connections),
                    ChildSpec.for_actor("janitor", Janitor, self),
                ],
                strategy="one_for_one",
                max_restarts=self._settings.get("max_restarts"),
                max_seconds=self._settings.get("max_seconds"),
                clock=self._clock,
                name="brama",
            )
        except BaseException:
            self._registry.stop()
            self._bus.stop()
            self._timers.stop()
            raise

    # -- the tree --

    def _start_connections(self, _ctx: StartContext) -> ActorRef[Any]:
        supervisor = Supervisor(
            strategy="one_for_one",
            max_restarts=self._settings.get("max_restarts"),
            max_seconds=self._settings.get("max_seconds"),
            clock=self._clock,
            name="brama.connections",
        )
        for key in list(self._cells):
            supervisor.start_child(self._child_spec(key), start=False)
        with self._supervisor_changed:
            self._connections_sup = supervisor
            self._supervisor_changed.notify_all()
        return supervisor.ref

    def _child_spec(self, key: Key) -> ChildSpec:
        return ChildSpec(child_id(key), functools.partial(self._start_connection, key))

    def _start_connection(self, key: Key, _ctx: StartContext) -> ActorRef[Any]:
        cell = self._cells.get(key)
        if cell is None:
            raise ChildNotFoundError(f"connection {key!r} is no longer registered")
        return ConnectionActor.start(self, cell)

    def _connection_address(self, cell: Cell) -> _ConnectionAddress:
        return _ConnectionAddress(self, cell)

    def _now(self) -> Now:
        clock = self._clock
        return Now(clock.time(), clock.monotonic())

    def _options_for(self, state: Circuit) -> Options:
        return self._settings.resolve(state.overrides)

    def _cell(self, identifier: str, scope: str | None) -> Cell:
        cell = self._cells.get(identifier if scope is None else (scope, identifier))
        if cell is None:
            self._check_running()
            _check_key(identifier, scope)
            raise NotFoundError(f"connection {identifier!r}{in_scope(scope)} is not registered")
        return cell

    def _ask(self, cell: Cell, message: Any) -> Any:
        """Send `message` to the connection's actor and wait for the answer."""
        try:
            return _ConnectionAddress(self, cell).ask(message)
        except ChildNotFoundError:
            self._check_running()
            raise NotFoundError(
                f"connection {cell.identifier!r} was unregistered meanwhile"
            ) from None
        except (ActorDeadError, pykka.Timeout) as exc:
            self._raise_if_down(exc)
            raise BramaError(f"connection {cell.identifier!r} did not answer: {exc!r}") from exc
        except Exception as exc:
            self._check_running(exc)  # e.g. the timer service refused a timer while stopping
            raise

    def _check_running(self, cause: BaseException | None = None) -> None:
        """BramaError if this system was stopped (checked on slow paths only)."""
        if self._stopped:
            raise BramaError(
                "this Brama system is stopped; start a new one (or brama.shutdown())"
            ) from cause

    def _raise_if_down(self, cause: BaseException | None = None) -> None:
        self._check_running(cause)
        root = self._root
        if root is None or not root.alive:
            failure = root.failure if root is not None else None
            detail = f": {failure}" if failure is not None else " (its actors were stopped)"
            raise BramaError(
                f"the Brama system is down{detail}; call stop() / brama.shutdown() and start anew"
            ) from cause

    def _await_connections_supervisor(self, dead: Supervisor) -> None:
        """Wait until the root supervisor replaced a connections supervisor that gave up.

        Raises BramaError if the root is down too, or if no replacement comes in time.
        """
        deadline = time.monotonic() + _RESTART_WAIT
        with self._supervisor_changed:
            while self._connections_sup is dead:
                self._raise_if_down()
                if time.monotonic() >= deadline:
                    raise BramaError("the connections supervisor was not restarted in time")
                self._supervisor_changed.wait(0.05)

    def _emit(self, event_type: EventType, identifier: str, scope: str | None,
              data: Mapping[str, Any]) -> None:
        if self._bus.wanted(event_type):
            self._bus.publish(
                event_type, Event(event_type, self._clock.time(), identifier, scope, data)
            )

    # -- lifecycle --

    def stop(self) -> None:
        """Stop every actor and thread of this system; idempotent.

        Each part is stopped even if an earlier one fails (after `pykka.ActorRegistry
        .stop_all()`, say), so no thread is left behind.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._cells = {}
        parts: list[Callable[[], None]] = []
        if self._root is not None:
            parts.append(self._root.stop)
        if self._connections_sup is not None:
            parts.append(self._connections_sup.stop)
        parts += [self._registry.stop, self._bus.stop, self._timers.stop]
        for stop_part in parts:
            try:
                stop_part()
            except Exception:
                get_logger(_log).warning("stop_failed", part=repr(stop_part), exc_info=True)

    @property
    def running(self) -> bool:
        """True until `stop()`."""
        return not self._stopped

    @property
    def clock(self) -> Clock:
        """The clock this system reads (a `FakeClock` in tests)."""
        return self._clock

    def __enter__(self) -> Brama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<Brama {state}, {len(self._cells)} connections>"

    # -- connections --

    def register(
        self,
        identifier: str,
        *,
        scope: str | None = None,
        type: str = "general",
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ConnectionStatus:
        """Register a connection; raises AlreadyRegisteredError if it exists."""
        self._check_running()
        key = _check_key(identifier, scope)
        if not isinstance(type, str):
            raise TypeError(f"type must be a str, got {type!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping or None, got {metadata!r}")
        overrides = validate_options(options, allowed=CONNECTION_OPTIONS)
        resolved = self._settings.resolve(overrides)
        cell = Cell(
            identifier, scope, type, dict(metadata or {}),
            circuit.new_circuit(self._now(), overrides),
        )
        cells = self._cells
        if cells.setdefault(key, cell) is not cell:
            raise AlreadyRegisteredError(
                f"connection {identifier!r}{in_scope(scope)} is already registered"
            )
        try:
            self._connections_sup.start_child(self._child_spec(key), start=False)
        except ActorDeadError:
            if self._stopped or self._root is None or not self._root.alive:
                cells.pop(key, None)
                raise BramaError("the Brama system is down; cannot register") from None
            # The connections supervisor is being replaced: its successor takes in every
            # registered cell, and an address re-adds a child that is still missing.
        status = cell.status(resolved)
        data = {"type": type, "metadata": cell.metadata}
        self._emit(EventType.CONNECTION_REGISTERED, identifier, scope, data)
        self._emit(EventType.REGISTRATION, identifier, scope, data)
        return status

    def unregister(self, identifier: str, *, scope: str | None = None) -> None:
        """Remove a connection and stop its actor; unknown connections are ignored."""
        key = _check_key(identifier, scope)
        if self._remove(key) is not None:
            self._emit(EventType.CONNECTION_UNREGISTERED, identifier, scope, {})

    def _remove(self, key: Key) -> Cell | None:
        cell = self._cells.pop(key, None)
        if cell is None:
            return None
        with contextlib.suppress(ActorDeadError):
            self._connections_sup.terminate_child(child_id(key))
        return cell

    def available(self, identifier: str, *, scope: str | None = None) -> bool:
        """True when a call may go ahead; counts a rejection when it may not."""
        cell = self._cells.get(identifier if scope is None else (scope, identifier))
        if cell is None:
            self._check_running()
            _check_key(identifier, scope)
            return False
        state = cell.circuit.state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            next(cell.fast_rejections)
            return False
        return bool(self._ask(cell, circuit.Acquire()))

    def success(self, identifier: str, *, scope: str | None = None) -> None:
        """Report a successful call."""
        cell = self._cells.get(identifier if scope is None else (scope, identifier))
        if cell is None:
            cell = self._cell(identifier, scope)
        state = cell.circuit
        if state.state is _CLOSED and state.failure_count == 0:
            wanted = self._interest.wanted
            if not (wanted.all_topics or _SUCCESS in wanted.topics):
                next(cell.fast_successes)
                cell.last_fast_success = self._wall()
                return
        self._ask(cell, circuit.Success())

    def failure(self, identifier: str, *, scope: str | None = None, reason: Any = None) -> None:
        """Report a failed call; returns once the circuit has taken it into account."""
        self._ask(self._cell(identifier, scope), circuit.Failure(reason))

    def status(self, identifier: str, *, scope: str | None = None) -> ConnectionStatus:
        """The connection's current status, read from its snapshot."""
        cell = self._cell(identifier, scope)
        return cell.status(self._options_for(cell.circuit))

    def connections(self, *, scope: str | None = None) -> list[ConnectionStatus]:
        """Every registered connection, or those of `scope`."""
        check_scope(scope)
        self._check_running()
        cells = list(self._cells.values())
        return [
            cell.status(self._options_for(cell.circuit))
            for cell in cells
            if scope is None or cell.scope == scope
        ]

    def configure(self, identifier: str | None = None, *, scope: str | None = None,
                  **options: Any) -> None:
        """Change options globally (identifier None) or for one connection."""
        if identifier is None:
            check_scope(scope)
            if "clock" in options:
                raise ConfigError("clock cannot be changed at runtime; pass it when starting")
            checked = validate_options(options, allowed=GLOBAL_OPTIONS)
            preview = self._settings.preview(**checked)
            for cell in list(self._cells.values()):
                preview.resolve(cell.circuit.overrides)
            self._settings.configure(**checked)
            self._apply_runtime_globals(checked)
            return
        cell = self._cell(identifier, scope)
        checked = validate_options(options, allowed=CONNECTION_OPTIONS)
        self._settings.resolve({**cell.circuit.overrides, **checked})
        self._ask(cell, circuit.Configure(checked))

    def _apply_runtime_globals(self, changed: Mapping[str, Any]) -> None:
        """Tell the actors that hold a copy of a changed global option."""
        root = self._root
        if root is None:
            return
        if "max_restarts" in changed or "max_seconds" in changed:
            max_restarts = self._settings.get("max_restarts")
            max_seconds = self._settings.get("max_seconds")
            for supervisor in (root, self._connections_sup):
                with contextlib.suppress(ActorDeadError):
                    supervisor.set_intensity(max_restarts, max_seconds)
        if "hibernate_after" in changed:  # the awake connections re-arm their idleness check
            refs = [self._registry.whereis(key) for key in self._registry.names()]
            pending = [ref.ask(RearmHibernation(), block=False) for ref in refs if ref]
            for future in pending:
                with contextlib.suppress(ActorDeadError, pykka.Timeout):
                    future.get(timeout=_CALL_TIMEOUT)
        if "cleanup_interval" in changed:
            janitor = root.whereis_child("janitor")
            if janitor is not None:
                with contextlib.suppress(ActorDeadError):
                    call(janitor, Rearm(), timeout=_CALL_TIMEOUT)

    # -- circuit control --

    def open_circuit(self, identifier: str, *, scope: str | None = None, reason: Any = None,
                     expires_in: float | None = None) -> None:
        """Force the circuit open; `expires_in` overrides this opening's expiry."""
        cell = self._cell(identifier, scope)
        if expires_in is not None:
            expires_in = validate_duration("expires_in", expires_in)
        self._ask(cell, circuit.OpenCircuit(reason, expires_in))

    def close_circuit(self, identifier: str, *, scope: str | None = None,
                      reason: Any = None) -> None:
        """Force the circuit closed."""
        self._ask(self._cell(identifier, scope), circuit.CloseCircuit(reason))

    def reset_circuit(self, identifier: str, *, scope: str | None = None,
                      reason: Any = None) -> None:
        """Close the circuit, clear the failure count and the backoff."""
        self._ask(self._cell(identifier, scope), circuit.ResetCircuit(reason))

    def reset_expiry(self, identifier: str, *, scope: str | None = None) -> None:
        """An open circuit goes to half-open now."""
        self._ask(self._cell(identifier, scope), circuit.ResetExpiry())

    def set_expiry(self, identifier: str, seconds: float, *, scope: str | None = None) -> None:
        """The expiry of this connection from now on (an open circuit's deadline moves too)."""
        cell = self._cell(identifier, scope)
        value = validate_duration("seconds", seconds)
        self._settings.resolve(circuit.expiry_overrides(cell.circuit.overrides, value))
        self._ask(cell, circuit.SetExpiry(value))

    def disable_expiry(self, identifier: str, *, scope: str | None = None) -> None:
        """Keep the circuit open until a manual action."""
        self._ask(self._cell(identifier, scope), circuit.DisableExpiry())

    # -- events --

    def subscribe(
        self,
        *,
        events: Iterable[EventType | str] | EventType | str | None = None,
        connection: str | None = None,
        scope: str | None = None,
        filter: Callable[[Event], bool] | None = None,
        actor: ActorRef[Any] | None = None,
        handler: Callable[[Event], None] | Any | None = None,
    ) -> Subscription:
        """Subscribe to events; see API.md for the delivery modes."""
        self._check_running()
        topics: frozenset[EventType] | None
        if events is None:
            topics = None
        elif isinstance(events, (str, EventType)):
            topics = frozenset({EventType.coerce(events)})
        else:
            try:
                items = list(events)
            except TypeError:
                raise ConfigError(
                    f"events must be an iterable of event types or None, got {events!r}"
                ) from None
            topics = frozenset(EventType.coerce(item) for item in items)
        if connection is not None:
            check_identifier(connection, "connection")
        check_scope(scope)
        if filter is not None and not callable(filter):
            raise TypeError(f"filter must be callable or None, got {filter!r}")
        if actor is not None and handler is not None:
            raise ValueError("subscribe: give either actor or handler, not both")
        if actor is not None and not isinstance(actor, ActorRef):
            raise TypeError(f"actor must be a pykka.ActorRef, got {actor!r}")
        if handler is not None and not (
            callable(handler) or callable(getattr(handler, "handle_event", None))
        ):
            raise TypeError(
                f"handler must be callable or have a handle_event(event) method, got {handler!r}"
            )
        target: Any = actor if actor is not None else handler
        try:
            return self._bus.subscribe(
                target, topics=topics, filter=_event_filter(connection, scope, filter)
            )
        except ActorDeadError as exc:
            self._raise_if_down(exc)
            raise BramaError(f"the event bus is not running: {exc!r}") from exc

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop a subscription; idempotent."""
        if not isinstance(subscription, Subscription):
            raise TypeError(f"unsubscribe: expected a Subscription, got {subscription!r}")
        subscription.close()

    # -- sweeps and testing hooks --

    def _sweep(self) -> None:
        threshold = self._settings.get("inactive_threshold")
        if threshold is None:
            return
        now = self._now()
        cells = self._cells
        removed: list[Cell] = []
        for key, cell in list(cells.items()):
            state = cell.circuit
            idle = now.mono - state.last_activity
            if cell.last_fast_success is not None:
                idle = min(idle, now.wall - cell.last_fast_success)
            if idle < threshold:
                continue
            current = cells.pop(key, None)
            if current is cell:
                removed.append(cell)
            elif current is not None:  # registered anew since the snapshot: not ours to take
                cells.setdefault(key, current)
        if not removed:
            return
        with contextlib.suppress(ActorDeadError):  # one round trip for the whole sweep
            self._connections_sup.terminate_children(child_id(c.key) for c in removed)
        for cell in removed:
            self._emit(EventType.CONNECTION_REMOVED, cell.identifier, cell.scope,
                       {"reason": "inactive", "inactive_threshold": threshold})
        self._emit(
            EventType.CLEANUP, "", None,
            {"removed": [{"identifier": c.identifier, "scope": c.scope} for c in removed],
             "count": len(removed)},
        )

    def _refusal(self, identifier: str, scope: str | None) -> CircuitOpenError | None:
        """The error for a refused call, with the circuit as it is now; None if unregistered.

        The status object is only built if the caller reads `.status` (the circuit snapshot
        is the one seen now; the hot-path counters are read then).
        """
        cell = self._cells.get(identifier if scope is None else (scope, identifier))
        if cell is None:
            return None
        state = cell.circuit
        return CircuitOpenError.deferred(
            identifier, scope, state.state, functools.partial(self._status_of, cell, state)
        )

    def _status_of(self, cell: Cell, state: Circuit) -> ConnectionStatus:
        return cell.status_later(self._options_for(state), state)()

    def _crash(self, identifier: str, scope: str | None) -> None:
        cell = self._cell(identifier, scope)
        try:
            _ConnectionAddress(self, cell).tell(Crash())
        except ChildNotFoundError:
            self._check_running()
            raise NotFoundError(f"connection {identifier!r} was unregistered meanwhile") from None
        except ActorDeadError as exc:
            self._raise_if_down(exc)
            raise BramaError(f"connection {identifier!r} could not be reached: {exc!r}") from exc


def _event_filter(
    connection: str | None, scope: str | None, user_filter: Callable[[Event], bool] | None
) -> Callable[[Event], bool] | None:
    if connection is None and scope is None:
        return user_filter

    def matches(event: Event) -> bool:
        if connection is not None and event.connection != connection:
            return False
        if scope is not None and event.scope != scope:
            return False
        return user_filter is None or bool(user_filter(event))

    return matches
