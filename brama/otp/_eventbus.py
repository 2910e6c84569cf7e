"""Publish/subscribe between actors, with topic and predicate filtering done by the bus.

One bus actor owns the subscriber set and dispatches every event, so each subscriber sees one
publisher's events in publish order. Subscribers are pykka actors (told each event), callables or
objects with `handle_event` (each run in its own handler actor, so a slow or failing handler
blocks and kills nothing), or a `Subscription`'s own bounded mailbox (oldest events dropped when
full: the freshest status wins). `wanted(topic)` lets publishers skip building unwanted events.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from queue import Empty
from types import TracebackType
from typing import Any, Protocol

import pykka
from pykka import ActorDeadError, ActorRef

from brama.otp._actor import Actor, call
from brama.otp._exit import Exit, demonitor, monitor

__all__ = ["EventBus", "EventHandler", "Interest", "Subscription"]

_log = logging.getLogger("brama.otp.eventbus")

_STOP_GRACE = 5.0
"""Seconds `EventBus.stop` waits for handler actors to finish the event they are handling."""
_DRAIN_BATCH = 1024
"""Events dispatched per wake-up before the bus lets queued control messages in."""

Handler = Callable[[Any], None]
Filter = Callable[[Any], bool]


class EventHandler(Protocol):
    """A subscriber object: the bus calls its `handle_event` in a handler actor of its own."""

    def handle_event(self, event: Any) -> None: ...


@dataclass(frozen=True)
class _Wanted:
    all_topics: bool
    topics: frozenset[Hashable]


_NOTHING_WANTED = _Wanted(False, frozenset())


class _Shared:  # exposed read-only as `Interest`
    """State the bus actor publishes to the `EventBus` facade and its publishers."""

    __slots__ = ("bus_thread", "pending", "scheduled", "wanted")

    def __init__(self) -> None:
        self.wanted = _NOTHING_WANTED  # replaced whole by the bus actor, read without locks
        self.pending: deque[tuple[Hashable, Any]] = deque()  # published, not yet dispatched
        self.scheduled = False  # a _Drain is on its way to the bus actor
        self.bus_thread: threading.Thread | None = None  # a Thread, not an ident: idents are reused


Interest = _Shared
"""The type of `EventBus.interest`."""


class Subscription:
    """One subscription to an `EventBus`; for mailbox delivery it is also the mailbox.

    The mailbox is bounded: when it is full the oldest event is dropped and counted in
    `dropped`. After `close` the events already in the mailbox can still be read.
    """

    def __init__(self, bus_ref: ActorRef[Any], shared: _Shared, *, mailbox: bool, size: int):
        self.id: str = uuid.uuid4().hex
        self._bus_ref: ActorRef[Any] | None = bus_ref
        self._shared = shared
        self._is_mailbox = mailbox
        self._lock = threading.Lock()
        self._nonempty = threading.Condition(self._lock)
        self._queue: deque[Any] = deque(maxlen=size)
        self._size = size
        self._waiters = 0
        self._dropped = 0
        self._closed = False
        self._cancelled = threading.Event()  # stops a handler actor before its queued events
        self._handler_thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Subscription {self.id} {state}>"

    @property
    def dropped(self) -> int:
        """Events lost because the mailbox was full."""
        return self._dropped

    @property
    def closed(self) -> bool:
        """True once the subscription was closed, unsubscribed, or dropped by the bus."""
        return self._closed

    def get(self, timeout: float | None = None) -> Any:
        """Take the oldest event from the mailbox, waiting up to `timeout` seconds (None: forever).

        Raises `queue.Empty` on timeout, or when the subscription is closed and the mailbox empty.
        """
        if not self._is_mailbox:
            raise TypeError("get() is only for mailbox subscriptions (subscribe with no target)")
        with self._lock:
            if not self._queue and not self._closed:
                deadline = None if timeout is None else time.monotonic() + timeout
                self._waiters += 1
                try:
                    while not self._queue and not self._closed:
                        if deadline is None:
                            self._nonempty.wait()
                        else:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                break
                            self._nonempty.wait(remaining)
                finally:
                    self._waiters -= 1
            if not self._queue:
                raise Empty
            return self._queue.popleft()

    def __iter__(self) -> Iterator[Any]:
        """Yield events as they arrive; ends once the subscription is closed and drained."""
        while True:
            try:
                yield self.get()
            except Empty:
                return

    def close(self) -> None:
        """Unsubscribe from the bus and wake blocked readers; harmless if already closed."""
        self._shut()
        bus_ref, self._bus_ref = self._bus_ref, None
        if bus_ref is None:
            return
        with contextlib.suppress(ActorDeadError):
            if threading.current_thread() is self._shared.bus_thread:
                bus_ref.tell(_Unsubscribe(self.id))  # from a filter: the bus can't answer itself
            else:
                call(bus_ref, _Unsubscribe(self.id))

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _offer(self, event: Any) -> None:
        with self._lock:
            if self._closed:
                return
            if len(self._queue) == self._size:
                self._dropped += 1  # the deque's maxlen drops the oldest on append
            self._queue.append(event)
            if self._waiters:
                self._nonempty.notify()

    def _shut(self) -> None:
        self._cancelled.set()
        with self._lock:
            self._closed = True
            self._nonempty.notify_all()


# -- messages --


@dataclass(frozen=True)
class _Drain:
    pass


_DRAIN = _Drain()


@dataclass(frozen=True)
class _Subscribe:
    subscription: Subscription
    target: ActorRef[Any] | None
    handler: Handler | None
    topics: frozenset[Hashable] | None
    filter: Filter | None


@dataclass(frozen=True)
class _Unsubscribe:
    subscription_id: str


@dataclass(frozen=True)
class _Flush:
    pass


@dataclass(frozen=True)
class _Shutdown:
    pass


@dataclass(frozen=True)
class _Event:
    event: Any


# -- actors --


class _HandlerActor(Actor):
    """Runs one subscription's callable, so it can be slow or fail without touching anyone."""

    def __init__(self, handler: Handler, subscription: Subscription, label: str) -> None:
        super().__init__()
        self._handler = handler
        self._subscription = subscription
        self._label = label

    def on_start(self) -> None:
        threading.current_thread().name = self._label
        self._subscription._handler_thread = threading.current_thread()

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Event(event=event):
                if self._subscription._cancelled.is_set():
                    return None
                try:
                    self._handler(event)
                except BaseException:
                    _log.exception("event handler %r raised; it keeps receiving", self._handler)
            case _:
                return super().on_receive(message)
        return None


