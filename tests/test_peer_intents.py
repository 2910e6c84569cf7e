"""What the test suites of other Python circuit breakers check, translated into Brama.

Each test takes the intent of one (or a few) peer tests, not their code, and says which in its
docstring: pybreaker (danielfm/pybreaker, tests/pybreaker_test.py), circuitbreaker
(fabfuel/circuitbreaker, tests/test_functional.py and tests/test_unit.py), aiobreaker
(arlyon/aiobreaker, test/*.py) and purgatory (mardiros/purgatory,
tests/unittests/_sync/*.py). Their vocabulary maps to Brama's: fail_max / failure_threshold /
threshold -> `max_attempts`; reset_timeout / recovery_timeout / timeout_duration / ttl ->
`expiry`; exclude / expected_exception -> `ignore_exceptions`; listeners -> subscriptions.
Where Brama deliberately differs, the test says so.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from brama import (
    Brama,
    CircuitOpenError,
    CircuitState,
    EventType,
    circuit_breaker,
    guard,
)
from brama.testing import FakeClock, flush_events, set_state
from tests.helpers import drain, wait_until

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Calls:
    """A guarded function's body: counts its calls, fails while `failing` is set."""

    def __init__(self) -> None:
        self.count = 0
        self.failing: BaseException | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        if self.failing is not None:
            raise self.failing
        return ("ok", args, kwargs)


@pytest.fixture
def body() -> Calls:
    return Calls()


def transitions(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.data["previous_state"].value, e.data["new_state"].value)
            for e in events if e.event is EventType.STATE_CHANGE]


# --- counting: options on the decorator, successes resetting the count ----------------------


def test_a_success_after_failures_resets_the_count(brama_system: Brama, body: Calls) -> None:
    """pybreaker test_successful_call, test_one_failed_call and
    test_one_successful_call_after_failed_call; aiobreaker
    test_one_successful_call_after_failed_call: a failure counts one and keeps the circuit
    closed, a success brings the count back to 0."""
    call = circuit_breaker("svc", system=brama_system)(body)
    body.failing = NotImplementedError()
    with pytest.raises(NotImplementedError):
        call()
    status = brama_system.status("svc")
    assert (status.failure_count, status.state) == (1, CLOSED)
    body.failing = None
    assert call()[0] == "ok"
    status = brama_system.status("svc")
    assert (status.failure_count, status.state) == (0, CLOSED)


def test_max_attempts_on_the_decorator_opens_at_the_threshold(brama_system: Brama,
                                                              body: Calls) -> None:
    """pybreaker test_several_failed_calls_setting_absent and test_throw_new_error_on_trip_false;
    circuitbreaker test_threshold_hit_prevents_consequent_calls: with fail_max=3 the third
    failure opens the circuit and the next call is refused without reaching the function.
    Brama always re-raises the caller's own exception, the tripping one included (pybreaker's
    throw_new_error_on_trip=False); only a refused call raises CircuitOpenError."""
    call = circuit_breaker("svc", system=brama_system, max_attempts=3)(body)
    body.failing = NotImplementedError()
    for _ in range(3):
        with pytest.raises(NotImplementedError):
            call()
    status = brama_system.status("svc")
    assert (status.failure_count, status.state) == (3, OPEN)
    with pytest.raises(CircuitOpenError):
        call()
    assert body.count == 3
    assert brama_system.status("svc").failure_count == 3  # a refusal is no failure


def test_options_given_to_the_decorator_are_the_connections_and_the_rest_default(
    brama_system: Brama,
) -> None:
    """purgatory test_circuitbreaker_factory_decorator (threshold=15 / ttl=60 on the decorator,
    the other value from the defaults); pybreaker test_new_with_custom_fail_max and
    test_new_with_custom_reset_timeout; circuitbreaker test_circuit_decorator_with_args."""

    @circuit_breaker("client2", system=brama_system, max_attempts=15)
    def two() -> None:
        pass

    @circuit_breaker("client3", system=brama_system, expiry=60)
    def three() -> None:
        pass

    two()
    three()
    assert [(s.identifier, s.max_attempts, s.expiry) for s in brama_system.connections()] == [
        ("client2", 15, 60.0), ("client3", 10, 60.0)]


