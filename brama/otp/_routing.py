"""The bus's routing table and the bus actor that dispatches published events through it.

The table outlives any one bus actor (it belongs to the `EventBus` facade), so a restarted
actor adopts the subscriptions and the pending events of the one that died. Every change is
incremental: routes live in one dict per topic plus a catch-all dict, so subscribing and
unsubscribing cost O(1) in the number of subscriptions; `Interest.wanted` is rebuilt (in the
number of topics) only when the set of wanted topics changes.

The bus actor runs only trusted code: the routing itself and `match` predicates. User filters
and handlers run in lanes (see `brama.otp._lanes`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pykka import ActorDeadError, ActorRef

from brama.otp._actor import Actor
from brama.otp._exit import ErrorReply, Exit, demonitor, monitor
from brama.otp._lanes import LOGGER, Lane
from brama.otp._log import get_logger, safe_repr
from brama.otp._subscription import Endpoint

__all__ = ["Interest"]

DRAIN_BATCH = 1024
"""Events dispatched per wake-up before the bus lets queued control messages in."""
_STEPS_CACHED = 4096
"""Topics whose routes the bus keeps ready (each rebuilt on the next event after a change)."""

Deliver = Callable[[Any], None]
Predicate = Callable[[Any], object]
_Step = tuple[Predicate | None, Deliver, "Route"]


@dataclass(frozen=True, slots=True)
class Wanted:
    """The topics some subscription wants; `all_topics` when one wants every topic."""

    all_topics: bool
    topics: frozenset[Hashable]


NOTHING_WANTED = Wanted(False, frozenset())


class Interest:
    """What the subscriptions want, readable without a call into the bus.

    `wanted` is replaced whole on every change, so a publisher's hot path reads
    `interest.wanted.all_topics` / `interest.wanted.topics` with no lock and no call.
    """

    __slots__ = ("wanted",)

    def __init__(self) -> None:
        self.wanted: Wanted = NOTHING_WANTED


@dataclass(eq=False, slots=True)
class Route:
    """One subscription as the bus sees it: where its events go, and what to clean up."""

    endpoint: Endpoint
    topics: frozenset[Hashable] | None
    match: Predicate | None
    deliver: Deliver
    target: ActorRef[Any] | None = None  # a brama.otp.Actor subscriber, monitored
    lane: Lane | None = None


@dataclass(slots=True)
class _Watch:
    """A monitored subscriber actor and the subscriptions that end with it."""

    ref: ActorRef[Any]
    handle: int | None
    sids: set[str] = field(default_factory=set)


class _DispatchContext(threading.local):
    inside: bool = False


_dispatch = _DispatchContext()


def inside_bus() -> bool:
    """True while this thread runs a bus actor's handler (a `match` predicate, say)."""
    return _dispatch.inside


