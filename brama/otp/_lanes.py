"""Lanes: where a subscription's user code (its filter, its handler) runs, away from the bus.

The bus actor only routes; it hands each event to the subscription's lane with `offer`, which
never waits. A lane keeps its own bounded queue (oldest dropped and counted when full) and
runs the user code one event at a time, in order, with every exception contained, so a slow,
blocked or failing filter or handler delays and breaks only its own subscription.

- `ThreadLane`: a `brama.otp.Actor` of its own (handler subscriptions, and actor or mailbox
  subscriptions that have a filter).
- `AsyncLane`: one consumer task on the subscriber's event loop, fed through
  `call_soon_threadsafe` (subscriptions whose handler is `async def`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import pykka
from pykka import ActorDeadError, ActorRef

from brama.otp._actor import Actor
from brama.otp._log import get_logger, safe_repr
from brama.otp._subscription import Endpoint

__all__ = []

LOGGER = "brama.otp.eventbus"
"""The logger name of the whole event bus (routing, lanes, subscriptions)."""

_BATCH = 256
"""Events a thread lane handles per wake-up before it lets its stop message in."""

Handler = Callable[[Any], object]
AsyncHandler = Callable[[Any], Awaitable[object]]
Predicate = Callable[[Any], object]


class Lane(Protocol):
    """What the bus needs from a lane."""

    label: str

    @property
    def dropped(self) -> int: ...

    @property
    def busy(self) -> bool:
        """True while the lane runs user code (a filter or a handler)."""

    def offer(self, event: Any) -> None:
        """Queue `event` without waiting; raises `ActorDeadError` if the lane is gone."""

    def stop(self) -> None:
        """Ask the lane to end after the event it is handling; never waits."""

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the lane to end; False if it is still busy."""


class _LaneContext(threading.local):
    lane: Lane | None = None


_context = _LaneContext()


def current_lane() -> Lane | None:
    """The lane whose user code is running right now in this thread, if any.

    `EventBus.stop()` called from a handler must not wait for that handler's own lane.
    """
    return _context.lane


def accepts(flt: Predicate | None, event: Any, endpoint: Endpoint) -> bool:
    """Run a user filter with every exception contained: one that raises means "skip"."""
    if flt is None:
        return True
    try:
        return bool(flt(event))
    except BaseException:
        get_logger(LOGGER).error(
            "event_filter_raised",
            subscription=endpoint.id,
            filter=safe_repr(flt),
            exc_info=True,
        )
        return False


def call_handler(handler: Handler, event: Any, endpoint: Endpoint) -> None:
    """Run a synchronous user handler with every exception contained."""
    try:
        result = handler(event)
    except BaseException:
        get_logger(LOGGER).error(
            "event_handler_raised",
            subscription=endpoint.id,
            handler=safe_repr(handler),
            exc_info=True,
        )
        return
    if inspect.isawaitable(result):
        # An async handler not recognised as one when subscribing: never leave it un-awaited.
        if inspect.iscoroutine(result):
            result.close()
        get_logger(LOGGER).error(
            "event_handler_returned_awaitable",
            subscription=endpoint.id,
            handler=safe_repr(handler),
            hint="subscribe an `async def` function (or an object whose handle_event is"
            " `async def`) from a running event loop, so each event is awaited on that loop",
        )


def inbox_backlog(target: ActorRef[Any]) -> Callable[[], int]:
    """How many messages wait in `target`'s inbox (a `queue.Queue` for threading actors;
    0 for an inbox that cannot tell)."""
    qsize = getattr(target.actor_inbox, "qsize", None)
    if callable(qsize):
        return qsize  # type: ignore[no-any-return]
    return lambda: 0


# -- thread lanes --


class _Wake:
    """The one message of a thread lane: handle what is queued."""


_WAKE = _Wake()


