"""Timers: `erlang:send_after` for pykka actors, all driven by one scheduler thread per service.

A `TimerService` keeps its timers in a heap served by a single daemon thread, so thousands of
timers cost one thread. On a `FakeClock` it starts no thread at all: the clock's `advance` fires
the due timers synchronously, which makes timer-driven behaviour deterministic in tests.

A delay longer than the platform can wait in one go (1e10 s, or `math.inf`) is simply a timer
that does not fire in the process's lifetime: the scheduler waits in bounded slices. The
scheduler thread survives any exception in its loop, and one that died is started again by
the next `send_after`. After `os.fork()` the child's services restart their thread on demand.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar

from pykka import ActorRef

from brama.otp._actor import call
from brama.otp._clock import SYSTEM_CLOCK, Clock, DrivenClock, check_seconds
from brama.otp._log import get_logger, safe_repr

__all__ = ["Destination", "TimerRef", "TimerService"]

_log = "brama.otp.timers"
_MAX_WAIT: Final = 3600.0
"""The longest single wait of the scheduler (far below `threading.TIMEOUT_MAX`)."""
_services: weakref.WeakSet[TimerService] = weakref.WeakSet()

_SEQUENCE = itertools.count()  # process-wide, so ties break in scheduling order across services

_PENDING: Final = "pending"
_FIRED: Final = "fired"
_CANCELLED: Final = "cancelled"
_DROPPED: Final = "dropped"

_COMPACT_MIN: Final = 64  # rebuild the heap once this many cancelled entries make up half of it

_SYNC_CALL_TIMEOUT: Final = 10.0  # how long a FakeClock delivery waits for an actor to answer

_S = TypeVar("_S", bound="TimerService")


class Destination(Protocol):
    """Anything a timer can deliver to: an `ActorRef` or any object with `tell`."""

    def tell(self, message: Any) -> None:
        """Deliver `message` without waiting for it to be handled."""
        ...


class TimerRef:
    """Handle of one scheduled message, returned by `TimerService.send_after`."""

    __slots__ = ("_deadline", "_dest", "_message", "_seq", "_service", "_state")

    def __init__(
        self,
        service: TimerService,
        deadline: float,
        seq: int,
        dest: Destination | ActorRef[Any],
        message: Any,
    ) -> None:
        self._service = service
        self._deadline = deadline
        self._seq = seq
        self._dest: Destination | ActorRef[Any] | None = dest
        self._message: Any = message
        self._state: str = _PENDING

    @property
    def deadline(self) -> float:
        """When the message is (or was) due, on the service clock's `monotonic()` scale."""
        return self._deadline

    @property
    def active(self) -> bool:
        """True while the timer is pending: neither fired, cancelled nor dropped by `stop`."""
        return self._state == _PENDING

    def cancel(self) -> bool:
        """Cancel the timer; True if it was pending and now never fires (idempotent)."""
        return self._service.cancel(self)

    def _take(self, state: str) -> tuple[Destination | ActorRef[Any], Any]:
        """Leave the pending state (caller holds the service lock) and hand back the payload."""
        dest, message = self._dest, self._message
        assert dest is not None
        self._state = state
        self._dest = None  # a finished timer does not keep its message or destination alive
        self._message = None
        return dest, message

    def __repr__(self) -> str:
        return f"<TimerRef deadline={self._deadline:.6f} {self._state}>"


