"""Cancellation and timeouts under asyncio, through the decorator and the guard.

Found: a cancelled half-open trial held its permit until `expiry` (60 s, 594 calls refused
after the service recovered, where aiobreaker recovered in 0.2 s), and timeouts around a
decorated coroutine were never counted. Now: a call that ends by cancellation (or
KeyboardInterrupt, SystemExit, GeneratorExit, an ignored exception, an "ignore" verdict)
returns its permit at once and counts nothing, and the exception propagates unchanged; the
breaker's own `timeout=` counts a failure with a clear reason and raises TimeoutError, while
an external `wait_for` is a cancellation. Ignored outcomes from sync code: test_permits.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from datetime import timedelta
from typing import Any

import pytest

from brama import Brama, CircuitOpenError, CircuitState, ConfigError, EventType, circuit_breaker
from brama import guard as make_guard
from tests.helpers import WAIT, events_before_marker, kinds

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
Call = Callable[[], Awaitable[Any]]


def half_open(system: Brama, name: str = "svc", **options: Any) -> None:
    """`name` half-open with one trial permit and a long lease (expiry 60 s)."""
    system.register(name, half_open_max_calls=1, expiry=60, **options)
    system.open_circuit(name)
    system.reset_expiry(name)


def counts(system: Brama, name: str = "svc") -> tuple[Any, ...]:
    s = system.status(name)
    return s.state, s.total_successes, s.total_failures, s.half_open_permits_in_use


def through(kind: str, system: Brama, body: Call, **options: Any) -> Call:
    """A coroutine function running `body()` through the breaker of "svc": the decorator or
    an `async with` guard."""
    if kind == "decorator":

        @circuit_breaker("svc", system=system, **options)
        async def decorated() -> Any:
            return await body()

        return decorated
    shared = make_guard("svc", system=system, **options)

    async def guarded() -> Any:
        async with shared:
            return await body()

    return guarded


class Suspend:
    """An awaitable that suspends once (a coroutine driven by hand can then be closed)."""

    def __await__(self) -> Generator[None, None, None]:
        yield


class Hang:
    """A body that never finishes and records what ended it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.ended_by: list[type[BaseException]] = []

    async def __call__(self) -> None:
        try:
            self.started.set()
            await asyncio.Event().wait()
        except BaseException as exc:
            self.ended_by.append(type(exc))
            raise


async def cancel_by_wait_for(call: Call, hang: Hang) -> type[BaseException]:
    with pytest.raises(TimeoutError) as caught:
        await asyncio.wait_for(call(), 0.01)
    return caught.type


async def cancel_by_task_cancel(call: Call, hang: Hang) -> type[BaseException]:
    task = asyncio.ensure_future(call())
    await asyncio.wait_for(hang.started.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as caught:
        await task
    return caught.type


async def cancel_by_asyncio_timeout(call: Call, hang: Hang) -> type[BaseException]:
    if sys.version_info < (3, 11):  # pragma: no cover
        pytest.skip("asyncio.timeout is 3.11+")
    with pytest.raises(TimeoutError) as caught:
        async with asyncio.timeout(0.01):
            await call()
    return caught.type


CANCELLATIONS = {
    "wait_for": cancel_by_wait_for,
    "task.cancel": cancel_by_task_cancel,
    "asyncio.timeout": cancel_by_asyncio_timeout,
}


@pytest.mark.parametrize("kind", ["decorator", "guard"])
@pytest.mark.parametrize("how", list(CANCELLATIONS))
def test_a_cancelled_trial_returns_its_permit_at_once_and_counts_nothing(
    brama_system: Brama, kind: str, how: str
) -> None:
    half_open(brama_system)
    hang = Hang()
    call = through(kind, brama_system, hang)
    before = counts(brama_system)
    with brama_system.subscribe() as sub:

        async def main() -> None:
            await CANCELLATIONS[how](call, hang)
            assert counts(brama_system) == (*before[:3], 0)  # at once, in the loop

        asyncio.run(main())
        assert hang.ended_by == [asyncio.CancelledError]
        assert kinds(events_before_marker(brama_system, sub)) == []  # no outcome reported
    # the next trial is admitted right away, and closes the circuit
    assert asyncio.run(through(kind, brama_system, lambda: asyncio.sleep(0, "up"))()) == "up"
    assert brama_system.status("svc").state is CLOSED


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_a_closed_coroutine_returns_its_permit(brama_system: Brama, kind: str) -> None:
    """GeneratorExit: a coroutine closed while suspended inside the call (garbage collected,
    or closed by the framework that drove it)."""
    half_open(brama_system)

    async def suspended() -> None:
        await Suspend()

    coroutine = through(kind, brama_system, suspended)()
    coroutine.send(None)  # type: ignore[attr-defined]
    assert counts(brama_system)[3] == 1
    coroutine.close()  # type: ignore[attr-defined]
    assert counts(brama_system) == (HALF_OPEN, 0, 0, 0)


@pytest.mark.parametrize("kind", ["decorator", "guard"])
@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), GeneratorExit()],
                         ids=lambda e: type(e).__name__)
