"""Issue 13, "the decorator carries the breaker": what a user of the decorator and the guard
can rely on, each item of the issue as tests (durations and messages are in
tests/test_ergonomics_options.py, subscriptions in tests/test_ergonomics_events.py).

1. options on `circuit_breaker(...)` and `guard(...)`, and the name of a bare decorator;
2. `ignore_exceptions` with classes and predicates, in every call style;
4. what a refusal (`CircuitOpenError`) says, and the status fields behind it;
6. the `brama_system` fixture as the default system (an inner pytest run).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from brama import (
    Brama,
    CircuitOpenError,
    CircuitState,
    ConfigError,
    NotFoundError,
    circuit_breaker,
    guard,
)
from brama.testing import FakeClock

pytest_plugins = ["pytester"]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
STYLES = ["decorator", "async decorator", "guard", "async guard"]


def through(style: str, system: Brama | None, identifier: str,
            **arguments: Any) -> Callable[[BaseException | None], Any]:
    """One call on `identifier` made in `style` (the decorator or the guard, sync or async):
    `call(error)` raises `error` inside the guarded code, `call(None)` returns "ok"."""

    def body(error: BaseException | None) -> str:
        if error is not None:
            raise error
        return "ok"

    if style == "decorator":
        return circuit_breaker(identifier, system=system, **arguments)(body)
    if style == "async decorator":

        async def coroutine(error: BaseException | None) -> str:
            return body(error)

        wrapped = circuit_breaker(identifier, system=system, **arguments)(coroutine)
        return lambda error: asyncio.run(wrapped(error))
    entry = guard(identifier, system=system, **arguments)
    if style == "guard":

        def with_guard(error: BaseException | None) -> str:
            with entry:
                return body(error)

        return with_guard
    assert style == "async guard", style

    async def async_with_guard(error: BaseException | None) -> str:
        async with entry:
            return body(error)

    return lambda error: asyncio.run(async_with_guard(error))


def half_open(system: Brama, identifier: str) -> None:
    """Put a registered connection in half-open, every trial permit free."""
    system.open_circuit(identifier)
    system.reset_expiry(identifier)
    status = system.status(identifier)
    assert (status.state, status.half_open_permits_in_use) == (HALF_OPEN, 0)


# === 1. options on the decorator and the guard ===============================================


def test_decorator_options_register_the_connection_on_first_use_with_them(
    brama_system: Brama,
) -> None:
    @circuit_breaker("payments", system=brama_system, max_attempts=3, expiry=30,
                     expiry_strategy="progressive", max_expiry=240, half_open_max_calls=2,
                     success_threshold=2)
    def charge(fail: bool) -> str:
        if fail:
            raise ConnectionError("refused")
        return "charged"

    with pytest.raises(NotFoundError):
        brama_system.status("payments")  # nothing is registered at decoration time
    assert charge(False) == "charged"
    status = brama_system.status("payments")
    assert (status.max_attempts, status.expiry, status.expiry_strategy, status.initial_expiry,
            status.max_expiry, status.half_open_max_calls, status.success_threshold) == (
        3, 30.0, "progressive", 30.0, 240.0, 2, 2)
    assert status.backoff_factor == 2.0  # not given: the system's value
    for _ in range(3):
        with pytest.raises(ConnectionError):
            charge(True)
    assert brama_system.status("payments").state is OPEN  # max_attempts=3 is in force


def test_guard_options_register_the_connection_on_first_entry_with_them(
    brama_system: Brama, brama_clock: FakeClock,
) -> None:
    inventory = guard("inventory", scope="eu", system=brama_system, max_attempts=2, expiry=5)
    with pytest.raises(NotFoundError):
        brama_system.status("inventory", scope="eu")
    for _ in range(2):
        with pytest.raises(OSError), inventory:
            raise OSError("disk")
    status = brama_system.status("inventory", scope="eu")
    assert (status.max_attempts, status.expiry, status.state) == (2, 5.0, OPEN)
    brama_clock.advance(5)
    assert brama_system.status("inventory", scope="eu").state is HALF_OPEN


def test_the_same_options_given_again_anywhere_are_fine(brama_system: Brama) -> None:
    import datetime

    brama_system.register("db", max_attempts=3, expiry=30, type="postgres")

    @circuit_breaker("db", system=brama_system, max_attempts=3, expiry=30.0)
    def first() -> int:
        return 1

    @circuit_breaker("db", system=brama_system, expiry=datetime.timedelta(seconds=30))
    def second() -> int:  # a subset of the options, a duration as a timedelta: the same
        return 2

    async def third() -> int:
        return 3

    third_wrapped = circuit_breaker("db", system=brama_system, max_attempts=3)(third)
    assert (first(), second(), asyncio.run(third_wrapped())) == (1, 2, 3)
    with guard("db", system=brama_system, max_attempts=3, expiry=30):
        pass
    status = brama_system.status("db")
    assert (status.type, status.max_attempts, status.expiry, status.total_successes) == (
        "postgres", 3, 30.0, 4)


def test_two_decorators_with_the_same_options_share_one_connection(brama_system: Brama) -> None:
    @circuit_breaker("search", system=brama_system, max_attempts=2)
    def query() -> None:
        raise TimeoutError("slow")

    @circuit_breaker("search", system=brama_system, max_attempts=2)
    def suggest() -> str:
        return "suggested"

    with pytest.raises(TimeoutError):
        query()
    assert suggest() == "suggested"  # a success: the count goes back to 0
    with pytest.raises(TimeoutError):
        query()
    with pytest.raises(TimeoutError):
        query()
    with pytest.raises(CircuitOpenError):
        suggest()  # the second decorator sees the circuit the first one opened


def test_different_explicit_options_name_each_one_and_both_values(brama_system: Brama) -> None:
    brama_system.register("pay", max_attempts=3, expiry=30, half_open_max_calls=2)
    calls: list[int] = []

    @circuit_breaker("pay", system=brama_system, max_attempts=4, expiry=31,
                     half_open_max_calls=2)
    def charge() -> None:
        calls.append(1)

    with pytest.raises(ConfigError) as info:
        charge()
    assert str(info.value) == (
        "connection 'pay' is already registered with other options: max_attempts=3 where 4 "
        "is asked; expiry=30.0 where 31.0 is asked. Give the same options everywhere, or "
        "configure() the connection"
    )
    assert calls == []  # refused before the call
    status = brama_system.status("pay")
    assert (status.max_attempts, status.expiry, status.total_successes) == (3, 30.0, 0)


def test_a_guard_with_different_options_is_refused_on_entry(brama_system: Brama) -> None:
    with guard("cache", system=brama_system, success_threshold=2):
        pass
    ran: list[int] = []
    with pytest.raises(ConfigError, match=r"success_threshold=2 where 3 is asked") as info, \
            guard("cache", system=brama_system, success_threshold=3):
        ran.append(1)
    assert "max_attempts" not in str(info.value)  # only the differing option is named
    assert ran == []
    assert brama_system.status("cache").success_threshold == 2


def test_an_option_the_registration_left_to_the_system_is_named_as_not_set(
    brama_system: Brama,
) -> None:
    """A registration without `max_attempts` follows the system's value (and a later global
    `configure`); a decorator that pins it is refused, whatever the system's value is."""
    brama_system.register("mail")

    @circuit_breaker("mail", system=brama_system, max_attempts=10)
    def send() -> None:
        pass

    with pytest.raises(ConfigError) as info:
        send()
    assert "max_attempts is not set (the system's value applies) where 10 is asked" in str(
        info.value)