def test_a_timedelta_expiry_on_the_decorator(brama_system: Brama,
                                             brama_clock: FakeClock) -> None:
    """aiobreaker test_new_with_custom_reset_timeout (timeout_duration=timedelta(seconds=30))
    and test_failed_call_after_timeout, whose `delta` fixture is a timedelta: the circuit
    opened by an async call half-opens after the timedelta, and a failing trial opens it again
    (the count going on: 4)."""

    async def fail() -> None:
        raise OSError("down")

    call = circuit_breaker("svc", system=brama_system, max_attempts=3,
                           expiry=timedelta(seconds=30))(fail)
    for _ in range(3):
        with pytest.raises(OSError):
            asyncio.run(call())
    assert brama_system.status("svc").expiry == 30.0
    brama_clock.advance(29.999)
    with pytest.raises(CircuitOpenError):
        asyncio.run(call())
    brama_clock.advance(0.001)
    assert brama_system.status("svc").state is HALF_OPEN
    with pytest.raises(OSError):
        asyncio.run(call())  # the trial reached the function, and failed
    status = brama_system.status("svc")
    assert (status.state, status.failure_count) == (OPEN, 4)


# --- exclusions --------------------------------------------------------------------------


class LookupTrouble(LookupError):
    pass


def test_excluded_classes_and_their_subclasses_are_not_failures(brama_system: Brama,
                                                                body: Calls) -> None:
    """pybreaker test_excluded_exceptions; purgatory test_circuitbreaker_can_exclude_exception:
    an excluded class (and its subclasses) is re-raised but not counted. Difference: pybreaker
    and purgatory count an excluded exception as a success (the count goes back to 0); Brama
    counts it as nothing, so a run of failures interrupted by a 404 still opens the circuit."""
    call = circuit_breaker("svc", system=brama_system, ignore_exceptions=LookupError)(body)
    body.failing = NotImplementedError()
    with pytest.raises(NotImplementedError):
        call()
    for excluded in (LookupError(), KeyError("k"), LookupTrouble()):
        body.failing = excluded
        with pytest.raises(type(excluded)):
            call()
        assert brama_system.status("svc").failure_count == 1
    assert brama_system.status("svc").total_successes == 0


class DummyError(Exception):
    def __init__(self, val: int | None = None) -> None:
        super().__init__(val)
        self.val = val


def test_excluded_predicates_mixed_with_classes(brama_system: Brama, body: Calls) -> None:
    """pybreaker test_excluded_callable_exceptions and test_excluded_callable_and_types_exceptions;
    aiobreaker test_excluded_exceptions (exclude=[LookupError, lambda e: ... e.val == 3])."""
    call = circuit_breaker("svc", system=brama_system, ignore_exceptions=(
        LookupError, lambda e: isinstance(e, DummyError) and e.val == 3))(body)
    outcomes = []
    for error in (LookupError(), DummyError(), KeyError(), DummyError(val=3), DummyError(val=4)):
        body.failing = error
        with pytest.raises(type(error)):
            call()
        outcomes.append(brama_system.status("svc").total_failures)
    assert outcomes == [0, 1, 1, 1, 2]


class HTTPError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"{status_code} Error")
        self.status_code = status_code


def test_a_predicate_excludes_client_errors_of_one_class(brama_system: Brama) -> None:
    """purgatory test_circuitbreaker_can_exclude_function, exclude=[(HTTPError, lambda exc:
    exc.status_code < 500)]: a 404 is the caller's problem, a 503 the dependency's, anything
    else counts. Brama's predicate takes the exception alone, so it checks the class itself."""
    client_error = guard("my", system=brama_system, ignore_exceptions=(
        lambda exc: isinstance(exc, HTTPError) and exc.status_code < 500,))
    for error, failures in ((HTTPError(503), 1), (HTTPError(404), 1), (RuntimeError(), 2)):
        with pytest.raises(type(error)), client_error:
            raise error
        assert brama_system.status("my").total_failures == failures


def test_only_the_expected_exception_counts(brama_system: Brama, body: Calls) -> None:
    """circuitbreaker test_breaker_expected_exception_is_predicate and
    test_breaker_expected_exception_is_custom_exception: circuitbreaker names what *counts*
    (expected_exception); Brama names what is *ignored*, so the predicate is the negation."""
    call = circuit_breaker("svc", system=brama_system, ignore_exceptions=(
        lambda e: not (isinstance(e, DummyError) and e.val == 4),))(body)
    for error in (DummyError(2), Exception(), DummyError(4)):
        body.failing = error
        with pytest.raises(type(error)):
            call()
    assert brama_system.status("svc").total_failures == 1


def test_the_exclusions_belong_to_the_guard_not_to_the_connection(brama_system: Brama) -> None:
    """purgatory test_circuitbreaker_factory_context_exclude_exceptions_with_context: the same
    circuit through a second context manager with another exclude list; a ValueError the first
    one ignores counts through the second, and opens the circuit."""
    lenient = guard("my", system=brama_system, max_attempts=1, ignore_exceptions=ValueError)
    strict = guard("my", system=brama_system, max_attempts=1, ignore_exceptions=RuntimeError)
    with pytest.raises(ValueError), lenient:
        raise ValueError(42)
    assert brama_system.status("my").state is CLOSED
    with pytest.raises(ValueError), strict:
        raise ValueError(42)
    assert brama_system.status("my").state is OPEN


