"""Expiry strategies and manual control of the circuit."""

from __future__ import annotations

import pytest

from brama._circuit import (
    EXPIRY_TIMER,
    Acquire,
    CloseCircuit,
    Configure,
    DisableExpiry,
    ExpiryTick,
    Message,
    OpenCircuit,
    PermitTimeout,
    ResetCircuit,
    ResetExpiry,
    SetExpiry,
    Success,
    TimerRequest,
    permit_timer,
)
from brama._config import Settings
from brama._expiry import expiry_overrides, next_opening_expiry
from brama.errors import ConfigError
from brama.types import EventType
from tests.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    WALL_OFFSET,
    Driver,
    half_open_driver,
    make_options,
    open_driver,
    state_change,
)

# --- expiry strategies -------------------------------------------------------------------


def test_next_opening_expiry() -> None:
    fixed = make_options(expiry=7.0, expiry_strategy="fixed")
    assert [next_opening_expiry(n, fixed) for n in range(4)] == [7.0] * 4
    progressive = make_options(expiry_strategy="progressive", initial_expiry=5.0, max_expiry=30.0)
    assert [next_opening_expiry(n, progressive) for n in range(6)] == [5, 10, 20, 30, 30, 30]
    assert next_opening_expiry(100_000, progressive) == 30.0  # no overflow
    flat = make_options(expiry_strategy="progressive", expiry=4.0, backoff_factor=1.0)
    assert next_opening_expiry(50, flat) == 4.0


def test_progressive_sequence_through_reopenings_and_reset_after_close() -> None:
    d = Driver(
        max_attempts=2,
        expiry_strategy="progressive",
        initial_expiry=5.0,
        max_expiry=30.0,
    )
    assert d.status().expiry == 5.0
    d.fail(2)
    lengths = [d.circuit.current_expiry]
    for _ in range(4):
        d.advance(d.circuit.current_expiry or 0.0)
        assert d.circuit.state is HALF_OPEN
        assert d.status().expiry == lengths[-1]
        d.fail()
        lengths.append(d.circuit.current_expiry)
    assert lengths == [5.0, 10.0, 20.0, 30.0, 30.0]
    d.advance(30.0)
    d.send(Success())
    assert d.circuit.state is CLOSED
    assert d.status().expiry == 5.0
    d.fail(2)
    assert d.circuit.current_expiry == 5.0


def test_initial_expiry_follows_expiry_in_progressive() -> None:
    d = Driver(max_attempts=1, expiry_strategy="progressive", expiry=2.0)
    d.fail()
    assert d.circuit.current_expiry == 2.0
    d.advance(2.0)
    d.fail()
    assert d.circuit.current_expiry == 4.0


def test_fixed_expiry_never_grows() -> None:
    d = Driver(max_attempts=1, expiry=3.0)
    for _ in range(4):
        d.fail()
        assert d.circuit.current_expiry == 3.0
        d.advance(3.0)
        assert d.circuit.state is HALF_OPEN


# --- manual control ----------------------------------------------------------------------


def test_manual_open_from_closed_with_expires_in() -> None:
    d = Driver()
    d.send(OpenCircuit(reason="maintenance", expires_in=2.5))
    events = d.take_events()
    assert [e.event for e in events] == [EventType.STATE_CHANGE, EventType.CIRCUIT_OPENED]
    change = state_change(events)
    assert {k: change[k] for k in ("previous_state", "new_state", "reason", "failure_count")} == {
        "previous_state": CLOSED,
        "new_state": OPEN,
        "reason": "maintenance",
        "failure_count": 0,
    }
    assert change["trigger"] == "manual"
    assert events[1].data["expiry"] == 2.5
    assert d.status().expiry == 2.5
    d.advance(2.5)
    assert d.circuit.state is HALF_OPEN


def test_manual_open_without_expires_in_uses_the_strategy_step() -> None:
    d = Driver(expiry_strategy="progressive", initial_expiry=5.0)
    d.send(OpenCircuit())
    assert d.circuit.current_expiry == 5.0
    d.advance(5.0)
    d.send(OpenCircuit())
    assert d.circuit.current_expiry == 10.0


def test_manual_open_from_half_open() -> None:
    d = half_open_driver()
    d.send(Acquire())
    d.send(OpenCircuit(reason="again"))
    events = d.take_events()
    change = state_change(events)
    assert (change["previous_state"], change["new_state"], change["reason"]) == (
        HALF_OPEN,
        OPEN,
        "again",
    )
    assert d.circuit.permits == ()


def test_manual_open_when_open_reopens_without_state_change() -> None:
    d = open_driver(expiry=10.0)
    gen = d.circuit.generation
    d.advance(4.0)
    d.send(OpenCircuit(reason="extend", expires_in=10.0))
    assert d.kinds() == [EventType.CIRCUIT_OPENED]
    assert d.circuit.opened_at == 4.0 + WALL_OFFSET and d.circuit.open_deadline == 14.0
    assert d.circuit.generation == gen + 1
    d.advance(6.0)  # the old deadline (10) passes: its tick is stale
    assert d.circuit.state is OPEN
    d.advance(4.0)
    assert d.circuit.state is HALF_OPEN