@pytest.mark.parametrize("make", [
    lambda s: circuit_breaker("db", system=s, max_attempt=3),
    lambda s: circuit_breaker(system=s, max_attempt=3)(len),
    lambda s: guard("db", system=s, max_attempt=3),
], ids=["decorator", "decorator without identifier", "guard"])
def test_a_mistyped_option_is_refused_at_once_with_a_did_you_mean(
    brama_system: Brama, make: Callable[[Brama], Any],
) -> None:
    with pytest.raises(ConfigError) as info:
        make(brama_system)
    message = str(info.value)
    assert message.startswith("unknown option 'max_attempt' (from the decorator or guard) "
                              "(did you mean 'max_attempts'?); accepted options: ")
    assert "cleanup_interval" not in message  # a system option is not a connection option
    assert brama_system.connections() == []


def test_a_system_option_is_not_a_decorator_option(brama_system: Brama) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'cleanup_interval'"):
        circuit_breaker("db", system=brama_system, cleanup_interval=5)


class PaymentsClient:
    @circuit_breaker
    def charge(self, amount: int) -> int:
        return amount

    @circuit_breaker()
    async def refund(self, amount: int) -> int:
        return -amount


@circuit_breaker(max_attempts=2)
def module_level_lookup(key: str) -> str:
    return key