class TimerService:
    """Schedules messages to actors after a delay, like Erlang's `erlang:send_after`.

    On a real clock one daemon thread (named `name`, started with the first timer) delivers every
    timer with `tell`. On a `FakeClock` there is no thread: `FakeClock.advance` fires due timers
    and waits for each to be handled. Call `stop` (or use it as a context manager) when done.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, *, name: str = "brama-timers") -> None:
        self._clock = clock
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerRef]] = []
        self._live = 0  # pending timers
        self._dead = 0  # cancelled entries still sitting in the heap
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._driver: DrivenClock | None = clock if isinstance(clock, DrivenClock) else None
        if self._driver is not None:
            self._driver.attach(self)
        _services.add(self)

    @property
    def clock(self) -> Clock:
        """The clock deadlines are measured on."""
        return self._clock

    @property
    def name(self) -> str:
        """The service name, also the name of its scheduler thread."""
        return self._name

    @property
    def pending(self) -> int:
        """How many timers are still waiting to fire (cancelled ones are not counted)."""
        with self._cond:
            return self._live

    def send_after(self, delay: float, dest: Destination | ActorRef[Any], message: Any) -> TimerRef:
        """Deliver `message` to `dest` once `delay` seconds have passed on the clock.

        `delay` is a number of seconds >= 0; `math.inf` (or any delay beyond the process's
        lifetime) never fires. Raises `RuntimeError` after `stop`. Delivery failures (such as a
        dead actor) are logged at debug level and otherwise ignored, as in Erlang.
        """
        if delay == math.inf and not isinstance(delay, bool):
            step = math.inf
        else:
            step = check_seconds(delay, "TimerService.send_after", "delay")
        with self._cond:
            if self._stopped:
                raise RuntimeError(f"send_after: timer service {self._name!r} is stopped")
            deadline = self._clock.monotonic() + step
            timer = TimerRef(self, deadline, next(_SEQUENCE), dest, message)
            heapq.heappush(self._heap, (deadline, timer._seq, timer))
            self._live += 1
            if self._driver is None:
                if self._thread is None or not self._thread.is_alive():
                    self._start_thread()
                elif self._heap[0][2] is timer:  # new earliest deadline: wake the scheduler
                    self._cond.notify()
        return timer

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def cancel(self, timer: TimerRef) -> bool:
        """Cancel `timer`; True if it was pending here and now never fires (idempotent)."""
        with self._cond:
            if timer._service is not self or timer._state != _PENDING:
                return False
            timer._take(_CANCELLED)
            self._live -= 1
            self._dead += 1
            if self._dead >= _COMPACT_MIN and self._dead * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2]._state == _PENDING]
                heapq.heapify(self._heap)
                self._dead = 0
            return True

    def stop(self) -> None:
        """Drop all pending timers and end the scheduler thread (joined); idempotent."""
        with self._cond:
            first = not self._stopped
            self._stopped = True
            for _, _, timer in self._heap:
                if timer._state == _PENDING:
                    timer._take(_DROPPED)
            self._heap.clear()
            self._live = 0
            self._dead = 0
            self._cond.notify_all()
            thread = self._thread
        if first and self._driver is not None:
            self._driver.detach(self)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"{self._live} pending"
        return f"<TimerService {self._name!r} on {self._clock!r}: {state}>"

    # -- internals (the service lock is `self._cond`) --

    def _drop_dead_head(self) -> None:
        """Pop cancelled entries off the top of the heap (lazy cancellation)."""
        heap = self._heap
        while heap and heap[0][2]._state != _PENDING:
            heapq.heappop(heap)
            self._dead -= 1

    def _run(self) -> None:
        """The scheduler thread: sleep until the earliest deadline, deliver, repeat.

        Nothing that goes wrong in one round ends the thread: it is logged, and after a short
        pause (so a persistent fault cannot spin) the loop carries on.
        """
        while True:
            try:
                due = self._next_due_blocking()
                if due is None:
                    return
                _deliver_async(*due)
            except BaseException as exc:
                get_logger(_log).error("timer_loop_failed", service=self._name, exc_info=exc)
                threading.Event().wait(0.01)

    def _next_due_blocking(self) -> tuple[Destination | ActorRef[Any], Any] | None:
        """Wait for the next due timer and take it; None once the service is stopped."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                self._drop_dead_head()
                if not self._heap:
                    self._cond.wait()
                    continue
                remaining = self._heap[0][0] - self._clock.monotonic()
                if remaining > 0:
                    self._cond.wait(min(remaining, _MAX_WAIT))
                    continue
                _, _, timer = heapq.heappop(self._heap)
                due = timer._take(_FIRED)
                self._live -= 1
                return due

    def _after_fork_in_child(self) -> None:
        """No thread survives a fork, and another thread may have held the lock."""
        self._cond = threading.Condition(threading.Lock())
        self._thread = None
        if self._live and not self._stopped and self._driver is None:
            self._start_thread()

    # -- FakeClock hooks (see brama.otp._clock.TimerSource) --

    def next_due(self, limit: float) -> tuple[float, int] | None:
        with self._cond:
            self._drop_dead_head()
            if not self._heap or self._heap[0][0] > limit:
                return None
            deadline, seq, _ = self._heap[0]
            return deadline, seq

    def pop_due(self, key: tuple[float, int]) -> Callable[[], None] | None:
        with self._cond:
            self._drop_dead_head()
            if not self._heap or self._heap[0][:2] != key:
                return None
            _, _, timer = heapq.heappop(self._heap)
            dest, message = timer._take(_FIRED)
            self._live -= 1
        return functools.partial(_deliver_sync, dest, message)


def _deliver_async(dest: Destination | ActorRef[Any], message: Any) -> None:
    """Real-clock delivery: `tell`, never letting a failure reach the scheduler thread."""
    try:
        dest.tell(message)
    except BaseException as exc:
        get_logger(_log).debug(
            "timer_message_not_delivered", message=safe_repr(message), destination=safe_repr(dest),
            error=safe_repr(exc),
        )


def _deliver_sync(dest: Destination | ActorRef[Any], message: Any) -> None:
    """FakeClock delivery: wait until `dest` handled `message`; failures are logged and dropped."""
    try:
        if isinstance(dest, ActorRef):
            call(dest, message, timeout=_SYNC_CALL_TIMEOUT)
            return
        ask = getattr(dest, "ask", None)
        if callable(ask):
            ask(message)
        else:
            dest.tell(message)
    except Exception as exc:
        get_logger(_log).debug(
            "timer_message_not_handled", message=safe_repr(message), destination=safe_repr(dest),
            error=safe_repr(exc),
        )


def _restart_services_after_fork() -> None:
    for service in list(_services):
        service._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_services_after_fork)
