"""Publish/subscribe between actors: topics and trusted `match` predicates routed by one bus
actor, user filters and handlers run in lanes of their own.

Every subscriber sees one publisher's events in publish order. A subscriber is a pykka actor
(told each event), a callable or an object with `handle_event` (run in a lane actor of its
own), an `async def` handler (awaited on the event loop it subscribed from), or the
subscription's own mailbox (`get`, `aget`, iteration). Every kind is bounded and counts what
it drops. `wanted(topic)` lets publishers skip building events nobody wants.

The `EventBus` object is a facade that outlives its actor: subscriptions and pending events
live in a table the facade owns, and a restarted bus actor (under a `Supervisor`, through
`child_spec`) adopts them. After `os.fork()` every bus inherited from the parent is dead in
the child: subscriptions read as closed, `publish` does nothing, `stop()` returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Protocol

import pykka
from pykka import ActorDeadError, ActorRef

from brama.otp._actor import Actor, call
from brama.otp._childspec import ChildSpec, RestartType, StartContext
from brama.otp._lanes import LOGGER, current_lane, delivery
from brama.otp._log import get_logger, safe_repr
from brama.otp._routing import (
    DRAIN,
    BusActor,
    Flush,
    Interest,
    Route,
    Subscribe,
    Table,
    Unsubscribe,
    inside_bus,
)
from brama.otp._subscription import Endpoint, Kind, Subscription

__all__ = ["EventBus", "EventHandler", "Interest", "Subscription"]


class EventHandler(Protocol):
    """A subscriber object: the bus calls its `handle_event` in a lane of its own (awaits it
    on the subscriber's event loop when it is `async def`)."""

    def handle_event(self, event: Any) -> object: ...


_BUSES: weakref.WeakSet[EventBus] = weakref.WeakSet()
"""Every bus of this process, so that a forked child can declare them all dead."""


def _after_fork_in_child() -> None:
    for bus in list(_BUSES):
        bus._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class EventBus:
    """Topic-based publish/subscribe served by one (restartable) bus actor.

    `queue_size` is the default bound of every subscription's queue; `pending_size` bounds
    the events published and not yet dispatched (the oldest are dropped and counted in
    `dropped`); `stop()` waits at most `stop_timeout` seconds for lanes busy with an event.
    With `start=False` no bus actor runs until `start_actor()`, typically called by a
    `Supervisor` through `child_spec()`.
    """

    def __init__(
        self,
        *,
        name: str = "event-bus",
        queue_size: int = 10_000,
        pending_size: int = 1_000_000,
        stop_timeout: float = 2.0,
        start: bool = True,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a non-empty str, got {safe_repr(name)}")
        if not name:
            raise ValueError("name must be a non-empty str, got ''")
        self._queue_size = _check_size(queue_size, "queue_size")
        pending = _check_size(pending_size, "pending_size")
        if (
            isinstance(stop_timeout, bool)
            or not isinstance(stop_timeout, (int, float))
            or not (0 <= stop_timeout < math.inf)
        ):
            raise ValueError(
                f"stop_timeout must be a finite number of seconds >= 0, got {stop_timeout!r}"
            )
        if not isinstance(start, bool):
            raise TypeError(f"start must be a bool, got {safe_repr(start)}")
        self._name = name
        self._stop_timeout = float(stop_timeout)
        self._interest = Interest()
        self._table = Table(name, self._interest, pending)
        self._lock = threading.Lock()  # guards _ref and _stopped
        self._ref: ActorRef[Any] | None = None
        self._stopped = False
        self._lane_numbers = itertools.count(1)
        # the endpoint of each subscription handed out (which also tells ours from others')
        self._endpoints: weakref.WeakKeyDictionary[Subscription, Endpoint] = (
            weakref.WeakKeyDictionary()
        )
        _BUSES.add(self)
        if start:
            self.start_actor()

    def __repr__(self) -> str:
        return f"<EventBus {self._name!r} actor={self._ref}>"

    # -- the actor --

    @property
    def name(self) -> str:
        """The bus's name; its actor's thread and its lanes' threads are named after it."""
        return self._name

    @property
    def actor_ref(self) -> ActorRef[Any] | None:
        """The current bus actor (None before the first start), for monitoring it."""
        return self._ref

    def start_actor(self) -> ActorRef[Any]:
        """Start a bus actor that adopts the subscriptions and the pending events.

        What `EventBus(start=True)` and the start function of `child_spec` call. Raises
        `RuntimeError` while a bus actor is running, `ActorDeadError` in a forked child.
        A bus stopped with `stop()` gets an idle actor (its supervisor may restart it).
        """
        with self._lock:
            if self._table.owner is _FORKED:
                raise ActorDeadError(f"event bus {self._name!r} was inherited through fork()")
            current = self._ref
            if current is not None and current.is_alive():
                raise RuntimeError(
                    f"event bus {self._name!r} already runs {current}; start a bus with"
                    " start=False to run it under a supervisor"
                )
            ref: ActorRef[Any] = BusActor.start(self._table)
            self._ref = ref
        with contextlib.suppress(ActorDeadError):
            ref.tell(DRAIN)  # events that raced the swap of the ref
        return ref

    def child_spec(
        self,
        child_id: Hashable,
        *,
        restart: RestartType = "permanent",
        shutdown: float = 5.0,
    ) -> ChildSpec:
        """A `ChildSpec` whose start function starts a bus actor adopting this bus's
        subscriptions and pending events (create the bus with `start=False`).

        The supervisor restarts the bus actor; the subscriptions belong to this object, so
        stopping the supervisor leaves them open (publish keeps events pending): call
        `stop()` to close them.
        """

        def start(_ctx: StartContext) -> ActorRef[Any]:
            return self.start_actor()

        return ChildSpec(child_id, start, restart=restart, shutdown=shutdown)

    # -- subscribing --

    def subscribe(
        self,
        target: ActorRef[Any] | Callable[[Any], object] | EventHandler | None = None,
        *,
        topics: Iterable[Hashable] | None = None,
        filter: Callable[[Any], object] | None = None,
        match: Callable[[Any], object] | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """Subscribe `target` to the events of `topics` (None: all topics).

        `target` is a pykka `ActorRef` (told each event; when its inbox already holds
        `queue_size` messages the event is dropped and counted), a callable or an object with
        `handle_event` (run one event at a time in a lane actor of its own, whose queue keeps
        the newest `queue_size` events), an `async def` callable or object whose
        `handle_event` is `async def` (subscribe from a running event loop: each event is
        awaited on that loop, in order), or None (a mailbox of `queue_size` events, the
        oldest dropped; read it with `get`, `aget` or iteration).

        `filter` is user code: it runs in the subscription's lane (in the consumer for async
        handlers), never in the bus; one that raises or blocks affects only this
        subscription. `match` is a cheap predicate from trusted code, run in the bus actor
        (it must not call the bus). Raises `ActorDeadError` when no bus actor is running.
        """
        frozen_topics = _check_topics(topics)
        _check_callable(filter, "filter")
        _check_callable(match, "match")
        size = self._queue_size if queue_size is None else _check_size(queue_size, "queue_size")
        handler: Callable[[Any], Any] | None = None
        loop: asyncio.AbstractEventLoop | None = None
        kind: Kind = "mailbox"
        if isinstance(target, ActorRef):
            kind = "actor"
        elif target is not None:
            handler = _handler_of(target)
            kind = "handler"
            if _is_async(handler):
                kind = "async"
                loop = _running_loop(target)
        self._refuse_inside_bus("subscribe")
        ref = self._running_ref()
        endpoint = Endpoint(kind=kind, size=size, closer=self._close_subscription)
        monitored = None
        if isinstance(target, ActorRef) and issubclass(target.actor_class, Actor):
            monitored = target  # told how it ends: its subscriptions are dropped at once
        deliver, lane = delivery(
            endpoint,
            target=target if isinstance(target, ActorRef) else None,
            handler=handler,
            flt=filter,
            loop=loop,
            size=size,
            bus_name=self._name,
            number=next(self._lane_numbers),
        )
        endpoint.lane = lane
        route = Route(endpoint, frozen_topics, match, deliver, monitored, lane)
        try:
            call(ref, Subscribe(route))
        except BaseException:
            endpoint.closer = None
            endpoint.shut()
            if lane is not None:
                lane.stop()
            raise
        subscription = Subscription(endpoint)
        self._endpoints[subscription] = endpoint
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """End `subscription` (`subscription.close()`); harmless if already ended.

        Raises `ActorDeadError`, changing nothing, while no bus actor runs (restarting);
        `Subscription.close()` instead always succeeds.
        """
        if not isinstance(subscription, Subscription):
            raise TypeError(
                f"subscription must be a Subscription, got {type(subscription).__name__}"
            )
        if subscription not in self._endpoints:
            raise ValueError(f"{subscription!r} belongs to another EventBus")
        if not self._stopped and not subscription.closed:
            self._running_ref()
        subscription.close()

    def _close_subscription(self, endpoint: Endpoint) -> None:
        """`Subscription.close()`: through the bus actor, or directly when none runs."""
        if self._stopped:
            return
        ref = self._ref
        if ref is not None and ref.is_alive() and not inside_bus():
            try:
                call(ref, Unsubscribe(endpoint.id))
                return
            except ActorDeadError:
                pass
        table = self._table
        with table.lock:
            table.remove(endpoint.id)

    # -- publishing --

    def publish(self, topic: Hashable, event: Any) -> None:
        """Hand `event` to the bus for dispatch; never waits for subscribers.

        Events nobody wants (see `wanted`), and events published after `stop`, are
        discarded. While no bus actor runs (restarting) events stay pending.
        """
        wanted = self._interest.wanted
        try:
            if topic not in wanted.topics and not wanted.all_topics:
                return
        except TypeError:
            raise TypeError(f"topic must be hashable, got {type(topic).__name__}") from None
        table = self._table
        pending = table.pending
        if len(pending) < table.pending_size:
            pending.append((topic, event))
        else:
            table.push((topic, event))
        if not table.scheduled:
            table.scheduled = True
            ref = self._ref
            try:
                if ref is None:
                    raise ActorDeadError("no bus actor")
                ref.tell(DRAIN)
            except ActorDeadError:
                table.scheduled = False  # the next bus actor drains what is pending

    @property
    def interest(self) -> Interest:
        """A live view of what the subscriptions want: `interest.wanted` is replaced whole on
        every change, so a hot path can read `.wanted.all_topics` / `.wanted.topics` with no
        call into the bus (what `wanted(topic)` does, minus the call)."""
        return self._interest

    def wanted(self, topic: Hashable) -> bool:
        """True if some live subscription would receive events of `topic` (filters aside)."""
        wanted = self._interest.wanted
        return wanted.all_topics or topic in wanted.topics

    @property
    def dropped(self) -> int:
        """Published events dropped because `pending_size` events were waiting for dispatch."""
        return self._table.dropped

    @property
    def pending(self) -> int:
        """Published events the bus actor has not routed yet (its backlog)."""
        return len(self._table.pending)

    @contextlib.contextmanager
    def holding_locks(self) -> Iterator[None]:
        """Hold the bus's locks (its table's and every subscription's) for the block.

        Publishers that route, subscribers and the bus actor wait meanwhile. For tests that
        fork while another thread is inside the bus: what the child inherits then is what a
        thread caught mid-publish leaves behind.
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._table.lock)
            for endpoint in list(self._endpoints.values()):
                stack.enter_context(endpoint.holding_lock())
            yield

    def flush(self, timeout: float | None = 5.0) -> None:
        """Wait until every event published before this call has been dispatched.

        Lanes and subscriber actors may still be working on them. Raises `pykka.Timeout`
        after `timeout` seconds, `ActorDeadError` while no bus actor runs; returns at once
        once the bus is stopped.
        """
        if self._stopped:
            return
        self._refuse_inside_bus("flush")
        call(self._running_ref(), Flush(), timeout=timeout)

    # -- stopping --

    def stop(self) -> None:
        """Stop the bus actor and every lane and close every subscription; idempotent.

        Events published before the call are dispatched first. Waits at most
        `stop_timeout` seconds in all: a lane still busy with an event is logged and left
        to finish it (lanes are daemon threads: they never block interpreter exit). Async
        handlers run on their own event loop and are not waited for; their consumer ends
        after the event it is awaiting.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            ref = self._ref
        deadline = time.monotonic() + self._stop_timeout
        if ref is not None and ref.is_alive() and not inside_bus():
            with contextlib.suppress(ActorDeadError, pykka.Timeout):
                call(ref, Flush(), timeout=self._stop_timeout)
        lanes = self._table.close_all()
        if ref is not None:
            ref.stop(block=False)
        here = current_lane()
        for lane in lanes:
            if lane is here:
                continue  # stop() called from this lane's handler: it ends when that returns
            if not lane.wait(deadline - time.monotonic()) and lane.busy:
                get_logger(LOGGER).warning(
                    "event_bus_lane_busy_after_stop",
                    bus=self._name,
                    lane=lane.label,
                    stop_timeout=self._stop_timeout,
                )

    # -- internals --

    def _running_ref(self) -> ActorRef[Any]:
        ref = self._ref
        if self._stopped:
            raise ActorDeadError(f"event bus {self._name!r} is stopped")
        if ref is None or not ref.is_alive():
            raise ActorDeadError(
                f"event bus {self._name!r} has no running bus actor (not started, or being"
                " restarted by its supervisor); published events stay pending"
            )
        return ref

    def _refuse_inside_bus(self, what: str) -> None:
        if inside_bus():
            raise RuntimeError(
                f"{what}() cannot be called from a match predicate: it runs inside the bus actor"
            )

    def _after_fork(self) -> None:
        """In a forked child (no thread of the parent survives): dead, without waiting."""
        self._lock = threading.Lock()
        self._stopped = True
        self._table.after_fork()
        self._table.owner = _FORKED
        for endpoint in list(self._endpoints.values()):
            endpoint.after_fork()


_FORKED = object()
"""The owner of a table inherited through fork(): no bus actor may adopt it."""


def _check_size(value: object, argument: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"{argument} must be a positive int (a number of events), got {safe_repr(value)}"
        )
    if value <= 0:
        raise ValueError(f"{argument} must be a positive int (a number of events), got {value}")
    return value


def _check_callable(value: object, argument: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(
            f"{argument} must be a callable taking an event and returning a bool, or None;"
            f" got {safe_repr(value)}"
        )
    if value is not None and _is_async(value):
        raise TypeError(
            f"{argument} must be a plain (not async def) callable returning a bool;"
            f" got {safe_repr(value)}"
        )


def _check_topics(topics: Iterable[Hashable] | None) -> frozenset[Hashable] | None:
    if topics is None:
        return None
    if isinstance(topics, (str, bytes)) or not isinstance(topics, Iterable):
        raise TypeError(
            f"topics must be an iterable of hashable topics or None, got {safe_repr(topics)}"
            " (for one topic write topics=[topic])"
        )
    try:
        return frozenset(topics)
    except TypeError:
        raise TypeError(
            f"topics must contain only hashable topics, got {safe_repr(topics)}"
        ) from None


def _handler_of(target: object) -> Callable[[Any], Any]:
    method = getattr(target, "handle_event", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(target):
        return target
    raise TypeError(
        "target must be a pykka.ActorRef, a callable, an object with a handle_event method,"
        f" or None (a mailbox); got {safe_repr(target)}"
    )


def _is_async(function: object) -> bool:
    """True for `async def` functions, methods, partials and objects with an async __call__."""
    if inspect.iscoroutinefunction(function):
        return True
    call_method = getattr(function, "__call__", None)  # noqa: B004 (not a callable() check)
    return call_method is not None and inspect.iscoroutinefunction(call_method)


def _running_loop(target: object) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise TypeError(
            f"target {safe_repr(target)} is an async handler: it needs a running event loop"
            " to be awaited on. Subscribe it from a coroutine running on that loop (e.g."
            " inside asyncio.run()), or subscribe a plain function, or subscribe with no"
            " target and read the mailbox with `await subscription.aget()`"
        ) from None