def test_a_bare_decorator_names_the_connection_module_and_qualname(brama_system: Brama) -> None:
    @circuit_breaker
    def fetch() -> str:
        return "fetched"

    assert fetch() == "fetched"
    assert PaymentsClient().charge(5) == 5
    assert asyncio.run(PaymentsClient().refund(5)) == -5
    assert module_level_lookup("k") == "k"
    names = sorted(status.identifier for status in brama_system.connections())
    assert names == sorted([
        f"{__name__}.test_a_bare_decorator_names_the_connection_module_and_qualname"
        ".<locals>.fetch",
        f"{__name__}.PaymentsClient.charge",
        f"{__name__}.PaymentsClient.refund",
        f"{__name__}.module_level_lookup",
    ])
    assert __name__ == "tests.test_ergonomics"  # the module part is the dotted module name
    assert brama_system.status(f"{__name__}.module_level_lookup").max_attempts == 2
    assert brama_system.status(f"{__name__}.PaymentsClient.charge").max_attempts == 10


# === 2. ignore_exceptions: classes and predicates ============================================


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class LookupErrorChild(KeyError):
    """A subclass of an ignored class is ignored too."""


def is_client_error(exc: BaseException) -> bool:
    return isinstance(exc, HTTPError) and 400 <= exc.status < 500


@pytest.mark.parametrize("style", STYLES)
def test_classes_and_predicates_mixed_in_one_tuple(brama_system: Brama, style: str) -> None:
    call = through(style, brama_system, "api", ignore_exceptions=(KeyError, is_client_error))
    with pytest.raises(HTTPError):
        call(HTTPError(503))
    assert brama_system.status("api").failure_count == 1
    for error in (HTTPError(404), KeyError("k"), LookupErrorChild("sub")):
        with pytest.raises(type(error)) as info:
            call(error)
        assert info.value is error  # re-raised unchanged
    status = brama_system.status("api")
    # Ignored counts as nothing: neither a failure nor a success (failure_count stays at 1).
    assert (status.failure_count, status.total_failures, status.total_successes) == (1, 1, 0)
    with pytest.raises(ValueError):
        call(ValueError("counted"))
    assert brama_system.status("api").total_failures == 2


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("ignored", [KeyError("k"), HTTPError(404)], ids=["class", "predicate"])
def test_an_ignored_exception_in_half_open_returns_the_trial_permit_at_once(
    brama_system: Brama, style: str, ignored: BaseException,
) -> None:
    brama_system.register("api", expiry=600)
    call = through(style, brama_system, "api", ignore_exceptions=(KeyError, is_client_error))
    half_open(brama_system, "api")
    with pytest.raises(type(ignored)):
        call(ignored)
    status = brama_system.status("api")
    assert (status.state, status.half_open_permits_in_use) == (HALF_OPEN, 0)
    assert (status.total_failures, status.total_successes, status.rejected_calls) == (0, 0, 0)
    assert call(None) == "ok"  # the one permit is free again, long before its 600 s lease
    assert brama_system.status("api").state is CLOSED


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("raised", [RuntimeError("bug in the predicate"), SystemExit(3)],
                         ids=["Exception", "SystemExit"])
def test_a_predicate_that_raises_is_no_match_and_never_replaces_the_callers_error(
    brama_system: Brama, caplog: pytest.LogCaptureFixture, style: str, raised: BaseException,
) -> None:
    """Decided from brama/_breaker.py `Ignore`: a predicate is user code; whatever it raises is
    logged (`ignore_predicate_raised`) and counts as "does not match", so the caller's own
    exception is reported as a failure and re-raised unchanged, and the next predicates of the
    tuple are still asked."""
    caplog.set_level(logging.ERROR, logger="brama")

    def broken(exc: BaseException) -> bool:
        raise raised

    call = through(style, brama_system, "api", ignore_exceptions=(broken, is_client_error))
    error = ConnectionError("refused")
    with pytest.raises(ConnectionError) as info:
        call(error)
    assert info.value is error
    assert brama_system.status("api").total_failures == 1
    with pytest.raises(HTTPError):
        call(HTTPError(404))  # `broken` raised again, and the next predicate matched
    status = brama_system.status("api")
    assert (status.total_failures, status.failure_count) == (1, 1)
    logged = [r.getMessage() for r in caplog.records if "ignore_predicate_raised" in r.getMessage()]
    assert len(logged) == 2, logged
    assert repr(raised) in logged[0]
    assert call(None) == "ok"  # the breaker is unharmed