# --- refusals: remaining time, fallbacks --------------------------------------------------


def test_the_refusal_says_how_long_is_left_and_the_last_failure(
    brama_system: Brama, brama_clock: FakeClock, body: Calls,
) -> None:
    """circuitbreaker test_circuitbreaker_error__str__ ('Circuit "Foobar" OPEN until ...
    (0 failures, 30 sec remaining) (last_failure: Exception())'); pybreaker
    test_traceback_in_circuitbreaker_error (the refusal shows what tripped the circuit)."""
    call = circuit_breaker("Foobar", system=brama_system, max_attempts=1, expiry=30)(body)
    body.failing = NotImplementedError("upstream")
    with pytest.raises(NotImplementedError):
        call()
    with pytest.raises(CircuitOpenError) as info:
        call()
    assert str(info.value) == ("circuit of connection 'Foobar' is open: call rejected; retry in "
                               "30.0 s; last failure: NotImplementedError('upstream')")


def test_the_remaining_time_is_accurate_enough_to_wait_for(
    brama_system: Brama, brama_clock: FakeClock, body: Calls,
) -> None:
    """aiobreaker test_successful_after_wait ("it should accurately report the time needed to
    wait": sleep for the error's time_remaining, then the call goes through, once);
    circuitbreaker test_circuitbreaker_recover_half_open (0 < open_remaining <= timeout)."""
    call = circuit_breaker("svc", system=brama_system, max_attempts=1, expiry=1)(body)
    body.failing = OSError()
    with pytest.raises(OSError):
        call()
    brama_clock.advance(0.25)
    with pytest.raises(CircuitOpenError) as info:
        call()
    open_until = info.value.status.open_until
    assert open_until is not None
    remaining = open_until - brama_clock.time()
    assert 0 < remaining <= 1 and remaining == pytest.approx(0.75)
    brama_clock.advance(remaining)
    body.failing = None
    count = body.count
    assert call()[0] == "ok"
    assert body.count == count + 1
    assert brama_system.status("svc").state is CLOSED


def test_the_fallback_gets_the_arguments_and_the_function_is_not_called(
    brama_system: Brama, body: Calls,
) -> None:
    """circuitbreaker test_circuitbreaker_should_call_fallback_function_if_open,
    test_circuitbreaker_should_not_call_function_if_open and
    test_circuitbreaker_call_fallback_function_with_parameters."""
    fallbacks: list[tuple[Any, Any]] = []

    def fallback(*args: Any, **kwargs: Any) -> str:
        fallbacks.append((args, kwargs))
        return "from the fallback"

    call = circuit_breaker("WithFallback", system=brama_system, fallback=fallback)(body)
    brama_system.register("WithFallback")
    brama_system.open_circuit("WithFallback")
    assert call("test2", test="test") == "from the fallback"
    assert fallbacks == [(("test2",), {"test": "test"})]
    assert body.count == 0


def test_an_async_fallback_is_awaited_for_an_async_function(brama_system: Brama) -> None:
    """circuitbreaker's fallback tests run for async functions too (resolve_call awaits)."""

    async def fetch(key: str) -> str:
        raise AssertionError("not called while open")

    async def cached(key: str) -> str:
        return f"cached {key}"

    call = circuit_breaker("svc", system=brama_system, fallback=cached)(fetch)
    brama_system.register("svc")
    brama_system.open_circuit("svc")
    assert asyncio.run(call("k")) == "cached k"


# --- half-open trials ---------------------------------------------------------------------


def test_a_trial_that_fails_opens_again_and_one_that_succeeds_closes(
    brama_system: Brama, body: Calls,
) -> None:
    """pybreaker test_failed_call_when_halfopen and test_successful_call_when_halfopen;
    aiobreaker test_failed_call_when_half_open and test_successful_call_when_half_open. In
    pybreaker the failing trial raises CircuitBreakerError; Brama raises the trial's own
    exception, as for any call that reached the function."""
    call = circuit_breaker("svc", system=brama_system)(body)
    brama_system.register("svc")
    set_state("svc", "half_open", system=brama_system)
    body.failing = NotImplementedError()
    with pytest.raises(NotImplementedError):
        call()
    status = brama_system.status("svc")
    assert (status.state, status.failure_count) == (OPEN, 1)
    set_state("svc", "half_open", system=brama_system)
    body.failing = None
    assert call()[0] == "ok"
    status = brama_system.status("svc")
    assert (status.state, status.failure_count) == (CLOSED, 0)


