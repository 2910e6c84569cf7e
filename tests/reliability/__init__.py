"""Reliability tests: model-based, concurrency, faults, hostile input and shutdown.

Shared helpers live here; every wait in these tests is bounded (an event, a queue, or a
polling loop with a deadline), so a bug shows up as a failure, never as a hang.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest

WAIT = 5.0
"""Upper bound, in seconds, for anything these tests wait on."""


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll `predicate` every 5 ms until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.005)


def drain(subscription: Any) -> list[Any]:
    """Everything a mailbox subscription holds right now (after a bus flush: all published)."""
    events = []
    while True:
        try:
            events.append(subscription.get(timeout=0))
        except queue.Empty:
            return events


def threads_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """Live threads that were not in `before`."""
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def wait_no_new_threads(before: set[threading.Thread], timeout: float = WAIT) -> None:
    """Fail unless every thread started since `before` ends within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = threads_since(before)
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"threads left behind after {timeout}s: {[t.name for t in left]}")
        time.sleep(0.01)


def cell_of(system: Any, identifier: str, scope: str | None = None) -> Any:
    """The published snapshot holder of a connection (an internal: for what the public
    status does not show, such as outstanding half-open permits)."""
    for cell in list(system._cells.values()):
        if (cell.identifier, cell.scope) == (identifier, scope):
            return cell
    raise AssertionError(f"no cell for {(scope, identifier)!r}")


class Recorder(pykka.ThreadingActor):
    """A plain pykka actor (not a brama one) that puts what it is told into a queue."""

    def __init__(self, inbox: queue.Queue[Any] | None = None) -> None:
        super().__init__()
        self.inbox: queue.Queue[Any] = queue.Queue() if inbox is None else inbox

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            return "pong"
        self.inbox.put(message)
        return None


class Outcome:
    """What a bounded call did: its value, the exception it raised, and how long it took."""

    __slots__ = ("error", "seconds", "value")

    def __init__(self, value: Any, error: BaseException | None, seconds: float) -> None:
        self.value = value
        self.error = error
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Outcome(value={self.value!r}, error={self.error!r}, seconds={self.seconds:.3f})"


def timed_call(func: Callable[[], Any], timeout: float = WAIT) -> Outcome:
    """Run `func` in a daemon thread; fail the test if it has not returned after `timeout`.

    The caller's thread never blocks on the library, so a hang is reported as a failure.
    """
    box: list[Outcome] = []
    done = threading.Event()

    def run() -> None:
        start = time.monotonic()
        try:
            value = func()
        except BaseException as exc:  # report everything, the test decides
            box.append(Outcome(None, exc, time.monotonic() - start))
        else:
            box.append(Outcome(value, None, time.monotonic() - start))
        finally:
            done.set()

    thread = threading.Thread(target=run, name="timed-call", daemon=True)
    thread.start()
    if not done.wait(timeout):
        pytest.fail(f"{func} did not return within {timeout}s (hang)")
    thread.join(timeout)
    return box[0]