def test_a_predicate_receives_the_exception_itself(brama_system: Brama) -> None:
    seen: list[BaseException] = []

    def record(exc: BaseException) -> bool:
        seen.append(exc)
        return False

    call = through("decorator", brama_system, "api", ignore_exceptions=record)
    error = OSError("x")
    with pytest.raises(OSError):
        call(error)
    assert seen == [error] and seen[0] is error


# === 4. what a refusal says ==================================================================


def test_an_open_circuit_says_when_it_lets_calls_through_and_why_it_opened(
    brama_system: Brama, brama_clock: FakeClock,
) -> None:
    @circuit_breaker("payments", system=brama_system, max_attempts=1, expiry=30)
    def charge() -> None:
        raise TimeoutError("no answer")

    with pytest.raises(TimeoutError):
        charge()
    opened_at = brama_clock.time()
    brama_clock.advance(2.5)
    with pytest.raises(CircuitOpenError) as info:
        charge()
    error = info.value
    assert str(error) == ("circuit of connection 'payments' is open: call rejected; "
                          "retry in 27.5 s; last failure: TimeoutError('no answer')")
    assert error.state is OPEN
    status = error.status
    assert (status.state, status.opened_at, status.open_until) == (OPEN, opened_at,
                                                                   opened_at + 30.0)
    assert (status.last_failure_reason, status.total_openings, status.rejected_calls) == (
        "TimeoutError('no answer')", 1, 1)
    brama_clock.advance(10)
    assert "retry in 27.5 s" in str(error)  # the message is of the moment of the refusal
    with pytest.raises(CircuitOpenError, match=r"retry in 17\.5 s"):
        charge()


def test_the_message_names_the_scope_and_pickles(brama_system: Brama,
                                                brama_clock: FakeClock) -> None:
    brama_system.register("db", scope="eu", expiry=12)
    brama_system.open_circuit("db", scope="eu", reason="maintenance")
    brama_clock.advance(2)
    with pytest.raises(CircuitOpenError) as info, guard("db", scope="eu", system=brama_system):
        pass
    text = "circuit of connection 'db' in scope 'eu' is open: call rejected; retry in 10.0 s"
    assert str(info.value) == text  # a manual reason is no failure: no "last failure"
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == text and copy.status.scope == "eu" and copy.state is OPEN


def test_half_open_says_trial_calls_are_in_progress_with_the_permit_counts(
    brama_system: Brama,
) -> None:
    brama_system.register("api", half_open_max_calls=2)
    brama_system.failure("api", reason="HTTP 503")
    half_open(brama_system, "api")
    first, second = brama_system.acquire("api"), brama_system.acquire("api")
    assert first is not None and second is not None and first.trial and second.trial
    assert brama_system.status("api").half_open_permits_in_use == 2

    @circuit_breaker("api", system=brama_system)
    def call() -> str:
        return "not called"

    with pytest.raises(CircuitOpenError) as info:
        call()
    assert str(info.value) == ("circuit of connection 'api' is half_open: call rejected; trial "
                               "calls in progress (2 of 2 permits taken); last failure: HTTP 503")
    assert info.value.state is HALF_OPEN
    assert info.value.status.half_open_permits_in_use == 2
    assert info.value.status.open_until is None  # not open: nothing to wait for
    first.release()
    assert brama_system.status("api").half_open_permits_in_use == 1
    assert call() == "not called"  # the freed permit goes to this call, whose success closes
    second.release()
    status = brama_system.status("api")
    assert (status.state, status.half_open_permits_in_use) == (CLOSED, 0)