class ThreadLane:
    """A bounded queue served by a lane actor of its own; `work` runs the user code."""

    def __init__(
        self,
        label: str,
        size: int,
        endpoint: Endpoint,
        work: Callable[[ThreadLane, Any], None],
    ) -> None:
        self.label = label
        self.endpoint = endpoint
        self._size = size
        self._work = work
        self._queue: deque[Any] = deque()
        self._scheduled = False
        self._queue_dropped = 0  # written by the bus actor only
        self.forward_dropped = 0  # written by the lane only (a full subscriber inbox)
        self._stopping: pykka.Future[bool] | None = None
        self._running = False
        self._ref: ActorRef[Any] = _LaneActor.start(self)

    def __repr__(self) -> str:
        return f"<ThreadLane {self.label}>"

    @property
    def dropped(self) -> int:
        return self._queue_dropped + self.forward_dropped

    @property
    def busy(self) -> bool:
        return self._running

    def offer(self, event: Any) -> None:
        queue = self._queue
        if len(queue) >= self._size:
            try:
                queue.popleft()
                self._queue_dropped += 1
            except IndexError:  # the lane emptied it meanwhile
                pass
        queue.append(event)
        if not self._scheduled:
            self._scheduled = True
            self._ref.tell(_WAKE)

    def stop(self) -> None:
        if self._stopping is None:
            self._stopping = self._ref.stop(block=False)

    def wait(self, timeout: float) -> bool:
        stopping = self._stopping
        if stopping is None:
            return not self._ref.is_alive()
        try:
            stopping.get(timeout=max(timeout, 0.0))
        except pykka.Timeout:
            return False
        return True

    def run(self) -> None:
        """Handle up to a batch of queued events (in the lane actor)."""
        self._scheduled = False  # before popping: an offer from now on wakes the lane again
        queue = self._queue
        endpoint = self.endpoint
        work = self._work
        _context.lane = self
        self._running = True
        try:
            for _ in range(_BATCH):
                if endpoint.closed:
                    queue.clear()
                    return
                try:
                    event = queue.popleft()
                except IndexError:
                    return
                work(self, event)
        finally:
            self._running = False
            _context.lane = None
        if queue and not self._scheduled:
            self._scheduled = True
            self._ref.tell(_WAKE)  # let a stop queued meanwhile in before the next batch


class _LaneActor(Actor):
    """Runs one lane's user code; a `brama.otp.Actor`, so it is named and monitorable."""

    def __init__(self, lane: ThreadLane) -> None:
        super().__init__()
        self._lane = lane

    def on_start(self) -> None:
        threading.current_thread().name = self._lane.label

    def on_receive(self, message: Any) -> Any:
        if message is _WAKE:
            self._lane.run()
            return None
        return super().on_receive(message)


def handler_work(handler: Handler, flt: Predicate | None) -> Callable[[ThreadLane, Any], None]:
    """A handler subscription's lane: filter, then handler."""

    def work(lane: ThreadLane, event: Any) -> None:
        if accepts(flt, event, lane.endpoint):
            call_handler(handler, event, lane.endpoint)

    return work


def mailbox_work(flt: Predicate) -> Callable[[ThreadLane, Any], None]:
    """A filtered mailbox's lane: the events the filter accepts go to the mailbox."""

    def work(lane: ThreadLane, event: Any) -> None:
        if accepts(flt, event, lane.endpoint):
            lane.endpoint.offer(event)

    return work


def forward_work(
    target: ActorRef[Any], flt: Predicate, size: int
) -> Callable[[ThreadLane, Any], None]:
    """A filtered actor subscription's lane: accepted events are told to the target actor,
    unless its inbox already holds `size` messages (then the event is dropped and counted)."""
    backlog = inbox_backlog(target)
    tell = target.tell

    def work(lane: ThreadLane, event: Any) -> None:
        if not accepts(flt, event, lane.endpoint):
            return
        if backlog() >= size:
            lane.forward_dropped += 1
            return
        try:
            tell(event)
        except ActorDeadError:
            get_logger(LOGGER).info(
                "event_subscriber_gone", subscription=lane.endpoint.id, actor=str(target)
            )
            lane.endpoint.close()

    return work


# -- async lanes --