def test_base_exceptions_in_a_coroutine_propagate_unchanged_and_return_the_permit(
    brama_system: Brama, kind: str, error: BaseException
) -> None:
    half_open(brama_system)

    async def body() -> None:
        raise error

    coroutine = through(kind, brama_system, body)()
    with pytest.raises(type(error)) as caught:
        coroutine.send(None)  # type: ignore[attr-defined]
    assert caught.value is error
    assert counts(brama_system) == (HALF_OPEN, 0, 0, 0)


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_an_ignored_exception_in_a_coroutine_returns_the_permit(
    brama_system: Brama, kind: str
) -> None:
    half_open(brama_system)
    error = LookupError("not found: says nothing about the dependency")

    async def body() -> None:
        raise error

    ignoring = through(kind, brama_system, body,
                       ignore_exceptions=(KeyError, lambda exc: "not found" in str(exc)))
    with pytest.raises(LookupError) as caught:
        asyncio.run(ignoring())
    assert caught.value is error
    assert counts(brama_system) == (HALF_OPEN, 0, 0, 0)


def test_an_ignore_verdict_in_a_coroutine_returns_the_permit(brama_system: Brama) -> None:
    half_open(brama_system)

    @circuit_breaker("svc", system=brama_system, error_handler=lambda value: "ignore")
    async def call() -> str:
        return "cached"

    assert asyncio.run(call()) == "cached"
    assert counts(brama_system) == (HALF_OPEN, 0, 0, 0)


def test_cancellation_while_closed_counts_nothing(brama_system: Brama) -> None:
    brama_system.register("svc", max_attempts=1)
    hang = Hang()
    for kind in ("decorator", "guard"):
        asyncio.run(cancel_by_wait_for(through(kind, brama_system, hang), hang))
    assert counts(brama_system) == (CLOSED, 0, 0, 0)


# -- the aiobreaker scenario, on the real clock --------------------------------------------


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_recovery_after_a_cancelled_trial_is_immediate(kind: str) -> None:
    """The service recovers while a trial is being cancelled by the caller's wait_for; the
    caller retries every 10 ms. Found: refused for the whole expiry (60 s, 594 refusals);
    aiobreaker recovered in 0.2 s. Measured: the first retry is admitted and closes it."""
    with Brama() as system:
        system.register("svc", expiry=60, half_open_max_calls=1)
        system.open_circuit("svc")
        system.reset_expiry("svc")
        service = {"up": False}

        async def request() -> str:
            if not service["up"]:
                await asyncio.sleep(1.0)  # a hung dependency
            return "ok"

        call = through(kind, system, request)

        async def scenario() -> tuple[float, int]:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call(), 0.2)
            service["up"] = True
            cancelled_at = time.monotonic()
            refused = 0
            while system.status("svc").state is not CLOSED:
                assert time.monotonic() - cancelled_at < 5.0, f"{refused} refused"
                try:
                    await call()
                except CircuitOpenError:
                    refused += 1
                    await asyncio.sleep(0.01)
            return time.monotonic() - cancelled_at, refused

        recovery, refused = asyncio.run(scenario())
    assert refused == 0
    assert recovery < 0.5, recovery


# -- the breaker's own timeout ---------------------------------------------------------------


REASON = "timeout: no answer within 0.05 s"


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_own_timeout_is_a_failure_with_a_clear_reason(brama_system: Brama, kind: str) -> None:
    brama_system.register("svc", max_attempts=2)
    hang = Hang()
    call = through(kind, brama_system, hang, timeout=0.05)
    with brama_system.subscribe(events=[EventType.FAILURE]) as failures:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                asyncio.run(call())
        assert [failures.get(timeout=WAIT).data["reason"] for _ in range(2)] == [REASON] * 2
    assert hang.ended_by == [asyncio.CancelledError] * 2  # the call itself was cancelled
    status = brama_system.status("svc")
    assert (status.state, status.total_failures, status.last_failure_reason) == (
        OPEN, 2, REASON)


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_a_call_within_its_timeout_succeeds(brama_system: Brama, kind: str) -> None:
    call = through(kind, brama_system, lambda: asyncio.sleep(0, "fast"),
                   timeout=timedelta(seconds=5))
    assert asyncio.run(call()) == "fast"
    assert counts(brama_system) == (CLOSED, 1, 0, 0)


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_a_timeout_error_of_the_call_itself_is_an_ordinary_failure(
    brama_system: Brama, kind: str
) -> None:
    error = TimeoutError("the client's own timeout")

    async def body() -> None:
        raise error

    with pytest.raises(TimeoutError) as caught:
        asyncio.run(through(kind, brama_system, body, timeout=5)())
    assert caught.value is error
    assert brama_system.status("svc").last_failure_reason == repr(error)


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_a_timed_out_trial_reopens_the_circuit(brama_system: Brama, kind: str) -> None:
    half_open(brama_system)
    with pytest.raises(TimeoutError):
        asyncio.run(through(kind, brama_system, Hang(), timeout=0.05)())
    status = brama_system.status("svc")
    assert (status.state, status.half_open_permits_in_use, status.last_failure_reason) == (
        OPEN, 0, REASON)