def test_with_expiry_disabled_the_message_says_it_waits_for_a_manual_action(
    brama_system: Brama, brama_clock: FakeClock,
) -> None:
    brama_system.register("legacy", max_attempts=1)
    brama_system.failure("legacy", reason="ConnectionResetError()")
    brama_system.disable_expiry("legacy")
    brama_clock.advance(3600)
    with pytest.raises(CircuitOpenError) as info, guard("legacy", system=brama_system):
        pass
    assert str(info.value) == (
        "circuit of connection 'legacy' is open: call rejected; its expiry is disabled: it "
        "stays open until a manual action (close_circuit, reset_circuit, reset_expiry or "
        "set_expiry); last failure: ConnectionResetError()"
    )
    status = info.value.status
    assert (status.expiry_disabled, status.open_until, status.state) == (True, None, OPEN)
    brama_system.set_expiry("legacy", 7200)  # one of the manual actions it names
    status = brama_system.status("legacy")
    assert status.expiry_disabled is False
    assert status.open_until == status.opened_at + 7200


def test_total_openings_counts_every_opening_and_retry_follows_the_backoff(
    brama_system: Brama, brama_clock: FakeClock,
) -> None:
    call = through("decorator", brama_system, "flaky", max_attempts=1, expiry=10,
                   expiry_strategy="progressive")
    with pytest.raises(OSError):
        call(OSError("1"))
    brama_clock.advance(10)
    with pytest.raises(OSError):
        call(OSError("2"))  # the half-open trial fails: open again, for 20 s
    with pytest.raises(CircuitOpenError, match=r"retry in 20\.0 s; last failure: OSError\('2'\)"):
        call(None)
    status = brama_system.status("flaky")
    assert (status.total_openings, status.expiry) == (2, 20.0)


# === 6. the brama_system fixture is the default system ======================================

INNER_DEFAULT = '''
import pytest

import brama
from brama import CircuitState, circuit_breaker

SEEN = []


@circuit_breaker(max_attempts=1, expiry=10.0)
def fragile(fail=False):
    if fail:
        raise OSError("down")
    return "ok"


NAME = __name__ + ".fragile"


def test_0_an_outer_default_exists():
    brama.shutdown()
    outer = brama.default()
    outer.register("outer-marker")
    SEEN.append(outer)


def test_1_the_fixture_is_the_default(brama_system, brama_clock):
    assert brama.default() is brama_system
    assert brama.connections() == []  # the outer default's connections are not visible
    with pytest.raises(OSError):
        fragile(fail=True)  # the decorator without system= uses the fixture's system
    assert brama.status(NAME).state is CircuitState.OPEN
    assert brama_system.status(NAME).max_attempts == 1
    with pytest.raises(brama.CircuitOpenError, match="retry in 10.0 s"):
        fragile()
    brama_clock.advance(10.0)  # the fixture's clock drives the decorated function's circuit
    assert brama_system.status(NAME).state is CircuitState.HALF_OPEN
    assert fragile() == "ok"
    assert brama.status(NAME).state is CircuitState.CLOSED
    brama.register("leaky")
    SEEN.append(brama_system)


def test_2_the_previous_default_is_back_and_nothing_leaked():
    outer, inner = SEEN
    assert brama.default() is outer and outer.running
    assert not inner.running
    assert [s.identifier for s in brama.connections()] == ["outer-marker"]
    assert fragile() == "ok"  # registered again, on the outer system, from scratch
    status = brama.status(NAME)
    assert (status.state, status.total_failures, status.total_successes) == (
        CircuitState.CLOSED, 0, 1)


def test_3_a_failing_test_with_the_fixture(brama_system):
    SEEN.append(brama_system)
    fragile(fail=True)


def test_4_restored_after_a_failure_too():
    outer = SEEN[0]
    assert brama.default() is outer and not SEEN[2].running
    assert brama.status(NAME).total_failures == 0


def test_5_no_default_any_more():
    brama.shutdown()


def test_6_the_fixture_on_no_default(brama_system):
    assert brama.default() is brama_system
    SEEN.append(brama_system)


def test_7_after_it_a_fresh_default_starts_on_first_use():
    fresh = brama.default()
    assert fresh is not SEEN[-1] and not SEEN[-1].running and fresh.running
    assert fresh.connections() == []
    brama.shutdown()
'''


def test_the_fixture_system_is_the_default_and_nothing_leaks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner_default=INNER_DEFAULT)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_inner_default.py::test_3_a_failing_test_with*"])
