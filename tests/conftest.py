"""Small shared helpers for the acceptance tests of the public API (tests/test_api_*.py).

The fixtures `brama_system` and `brama_clock` come from Brama's own pytest plugin.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable
from typing import Any

import pykka

import brama

_sentinels = itertools.count()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def take(sub: brama.Subscription, count: int, timeout: float = 2.0) -> list[brama.Event]:
    """The next `count` events of a mailbox subscription (each waited for up to `timeout`)."""
    return [sub.get(timeout=timeout) for _ in range(count)]


def events_before_marker(system: brama.Brama, sub: brama.Subscription) -> list[brama.Event]:
    """Every event the catch-all subscription `sub` holds before a marker registered now.

    Proves without timing that nothing (or exactly what) was emitted: the marker's events are
    published after everything that happened before, so once they arrive every earlier event
    has arrived too. The marker is unregistered again and its three events are consumed.
    """
    name = f"__marker_{next(_sentinels)}__"
    system.register(name)
    seen: list[brama.Event] = []
    while True:
        event = sub.get(timeout=2)
        if event.connection == name:
            break
        seen.append(event)
    assert event.event is brama.EventType.CONNECTION_REGISTERED, event
    follower = sub.get(timeout=2)
    assert (follower.connection, follower.event) == (name, brama.EventType.REGISTRATION)
    system.unregister(name)
    gone = sub.get(timeout=2)
    assert (gone.connection, gone.event) == (name, brama.EventType.CONNECTION_UNREGISTERED)
    return seen


def kinds(events: list[brama.Event]) -> list[brama.EventType]:
    """The event types of `events`, in order."""
    return [e.event for e in events]


class Recorder(pykka.ThreadingActor):
    """A plain pykka actor that puts every message it is told into a thread-safe queue."""

    def __init__(self, inbox: queue.Queue[Any]) -> None:
        super().__init__()
        self.inbox = inbox

    def on_receive(self, message: Any) -> Any:
        self.inbox.put(message)
        return None