@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_an_external_wait_for_is_a_cancellation_and_the_own_timeout_a_failure(
    brama_system: Brama, kind: str
) -> None:
    brama_system.register("svc", max_attempts=5)
    hang = Hang()
    call = through(kind, brama_system, hang, timeout=0.2)
    asyncio.run(cancel_by_wait_for(call, hang))  # 0.01 s: the caller gave up first
    assert counts(brama_system) == (CLOSED, 0, 0, 0)

    async def patient() -> None:
        await asyncio.wait_for(call(), 5.0)  # the breaker's 0.2 s comes first

    with pytest.raises(TimeoutError) as caught:
        asyncio.run(patient())
    assert str(caught.value) == "connection 'svc': no answer within 0.2 s (the breaker's timeout)"
    assert counts(brama_system) == (CLOSED, 0, 1, 0)


def test_an_outer_timeout_cancels_an_inner_call_which_counts_nothing(brama_system: Brama) -> None:
    hang = Hang()

    @circuit_breaker("inner", system=brama_system, timeout=5)
    async def inner() -> None:
        await hang()

    @circuit_breaker("outer", system=brama_system, timeout=0.05)
    async def outer() -> None:
        await inner()

    with pytest.raises(TimeoutError):
        asyncio.run(outer())
    assert counts(brama_system, "inner") == (CLOSED, 0, 0, 0)
    assert brama_system.status("outer").last_failure_reason == REASON


def test_timeout_on_a_sync_function_is_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match=r"async def.*cannot be interrupted"):

        @circuit_breaker("svc", timeout=1)
        def blocking() -> None: ...


def test_timeout_on_a_sync_guard_is_refused_before_admission(brama_system: Brama) -> None:
    half_open(brama_system)
    shared = make_guard("svc", system=brama_system, timeout=1)
    with pytest.raises(TypeError, match=r"async with.*cannot be interrupted"), shared:
        raise AssertionError("the block must not run")
    assert counts(brama_system) == (HALF_OPEN, 0, 0, 0)  # no permit was taken


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "1"])
def test_bad_timeouts_are_refused_where_they_are_given(bad: Any) -> None:
    with pytest.raises((ConfigError, TypeError)):
        circuit_breaker("svc", timeout=bad)
    with pytest.raises((ConfigError, TypeError)):
        make_guard("svc", timeout=bad)


# -- where the connection's handler runs -----------------------------------------------------


class SpyClock:
    """The real clock, recording the thread, task and context of each read."""

    def __init__(self, marker: contextvars.ContextVar[str | None]) -> None:
        self.marker = marker
        self.reads: list[tuple[int, Any, str | None]] = []

    def _record(self) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop on this thread
            task = None
        self.reads.append((threading.get_ident(), task, self.marker.get()))

    def time(self) -> float:
        self._record()
        return time.time()

    def monotonic(self) -> float:
        self._record()
        return time.monotonic()


def test_a_failure_report_runs_the_connections_handler_on_the_event_loop() -> None:
    """An awake, idle connection: the report does not hand off to the actor's thread and
    wait; the handler runs in the calling task. Sound because the decorator reads no clock on
    a failure (no slow-call policy), so the clock reads made in the task's context during the
    report are the handler's (`now()` before the circuit step); a queued report would read the
    clock on the actor's thread, outside any task. A dormant connection is woken first (its
    actor's thread starts), then handled the same way."""
    marker: contextvars.ContextVar[str | None] = contextvars.ContextVar("marker", default=None)
    clock = SpyClock(marker)
    with Brama(clock=clock) as system:
        system.register("awake", max_attempts=100)
        system.register("dormant", max_attempts=100)
        system.failure("awake")

        async def report(name: str) -> list[tuple[bool, bool]]:
            @circuit_breaker(name, system=system)
            async def failing() -> None:
                raise ConnectionError("down")

            marker.set(name)
            clock.reads.clear()
            with pytest.raises(ConnectionError):
                await failing()
            me, task = threading.get_ident(), asyncio.current_task()
            return [(ident == me and current is task, mark == name)
                    for ident, current, mark in clock.reads]

        async def main() -> dict[str, list[tuple[bool, bool]]]:
            return {name: await report(name) for name in ("awake", "dormant")}

        reads = asyncio.run(main())
        assert system.status("awake").failure_count == 2
    assert reads["awake"] == [(True, True), (True, True)]  # time() and monotonic(), in the task
    in_task = [read for read in reads["dormant"] if read[1]]
    assert in_task == [(True, True), (True, True)]
    assert all(not marked for on_loop, marked in reads["dormant"] if not on_loop)