@pytest.mark.parametrize(
    ("message", "specific"),
    [
        (CloseCircuit("ops"), EventType.CIRCUIT_CLOSED),
        (ResetCircuit("ops"), EventType.CIRCUIT_RESET),
    ],
)
def test_close_and_reset_from_open(message: Message, specific: EventType) -> None:
    d = open_driver(expiry_strategy="progressive")
    d.send(DisableExpiry())
    d.send(Success())
    d.send(message)
    events = d.take_events()
    assert [e.event for e in events] == [EventType.SUCCESS, EventType.STATE_CHANGE, specific]
    change = state_change(events)
    assert {k: change[k] for k in ("previous_state", "new_state", "reason", "failure_count")} == {
        "previous_state": OPEN,
        "new_state": CLOSED,
        "reason": "ops",
        "failure_count": 0,
    }
    assert events[2].data["reason"] == "ops"
    c = d.circuit
    assert c.state is CLOSED and c.failure_count == 0 and c.opening_step == 0
    assert c.expiry_disabled is False and c.opened_at is None
    assert (c.total_failures, c.total_successes) == (1, 1)  # metrics survive


@pytest.mark.parametrize(
    ("message", "specific"),
    [(CloseCircuit(), EventType.CIRCUIT_CLOSED), (ResetCircuit(), EventType.CIRCUIT_RESET)],
)
def test_close_and_reset_when_already_closed(message: Message, specific: EventType) -> None:
    d = Driver()
    d.fail(3)
    d.send(DisableExpiry())
    d.take_events()
    state_changed_at = d.circuit.last_state_change
    gen = d.circuit.generation
    d.send(message)
    assert d.kinds() == [specific]
    c = d.circuit
    assert c.failure_count == 0 and c.expiry_disabled is False
    assert c.last_state_change == state_changed_at and c.generation == gen


def test_close_from_half_open() -> None:
    d = half_open_driver()
    d.send(Acquire())
    d.send(CloseCircuit())
    events = d.take_events()
    assert state_change(events)["previous_state"] is HALF_OPEN
    assert d.circuit.permits == ()


def test_reset_expiry_moves_open_to_half_open_now() -> None:
    d = open_driver(expiry=60.0)
    d.send(DisableExpiry())
    d.advance(1.0)
    d.send(ResetExpiry())
    events = d.take_events()
    assert [e.event for e in events] == [EventType.STATE_CHANGE, EventType.CIRCUIT_HALF_OPENED]
    change = state_change(events)
    assert (change["previous_state"], change["new_state"], change["reason"]) == (
        OPEN,
        HALF_OPEN,
        "expiry_reset",
    )
    assert d.circuit.state is HALF_OPEN and d.circuit.expiry_disabled is False


def test_reset_expiry_elsewhere_only_clears_the_flag() -> None:
    d = Driver()
    d.send(DisableExpiry())
    assert d.circuit.expiry_disabled
    d.send(ResetExpiry())
    assert d.circuit.state is CLOSED and not d.circuit.expiry_disabled
    assert d.take_events() == []


def test_disable_expiry_keeps_the_circuit_open() -> None:
    d = open_driver(expiry=5.0)
    d.send(DisableExpiry())
    assert d.circuit.expiry_disabled and d.circuit.open_deadline is None
    d.advance(1000.0)
    assert d.circuit.state is OPEN
    assert d.status().expiry_disabled is True


def test_disable_expiry_persists_across_openings_until_manual_action() -> None:
    d = Driver(max_attempts=1, expiry=5.0)
    d.send(DisableExpiry())
    d.fail()
    assert d.circuit.state is OPEN and d.circuit.open_deadline is None
    assert d.pending == {}  # no expiry armed
    d.advance(100.0)
    assert d.circuit.state is OPEN
    d.send(SetExpiry(5.0))  # re-enables; opened_at + 5 is long past
    assert d.circuit.expiry_disabled is False
    d.advance(0.0)
    assert d.circuit.state is HALF_OPEN


def test_set_expiry_while_open_recomputes_from_opened_at() -> None:
    d = open_driver(expiry=60.0)
    d.advance(10.0)
    d.send(SetExpiry(15.0))
    c = d.circuit
    assert c.current_expiry == 15.0 and c.open_deadline == 15.0
    assert dict(c.overrides)["expiry"] == 15.0 and dict(c.overrides)["initial_expiry"] == 15.0
    assert d.last is not None
    assert d.last.timers == (TimerRequest(EXPIRY_TIMER, 5.0, ExpiryTick(c.generation)),)
    assert d.status().expiry == 15.0
    d.advance(4.9)
    assert d.circuit.state is OPEN
    d.advance(0.1)
    assert d.circuit.state is HALF_OPEN
    d.advance(60.0)  # the original tick is stale
    assert d.circuit.state is HALF_OPEN


def test_set_expiry_in_closed_and_half_open() -> None:
    d = Driver(max_attempts=1)
    d.send(SetExpiry(3.0))
    assert d.take_events() == [] and d.status().expiry == 3.0
    d.fail()
    assert d.circuit.current_expiry == 3.0
    d.advance(3.0)
    d.send(SetExpiry(8.0))
    assert d.status().expiry == 8.0
    assert d.send(Acquire()).timers == (TimerRequest(permit_timer(0), 8.0, PermitTimeout(0)),)


def test_expiry_overrides() -> None:
    assert dict(expiry_overrides({"max_attempts": 2}, 4)) == {
        "max_attempts": 2,
        "expiry": 4.0,
        "initial_expiry": 4.0,
    }
    settings_ = Settings({"max_expiry": 10.0, "expiry": 5.0}, environ={})
    with pytest.raises(ConfigError, match="max_expiry"):
        settings_.resolve(expiry_overrides({}, 20.0))


def test_configure_merges_overrides_without_events() -> None:
    d = Driver(max_attempts=5)
    d.fail(2)
    d.take_events()
    d.send(Configure({"max_attempts": 3, "expiry": 2.0}))
    assert dict(d.circuit.overrides) == {"max_attempts": 3, "expiry": 2.0}
    assert d.take_events() == [] and d.last is not None and d.last.timers == ()
    d.fail()
    assert d.circuit.state is OPEN and d.circuit.current_expiry == 2.0