class AsyncLane:
    """One consumer task on the subscriber's event loop, awaiting the handler per event."""

    def __init__(
        self,
        label: str,
        size: int,
        endpoint: Endpoint,
        handler: AsyncHandler,
        flt: Predicate | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Call on `loop`'s thread, with `loop` running: the consumer task starts at once."""
        self.label = label
        self.endpoint = endpoint
        self._size = size
        self._handler = handler
        self._filter = flt
        self._loop = loop
        self._queue: deque[Any] = deque()
        self._scheduled = False
        self._dropped = 0  # written by the bus actor only
        self._ready = asyncio.Event()
        self.task: asyncio.Task[None] = loop.create_task(self._consume(), name=label)

    def __repr__(self) -> str:
        return f"<AsyncLane {self.label}>"

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def busy(self) -> bool:
        return False  # never waited for: see `wait`

    def offer(self, event: Any) -> None:
        queue = self._queue
        if len(queue) >= self._size:
            try:
                queue.popleft()
                self._dropped += 1
            except IndexError:
                pass
        queue.append(event)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                raise ActorDeadError(f"{self.label}: its event loop is closed") from None

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the task is gone already
            self._loop.call_soon_threadsafe(self._ready.set)

    def wait(self, timeout: float) -> bool:
        return True  # it runs on the subscriber's loop, which owns its lifetime

    def _wake(self) -> None:
        self._scheduled = False
        self._ready.set()

    async def _consume(self) -> None:
        endpoint = self.endpoint
        queue = self._queue
        try:
            while not endpoint.closed:
                await self._ready.wait()
                self._ready.clear()
                while queue and not endpoint.closed:
                    event = queue.popleft()
                    if not accepts(self._filter, event, endpoint):
                        continue
                    try:
                        await self._handler(event)
                    except asyncio.CancelledError:
                        raise
                    except BaseException:
                        get_logger(LOGGER).error(
                            "event_handler_raised",
                            subscription=endpoint.id,
                            handler=safe_repr(self._handler),
                            exc_info=True,
                        )
        finally:
            queue.clear()
            if not endpoint.closed:  # the task was cancelled (its loop is ending)
                endpoint.close()


# -- choosing a subscription's delivery --


def delivery(
    endpoint: Endpoint,
    *,
    target: ActorRef[Any] | None,
    handler: Handler | None,
    flt: Predicate | None,
    loop: asyncio.AbstractEventLoop | None,
    size: int,
    bus_name: str,
    number: int,
) -> tuple[Callable[[Any], None], Lane | None]:
    """What the bus calls with each event for this subscription, and the lane (if any) that
    runs its user code, named `{bus_name}-{role}-{number}` (its thread has that name).

    No lane when there is no user code to run: a mailbox without a filter is offered the
    event directly, an actor without a filter is told it (dropped and counted when its inbox
    already holds `size` messages: the subscriber is behind, not the bus).
    """
    lane: ThreadLane | AsyncLane
    if target is not None:
        if flt is None:
            return _actor_delivery(target, size, endpoint), None
        lane = ThreadLane(
            f"{bus_name}-filter-{number}", size, endpoint, forward_work(target, flt, size)
        )
    elif handler is None:
        if flt is None:
            return endpoint.offer, None
        lane = ThreadLane(f"{bus_name}-filter-{number}", size, endpoint, mailbox_work(flt))
    elif loop is not None:
        awaited = cast(AsyncHandler, handler)  # the caller checked it is `async def`
        lane = AsyncLane(f"{bus_name}-async-{number}", size, endpoint, awaited, flt, loop)
    else:
        lane = ThreadLane(
            f"{bus_name}-handler-{number}", size, endpoint, handler_work(handler, flt)
        )
    return lane.offer, lane


def _actor_delivery(
    target: ActorRef[Any], size: int, endpoint: Endpoint
) -> Callable[[Any], None]:
    backlog = inbox_backlog(target)
    tell = target.tell

    def deliver(event: Any) -> None:
        if backlog() >= size:
            endpoint.route_dropped += 1
            return
        tell(event)

    return deliver
