"""Failure-rate and slow-call-rate policies over count and time windows, with the fake clock.

Each rule is checked at its boundary (a rate exactly at the threshold trips, one call fewer
does not), with the window sliding, the minimum number of calls, time buckets expiring, both
rules at once, the consecutive-failure rule alongside, and the window cleared on close and
on a manual reset.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import brama
from brama import Brama, CircuitState, ConfigError, EventType
from brama.testing import FakeClock, flush_events
from tests.helpers import drain

OPEN, CLOSED = CircuitState.OPEN, CircuitState.CLOSED


def calls(system: Brama, name: str, pattern: str, duration: float | None = None) -> None:
    """Report outcomes: "s" success, "f" failure, "S" slow success, "F" slow failure."""
    for outcome in pattern:
        slow = duration if outcome.isupper() else None
        if outcome.lower() == "s":
            system.success(name, duration=slow)
        else:
            system.failure(name, reason="x", duration=slow)


def test_one_failure_in_three_trips_a_failure_rate_of_point_three(brama_system: Brama) -> None:
    """The issue's acceptance case: max_attempts never trips on this dependency."""
    brama_system.register("flaky", failure_rate_threshold=0.3, minimum_calls=9, window_size=9)
    calls(brama_system, "flaky", "ssfssfss")  # 8 calls: below minimum_calls
    assert brama_system.status("flaky").state is CLOSED
    assert brama_system.status("flaky").failure_rate is None
    calls(brama_system, "flaky", "f")  # 9 calls, 3 failed: 0.33 >= 0.3
    status = brama_system.status("flaky")
    assert status.state is OPEN
    assert status.failure_count == 1  # the consecutive rule alone would never have opened it


def test_the_rate_trips_exactly_at_the_threshold_not_below(brama_system: Brama) -> None:
    brama_system.register("a", failure_rate_threshold=0.5, minimum_calls=4, window_size=4)
    calls(brama_system, "a", "ssfs")
    assert brama_system.status("a").failure_rate == 0.25
    calls(brama_system, "a", "f")  # window: s f s f -> 0.5
    assert brama_system.status("a").state is OPEN
    brama_system.register("b", failure_rate_threshold=0.5, minimum_calls=4, window_size=5)
    calls(brama_system, "b", "sssff")  # 2 of 5 = 0.4
    assert brama_system.status("b").state is CLOSED
    assert brama_system.status("b").failure_rate == pytest.approx(0.4)


def test_a_count_window_slides(brama_system: Brama) -> None:
    brama_system.register("a", failure_rate_threshold=0.5, minimum_calls=4, window_size=4)
    calls(brama_system, "a", "ffs")
    brama_system.success("a")  # f f s s: 0.5 would trip... it does: the window holds 4 calls
    assert brama_system.status("a").state is OPEN
    brama_system.register("b", failure_rate_threshold=0.75, minimum_calls=4, window_size=4)
    calls(brama_system, "b", "fsfsssss")  # the early failures slide out
    status = brama_system.status("b")
    assert status.state is CLOSED and status.failure_rate == 0.0 and status.calls_in_window == 4


def test_slow_calls_trip_the_slow_call_rate(brama_system: Brama) -> None:
    brama_system.register("slow", slow_call_duration=datetime.timedelta(seconds=2),
                          slow_call_rate_threshold=0.5, minimum_calls=4, window_size=10)
    calls(brama_system, "slow", "sSs", duration=2.5)
    status = brama_system.status("slow")
    assert status.slow_call_rate is None and status.calls_in_window == 3
    calls(brama_system, "slow", "S", duration=2.0)  # at the duration is slow: 2 of 4
    status = brama_system.status("slow")
    assert status.state is OPEN and status.slow_call_rate == 0.5
    assert status.failure_count == 0


def test_a_slow_failure_counts_as_slow_and_as_failed(brama_system: Brama) -> None:
    brama_system.register("a", slow_call_duration=1.0, minimum_calls=2, window_size=2)
    calls(brama_system, "a", "sF", duration=5.0)
    status = brama_system.status("a")
    assert (status.failure_rate, status.slow_call_rate) == (0.5, 0.5)
    assert status.state is CLOSED  # no threshold: rates are reported, nothing trips


