"""The runtime of one system: its supervision tree, timers, event bus, registry and addresses.

    root Supervisor "brama" (rest_for_one, max_restarts / max_seconds from the options)
    ├── registry     Registry actor: cell -> running ConnectionActor (lookups read its table)
    ├── events       EventBus actor (its subscriptions live in the facade and survive it)
    ├── bridge       (with a backend) the fleet's transitions, told to the connections
    ├── connections  Supervisor (simple_one_for_one): a ConnectionActor per awake connection,
    │                and every connection's timers (expiry ticks, permit timeouts)
    ├── janitor      the inactivity sweep every cleanup_interval
    └── flusher      (with a backend) fast counters added to the fleet's every second

With a `backend` the runtime holds a `FleetLink` (brama._fleet.link): registrations join the
fleet state, connection actors step through it, and the state machine runs on the fleet's
clock (`state_clock`: the Redis server's time, or the clock the system was given).

rest_for_one keeps dependants consistent: a registry that restarts empty restarts the
connection actors registered in it, which register again; state lives in the cells and the
bus's subscriptions in the bus's facade, so nothing is lost. This is also the one place that
turns OTP errors into Brama errors.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import pykka
from pykka import ActorDeadError, ActorRef

from brama._cell import Cell, Key, key_of
from brama._circuit import ALL_EVENTS, Circuit, Emit, Now, resume_timers
from brama._config import Settings
from brama._connection import ConnectionActor, Crash, RearmHibernation
from brama._options import Options
from brama._sweep import Janitor, Rearm, Sweeper
from brama._validation import in_scope
from brama.errors import BramaError, NotFoundError
from brama.otp import (
    Actor,
    Address,
    ChildNotFoundError,
    ChildSpec,
    Clock,
    EventBus,
    NameTakenError,
    NotHandledError,
    Registry,
    RestartIntensityExceeded,
    StartContext,
    Supervisor,
    TimerRef,
    TimerService,
    call,
    get_logger,
)
from brama.types import Event, EventType

__all__ = ["CALL_TIMEOUT", "ConnectionAddress", "Runtime"]

T = TypeVar("T")

CALL_TIMEOUT = 30.0
"""Longest wait for a connection actor that is busy (a direct call never waits)."""
_RESTART_WAIT = 5.0
"""Longest wait for the root supervisor to replace a connections supervisor or the bus."""
_log = "brama.runtime"


class ConnectionAddress(Address):
    """Where messages for one registration go: its running actor, woken or restarted as needed.

    Bound to one cell: once the connection is unregistered, messages to the address are refused
    with `ChildNotFoundError`, even if the same name is registered again.
    """

    __slots__ = ("cell", "runtime")
    attempts = 10

    def __init__(self, runtime: Runtime, cell: Cell) -> None:
        self.runtime = runtime
        self.cell = cell

    def __str__(self) -> str:
        return f"connection {self.cell.key!r}"

    def resolve(self) -> ActorRef[Any]:
        cell = self.cell
        if not cell.live:
            raise ChildNotFoundError(f"connection {cell.key!r} is no longer registered")
        ref = self.runtime.registry.whereis(cell)
        if ref is not None:
            return ref
        return self.runtime.ensure(cell)


_now = Now


class _Context:
    """The `ConnectionContext` a runtime gives its connection actors."""

    __slots__ = ("_wanted", "_wants", "runtime")

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._wanted: Any = None
        self._wants: frozenset[EventType] = frozenset()

    def now(self) -> Now:
        fleet = self.runtime.fleet
        if fleet is not None:
            return fleet.clock.now()  # type: ignore[no-any-return]
        clock = self.runtime.clock
        return _now(clock.time(), clock.monotonic())

    def fleet(self) -> Any:
        return self.runtime.fleet

    def rearm(self, cell: Cell, state: Circuit, now: Now) -> None:
        supervisor = self.runtime.connections
        with contextlib.suppress(ActorDeadError):
            supervisor.cancel_timers(cell)
            for key, delay, message in resume_timers(state, now):
                supervisor.send_after(cell, key, delay, message)

    def options(self, overrides: Any) -> tuple[int, Options]:
        settings = self.runtime.settings
        return settings.version, settings.resolve(overrides)

    def options_version(self) -> int:
        return self.runtime.settings.version

    def wants(self) -> frozenset[EventType]:
        wanted = self.runtime.bus.interest.wanted
        if wanted is not self._wanted:  # rebuilt only when the subscriptions change
            self._wants = (
                ALL_EVENTS if wanted.all_topics
                else frozenset(t for t in wanted.topics if isinstance(t, EventType))
            )
            self._wanted = wanted
        return self._wants

    def publish(self, cell: Cell, wall: float, events: tuple[Emit, ...]) -> None:
        bus = self.runtime.bus
        for event_type, data in events:
            bus.publish(event_type, Event(event_type, wall, cell.identifier, cell.scope, data))

    def arm(self, cell: Cell, key: Any, delay: float, message: Any) -> None:
        supervisor = self.runtime.connections
        # A supervisor that is going away: its successor arms every timer from the cells.
        with contextlib.suppress(ActorDeadError):
            supervisor.send_after(cell, key, delay, message)

    def cancel(self, cell: Cell, key: Any) -> None:
        self.runtime.connections.cancel_timer(cell, key)

    def self_timer(self, delay: float, actor: Actor, message: Any) -> TimerRef:
        return self.runtime.timers.send_after(delay, actor.actor_ref, message)

    def registered(self, cell: Cell, actor: Actor) -> None:
        try:
            self.runtime.registry.register(cell, actor.actor_ref)
        except (ActorDeadError, NameTakenError) as exc:  # lookups fall back to the supervisor
            get_logger(_log).debug("connection_not_registered", connection=cell.identifier,
                                   error=repr(exc))


class Runtime:
    """The threads and actors of one system (see the module docstring).

    `table` (the registered cells) and `settings` belong to the facade and outlive the
    runtime: after a fork the facade builds a new runtime over them.
    """

    def __init__(self, settings: Settings, clock: Clock, table: dict[Key, Cell]) -> None:
        self.settings = settings
        self.clock = clock
        self.table = table
        self.stopped = False
        self.timers = TimerService(clock, name="brama-timers")
        self.registry = Registry(name="brama-registry", start=False)
        self.bus = EventBus(name="brama-events", start=False)
        self.context = _Context(self)
        self.connections: Supervisor = None  # type: ignore[assignment]  # set by the root
        self._changed = threading.Condition()
        self.fleet: Any = None
        self.state_clock: Clock = clock
        """The clock the state machine runs on: the fleet's with a backend."""
        self.stamp: Callable[[], float] = clock.time
        """A cheap reading of `state_clock`'s time, for the hot path's timestamps."""
        try:
            fleet_children = self._start_fleet(settings, table)
            self.sweeper = Sweeper(table, settings, self.context.now, self.terminate, self.emit)
            self.root = Supervisor(
                [
                    self.registry.child_spec("registry"),
                    self.bus.child_spec("events"),
                    *fleet_children[:1],
                    ChildSpec("connections", self._start_connections, shutdown=60.0),
                    ChildSpec("janitor", self._start_janitor),
                    *fleet_children[1:],
                ],
                strategy="rest_for_one",
                max_restarts=settings.get("max_restarts"),
                max_seconds=settings.get("max_seconds"),
                clock=clock,
                name="brama",
            )
        except BaseException:
            self._stop_parts([self.bus.stop, self.registry.stop, self.timers.stop,
                              self._close_fleet])
            raise

    # -- the tree --

    def _start_fleet(self, settings: Settings, table: dict[Key, Cell]) -> list[ChildSpec]:
        """With a backend: the fleet link, and the bridge and flusher specs."""
        if settings.get("backend") is None:
            return []
        from brama._fleet.link import FleetLink  # only systems with a backend load the fleet

        given = settings.get("clock")
        self.fleet = FleetLink(settings, given, self.emit, self.wake,
                               lambda: list(table.values()),
                               lambda scope, identifier: table.get(key_of(scope, identifier)))
        self.state_clock = self.fleet.clock
        self.stamp = self.fleet.clock.stamp
        return [self.fleet.bridge_spec(), self.fleet.flusher_spec(self.timers)]

    def _close_fleet(self, cells: Iterable[Cell] = ()) -> None:
        if self.fleet is not None:
            self.fleet.close(cells)

    def join(self, identifier: str, scope: str | None, fresh: Circuit) -> tuple[Circuit, Any]:
        """The circuit a registration starts from, and its fleet slot (None without a
        backend): the fleet's state, created from `fresh` only if the fleet has none."""
        if self.fleet is None:
            return fresh, None
        return self.fleet.join(identifier, scope, fresh)  # type: ignore[no-any-return]

    def resume(self, cell: Cell) -> None:
        """Arm the timers a joined state needs (an opening or permits of the fleet)."""
        if cell.circuit.permits or cell.circuit.open_deadline is not None:
            self.context.rearm(cell, cell.circuit, self.context.now())

    def wake(self, cell: Cell, message: Any) -> None:
        """Tell the connection's actor `message`, waking it; dropped if it is gone."""
        # unregistered or stopping meanwhile: nothing to tell
        with contextlib.suppress(ChildNotFoundError, ActorDeadError, NotHandledError,
                                 BramaError):
            ConnectionAddress(self, cell).tell(message)

    def _start_connections(self, _ctx: StartContext) -> ActorRef[Any]:
        supervisor = Supervisor(
            [ChildSpec("connection", self._start_connection)],
            strategy="simple_one_for_one",
            max_restarts=self.settings.get("max_restarts"),
            max_seconds=self.settings.get("max_seconds"),
            clock=self.clock,
            name="brama.connections",
            timers=self.timers,
        )
        now = self.context.now()
        for cell in list(self.table.values()):  # timers belonged to the predecessor
            for key, delay, message in resume_timers(cell.circuit, now):
                supervisor.send_after(cell, key, delay, message)
        with self._changed:
            self.connections = supervisor
            self._changed.notify_all()
        return supervisor.ref

    def _start_connection(self, ctx: StartContext) -> ActorRef[Any]:
        cell = ctx.child_id
        if not isinstance(cell, Cell) or not cell.live:
            raise ChildNotFoundError(f"connection {cell!r} is no longer registered")
        return ConnectionActor.start(self.context, cell)

    def _start_janitor(self, _ctx: StartContext) -> ActorRef[Any]:
        return Janitor.start(self.sweeper, self.timers)

    def ensure(self, cell: Cell) -> ActorRef[Any]:
        """The running actor of `cell`, started (or woken) by the connections supervisor."""
        supervisor = self.connections
        for _ in range(ConnectionAddress.attempts):
            try:
                return supervisor.ensure_child(cell)
            except (ActorDeadError, RestartIntensityExceeded):
                supervisor = self.await_connections(supervisor)
        raise NotHandledError(f"connection {cell.key!r} could not be started")

    def await_connections(self, dead: Supervisor) -> Supervisor:
        """Wait until the root replaced a connections supervisor that gave up; BramaError if
        the system is down or no replacement comes in time."""
        deadline = time.monotonic() + _RESTART_WAIT
        with self._changed:
            while self.connections is dead:
                self.raise_if_down()
                if time.monotonic() >= deadline:
                    raise BramaError("the connections supervisor was not restarted in time")
                self._changed.wait(0.05)
            return self.connections

    # -- errors: the one translation of OTP errors into Brama errors --

    def raise_if_down(self, cause: BaseException | None = None) -> None:
        """BramaError if this runtime was stopped or its root supervisor gave up."""
        if self.stopped:
            raise BramaError(
                "this Brama system is stopped; start a new one (or brama.shutdown())"
            ) from cause
        root = self.root
        if not root.alive:
            failure = root.failure
            detail = f": {failure}" if failure is not None else " (its actors were stopped)"
            raise BramaError(
                f"the Brama system is down{detail}; call stop() / brama.shutdown() and start anew"
            ) from cause

    def ask(self, cell: Cell, message: Any) -> Any:
        """Send `message` to the connection's actor and wait for the answer."""
        ref = self.registry.whereis(cell) if cell.live else None
        if ref is not None:  # the common case, without building an address
            try:
                return call(ref, message, timeout=CALL_TIMEOUT)
            except NotHandledError:
                pass  # it stopped before handling it: the address finds its successor
            except Exception as exc:
                self._translate(cell, message, exc)
        try:
            return ConnectionAddress(self, cell).ask(message, timeout=CALL_TIMEOUT)
        except Exception as exc:
            self._translate(cell, message, exc)

    def _translate(self, cell: Cell, message: Any, error: Exception) -> NoReturn:
        """Raise the Brama error for what a call to a connection raised."""
        if isinstance(error, ChildNotFoundError):
            self.raise_if_down()
            raise NotFoundError(
                f"connection {cell.identifier!r}{in_scope(cell.scope)} was unregistered meanwhile"
            ) from None
        if isinstance(error, (ActorDeadError, pykka.Timeout)):
            self.raise_if_down(error)
            raise BramaError(f"connection {cell.identifier!r} did not answer: {error!r}") from error
        if isinstance(error, BramaError):
            raise error
        self.raise_if_down(error)  # its actor crashed handling it; its supervisor restarts it
        raise BramaError(
            f"connection {cell.identifier!r} crashed handling {type(message).__name__} "
            f"(restarted from its last state): {error!r}"
        ) from error

    def crash(self, cell: Cell) -> None:
        """Make the connection's actor die of an unhandled exception (a testing hook)."""
        try:
            ConnectionAddress(self, cell).tell(Crash())
        except ChildNotFoundError:
            self.raise_if_down()
            raise NotFoundError(f"connection {cell.identifier!r} was unregistered") from None
        except ActorDeadError as exc:
            self.raise_if_down(exc)
            raise BramaError(f"connection {cell.identifier!r} could not be reached") from exc

    # -- services for the facade --

    def emit(self, event_type: EventType, identifier: str, scope: str | None,
             data: dict[str, Any]) -> None:
        """Publish a system event (registration, sweep) if some subscription wants it."""
        if self.bus.wanted(event_type):
            self.bus.publish(event_type,
                             Event(event_type, self.state_clock.time(), identifier, scope, data))

    def terminate(self, cells: Iterable[Cell]) -> None:
        """Stop the actors of unregistered cells and cancel their timers, in one round trip;
        with a backend, flush their counts and release the permits they hold."""
        cells = list(cells)
        with contextlib.suppress(ActorDeadError):
            self.connections.terminate_children(cells)
        if self.fleet is not None:
            self.fleet.forget(cells)

    def subscribe(self, target: Any, **how: Any) -> Any:
        """`EventBus.subscribe`, waiting out a restart of the bus actor."""
        return self._on_bus(lambda: self.bus.subscribe(target, **how), _RESTART_WAIT)

    def flush(self, timeout: float) -> None:
        """Wait until every event published so far was handed to its subscriptions (waiting
        out a restart of the bus actor: the events wait for it)."""
        self._on_bus(lambda: self.bus.flush(timeout=timeout), max(timeout, _RESTART_WAIT))

    def _on_bus(self, operation: Callable[[], T], wait: float) -> T:
        """`operation()` on the bus, retried while its actor is being restarted (at most
        `wait` seconds); BramaError if the system is down or the bus does not come back."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return operation()
            except ActorDeadError as exc:
                self.raise_if_down(exc)
                if time.monotonic() >= deadline:
                    raise BramaError("the event bus was not restarted in time") from exc
                threading.Event().wait(0.01)

    def apply_globals(self, changed: Iterable[str]) -> None:
        """Tell the actors that hold a copy of a changed global option."""
        changed = set(changed)
        if changed & {"max_restarts", "max_seconds"}:
            max_restarts = self.settings.get("max_restarts")
            max_seconds = self.settings.get("max_seconds")
            for supervisor in (self.root, self.connections):
                with contextlib.suppress(ActorDeadError):
                    supervisor.set_intensity(max_restarts, max_seconds)
        if "hibernate_after" in changed:  # the awake connections re-arm their idleness check
            for name in self.registry.names():
                ref = self.registry.whereis(name)
                if ref is not None:
                    with contextlib.suppress(ActorDeadError, pykka.Timeout):
                        call(ref, RearmHibernation(), timeout=CALL_TIMEOUT)
        if "cleanup_interval" in changed:
            janitor = self.root.whereis_child("janitor")
            if janitor is not None:
                with contextlib.suppress(ActorDeadError, pykka.Timeout):
                    call(janitor, Rearm(), timeout=CALL_TIMEOUT)

    def part(self, name: str) -> ActorRef[Any] | None:
        """The running actor of a part of the tree: "registry", "events", "connections",
        "janitor" (None while it is being restarted)."""
        return self.root.whereis_child(name)

    def stop(self, cells: Iterable[Cell] = ()) -> None:
        """Stop every actor and thread of the runtime, each part even if another fails; with a
        backend, `cells` (the registrations of the stopping system) flush their counts and
        release their permits first."""
        self.stopped = True
        cells = list(cells)
        self._stop_parts([self.root.stop, lambda: self._close_fleet(cells), self.bus.stop,
                          self.registry.stop, self.timers.stop])

    @staticmethod
    def _stop_parts(parts: list[Any]) -> None:
        for stop_part in parts:
            try:
                stop_part()
            except Exception:
                get_logger(_log).warning("stop_failed", part=repr(stop_part), exc_info=True)