class Table:
    """Subscriptions, routes, monitors and pending events of one `EventBus`.

    Changed only with `lock` held (by the current bus actor, or by the facade when no actor
    runs); `pending` and `scheduled` are shared with publishers, which never take the lock.
    """

    def __init__(self, name: str, interest: Interest, pending_size: int) -> None:
        self.name = name
        self.interest = interest
        self.lock = threading.RLock()
        self.routes: dict[str, Route] = {}
        self.by_topic: dict[Hashable, dict[str, Route]] = {}
        self.catch_all: dict[str, Route] = {}
        self.cached_steps: dict[Hashable, tuple[_Step, ...]] = {}
        self._catch_all_steps: tuple[_Step, ...] | None = ()
        self.watches: dict[str, _Watch] = {}
        self.pending: deque[tuple[Hashable, Any]] = deque()
        self.pending_size = pending_size
        self._overflow = threading.Lock()
        self.dropped = 0
        self.scheduled = False  # a drain is on its way to the bus actor
        self.closed = False
        self.owner: object | None = None

    # -- publishing --

    def push(self, item: tuple[Hashable, Any]) -> None:
        """Queue a published event; when full, drop (and count) the oldest."""
        pending = self.pending
        if len(pending) < self.pending_size:
            pending.append(item)
            return
        with self._overflow:  # every event is either dispatched or counted, exactly once
            while len(pending) >= self.pending_size:
                try:
                    pending.popleft()
                except IndexError:
                    break
                self.dropped += 1
            pending.append(item)

    def steps(self, topic: Hashable) -> tuple[_Step, ...]:
        """The routes of `topic`, cached until a subscription to it (or to all) changes."""
        steps = self.cached_steps.get(topic)
        if steps is not None:
            return steps
        catch_all = self._catch_all_steps
        if catch_all is None:
            catch_all = self._catch_all_steps = tuple(_step(r) for r in self.catch_all.values())
        routes = self.by_topic.get(topic)
        if routes is None:
            if len(self.cached_steps) < _STEPS_CACHED:  # bounded: publishers may invent topics
                self.cached_steps[topic] = catch_all
            return catch_all
        steps = self.cached_steps[topic] = tuple(_step(r) for r in routes.values()) + catch_all
        return steps

    # -- changes (lock held) --

    def add(self, route: Route, watcher: ActorRef[Any] | None) -> None:
        """Add a route: O(number of its topics)."""
        sid = route.endpoint.id
        if route.target is not None:  # first: monitor() is the one step that may raise
            self._watch(route.target, sid, watcher)
        self.routes[sid] = route
        changed = False
        if route.topics is None:
            changed = not self.catch_all
            self.catch_all[sid] = route
            self.cached_steps.clear()
            self._catch_all_steps = None
        else:
            for topic in route.topics:
                routes = self.by_topic.get(topic)
                if routes is None:
                    routes = self.by_topic[topic] = {}
                    changed = True
                routes[sid] = route
                self.cached_steps.pop(topic, None)
        if changed:
            self._publish_wanted()

    def remove(self, sid: str) -> Route | None:
        """Drop a route, close its subscription and stop its lane: O(number of its topics)."""
        route = self.routes.pop(sid, None)
        if route is None:
            return None
        route.endpoint.shut()
        if route.lane is not None:
            route.lane.stop()
        changed = False
        if route.topics is None:
            del self.catch_all[sid]
            changed = not self.catch_all
            self.cached_steps.clear()
            self._catch_all_steps = None
        else:
            for topic in route.topics:
                routes = self.by_topic[topic]
                del routes[sid]
                if not routes:
                    del self.by_topic[topic]
                    changed = True
                self.cached_steps.pop(topic, None)
        if route.target is not None:
            self._unwatch(route.target, sid)
        if changed:
            self._publish_wanted()
        return route

    def target_exited(self, ref: ActorRef[Any]) -> None:
        """A monitored subscriber actor ended: drop its subscriptions."""
        watch = self.watches.pop(ref.actor_urn, None)
        if watch is None:
            return
        watch.handle = None
        for sid in list(watch.sids):
            self.remove(sid)

    def adopt(self, watcher: ActorRef[Any], owner: object) -> None:
        """A new bus actor takes over: it monitors the subscriber actors from now on."""
        self.owner = owner
        for watch in list(self.watches.values()):
            if watch.handle is not None:
                demonitor(watch.ref, watch.handle)
            watch.handle = None
            if not self.closed:
                watch.handle = monitor(watch.ref, watcher)  # dead already: Exit comes at once

    def close_all(self) -> list[Lane]:
        """Close every subscription and stop every lane, for good; returns the lanes."""
        with self.lock:
            self.closed = True
            lanes: list[Lane] = []
            for route in self.routes.values():
                route.endpoint.shut()
                if route.lane is not None:
                    route.lane.stop()
                    lanes.append(route.lane)
            for watch in self.watches.values():
                if watch.handle is not None:
                    demonitor(watch.ref, watch.handle)
            self.routes.clear()
            self.by_topic.clear()
            self.catch_all.clear()
            self.watches.clear()
            self.cached_steps.clear()
            self._catch_all_steps = ()
            self.interest.wanted = NOTHING_WANTED
            self.pending.clear()
            return lanes

    def after_fork(self) -> None:
        """In a forked child: no thread of the parent survives, so drop everything."""
        self.lock = threading.RLock()
        self._overflow = threading.Lock()
        self.closed = True
        self.routes = {}
        self.by_topic = {}
        self.catch_all = {}
        self.watches = {}
        self.cached_steps = {}
        self._catch_all_steps = ()
        self.pending = deque()
        self.interest.wanted = NOTHING_WANTED

    def _watch(self, ref: ActorRef[Any], sid: str, watcher: ActorRef[Any] | None) -> None:
        watch = self.watches.get(ref.actor_urn)
        if watch is None:
            handle = None if watcher is None else monitor(ref, watcher)
            watch = self.watches[ref.actor_urn] = _Watch(ref, handle)
        watch.sids.add(sid)

    def _unwatch(self, ref: ActorRef[Any], sid: str) -> None:
        watch = self.watches.get(ref.actor_urn)
        if watch is None:
            return
        watch.sids.discard(sid)
        if not watch.sids:
            del self.watches[ref.actor_urn]
            if watch.handle is not None:
                demonitor(watch.ref, watch.handle)

    def _publish_wanted(self) -> None:
        self.interest.wanted = Wanted(bool(self.catch_all), frozenset(self.by_topic))


