"""Tests of the pure circuit state machine (`brama._circuit`), without threads or clocks.

`Driver` feeds messages to `step` and plays the timers it asks for on a simulated clock,
the way the connection actor and its supervisor do.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from brama._cell import Cell, to_status
from brama._circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Circuit,
    Emit,
    Failure,
    Message,
    Now,
    Step,
    new_circuit,
    step,
)
from brama._config import Settings
from brama._options import Options
from brama.types import ConnectionStatus, EventType

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "WALL_OFFSET",
    "Driver",
    "check_invariants",
    "half_open_driver",
    "make_options",
    "open_driver",
    "state_change",
]

WALL_OFFSET = 1_000_000.0  # wall clock = monotonic + offset, so the two are told apart


def make_options(**overrides: Any) -> Options:
    return Settings({}, environ={}).resolve(overrides)


class Driver:
    """Feeds messages to the pure circuit and plays its timers on a simulated clock.

    Timers are kept by key, as the supervisor keeps them: arming a key replaces its timer,
    a request without a message cancels it.
    """

    def __init__(self, circuit: Circuit | None = None, **overrides: Any) -> None:
        self.mono = 0.0
        self.settings = Settings({}, environ={})
        self.circuit = circuit if circuit is not None else new_circuit(self.now(), overrides)
        self.armed: dict[Any, tuple[float, int, Any]] = {}
        self.heap: list[tuple[float, int, Any]] = []
        self.seq = itertools.count()
        self.events: list[Emit] = []
        self.last: Step | None = None

    def now(self) -> Now:
        return Now(wall=self.mono + WALL_OFFSET, mono=self.mono)

    @property
    def options(self) -> Options:
        return self.settings.resolve(self.circuit.overrides)

    def arm(self, key: Any, delay: float, message: Any) -> None:
        entry = (self.mono + delay, next(self.seq), message)
        self.armed[key] = entry
        heapq.heappush(self.heap, (entry[0], entry[1], key))

    def send(self, message: Message) -> Step:
        result = step(self.circuit, self.options, message, self.now())
        check_invariants(result.circuit, self.options)
        self.circuit = result.circuit
        self.events.extend(result.events)
        for key, delay, timer_message in result.timers:
            if timer_message is None:
                self.armed.pop(key, None)
            else:
                assert delay >= 0
                self.arm(key, delay, timer_message)
        self.last = result
        return result

    @property
    def pending(self) -> dict[Any, Any]:
        """Armed timers: key -> message."""
        return {key: entry[2] for key, entry in self.armed.items()}

    def advance(self, seconds: float) -> None:
        target = self.mono + seconds
        while self.heap and self.heap[0][0] <= target:
            due, seq, key = heapq.heappop(self.heap)
            entry = self.armed.get(key)
            if entry is None or entry[1] != seq:
                continue  # cancelled or replaced
            del self.armed[key]
            self.mono = max(self.mono, due)
            self.send(entry[2])
        self.mono = target

    def fail(self, times: int = 1, reason: Any = None) -> None:
        for _ in range(times):
            self.send(Failure(reason))

    def take_events(self) -> list[Emit]:
        events, self.events = self.events, []
        return events

    def kinds(self) -> list[EventType]:
        return [e.event for e in self.take_events()]

    def status(self) -> ConnectionStatus:
        cell = Cell("db", "s", "database", {"a": 1}, self.circuit)
        return to_status(cell, self.circuit, self.options)


def check_invariants(c: Circuit, options: Options) -> None:
    assert c.failure_count >= 0
    assert len(c.permits) <= options.half_open_max_calls
    assert c.total_successes >= 0 and c.total_failures >= 0 and c.rejected_calls >= 0
    if c.state is OPEN:
        assert c.opened_at is not None and c.current_expiry is not None
        assert (c.open_deadline is None) == c.expiry_disabled
    if c.state is CLOSED:
        assert c.permits == () and c.opened_at is None and c.opening_step == 0
        assert c.current_expiry is None and c.half_open_successes == 0
    if c.state is not HALF_OPEN:
        assert c.permits == ()
    if c.state is not OPEN:
        assert c.open_deadline is None
    ids = [p[0] for p in c.permits]
    assert ids == sorted(ids) and all(i < c.next_permit_id for i in ids)


def state_change(events: list[Emit]) -> dict[str, Any]:
    [change] = [e for e in events if e.event is EventType.STATE_CHANGE]
    return dict(change.data)


def open_driver(**overrides: Any) -> Driver:
    d = Driver(max_attempts=1, **overrides)
    d.fail(reason="boom")
    assert d.circuit.state is OPEN
    d.take_events()
    return d


def half_open_driver(**overrides: Any) -> Driver:
    d = open_driver(expiry=5.0, **overrides)
    d.advance(5.0)
    assert d.circuit.state is HALF_OPEN
    d.take_events()
    return d
