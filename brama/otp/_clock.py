"""Clocks: the system clock, and a fake clock that tests advance by hand.

Everything in brama that reads the time or schedules a timer takes a `Clock`, so tests can swap
in a `FakeClock` and drive time (and every timer attached to it) deterministically.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock"]

_EPSILON: Final = 1e-9
"""Slack when comparing a deadline with an advance target, so float rounding never strands a timer
(`0.7 + 0.1 < 0.8`)."""


@runtime_checkable
class Clock(Protocol):
    """A source of time: `time()` for timestamps, `monotonic()` for scheduling."""

    def time(self) -> float:
        """Wall-clock time in seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes backwards, used for deadlines and durations."""
        ...


_WALL = time.time
_MONOTONIC = time.monotonic


class SystemClock:
    """The real clock: `time.time()` and `time.monotonic()` (the builtins themselves, so a
    reading costs no extra Python call on the hot path)."""

    time = staticmethod(_WALL)
    monotonic = staticmethod(_MONOTONIC)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Final = SystemClock()
"""The shared system clock, the default wherever a `Clock` is taken."""


class TimerSource(Protocol):
    """What a `FakeClock` needs from an attached timer service to drive it."""

    def next_due(self, limit: float) -> tuple[float, int] | None:
        """`(deadline, sequence)` of the earliest live timer due at or before `limit`, if any."""
        ...

    def pop_due(self, key: tuple[float, int]) -> Callable[[], None] | None:
        """Take the timer `key` if it is still the earliest; returns its synchronous delivery."""
        ...


@runtime_checkable
class DrivenClock(Protocol):
    """A clock that fires the timers of the services attached to it (instead of a thread)."""

    def attach(self, source: TimerSource) -> None: ...

    def detach(self, source: TimerSource) -> None: ...


def _check_real(value: object, func: str, name: str, *, duration: bool) -> float:
    """Validate a number argument: finite and real (not a bool), and >= 0 if it is a duration."""
    kind = "a real number of seconds" if duration else "a real number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{func}: {name} must be {kind} (int or float, not bool), got {type(value).__name__}"
        )
    result = float(value)
    if not math.isfinite(result) or (duration and result < 0):
        accepted = "a finite number of seconds >= 0" if duration else "a finite number"
        raise ValueError(f"{func}: {name} must be {accepted}, got {value!r}")
    return result


def check_seconds(value: object, func: str, name: str) -> float:
    """Validate a duration argument: a finite real number >= 0 (not a bool), as a float."""
    return _check_real(value, func, name, duration=True)


class FakeClock:
    """A clock that only moves when `advance` is called, firing due timers synchronously.

    `time()` and `monotonic()` both start at `start` and move together. Timer services built on
    this clock start no thread: `advance` delivers their due messages in deadline order and waits
    for each destination to handle its message, so tests see the result right after `advance`.
    """

    def __init__(self, start: float = 0.0) -> None:
        now = _check_real(start, "FakeClock", "start", duration=False)
        self._lock = threading.Lock()  # guards _now and _sources; never held while delivering
        self._advance_lock = threading.Lock()  # serializes whole advances
        self._now = now
        self._sources: dict[int, TimerSource] = {}
        _fake_clocks.add(self)

    def _after_fork_in_child(self) -> None:
        """Another thread (one inside `advance`, or reading the time) may have held the
        locks when the process forked; no thread of the parent survives in the child."""
        self._lock = threading.Lock()
        self._advance_lock = threading.Lock()

    def time(self) -> float:
        """The fake wall-clock time (moves together with `monotonic`)."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """The fake monotonic time (moves together with `time`)."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing every timer that falls due, one at a time.

        Before each timer fires the clock is set to its deadline; the call waits until the
        destination handled the message before firing the next. Timers scheduled meanwhile that
        fall due by the target fire in this same call. Concurrent advances run one after the
        other; do not call `advance` from a handler of a timer this clock fired (the outer
        advance is waiting for that handler).
        """
        step = check_seconds(seconds, "FakeClock.advance", "seconds")
        with self._advance_lock:
            with self._lock:
                target = self._now + step
            limit = target + _EPSILON
            while True:
                with self._lock:
                    sources = list(self._sources.values())
                best: tuple[tuple[float, int], TimerSource] | None = None
                for source in sources:
                    key = source.next_due(limit)
                    if key is not None and (best is None or key < best[0]):
                        best = (key, source)
                if best is None:
                    break
                (deadline, _), source = best
                deliver = source.pop_due(best[0])
                if deliver is None:  # cancelled or overtaken meanwhile: look again
                    continue
                with self._lock:
                    self._now = max(self._now, deadline)
                deliver()
            with self._lock:
                self._now = max(self._now, target)

    @property
    def attached(self) -> int:
        """How many timer sources this clock drives (attached and not yet detached)."""
        with self._lock:
            return len(self._sources)

    def attach(self, source: TimerSource) -> None:
        """Let `advance` drive `source`'s timers (called by `TimerService`)."""
        with self._lock:
            self._sources[id(source)] = source

    def detach(self, source: TimerSource) -> None:
        """Forget `source` (called when its `TimerService` stops)."""
        with self._lock:
            self._sources.pop(id(source), None)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


_fake_clocks: weakref.WeakSet[FakeClock] = weakref.WeakSet()


def _reinit_fake_clocks_after_fork() -> None:
    for clock in list(_fake_clocks):
        clock._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_fake_clocks_after_fork)
