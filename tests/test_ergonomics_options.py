"""Issue 13, durations and messages (the other items are in tests/test_ergonomics.py):

3. every duration option and argument takes a `datetime.timedelta`, and a zero or negative one
   is refused with a message naming the argument;
7. an option error names the option, the value given, where it came from and what is accepted,
   in the user's terms (tests/test_config.py checks the option layers one by one; these go
   through the public entry points).
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import brama
from brama import (
    Brama,
    CircuitState,
    ConfigError,
    ConfigWarning,
    EventType,
    circuit_breaker,
    guard,
)
from brama.testing import FakeClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BRAMA_* variable of the outer environment leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("BRAMA_"):
            monkeypatch.delenv(name)


@pytest.fixture
def default_system() -> Iterator[None]:
    brama.shutdown()
    yield
    brama.shutdown()


def slow_rule(**options: Any) -> dict[str, Any]:
    """Options with which one slow call (out of one) opens the circuit."""
    return {"slow_call_rate_threshold": 1.0, "minimum_calls": 1, "window_size": 1, **options}


# === 3. durations as timedelta ===============================================================


def test_start_options_take_timedeltas(brama_clock: FakeClock) -> None:
    with Brama(clock=brama_clock, expiry=timedelta(seconds=30),
               initial_expiry=timedelta(seconds=5), max_expiry=timedelta(minutes=2),
               hibernate_after=timedelta(0), slow_call_duration=timedelta(milliseconds=1500),
               cleanup_interval=timedelta(seconds=2), inactive_threshold=timedelta(seconds=5),
               max_seconds=timedelta(seconds=9), **slow_rule()) as system:
        status = system.register("db")
        assert (status.expiry, status.initial_expiry, status.max_expiry) == (30.0, 5.0, 120.0)
        system.success("db", duration=1.49)
        assert system.status("db").state is CLOSED  # 1.49 s is under 1.5 s: not slow
        system.success("db", duration=1.5)
        assert system.status("db").state is OPEN
        system.register("idle")
        with system.subscribe(events=[EventType.CONNECTION_REMOVED]) as removed:
            brama_clock.advance(6)  # a sweep every 2 s removes what was idle for 5 s
            assert removed.get(timeout=5).connection == "idle"


def test_register_and_configure_take_timedeltas(brama_system: Brama,
                                                brama_clock: FakeClock) -> None:
    brama_system.register("db", max_attempts=1, expiry=timedelta(seconds=30),
                          **slow_rule(slow_call_duration=timedelta(seconds=2)))
    brama_system.failure("db")
    assert brama_system.status("db").open_until == brama_clock.time() + 30.0
    brama_clock.advance(30)
    assert brama_system.status("db").state is HALF_OPEN
    brama_system.configure("db", expiry=timedelta(minutes=1))
    brama_system.configure(expiry=timedelta(seconds=45), max_seconds=timedelta(seconds=3))
    brama_system.close_circuit("db")  # closed, the status shows the next opening's expiry
    assert (brama_system.status("db").expiry, brama_system.register("other").expiry) == (
        60.0, 45.0)


def test_the_decorator_and_guard_options_take_timedeltas(brama_system: Brama) -> None:
    @circuit_breaker("api", system=brama_system, expiry=timedelta(seconds=90),
                     slow_call_duration=timedelta(milliseconds=250))
    def call() -> str:
        return "ok"

    assert call() == "ok"
    with guard("db", system=brama_system, expiry=timedelta(hours=1),
               hibernate_after=timedelta(seconds=1)):
        pass
    assert (brama_system.status("api").expiry, brama_system.status("db").expiry) == (
        90.0, 3600.0)


def test_circuit_control_takes_timedeltas(brama_system: Brama, brama_clock: FakeClock) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db", expires_in=timedelta(seconds=12.5))
    status = brama_system.status("db")
    assert (status.open_until, status.expiry) == (status.opened_at + 12.5, 12.5)
    brama_system.set_expiry("db", timedelta(seconds=20))  # the deadline follows, from opened_at
    assert brama_system.status("db").open_until == status.opened_at + 20.0
    brama_clock.advance(19.9)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.1)
    assert brama_system.status("db").state is HALF_OPEN


@pytest.mark.parametrize("report", [
    lambda s, name, d: s.success(name, duration=d),
    lambda s, name, d: s.failure(name, reason="slow and failed", duration=d),
    lambda s, name, d: s.acquire(name).success(duration=d),
    lambda s, name, d: s.acquire(name).failure("x", duration=d),
], ids=["success", "failure", "permit.success", "permit.failure"])
def test_reported_durations_take_timedeltas(
    brama_system: Brama, report: Callable[[Brama, str, timedelta], None],
) -> None:
    for name in ("slow", "fast"):
        brama_system.register(name, max_attempts=5, **slow_rule(slow_call_duration=2))
    report(brama_system, "slow", timedelta(seconds=2))
    report(brama_system, "fast", timedelta(milliseconds=1999))
    # One call in a window of one: 2 s is slow and trips the rule, 1.999 s is not slow.
    assert brama_system.status("slow").state is OPEN
    assert brama_system.status("fast").state is CLOSED


def test_a_zero_duration_is_a_fast_call(brama_system: Brama) -> None:
    brama_system.register("db", **slow_rule(slow_call_duration=1))
    brama_system.success("db", duration=timedelta(0))
    assert brama_system.status("db").state is CLOSED


def test_timeout_as_a_timedelta_on_the_async_decorator(brama_system: Brama) -> None:
    @circuit_breaker("api", system=brama_system, timeout=timedelta(milliseconds=50))
    async def hang() -> None:
        await asyncio.sleep(30)

    with brama_system.subscribe(events=[EventType.FAILURE]) as failures, \
            pytest.raises(TimeoutError) as info:
        asyncio.run(hang())
    assert str(info.value) == "connection 'api': no answer within 0.05 s (the breaker's timeout)"
    reason = failures.get(timeout=5).data["reason"]
    assert reason == "timeout: no answer within 0.05 s"
    assert brama_system.status("api").last_failure_reason == reason


def test_timeout_as_a_timedelta_on_async_with_guard(brama_system: Brama) -> None:
    async def hang() -> None:
        async with guard("db", system=brama_system, timeout=timedelta(milliseconds=50)):
            await asyncio.sleep(30)

    with pytest.raises(TimeoutError) as info:
        asyncio.run(hang())
    assert str(info.value) == "connection 'db': no answer within 0.05 s (the breaker's timeout)"
    status = brama_system.status("db")
    assert (status.total_failures, status.last_failure_reason) == (
        1, "timeout: no answer within 0.05 s")


ZERO, MINUS = timedelta(0), timedelta(seconds=-1)
"""Shown in messages as the user wrote them, not as `timedelta(days=-1, seconds=86399)`."""

REFUSED: dict[str, tuple[Callable[[Brama, timedelta], Any], str]] = {
    "start": (lambda s, d: Brama(clock=FakeClock(0.0), expiry=d),
              "option expiry={} (from the options given at start) must be a finite number of "
              "seconds > 0, or a timedelta"),
    "register": (lambda s, d: s.register("new", expiry=d),
                 "option expiry={} (from register()) must be a finite number of seconds > 0, "
                 "or a timedelta"),
    "configure": (lambda s, d: s.configure(inactive_threshold=d),
                  "option inactive_threshold={} (from configure()) must be a finite number of "
                  "seconds > 0, or a timedelta, or None (never sweep)"),
    "configure one": (lambda s, d: s.configure("db", initial_expiry=d),
                      "option initial_expiry={} (from configure()) must be a finite number of "
                      "seconds > 0, or a timedelta"),
    "decorator": (lambda s, d: circuit_breaker("db", system=s, slow_call_duration=d),
                  "option slow_call_duration={} (from the decorator or guard) must be a finite "
                  "number of seconds > 0, or a timedelta, or None (no call is slow)"),
    "guard": (lambda s, d: guard("db", system=s, max_expiry=d),
              "option max_expiry={} (from the decorator or guard) must be a finite number of "
              "seconds > 0, or a timedelta"),
    "decorator timeout": (lambda s, d: circuit_breaker("db", system=s, timeout=d),
                          "timeout={} must be a finite number of seconds > 0, or a timedelta"),
    "guard timeout": (lambda s, d: guard("db", system=s, timeout=d),
                      "timeout={} must be a finite number of seconds > 0, or a timedelta"),
    "open_circuit": (lambda s, d: s.open_circuit("db", expires_in=d),
                     "expires_in={} (argument of open_circuit()) must be a finite number of "
                     "seconds > 0, or a timedelta"),
    "set_expiry": (lambda s, d: s.set_expiry("db", d),
                   "seconds={} (argument of set_expiry()) must be a finite number of seconds "
                   "> 0, or a timedelta"),
}


@pytest.mark.parametrize("where", sorted(REFUSED))
@pytest.mark.parametrize(("value", "shown"), [(ZERO, "timedelta(seconds=0)"),
                                              (MINUS, "timedelta(seconds=-1)")],
                         ids=["zero", "negative"])
def test_zero_and_negative_timedeltas_are_refused_naming_the_argument(
    brama_system: Brama, where: str, value: timedelta, shown: str,
) -> None:
    make, message = REFUSED[where]
    brama_system.register("db")
    before = brama_system.connections()
    with pytest.raises(ConfigError) as info:
        make(brama_system, value)
    assert str(info.value) == message.format(shown)
    assert brama_system.connections() == before  # nothing changed


@pytest.mark.parametrize(("make", "message"), [
    (lambda s: s.success("db", duration=MINUS),
     "duration=timedelta(seconds=-1) (argument of success()) must be a finite number of "
     "seconds >= 0, or a timedelta"),
    (lambda s: s.failure("db", duration=MINUS),
     "duration=timedelta(seconds=-1) (argument of failure()) must be a finite number of "
     "seconds >= 0, or a timedelta"),
], ids=["success", "failure"])
def test_a_negative_reported_duration_is_refused(brama_system: Brama,
                                                 make: Callable[[Brama], None],
                                                 message: str) -> None:
    brama_system.register("db")
    with pytest.raises(ConfigError) as info:
        make(brama_system)
    assert str(info.value) == message
    status = brama_system.status("db")
    assert status.total_successes == status.total_failures == 0


@pytest.mark.parametrize("end", ["success", "failure"])
def test_a_permit_refusing_a_bad_duration_can_still_be_ended(brama_system: Brama,
                                                            end: str) -> None:
    """Bad input changes nothing: the permit is not spent by a report that was refused."""
    brama_system.register("db")
    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")
    permit = brama_system.acquire("db")
    assert permit is not None and permit.trial
    with pytest.raises(ConfigError, match=r"duration=timedelta\(seconds=-1\)"):
        getattr(permit, end)(duration=MINUS)
    assert brama_system.status("db").half_open_permits_in_use == 1
    getattr(permit, end)(duration=timedelta(milliseconds=10))
    expected = CLOSED if end == "success" else OPEN
    assert brama_system.status("db").state is expected


def test_the_environment_takes_seconds_not_timedelta_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A variable holds text: seconds only, and the message does not offer a timedelta."""
    monkeypatch.setenv("BRAMA_EXPIRY", "0:00:30")
    with pytest.raises(ConfigError) as info:
        Brama(clock=FakeClock(0.0))
    assert str(info.value) == ("option expiry='0:00:30' (from environment variable "
                               "BRAMA_EXPIRY) must be a finite number of seconds > 0")
    monkeypatch.setenv("BRAMA_EXPIRY", "30")
    with Brama(clock=FakeClock(0.0)) as system:
        assert system.register("db").expiry == 30.0


