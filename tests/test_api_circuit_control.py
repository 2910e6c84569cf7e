"""Acceptance tests: manual circuit control (open, close, reset, reset_expiry, set_expiry,
disable_expiry)."""

from __future__ import annotations

import math

import pytest

import brama
from brama import CircuitState, ConfigError, EventType, NotFoundError
from tests.helpers import events_before_marker, kinds

T0 = 1_000_000.0
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture
def long_system(brama_clock):
    """A system for advances of days: no inactivity removal, rare sweeps."""
    with brama.Brama(clock=brama_clock, inactive_threshold=None, cleanup_interval=3600) as system:
        yield system


def to_half_open(system, clock, identifier="db"):
    system.open_circuit(identifier, expires_in=1)
    clock.advance(1)
    assert system.status(identifier).state is HALF_OPEN


# --- open_circuit -----------------------------------------------------------------------------


def test_open_circuit_from_closed_with_expires_in(brama_system, brama_clock):
    brama_system.register("db", expiry=60)
    brama_system.failure("db")
    assert brama_system.open_circuit("db", reason="maintenance", expires_in=5) is None
    status = brama_system.status("db")
    assert status.state is OPEN
    assert status.expiry == 5.0
    assert status.opened_at == T0
    assert status.failure_count == 1
    assert brama_system.available("db") is False
    brama_clock.advance(5 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN
    # expires_in only overrode that opening
    brama_system.close_circuit("db")
    brama_system.open_circuit("db")
    assert brama_system.status("db").expiry == 60.0


def test_open_circuit_without_expires_in_uses_strategy_step(brama_system, brama_clock):
    brama_system.register("db", expiry_strategy="progressive", initial_expiry=3, max_expiry=50)
    brama_system.open_circuit("db")
    assert brama_system.status("db").expiry == 3.0
    brama_clock.advance(3)
    assert brama_system.status("db").state is HALF_OPEN


def test_open_circuit_from_half_open(brama_system, brama_clock):
    brama_system.register("db")
    to_half_open(brama_system, brama_clock)
    brama_clock.advance(2)
    brama_system.open_circuit("db", expires_in=7)
    status = brama_system.status("db")
    assert status.state is OPEN
    assert status.opened_at == T0 + 3
    assert status.expiry == 7.0
    assert brama_system.available("db") is False
    brama_clock.advance(7 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN


def test_open_circuit_on_open_circuit_applies_new_expiry(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=60)
    brama_system.failure("db")
    brama_clock.advance(10)
    brama_system.open_circuit("db", expires_in=5)
    status = brama_system.status("db")
    assert status.state is OPEN
    assert status.expiry == 5.0
    brama_clock.advance(5 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN
    # the first opening's 60 s deadline no longer applies
    brama_clock.advance(60)
    assert brama_system.status("db").state is HALF_OPEN


# --- close_circuit and reset_circuit ------------------------------------------------------


@pytest.mark.parametrize("method", ["close_circuit", "reset_circuit"])
def test_close_and_reset_from_open(brama_system, brama_clock, method):
    brama_system.register("db", max_attempts=3, expiry_strategy="progressive",
                          initial_expiry=5, max_expiry=100)
    for _ in range(3):
        brama_system.failure("db")
    brama_clock.advance(5)
    assert brama_system.available("db") is True
    brama_system.failure("db")  # re-opens at the next step: 10 s
    assert brama_system.status("db").expiry == 10.0
    brama_clock.advance(1)
    assert getattr(brama_system, method)("db", reason="fixed") is None
    status = brama_system.status("db")
    assert status.state is CLOSED
    assert status.failure_count == 0
    assert status.opened_at is None
    assert status.last_state_change == T0 + 6
    assert status.expiry == 5.0  # backoff back at its first step
    assert status.total_failures == 4  # metrics are kept
    assert brama_system.available("db") is True
    # the old deadline does not move it anywhere
    brama_clock.advance(20)
    assert brama_system.status("db").state is CLOSED
    # and it again takes max_attempts failures to open, at the first step
    brama_system.failure("db")
    brama_system.failure("db")
    assert brama_system.status("db").state is CLOSED
    brama_system.failure("db")
    assert brama_system.status("db").state is OPEN
    assert brama_system.status("db").expiry == 5.0


@pytest.mark.parametrize("method", ["close_circuit", "reset_circuit"])
def test_close_and_reset_from_half_open_and_closed(brama_system, brama_clock, method):
    brama_system.register("db")
    to_half_open(brama_system, brama_clock)
    getattr(brama_system, method)("db")
    assert brama_system.status("db").state is CLOSED
    brama_system.failure("db")
    brama_system.failure("db")
    getattr(brama_system, method)("db")
    status = brama_system.status("db")
    assert status.state is CLOSED
    assert status.failure_count == 0


def test_close_and_reset_emit_different_events(brama_system):
    brama_system.register("a")
    brama_system.register("b")
    brama_system.open_circuit("a")
    brama_system.open_circuit("b")
    sub = brama_system.subscribe(events=[EventType.CIRCUIT_CLOSED, EventType.CIRCUIT_RESET])
    brama_system.close_circuit("a", reason="r1")
    brama_system.reset_circuit("b", reason="r2")
    first, second = sub.get(timeout=2), sub.get(timeout=2)
    assert (first.event, first.connection, first.data["reason"]) == (
        EventType.CIRCUIT_CLOSED, "a", "r1")
    assert (second.event, second.connection, second.data["reason"]) == (
        EventType.CIRCUIT_RESET, "b", "r2")


# --- reset_expiry ---------------------------------------------------------------------------


def test_reset_expiry_moves_open_to_half_open_now(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1)
    brama_system.failure("db")
    brama_clock.advance(2)
    assert brama_system.reset_expiry("db") is None
    status = brama_system.status("db")
    assert status.state is HALF_OPEN
    assert status.last_state_change == T0 + 2
    assert brama_system.available("db") is True
    brama_system.success("db")
    assert brama_system.status("db").state is CLOSED


def test_reset_expiry_on_closed_changes_nothing(brama_system):
    brama_system.register("db")
    brama_system.failure("db")
    before = brama_system.status("db")
    brama_system.reset_expiry("db")
    assert brama_system.status("db") == before


# --- set_expiry -----------------------------------------------------------------------------


def test_set_expiry_recomputes_open_deadline_from_opened_at(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1)  # expiry 60
    brama_system.failure("db")  # opened at T0
    brama_clock.advance(1)
    assert brama_system.set_expiry("db", 2) is None
    status = brama_system.status("db")
    assert status.state is OPEN
    assert status.expiry == 2.0
    assert status.opened_at == T0
    brama_clock.advance(1 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN
    assert brama_system.status("db").last_state_change == T0 + 2


def test_set_expiry_longer_moves_deadline_later(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=5)
    brama_system.failure("db")
    brama_clock.advance(1)
    brama_system.set_expiry("db", 20)
    brama_clock.advance(19 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN


def test_set_expiry_deadline_already_passed(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1)
    brama_system.failure("db")
    brama_clock.advance(10)
    brama_system.set_expiry("db", 3)
    brama_clock.advance(0)
    assert brama_system.status("db").state is HALF_OPEN


def test_set_expiry_applies_to_later_openings(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1)
    brama_system.set_expiry("db", 4)
    assert brama_system.status("db").expiry == 4.0
    brama_system.failure("db")
    assert brama_system.status("db").expiry == 4.0
    brama_clock.advance(4)
    assert brama_system.status("db").state is HALF_OPEN
    # other connections keep the default
    assert brama_system.register("other").expiry == 60.0


# --- disable_expiry ----------------------------------------------------------------------


def test_disable_expiry_keeps_open_forever_until_reset_expiry(long_system, brama_clock):
    brama_system = long_system
    brama_system.register("db", max_attempts=1, expiry=5)
    brama_system.failure("db")
    assert brama_system.disable_expiry("db") is None
    assert brama_system.status("db").expiry_disabled is True
    for _ in range(3):
        brama_clock.advance(10**6)
        assert brama_system.status("db").state is OPEN
        assert brama_system.status("db").expiry_disabled is True
    brama_system.reset_expiry("db")
    status = brama_system.status("db")
    assert status.state is HALF_OPEN
    assert status.expiry_disabled is False


def test_disable_expiry_on_closed_circuit_applies_to_next_opening(long_system, brama_clock):
    brama_system = long_system
    brama_system.register("db", max_attempts=1, expiry=5)
    brama_system.disable_expiry("db")
    assert brama_system.status("db").expiry_disabled is True
    brama_system.failure("db")
    brama_clock.advance(10**5)
    assert brama_system.status("db").state is OPEN
    assert brama_system.status("db").expiry_disabled is True


@pytest.mark.parametrize(
    "undo",
    [
        lambda s: s.close_circuit("db"),
        lambda s: s.reset_circuit("db"),
        lambda s: s.reset_expiry("db"),
        lambda s: s.set_expiry("db", 7),
    ],
    ids=["close_circuit", "reset_circuit", "reset_expiry", "set_expiry"],
)
def test_expiry_disabled_cleared_by_manual_actions(brama_system, brama_clock, undo):
    brama_system.register("db", max_attempts=1, expiry=5)
    brama_system.failure("db")
    brama_system.disable_expiry("db")
    brama_clock.advance(100)
    assert brama_system.status("db").expiry_disabled is True
    undo(brama_system)
    assert brama_system.status("db").expiry_disabled is False
    # a later opening expires again
    brama_system.close_circuit("db")
    brama_system.failure("db")
    brama_clock.advance(brama_system.status("db").expiry)
    assert brama_system.status("db").state is HALF_OPEN


def test_set_expiry_after_disable_rearms_deadline_from_opened_at(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=5)
    brama_system.failure("db")  # opened at T0
    brama_system.disable_expiry("db")
    brama_clock.advance(10)
    assert brama_system.status("db").state is OPEN
    brama_system.set_expiry("db", 12)
    assert brama_system.status("db").expiry_disabled is False
    brama_clock.advance(2 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN


def test_openings_after_disable_and_reset_expiry_expire_again(brama_system, brama_clock):
    # disabled while open, then reset_expiry (which clears the flag) and a trial success
    # close it: later openings expire normally
    brama_system.register("db", max_attempts=1, expiry=2)
    brama_system.failure("db")
    brama_system.disable_expiry("db")
    brama_system.reset_expiry("db")
    assert brama_system.available("db") is True
    brama_system.success("db")
    brama_system.failure("db")
    brama_clock.advance(2)
    assert brama_system.status("db").state is HALF_OPEN


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.open_circuit("ghost"),
        lambda s: s.close_circuit("ghost"),
        lambda s: s.reset_circuit("ghost"),
        lambda s: s.reset_expiry("ghost"),
        lambda s: s.set_expiry("ghost", 5),
        lambda s: s.disable_expiry("ghost"),
        lambda s: s.open_circuit("db", scope="other"),
    ],
    ids=["open", "close", "reset", "reset_expiry", "set_expiry", "disable_expiry", "scope"],
)
def test_control_of_unknown_connection_raises_not_found(brama_system, call):
    brama_system.register("db")
    with pytest.raises(NotFoundError):
        call(brama_system)
    assert brama_system.status("db").state is CLOSED


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, True, "5", None])
def test_set_expiry_bad_seconds(brama_system, brama_clock, bad):
    brama_system.register("db", max_attempts=1, expiry=5)
    brama_system.failure("db")
    sub = brama_system.subscribe()
    before = brama_system.status("db")
    with pytest.raises(ConfigError, match="seconds"):
        brama_system.set_expiry("db", bad)
    assert brama_system.status("db") == before
    assert events_before_marker(brama_system, sub) == []
    brama_clock.advance(5)
    assert brama_system.status("db").state is HALF_OPEN


@pytest.mark.parametrize("bad", [0, -3, math.nan, math.inf, False, "2"])
def test_open_circuit_bad_expires_in(brama_system, bad):
    brama_system.register("db")
    sub = brama_system.subscribe()
    with pytest.raises(ConfigError, match="expires_in"):
        brama_system.open_circuit("db", expires_in=bad)
    assert brama_system.status("db").state is CLOSED
    assert events_before_marker(brama_system, sub) == []


def test_manual_actions_emit_their_events(brama_system):
    brama_system.register("db")
    sub = brama_system.subscribe()
    brama_system.open_circuit("db", reason="m")
    brama_system.disable_expiry("db")
    brama_system.reset_expiry("db")
    brama_system.reset_circuit("db")
    events = events_before_marker(brama_system, sub)
    assert all(e.connection == "db" for e in events)
    assert len(events) == 6, kinds(events)
    assert sorted(kinds(events[0:2])) == sorted(
        [EventType.STATE_CHANGE, EventType.CIRCUIT_OPENED])
    assert sorted(kinds(events[2:4])) == sorted(
        [EventType.STATE_CHANGE, EventType.CIRCUIT_HALF_OPENED])
    assert sorted(kinds(events[4:6])) == sorted(
        [EventType.STATE_CHANGE, EventType.CIRCUIT_RESET])
