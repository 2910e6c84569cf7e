"""`/events`: Brama's events as Server-Sent Events, one subscription per client.

Each client gets a mailbox subscription of bounded size: while the client (or the network)
is slower than the events, the mailbox drops its oldest events and counts them, so a slow
client holds at most `queue_size` events, never more; the client is told how many it lost
(an SSE event named `dropped`). The server finds out that a client went away when a write
fails, at the latest at the next heartbeat; the WSGI server then calls `close()`, which
unsubscribes. The subscription is made when the response is created, before anything is
sent, so an event that happens after the client has read the first comment is never missed.

Wire format: every Brama event is a default (`message`) SSE event whose `data` is the
event's JSON (`event`, `timestamp`, `connection`, `scope`, `data`) and whose `id` counts the
events of this stream; `: keep-alive` comments are the heartbeats.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator

from brama.otp import Subscription
from brama.types import Event
from brama.web._encode import dumps, event_dict

__all__ = ["EventStream"]

_BATCH = 64
"""Events written at once when several are waiting (one write instead of 64)."""


class EventStream:
    """The WSGI response iterable of one `/events` client (bytes, one SSE block per item).

    Iteration ends when the subscription is closed: by `close()`, by the application's
    `close()`, or because the system stopped (its bus closes every subscription).
    """

    def __init__(self, subscription: Subscription, *, heartbeat: float, retry: float,
                 on_close: Callable[[EventStream], None]) -> None:
        self._subscription = subscription
        self._heartbeat = heartbeat
        self._on_close: Callable[[EventStream], None] | None = on_close
        self._ids = itertools.count(1)
        self._reported_drops = 0
        self._lock = threading.Lock()
        # The first block: how long the browser waits before reconnecting, and a comment
        # that tells the client the subscription is live.
        self._pending: bytes | None = f"retry: {round(retry * 1000)}\n: subscribed\n\n".encode()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if (first := self._pending) is not None:
            self._pending = None
            return first
        subscription = self._subscription
        try:
            event = subscription.get(timeout=self._heartbeat)
        except queue.Empty:
            if subscription.closed:
                raise StopIteration from None
            return b": keep-alive\n\n"
        events = [event]
        while len(events) < _BATCH:
            try:
                events.append(subscription.get(timeout=0))
            except queue.Empty:
                break
        return self._drops() + b"".join(self._block(item) for item in events)

    @property
    def closed(self) -> bool:
        """True once the stream's subscription is closed."""
        return self._subscription.closed

    @property
    def dropped(self) -> int:
        """Events this client lost because it did not keep up (its mailbox was full)."""
        return self._subscription.dropped

    def close(self) -> None:
        """Unsubscribe (the WSGI server calls this when the response ends, or the client went
        away); idempotent."""
        with self._lock:
            on_close, self._on_close = self._on_close, None
        self._subscription.close()
        if on_close is not None:
            on_close(self)

    def _block(self, event: Event) -> bytes:
        return b"id: %d\ndata: %s\n\n" % (next(self._ids), dumps(event_dict(event)))

    def _drops(self) -> bytes:
        """A `dropped` SSE event if the mailbox dropped events since the last one reported."""
        dropped = self._subscription.dropped
        if dropped == self._reported_drops:
            return b""
        lost, self._reported_drops = dropped - self._reported_drops, dropped
        return b"event: dropped\ndata: %s\n\n" % dumps({"dropped": lost, "total": dropped})