def test_after_the_timeout_one_success_closes_and_the_function_runs_once(
    brama_system: Brama, brama_clock: FakeClock, body: Calls,
) -> None:
    """pybreaker test_successful_after_timeout ("the successful function should only be called
    once"); aiobreaker test_successful_after_timeout; circuitbreaker
    test_circuitbreaker_reopens_after_successful_calls (closed and reset, then more successes)."""
    call = circuit_breaker("svc", system=brama_system, max_attempts=3, expiry=1)(body)
    body.failing = NotImplementedError()
    for _ in range(3):
        with pytest.raises(NotImplementedError):
            call()
    body.failing = None
    with pytest.raises(CircuitOpenError):
        call()  # the dependency is back, but the circuit has not waited long enough
    assert body.count == 3
    brama_clock.advance(1)
    assert call()[0] == "ok"
    assert body.count == 4
    status = brama_system.status("svc")
    assert (status.state, status.failure_count) == (CLOSED, 0)
    for _ in range(3):
        call()
    assert brama_system.status("svc").total_successes == 4


def test_success_threshold_needs_that_many_trial_successes(
    brama_system: Brama, brama_clock: FakeClock, body: Calls,
) -> None:
    """pybreaker test_success_threshold_multiple_successes_required and
    test_success_threshold_failure_resets_counter (a failure among the trials opens again, and
    the next half-open period starts its count from zero). One trial at a time, as pybreaker."""
    call = circuit_breaker("svc", system=brama_system, max_attempts=3, expiry=1,
                           success_threshold=3)(body)
    body.failing = NotImplementedError()
    for _ in range(3):
        with pytest.raises(NotImplementedError):
            call()
    brama_clock.advance(1)
    body.failing = None
    call()
    call()
    assert brama_system.status("svc").state is HALF_OPEN
    body.failing = NotImplementedError()
    with pytest.raises(NotImplementedError):
        call()
    assert brama_system.status("svc").state is OPEN
    brama_clock.advance(1)
    body.failing = None
    states = []
    for _ in range(3):
        call()
        states.append(brama_system.status("svc").state)
    assert states == [HALF_OPEN, HALF_OPEN, CLOSED]


def test_a_manual_close(brama_system: Brama, body: Calls) -> None:
    """pybreaker test_close; aiobreaker test_close: an open circuit closed by hand, the count
    back to 0."""
    call = circuit_breaker("svc", system=brama_system, max_attempts=3)(body)
    body.failing = NotImplementedError()
    for _ in range(3):
        with pytest.raises(NotImplementedError):
            call()
    brama_system.close_circuit("svc")
    status = brama_system.status("svc")
    assert (status.state, status.failure_count) == (CLOSED, 0)


# --- listeners -> subscriptions -----------------------------------------------------------


def test_every_transition_reaches_a_subscription(brama_system: Brama) -> None:
    """pybreaker test_transition_events; aiobreaker test_listener.test_transition_events:
    open, half_open and close by hand give closed->open, open->half-open, half-open->closed."""
    brama_system.register("svc")
    with brama_system.subscribe(events=[EventType.STATE_CHANGE]) as sub:
        brama_system.open_circuit("svc")
        brama_system.reset_expiry("svc")
        brama_system.close_circuit("svc")
        flush_events(system=brama_system)
        assert transitions(drain(sub)) == [("closed", "open"), ("open", "half_open"),
                                           ("half_open", "closed")]


def test_each_call_outcome_reaches_a_handler_in_order(brama_system: Brama, body: Calls) -> None:
    """pybreaker test_call_events; aiobreaker test_listener.test_call_events (a listener
    hears "-success-failure"): a handler subscription hears SUCCESS then FAILURE, with the
    failure's reason (the listener's `exc`)."""
    heard: list[tuple[str, Any]] = []
    brama_system.subscribe(handler=lambda e: heard.append((e.event.value, e.data["reason"])),
                           events=[EventType.SUCCESS, EventType.FAILURE], connection="svc")
    call = circuit_breaker("svc", system=brama_system)(body)
    call()
    body.failing = NotImplementedError("x")
    with pytest.raises(NotImplementedError):
        call()
    assert wait_until(lambda: len(heard) == 2)
    assert heard == [("success", None), ("failure", "NotImplementedError('x')")]