def test_a_time_window_forgets_calls_older_than_its_size(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("t", window_type="time", window_size=10, minimum_calls=3,
                          failure_rate_threshold=0.6)
    calls(brama_system, "t", "ff")
    brama_clock.advance(11)  # those two failures leave the window
    calls(brama_system, "t", "ssf")
    status = brama_system.status("t")
    assert status.calls_in_window == 3 and status.state is CLOSED
    assert status.failure_rate == pytest.approx(1 / 3)
    brama_clock.advance(5)
    calls(brama_system, "t", "f")  # 2 of 4 in the last 10 s
    assert brama_system.status("t").failure_rate == 0.5
    brama_clock.advance(5.5)  # only the last failure is younger than 10 s
    assert brama_system.status("t").calls_in_window == 1


def test_time_buckets_aggregate_many_calls_per_second(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("t", window_type="time", window_size=3, minimum_calls=1,
                          failure_rate_threshold=0.9)
    for second in range(6):
        calls(brama_system, "t", "s" * 50 + "f" * (second % 2))
        brama_clock.advance(1)
    status = brama_system.status("t")
    assert status.calls_in_window == 50 + 51  # the buckets of seconds 4 and 5 (and 6: empty)
    assert status.failure_rate == pytest.approx(1 / 101)


def test_successes_counted_without_the_actor_stay_in_their_own_second(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    """Once the window is warm, successes are counter bumps folded in later; in a time window
    they must age from the second they happened in, not from when they are folded or read."""
    brama_system.register("t", window_type="time", window_size=2, minimum_calls=3,
                          failure_rate_threshold=0.5)
    calls(brama_system, "t", "ssssss")  # three through the actor (warming up), three fast
    assert brama_system.status("t").calls_in_window == 6
    brama_clock.advance(3)  # that second has left a 2-second window
    assert brama_system.status("t").calls_in_window == 0
    calls(brama_system, "t", "f")  # folds the fast ones: still in their own (expired) second
    status = brama_system.status("t")
    assert (status.calls_in_window, status.failure_rate) == (1, None)
    calls(brama_system, "t", "ff")
    assert brama_system.status("t").state is OPEN


def test_both_rules_at_once_the_first_broken_opens(brama_system: Brama) -> None:
    brama_system.register("both", failure_rate_threshold=0.5, slow_call_duration=1.0,
                          slow_call_rate_threshold=0.5, minimum_calls=2, window_size=4)
    sub = brama_system.subscribe(events=[EventType.STATE_CHANGE,
                                         EventType.SLOW_CALL_RATE_EXCEEDED,
                                         EventType.FAILURE_RATE_EXCEEDED])
    calls(brama_system, "both", "sS", duration=3.0)
    assert brama_system.status("both").state is OPEN
    flush_events(system=brama_system)
    exceeded, change = drain(sub)
    assert exceeded.event is EventType.SLOW_CALL_RATE_EXCEEDED
    assert dict(exceeded.data) == {"rate": 0.5, "threshold": 0.5, "calls": 2}
    assert (change.data["rule"], change.data["reason"]) == ("slow_call_rate", "slow_call_rate")


def test_the_consecutive_rule_keeps_working_alongside(brama_system: Brama) -> None:
    brama_system.register("a", max_attempts=3, failure_rate_threshold=1.0, minimum_calls=50)
    sub = brama_system.subscribe(events=[EventType.STATE_CHANGE])
    calls(brama_system, "a", "fff")
    assert brama_system.status("a").state is OPEN
    flush_events(system=brama_system)
    [change] = drain(sub)
    assert (change.data["rule"], change.data["reason"]) == ("max_attempts", "max_attempts")
    assert change.data["last_failure_reason"] == "x"


def test_the_failure_rate_event_says_the_rate_and_the_threshold(brama_system: Brama) -> None:
    brama_system.register("a", failure_rate_threshold=0.5, minimum_calls=2, window_size=2)
    sub = brama_system.subscribe(events=[EventType.FAILURE_RATE_EXCEEDED,
                                         EventType.CIRCUIT_OPENED])
    calls(brama_system, "a", "sf")
    flush_events(system=brama_system)
    exceeded, opened = drain(sub)
    assert exceeded.event is EventType.FAILURE_RATE_EXCEEDED
    assert dict(exceeded.data) == {"rate": 0.5, "threshold": 0.5, "calls": 2}
    assert opened.data["rule"] == "failure_rate"


@pytest.mark.parametrize("how", ["reset_circuit", "close_circuit", "recovery"])
def test_closing_clears_the_window(
    brama_system: Brama, brama_clock: FakeClock, how: str
) -> None:
    brama_system.register("a", failure_rate_threshold=0.5, minimum_calls=2, window_size=10,
                          expiry=5)
    calls(brama_system, "a", "ff")
    assert brama_system.status("a").state is OPEN
    if how == "recovery":
        brama_clock.advance(5)
        assert brama_system.available("a")
        brama_system.success("a")
    else:
        getattr(brama_system, how)("a")
    status = brama_system.status("a")
    assert status.state is CLOSED and status.calls_in_window == 0
    assert status.failure_rate is None
    calls(brama_system, "a", "sf")  # a fresh window: 1 of 2
    assert brama_system.status("a").state is OPEN


def test_a_manual_reset_of_a_closed_circuit_clears_its_window(brama_system: Brama) -> None:
    brama_system.register("a", failure_rate_threshold=0.9, minimum_calls=2, window_size=4)
    calls(brama_system, "a", "sf")
    brama_system.reset_circuit("a")
    assert brama_system.status("a").calls_in_window == 0


def test_successes_on_the_hot_path_are_folded_into_the_window(brama_system: Brama) -> None:
    brama_system.register("a", failure_rate_threshold=0.5, minimum_calls=10, window_size=100)

    @brama.circuit_breaker("a", system=brama_system)
    def call(fail: bool) -> None:
        if fail:
            raise OSError("down")

    for _ in range(96):
        call(False)
    assert brama_system.status("a").calls_in_window == 96  # counted without the actor
    for _ in range(4):
        with pytest.raises(OSError):
            call(True)
    status = brama_system.status("a")
    assert status.calls_in_window == 100 and status.failure_rate == 0.04
    assert status.state is CLOSED


def test_the_decorator_measures_durations_on_the_systems_clock(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("db", slow_call_duration=0.5, slow_call_rate_threshold=0.5,
                          minimum_calls=2, window_size=2)

    @brama.circuit_breaker("db", system=brama_system)
    def query(seconds: float) -> str:
        brama_clock.advance(seconds)  # the dependency takes this long, on the fake clock
        return "rows"

    assert query(0.1) == "rows"
    assert query(0.6) == "rows"  # slow: 1 of 2
    assert brama_system.status("db").state is OPEN


def test_the_guard_measures_durations_too(brama_system: Brama, brama_clock: FakeClock) -> None:
    brama_system.register("db", slow_call_duration=0.5, slow_call_rate_threshold=1.0,
                          minimum_calls=1, window_size=1)
    with brama.guard("db", system=brama_system):
        brama_clock.advance(1.0)
    assert brama_system.status("db").state is OPEN


def test_configure_reshapes_the_window(brama_system: Brama) -> None:
    brama_system.register("a")
    calls(brama_system, "a", "ff")
    assert brama_system.status("a").failure_rate is None  # no policy, no window
    brama_system.configure("a", failure_rate_threshold=0.5, minimum_calls=2, window_size=3)
    calls(brama_system, "a", "s")
    assert brama_system.status("a").calls_in_window == 1
    brama_system.configure("a", window_type="time", window_size=60)
    calls(brama_system, "a", "s")
    assert brama_system.status("a").calls_in_window == 1  # a new window of a new shape


def test_a_global_policy_applies_to_connections_without_their_own(brama_system: Brama) -> None:
    brama_system.register("a")
    brama_system.configure(failure_rate_threshold=0.5, minimum_calls=2, window_size=2)
    calls(brama_system, "a", "sf")
    assert brama_system.status("a").state is OPEN


def test_the_policies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAMA_FAILURE_RATE_THRESHOLD", "0.5")
    monkeypatch.setenv("BRAMA_WINDOW_SIZE", "2")
    monkeypatch.setenv("BRAMA_MINIMUM_CALLS", "2")
    with Brama(clock=FakeClock()) as system:
        system.register("a")
        calls(system, "a", "sf")
        assert system.status("a").state is OPEN


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"failure_rate_threshold": float("nan")}, "failure_rate_threshold"),
        ({"failure_rate_threshold": True}, "failure_rate_threshold"),
        ({"failure_rate_threshold": "0.5"}, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": -0.1, "slow_call_duration": 1}, "slow_call_rate_threshold"),
        ({"slow_call_rate_threshold": 0.5}, "needs slow_call_duration"),
        ({"slow_call_duration": 0}, "slow_call_duration"),
        ({"slow_call_duration": float("inf")}, "slow_call_duration"),
        ({"window_type": "sliding"}, "window_type"),
        ({"window_size": 0}, "window_size"),
        ({"window_size": 2.5}, "whole number"),
        ({"window_size": 10**400}, "window_size"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"minimum_calls": 20, "window_size": 10}, "no rate would ever be judged"),
        ({"minimum_calls": 1.0}, "minimum_calls"),
    ],
)
def test_bad_policy_options_are_refused_naming_them(
    brama_system: Brama, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        brama_system.register("a", **options)
    assert brama_system.connections() == []
    brama_system.register("b")
    with pytest.raises(ConfigError, match=named):
        brama_system.configure("b", **options)
    assert brama_system.status("b").failure_rate is None


def test_a_time_window_accepts_a_timedelta_size(brama_system: Brama) -> None:
    status = brama_system.register("t", window_type="time",
                                   window_size=datetime.timedelta(minutes=2),
                                   failure_rate_threshold=0.5)
    assert status.calls_in_window == 0
    calls(brama_system, "t", "s")
    assert brama_system.status("t").calls_in_window == 1