# === 7. messages in the user's terms =========================================================

WHOLE = "must be a whole number >= 1"
SOURCES: dict[str, tuple[Callable[[Brama, pytest.MonkeyPatch], Any], str]] = {
    "start": (lambda s, m: Brama(clock=FakeClock(0.0), max_attempts=0),
              "the options given at start"),
    "environment": (lambda s, m: (m.setenv("BRAMA_MAX_ATTEMPTS", "0"),
                                  Brama(clock=FakeClock(0.0))),
                    "environment variable BRAMA_MAX_ATTEMPTS"),
    "configure": (lambda s, m: s.configure(max_attempts=0), "configure()"),
    "configure one": (lambda s, m: s.configure("db", max_attempts=0), "configure()"),
    "register": (lambda s, m: s.register("other", max_attempts=0), "register()"),
    "decorator": (lambda s, m: circuit_breaker("db", system=s, max_attempts=0),
                  "the decorator or guard"),
    "guard": (lambda s, m: guard("db", system=s, max_attempts=0), "the decorator or guard"),
}


@pytest.mark.parametrize("where", sorted(SOURCES))
def test_an_option_error_names_the_option_the_value_its_origin_and_the_range(
    brama_system: Brama, monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    make, source = SOURCES[where]
    brama_system.register("db")
    with pytest.raises(ConfigError) as info:
        make(brama_system, monkeypatch)
    assert str(info.value) == f"option max_attempts=0 (from {source}) {WHOLE}"


def test_a_max_expiry_below_the_derived_initial_expiry_says_where_that_came_from() -> None:
    """Found before: `Brama(max_expiry=5)` said "must be >= initial_expiry (60.0)", a value
    the user never set. It comes from the default expiry, and the message says so."""
    with pytest.raises(ConfigError) as info:
        Brama(clock=FakeClock(0.0), max_expiry=5)
    assert str(info.value) == (
        "option max_expiry=5.0 (from the options given at start) must be >= "
        "initial_expiry=60.0 (derived as expiry=60.0, from the default)"
    )
    with pytest.raises(ConfigError) as info:
        Brama(clock=FakeClock(0.0), expiry=2, max_expiry=5, initial_expiry=timedelta(seconds=8))
    assert str(info.value) == (
        "option max_expiry=5.0 (from the options given at start) must be >= "
        "initial_expiry=8.0 (from the options given at start)"
    )


def test_the_same_friction_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRAMA_MAX_EXPIRY", "5")
    with pytest.raises(ConfigError) as info:
        Brama(clock=FakeClock(0.0))
    assert str(info.value) == (
        "option max_expiry=5.0 (from environment variable BRAMA_MAX_EXPIRY) must be >= "
        "initial_expiry=60.0 (derived as expiry=60.0, from the default)"
    )
    with Brama(clock=FakeClock(0.0), expiry=0.5) as system:  # 10 x 0.5 fits under 5
        assert (system.register("db").max_expiry, system.status("db").initial_expiry) == (
            5.0, 0.5)


def test_a_misspelled_variable_warns_once_with_a_did_you_mean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("brama._config._warned", set())  # "once per process": a fresh process
    monkeypatch.setenv("BRAMA_MAXATTEMPTS", "3")
    with pytest.warns(ConfigWarning) as record, Brama(clock=FakeClock(0.0)) as system:
        assert system.register("db").max_attempts == 10  # ignored, not guessed
    assert [str(w.message) for w in record] == [
        "unknown environment variable BRAMA_MAXATTEMPTS ignored; did you mean "
        "BRAMA_MAX_ATTEMPTS?"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Brama(clock=FakeClock(0.0)).stop()  # the second system does not warn again


def test_a_bad_environment_value_raises_when_the_system_starts(
    monkeypatch: pytest.MonkeyPatch, default_system: None,
) -> None:
    @circuit_breaker("api", max_attempts=2)  # decorating reads no environment
    def call() -> str:
        return "ok"

    monkeypatch.setenv("BRAMA_EXPIRY", "soon")
    expected = ("option expiry='soon' (from environment variable BRAMA_EXPIRY) must be a "
                "finite number of seconds > 0")
    with pytest.raises(ConfigError) as info:
        Brama(clock=FakeClock(0.0))
    assert str(info.value) == expected
    with pytest.raises(ConfigError) as info:
        brama.start()
    assert str(info.value) == expected
    monkeypatch.setenv("BRAMA_EXPIRY", "30")
    system = brama.start()
    monkeypatch.setenv("BRAMA_EXPIRY", "soon")  # read at start only: later calls never fail
    assert call() == "ok"
    assert system.status("api").expiry == 30.0


@pytest.mark.parametrize("verdict", [True, False])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_bool_from_an_error_handler_is_explained(brama_system: Brama, verdict: bool,
                                                   is_async: bool) -> None:
    def classify(result: Any) -> Any:
        return verdict

    if is_async:
        async def coroutine() -> int:
            return 1

        wrapped = circuit_breaker("db", system=brama_system, error_handler=classify)(coroutine)

        def call() -> Any:
            return asyncio.run(wrapped())
    else:
        call = circuit_breaker("db", system=brama_system, error_handler=classify)(lambda: 1)
    with pytest.raises(TypeError) as info:
        call()
    assert str(info.value) == (
        "error_handler must return 'success', 'failure', ('failure', reason) or 'ignore', got "
        f"{verdict!r}: a bool is ambiguous (is True a success, or 'yes, it failed'?)"
    )
    status = brama_system.status("db")
    assert status.total_successes == status.total_failures == 0


@pytest.mark.parametrize(("make", "message"), [
    (lambda s: s.set_expiry("db", 0),
     "seconds=0 (argument of set_expiry()) must be a finite number of seconds > 0, "
     "or a timedelta"),
    (lambda s: s.set_expiry("db", "30s"),
     "seconds='30s' (argument of set_expiry()) must be a finite number of seconds > 0, "
     "or a timedelta"),
    (lambda s: s.open_circuit("db", expires_in=-1),
     "expires_in=-1 (argument of open_circuit()) must be a finite number of seconds > 0, "
     "or a timedelta"),
], ids=["set_expiry zero", "set_expiry text", "open_circuit negative"])
def test_circuit_control_arguments_are_named_with_the_function(
    brama_system: Brama, make: Callable[[Brama], None], message: str,
) -> None:
    brama_system.register("db", max_attempts=1)
    brama_system.failure("db")
    before = brama_system.status("db")
    with pytest.raises(ConfigError) as info:
        make(brama_system)
    assert str(info.value) == message
    assert brama_system.status("db") == before


def test_set_expiry_above_the_connections_max_expiry_names_both(brama_system: Brama) -> None:
    brama_system.register("db", max_expiry=100)
    with pytest.raises(ConfigError) as info:
        brama_system.set_expiry("db", timedelta(minutes=5))
    message = str(info.value)
    assert "max_expiry=100.0 (from" in message and "initial_expiry=300.0" in message, message