@dataclass
class _Sub:
    subscription: Subscription
    topics: frozenset[Hashable] | None
    filter: Filter | None
    deliver: Handler
    ref: ActorRef[Any] | None  # the subscriber actor or the handler actor
    handler_actor: bool


_Route = tuple[Filter | None, Handler, str]


class _BusActor(Actor):
    """The single owner of the subscriber set; dispatches every published event."""

    def __init__(self, shared: _Shared, label: str) -> None:
        super().__init__()
        self._shared = shared
        self._label = label
        self._subs: dict[str, _Sub] = {}
        self._catch_all: tuple[_Route, ...] = ()
        self._by_topic: dict[Hashable, tuple[_Route, ...]] = {}
        self._monitors: dict[str, tuple[ActorRef[Any], int]] = {}
        self._handlers_started = 0

    def on_start(self) -> None:
        threading.current_thread().name = self._label
        self._shared.bus_thread = threading.current_thread()

    def on_stop(self) -> None:
        self._close_all()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close_all()

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Drain():
                self._drain(_DRAIN_BATCH)
            case _Subscribe():
                self._drain(len(self._shared.pending))
                self._add(message)
            case _Unsubscribe(subscription_id=sid):
                self._drain(len(self._shared.pending))
                self._remove(sid)
            case Exit(ref=ref):
                self._drain(len(self._shared.pending))
                self._monitors.pop(ref.actor_urn, None)
                for sid in [s for s, sub in self._subs.items() if _urn(sub.ref) == ref.actor_urn]:
                    self._remove(sid)
            case _Flush():
                self._drain(len(self._shared.pending))
            case _Shutdown():
                self._drain(len(self._shared.pending))
                return self._close_all()
            case _:
                return super().on_receive(message)
        return None

    def _drain(self, limit: int) -> None:
        shared = self._shared
        shared.scheduled = False  # before popping: a later publish then schedules a new drain
        pending = shared.pending
        catch_all = self._catch_all
        by_topic = self._by_topic
        dead: list[str] | None = None
        for _ in range(limit):
            try:
                topic, event = pending.popleft()
            except IndexError:
                break
            for flt, deliver, sid in by_topic.get(topic, catch_all):
                if flt is not None:
                    try:
                        if not flt(event):
                            continue
                    except BaseException:
                        _log.exception("event filter %r raised; event not delivered", flt)
                        continue
                try:
                    deliver(event)
                except ActorDeadError:
                    if dead is None:
                        dead = []
                    dead.append(sid)
            if dead:
                for sid in dead:
                    self._remove(sid)
                dead = None
                catch_all = self._catch_all
                by_topic = self._by_topic
        else:
            if pending:
                self.actor_ref.tell(_DRAIN)  # let control messages queued meanwhile go first

    def _add(self, message: _Subscribe) -> None:
        subscription = message.subscription
        ref = message.target
        handler_actor = False
        deliver: Handler
        if message.handler is not None:
            self._handlers_started += 1
            label = f"{self._label}-handler-{self._handlers_started}"
            ref = _HandlerActor.start(message.handler, subscription, label)
            handler_actor = True
            deliver = _event_teller(ref)
        elif ref is not None:
            deliver = ref.tell
        else:
            deliver = subscription._offer
        if ref is not None:
            self._watch(ref)
        sub = _Sub(subscription, message.topics, message.filter, deliver, ref, handler_actor)
        self._subs[subscription.id] = sub
        self._rebuild()

    def _remove(self, sid: str) -> None:
        sub = self._subs.pop(sid, None)
        if sub is None:
            return
        sub.subscription._shut()
        if sub.handler_actor and sub.ref is not None:
            sub.ref.stop(block=False)
        urn = _urn(sub.ref)
        if urn is not None and all(_urn(other.ref) != urn for other in self._subs.values()):
            watched = self._monitors.pop(urn, None)
            if watched is not None:
                demonitor(*watched)
        self._rebuild()

    def _watch(self, ref: ActorRef[Any]) -> None:
        if ref.actor_urn not in self._monitors and issubclass(ref.actor_class, Actor):
            self._monitors[ref.actor_urn] = (ref, monitor(ref, self.actor_ref))

    def _rebuild(self) -> None:
        subs = list(self._subs.values())
        topics: set[Hashable] = set()
        for sub in subs:
            if sub.topics is not None:
                topics.update(sub.topics)
        self._catch_all = tuple(_route(sub) for sub in subs if sub.topics is None)
        self._by_topic = {
            topic: tuple(_route(sub) for sub in subs if sub.topics is None or topic in sub.topics)
            for topic in topics
        }
        self._shared.wanted = _Wanted(bool(self._catch_all), frozenset(topics))

    def _close_all(self) -> list[tuple[Subscription, pykka.Future[bool]]]:
        """Drop every subscription; returns the stop futures of the handler actors."""
        stopping = []
        for sub in self._subs.values():
            sub.subscription._shut()
            if sub.handler_actor and sub.ref is not None:
                stopping.append((sub.subscription, sub.ref.stop(block=False)))
        for ref, handle in self._monitors.values():
            demonitor(ref, handle)
        self._subs.clear()
        self._monitors.clear()
        self._rebuild()
        self._shared.pending.clear()
        return stopping


