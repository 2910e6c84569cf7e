"""`Subscription`: one subscription to an `EventBus`, and the bounded mailbox of mailbox ones.

The bus keeps the subscription's `Endpoint` (its state, its counters, its mailbox); the
user's `Subscription` wraps it and offers only reading and closing.

A mailbox is read from threads (`get`, iteration) or from coroutines (`aget`, `async for`)
without blocking an event loop: a coroutine waiting for an event waits on a future of its own
loop, which the bus resolves through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from queue import Empty
from types import TracebackType
from typing import Any, Literal, Protocol

__all__ = ["Subscription"]

Kind = Literal["mailbox", "handler", "actor", "async"]
"""How a subscription's events are delivered (see `EventBus.subscribe`)."""


class _DropCounter(Protocol):
    """What a subscription's lane reports: the events it dropped when full."""

    @property
    def dropped(self) -> int: ...


class Endpoint:
    """The bus's end of one subscription: its state, counters and (for mailbox delivery)
    its bounded mailbox. The bus, its routes and its lanes hold the endpoint; the user holds
    the `Subscription` that wraps it, so nothing here is part of the public API.

    The mailbox is bounded: when it is full the oldest event is dropped and counted.
    """

    __slots__ = (
        "_async_waiters",
        "_lock",
        "_mailbox_dropped",
        "_nonempty",
        "_queue",
        "_size",
        "_waiters",
        "closed",
        "closer",
        "id",
        "kind",
        "lane",
        "route_dropped",
    )

    def __init__(self, *, kind: Kind, size: int, closer: Callable[[Endpoint], None]) -> None:
        self.id: str = uuid.uuid4().hex
        self.kind: Kind = kind
        self.closer: Callable[[Endpoint], None] | None = closer
        """Unsubscribes from the bus (once: `close` clears it)."""
        self.lane: _DropCounter | None = None
        """The lane running this subscription's user code, if any (its drops count here)."""
        self.route_dropped = 0
        """Events dropped on the way to a full subscriber actor inbox (written by the bus
        actor only)."""
        self.closed = False
        """Set by `shut` (under the lock); read without it."""
        self._size = size
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._nonempty = threading.Condition(self._lock)
        self._waiters = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._mailbox_dropped = 0  # written under _lock

    @property
    def dropped(self) -> int:
        lane = self.lane
        return self._mailbox_dropped + self.route_dropped + (0 if lane is None else lane.dropped)

    # -- the bus side --

    def offer(self, event: Any) -> None:
        """Put `event` in the mailbox, dropping (and counting) the oldest when it is full."""
        with self._lock:
            if self.closed:
                return
            queue = self._queue
            if len(queue) >= self._size:
                queue.popleft()
                self._mailbox_dropped += 1
            queue.append(event)
            if self._waiters:  # threads in get() and coroutines in aget()
                self._nonempty.notify()
                if self._async_waiters:
                    self._wake_async()

    def shut(self) -> None:
        """Mark closed and wake every reader; the bus's route is dropped separately."""
        with self._lock:
            self.closed = True
            self._nonempty.notify_all()
            self._wake_async()

    def close(self) -> None:
        """Unsubscribe (through `closer`, once) and `shut`: `Subscription.close()`."""
        closer, self.closer = self.closer, None
        try:
            if closer is not None:
                closer(self)
        finally:
            self.shut()

    @contextlib.contextmanager
    def holding_lock(self) -> Iterator[None]:
        """Hold the mailbox lock for the block (see `EventBus.holding_locks`)."""
        with self._lock:
            yield

    def after_fork(self) -> None:
        """In a forked child: fresh locks (another thread may have held them), closed."""
        self._lock = threading.Lock()
        self._nonempty = threading.Condition(self._lock)
        self._waiters = 0
        self._async_waiters = []
        self.closed = True
        self.closer = None

    # -- the reader side (through `Subscription`) --

    def get(self, timeout: float | None) -> Any:
        with self._lock:
            if not self._queue and not self.closed:
                deadline = None if timeout is None else time.monotonic() + timeout
                self._waiters += 1
                try:
                    while not self._queue and not self.closed:
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

    async def aget(self, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                if self._queue:
                    return self._queue.popleft()
                if self.closed:
                    raise Empty
                waiter: asyncio.Future[None] = loop.create_future()
                entry = (loop, waiter)
                self._async_waiters.append(entry)
                self._waiters += 1
            try:
                if deadline is None:
                    await waiter
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise Empty
                    await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                raise Empty from None
            finally:
                with self._lock:
                    self._waiters -= 1
                    if entry in self._async_waiters:
                        self._async_waiters.remove(entry)

    def _wake_async(self) -> None:  # with _lock held
        for loop, waiter in self._async_waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits it any more
                loop.call_soon_threadsafe(_resolve, waiter)
        self._async_waiters.clear()


class Subscription:
    """One subscription to an `EventBus`; for mailbox delivery it is also the mailbox.

    The mailbox is bounded: when it is full the oldest event is dropped and counted in
    `dropped`. After `close` the events already in the mailbox can still be read.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        """Made by `EventBus.subscribe`, around the endpoint the bus keeps."""
        self._endpoint = endpoint
        self.id: str = endpoint.id
        self.kind: Kind = endpoint.kind

    def __repr__(self) -> str:
        state = "closed" if self._endpoint.closed else "open"
        return f"<Subscription {self.id} {self.kind} {state}>"

    @property
    def dropped(self) -> int:
        """Events this subscription lost to a full queue (its mailbox, its lane, or the inbox
        of its subscriber actor)."""
        return self._endpoint.dropped

    @property
    def closed(self) -> bool:
        """True once the subscription was closed, unsubscribed, or dropped by the bus."""
        return self._endpoint.closed

    # -- reading a mailbox --

    def get(self, timeout: float | None = None) -> Any:
        """Take the oldest event from the mailbox, waiting up to `timeout` seconds (None: forever).

        Raises `queue.Empty` on timeout, or when the subscription is closed and the mailbox empty.
        """
        if self.kind != "mailbox":
            raise _not_a_mailbox("get", self.kind)
        return self._endpoint.get(timeout)

    def __iter__(self) -> Iterator[Any]:
        """Yield events as they arrive; ends once the subscription is closed and drained."""
        while True:
            try:
                yield self.get()
            except Empty:
                return

    async def aget(self, timeout: float | None = None) -> Any:
        """`get` for coroutines: waits without blocking the running event loop.

        Raises `queue.Empty`, like `get`, on timeout or when the subscription is closed and
        the mailbox empty (one exception for "nothing to read", whichever way it is read).
        """
        if self.kind != "mailbox":
            raise _not_a_mailbox("aget", self.kind)
        return await self._endpoint.aget(timeout)

    async def __aiter__(self) -> AsyncIterator[Any]:
        """`async for event in subscription`: ends once it is closed and drained."""
        while True:
            try:
                event = await self.aget()
            except Empty:
                return
            yield event

    # -- ending --

    def close(self) -> None:
        """Unsubscribe from the bus and wake blocked readers; harmless if already closed.

        Events published before the call still reach the mailbox (the bus dispatches them
        first). Never raises for a bus that is not running: the route is then dropped
        without the bus actor.
        """
        self._endpoint.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _not_a_mailbox(what: str, kind: Kind) -> TypeError:
    return TypeError(
        f"{what}() is only for mailbox subscriptions (subscribe with no target);"
        f" this one is a {kind} subscription"
    )


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