def _step(route: Route) -> _Step:
    return (route.match, route.deliver, route)


# -- the bus actor --


class Drain:
    """Dispatch what is pending (sent by publishers, once per batch)."""


DRAIN = Drain()


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Add a route (its lane, if any, is already running); refused once the bus stopped."""

    route: Route


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Drop a route, after dispatching what was published before."""

    subscription_id: str


@dataclass(frozen=True, slots=True)
class Flush:
    """A barrier: answered once everything published before it was dispatched."""


class BusActor(Actor):
    """Dispatches every published event through the table it adopted when it started.

    Holds no state of its own, so a restarted one carries on where the last one stopped.
    Expected refusals (a subscribe to a stopped bus) are `ErrorReply`s, never exceptions.
    """

    def __init__(self, table: Table) -> None:
        super().__init__()
        self._table = table

    def on_start(self) -> None:
        threading.current_thread().name = self._table.name
        table = self._table
        with table.lock:
            table.adopt(self.actor_ref, self)
            table.scheduled = True
            self.actor_ref.tell(DRAIN)  # what was published while no bus actor ran

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        get_logger(LOGGER).error(
            "event_bus_actor_crashed",
            bus=self._table.name,
            error=safe_repr(exception_value),
            subscriptions=len(self._table.routes),
            pending=len(self._table.pending),
        )

    def on_receive(self, message: Any) -> Any:
        table = self._table
        with table.lock:
            if table.owner is not self:  # superseded: never touch the table again
                return ErrorReply(ActorDeadError(f"{self.actor_ref} was replaced"))
            _dispatch.inside = True
            try:
                return self._handle(table, message)
            finally:
                _dispatch.inside = False

    def _handle(self, table: Table, message: Any) -> Any:
        if message is DRAIN:
            self._drain(table, DRAIN_BATCH)
            return None
        self._drain(table, len(table.pending))  # control messages come after earlier events
        match message:
            case Subscribe(route=route):
                if table.closed:
                    return ErrorReply(ActorDeadError(f"event bus {table.name!r} is stopped"))
                table.add(route, self.actor_ref)
            case Unsubscribe(subscription_id=sid):
                table.remove(sid)
            case Flush():
                pass
            case Exit(ref=ref):
                table.target_exited(ref)
            case _:
                return super().on_receive(message)
        return None

    def _drain(self, table: Table, limit: int) -> None:
        table.scheduled = False  # before popping: a later publish then schedules a new drain
        pending = table.pending
        cached = table.cached_steps
        dead: list[Route] | None = None
        for _ in range(limit):
            try:
                topic, event = pending.popleft()
            except IndexError:
                break
            steps = cached.get(topic)
            if steps is None:
                steps = table.steps(topic)
            for match, deliver, route in steps:
                if match is not None:
                    try:
                        if not match(event):
                            continue
                    except BaseException:
                        _log_step_error("event_match_raised", route, match)
                        continue
                try:
                    deliver(event)
                except ActorDeadError:
                    if dead is None:
                        dead = []
                    dead.append(route)
                except Exception:
                    _log_step_error("event_delivery_failed", route, deliver)
            if dead:
                for route in dead:
                    get_logger(LOGGER).info(
                        "event_subscriber_gone", bus=table.name, subscription=route.endpoint.id
                    )
                    table.remove(route.endpoint.id)
                dead = None
        else:
            if pending and not table.scheduled:
                table.scheduled = True
                self.actor_ref.tell(DRAIN)  # let control messages queued meanwhile go first


def _log_step_error(what: str, route: Route, code: object) -> None:
    get_logger(LOGGER).error(
        what, subscription=route.endpoint.id, code=safe_repr(code), exc_info=True
    )