def _event_teller(ref: ActorRef[Any]) -> Handler:
    tell = ref.tell

    def deliver(event: Any) -> None:
        tell(_Event(event))

    return deliver


def _route(sub: _Sub) -> _Route:
    return (sub.filter, sub.deliver, sub.subscription.id)


def _urn(ref: ActorRef[Any] | None) -> str | None:
    return None if ref is None else ref.actor_urn


def _check_size(value: object, argument: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{argument} must be positive, got {value}")
    return value


def _check_topics(topics: Iterable[Hashable] | None) -> frozenset[Hashable] | None:
    if topics is None:
        return None
    if isinstance(topics, (str, bytes)) or not isinstance(topics, Iterable):
        raise TypeError(
            f"topics must be an iterable of topics or None, got {type(topics).__name__}"
            " (for one topic write topics=[topic])"
        )
    try:
        return frozenset(topics)
    except TypeError:
        raise TypeError("topics must contain only hashable topics") from None


def _handler_of(target: object) -> Handler | None:
    method = getattr(target, "handle_event", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(target):
        return target
    return None


class EventBus:
    """Topic-based publish/subscribe served by one bus actor; see the module docstring."""

    def __init__(self, *, name: str = "event-bus", mailbox_size: int = 10_000) -> None:
        self._mailbox_size = _check_size(mailbox_size, "mailbox_size")
        self._shared = _Shared()
        self._ref: ActorRef[_BusActor] = _BusActor.start(self._shared, name)
        self._stop_lock = threading.Lock()
        self._stopped = False

    def __repr__(self) -> str:
        return f"<EventBus {self._ref}>"

    @property
    def actor_ref(self) -> ActorRef[Any]:
        """The bus actor, for supervising or monitoring it."""
        return self._ref

    def subscribe(
        self,
        target: ActorRef[Any] | Callable[[Any], None] | EventHandler | None = None,
        *,
        topics: Iterable[Hashable] | None = None,
        filter: Callable[[Any], bool] | None = None,
        mailbox_size: int | None = None,
    ) -> Subscription:
        """Subscribe `target` to the events of `topics` (None: all) for which `filter` holds.

        `target` is a pykka `ActorRef` (told each event), a callable or an object with a
        `handle_event(event)` method (called in a handler actor of its own), or None (events go
        to the returned subscription's mailbox of `mailbox_size` events). `filter` runs in the
        bus actor; one that raises counts as "no match".
        """
        frozen_topics = _check_topics(topics)
        if filter is not None and not callable(filter):
            raise TypeError(f"filter must be callable or None, got {type(filter).__name__}")
        size = (
            self._mailbox_size
            if mailbox_size is None
            else _check_size(mailbox_size, "mailbox_size")
        )
        ref: ActorRef[Any] | None = None
        handler: Handler | None = None
        if isinstance(target, ActorRef):
            ref = target
        elif target is not None:
            handler = _handler_of(target)
            if handler is None:
                raise TypeError(
                    "target must be a pykka.ActorRef, a callable, an object with a"
                    f" handle_event method, or None; got {type(target).__name__}"
                )
        self._refuse_on_bus_thread("subscribe")
        subscription = Subscription(self._ref, self._shared, mailbox=target is None, size=size)
        call(self._ref, _Subscribe(subscription, ref, handler, frozen_topics, filter))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """End `subscription` (the same as `subscription.close()`); harmless if already ended."""
        if not isinstance(subscription, Subscription):
            raise TypeError(
                f"subscription must be a Subscription, got {type(subscription).__name__}"
            )
        if subscription._shared is not self._shared:
            raise ValueError(f"{subscription!r} belongs to another EventBus")
        subscription.close()

    def publish(self, topic: Hashable, event: Any) -> None:
        """Hand `event` to the bus for dispatch; never waits for subscribers.

        Events nobody wants (see `wanted`), and events published after `stop`, are discarded.
        """
        shared = self._shared
        wanted = shared.wanted
        try:
            if topic not in wanted.topics and not wanted.all_topics:
                return
        except TypeError:
            raise TypeError(f"topic must be hashable, got {type(topic).__name__}") from None
        shared.pending.append((topic, event))
        if not shared.scheduled:
            shared.scheduled = True
            with contextlib.suppress(ActorDeadError):
                self._ref.tell(_DRAIN)

    @property
    def interest(self) -> Interest:
        """A live view of what the subscriptions want: `interest.wanted` is replaced whole on
        every change, so a hot path can read `.wanted.all_topics` / `.wanted.topics` with no
        call into the bus (what `wanted(topic)` does, minus the call)."""
        return self._shared

    def wanted(self, topic: Hashable) -> bool:
        """True if some live subscription would receive events of `topic` (filters aside)."""
        wanted = self._shared.wanted
        return wanted.all_topics or topic in wanted.topics

    def flush(self, timeout: float | None = 5.0) -> None:
        """Wait until every event published before this call has been dispatched.

        Handler actors and subscriber actors may still be working on them. Raises
        `pykka.Timeout` after `timeout` seconds; returns at once if the bus is stopped.
        """
        self._refuse_on_bus_thread("flush")
        with contextlib.suppress(ActorDeadError):
            call(self._ref, _Flush(), timeout=timeout)

    def stop(self) -> None:
        """Stop the bus and its handler actors and close every subscription; idempotent.

        Waits up to a few seconds for handler actors busy with an event; events still queued
        for them are not handled.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        if threading.current_thread() is self._shared.bus_thread:
            with contextlib.suppress(ActorDeadError):
                self._ref.tell(_Shutdown())
                self._ref.stop(block=False)
            return
        try:
            stopping = call(self._ref, _Shutdown())
        except ActorDeadError:
            stopping = []
        self._ref.stop()
        deadline = time.monotonic() + _STOP_GRACE
        for subscription, future in stopping:
            if subscription._handler_thread is threading.current_thread():
                continue  # stop() called from this handler: it ends when the handler returns
            try:
                future.get(timeout=max(deadline - time.monotonic(), 0.0))
            except pykka.Timeout:
                _log.warning("event handler of %r is still busy after stop()", subscription)

    def _refuse_on_bus_thread(self, what: str) -> None:
        if threading.current_thread() is self._shared.bus_thread:
            raise RuntimeError(f"{what}() cannot be called from an event filter")
