"""Helpers of the fleet integration tests."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from brama import Brama, Event
from brama._fleet.bridge import BridgeInfo
from brama.otp import call


def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll `predicate` until it returns something true; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what or predicate}")
        time.sleep(0.002)


def subscribed(*systems: Brama, timeout: float = 5.0) -> None:
    """Wait until every system's bridge listens to the namespace's channel."""
    for system in systems:
        def live(system: Brama = system) -> bool:
            bridge = system.runtime.part("bridge")
            return bridge is not None and bool(call(bridge, BridgeInfo(), timeout=5).subscribed)

        eventually(live, timeout, "the bridge subscribed")


def drain(subscription: Any, settle: float = 0.05) -> list[Event]:
    """Every event the subscription holds (waiting `settle` for stragglers)."""
    events = []
    while True:
        try:
            events.append(subscription.get(timeout=settle))
        except queue.Empty:
            return events


def script_calls(url: str) -> int:
    """EVALSHA + EVAL calls the server has answered so far."""
    import redis

    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "eval"))


def fleet_version(system: Brama, identifier: str, scope: str | None = None) -> int:
    """The fleet's version of a connection's state (0: none)."""
    store = system.runtime.fleet.store
    snapshot = store.read(store.key(identifier, scope))
    return 0 if snapshot is None else snapshot.version