def test_a_listener_hears_failures_with_counts_then_the_opening(
    brama_system: Brama, brama_clock: FakeClock,
) -> None:
    """purgatory test_circuitbreaker_factory_add_listener (created, failed 1, failed 2,
    state_changed opened; after the ttl a failing call: half-opened then opened; after the ttl
    again a success: half-opened, recovered, closed) and
    test_circuitbreaker_raise_state_changed_event (no state change after the first failure of
    two). Brama half-opens on its own timer, so half-open comes when the ttl ends, not with
    the next call."""
    with brama_system.subscribe(connection="my") as sub:
        my = guard("my", system=brama_system, max_attempts=2, expiry=0.1)

        def boom() -> None:
            with pytest.raises(RuntimeError), my:
                raise RuntimeError("Boom")

        boom()
        flush_events(system=brama_system)
        first = drain(sub)
        assert [e.event for e in first] == [EventType.CONNECTION_REGISTERED,
                                            EventType.REGISTRATION, EventType.FAILURE]
        assert first[-1].data["failure_count"] == 1
        boom()
        flush_events(system=brama_system)
        second = drain(sub)
        assert [e.data["failure_count"] for e in second if e.event is EventType.FAILURE] == [2]
        assert transitions(second) == [("closed", "open")]
        brama_clock.advance(0.1)
        boom()
        flush_events(system=brama_system)
        assert transitions(drain(sub)) == [("open", "half_open"), ("half_open", "open")]
        brama_clock.advance(0.1)
        with my:
            pass
        flush_events(system=brama_system)
        assert transitions(drain(sub)) == [("open", "half_open"), ("half_open", "closed")]


def test_async_code_reads_the_events_on_its_loop(brama_system: Brama) -> None:
    """aiobreaker's listener tests, for asyncio code: the events read with `async for`."""

    async def main() -> list[EventType]:
        sub = brama_system.subscribe(events=[EventType.FAILURE, EventType.CIRCUIT_OPENED])

        @circuit_breaker("svc", system=brama_system, max_attempts=1)
        async def fail() -> None:
            raise DummyError()

        with pytest.raises(DummyError):
            await fail()
        flush_events(system=brama_system)
        sub.close()
        return [event.event async for event in sub]

    assert sorted(asyncio.run(main())) == sorted([EventType.FAILURE, EventType.CIRCUIT_OPENED])


# --- the decorator itself ---------------------------------------------------------------


def test_the_decorator_keeps_the_functions_identity(brama_system: Brama) -> None:
    """pybreaker test_decorator; aiobreaker test_decorator and test_decorator_async;
    circuitbreaker test_circuitbreaker_wrapper_matches_function_type. Difference: pybreaker
    and circuitbreaker also wrap generators; Brama refuses them (their outcome is only known
    when the iteration ends), with a TypeError saying so."""

    @circuit_breaker("svc", system=brama_system)
    def suc(value: Any) -> Any:
        "Docstring"
        return value

    @circuit_breaker("svc", system=brama_system)
    async def asuc(value: Any) -> Any:
        "Async docstring"
        return value

    assert (suc.__name__, suc.__doc__, inspect.iscoroutinefunction(suc)) == (
        "suc", "Docstring", False)
    assert (asuc.__name__, asuc.__doc__, inspect.iscoroutinefunction(asuc)) == (
        "asuc", "Async docstring", True)

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        circuit_breaker("svc", system=brama_system)(gen)


def test_a_bare_decorator_needs_no_name(brama_system: Brama) -> None:
    """circuitbreaker test_circuit_decorator_without_args (`@circuit` on a function) and
    test_circuitbreaker_unnamed__str__ (an unnamed breaker's name): Brama names it
    `module.qualname`."""

    @circuit_breaker
    def function() -> str:
        return "ok"

    assert function() == "ok"
    assert [s.identifier for s in brama_system.connections()] == [
        f"{__name__}.test_a_bare_decorator_needs_no_name.<locals>.function"]


def test_calls_with_arguments_and_keywords(brama_system: Brama) -> None:
    """pybreaker test_call_with_args / test_call_with_kwargs and their async versions;
    aiobreaker test_call_with_args_async / test_call_with_kwargs_async."""

    @circuit_breaker("svc", system=brama_system)
    def func(arg1: Any, arg2: Any, **kwargs: Any) -> Any:
        return arg1, arg2, kwargs

    @circuit_breaker("svc", system=brama_system)
    async def afunc(arg1: Any, arg2: Any, **kwargs: Any) -> Any:
        return arg1, arg2, kwargs

    assert func(42, "abc", a=1) == (42, "abc", {"a": 1})
    assert asyncio.run(afunc(42, "abc", b=2)) == (42, "abc", {"b": 2})
