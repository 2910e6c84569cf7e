"""Closed and open: outcomes, opening, expiry, stale ticks."""

from __future__ import annotations

import pytest

from brama._circuit import (
    EXPIRY_TIMER,
    NO_PERMIT,
    REFUSED,
    Acquire,
    CloseCircuit,
    ExpiryTick,
    Failure,
    Now,
    Success,
    TimerRequest,
    new_circuit,
)
from brama.types import EventType
from tests.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    WALL_OFFSET,
    Driver,
    open_driver,
    state_change,
)


def test_new_circuit() -> None:
    c = new_circuit(Now(wall=5.0, mono=1.0), {"expiry": 3.0})
    assert c.state is CLOSED and c.failure_count == 0
    assert c.registered_at == 5.0 and c.last_activity == 1.0
    assert dict(c.overrides) == {"expiry": 3.0}
    with pytest.raises(TypeError):
        c.overrides["x"] = 1  # type: ignore[index]


def test_acquire_in_closed_grants_without_permit() -> None:
    d = Driver()
    assert d.send(Acquire()).reply == NO_PERMIT
    assert d.circuit.permits == () and d.last is not None and d.last.events == ()


def test_success_in_closed_resets_failures() -> None:
    d = Driver()
    d.fail(3)
    assert d.circuit.failure_count == 3
    d.take_events()
    d.advance(2.0)
    d.send(Success())
    assert d.circuit.failure_count == 0 and d.circuit.total_successes == 1
    assert d.circuit.last_success_time == 2.0 + WALL_OFFSET and d.circuit.last_activity == 2.0
    [event] = d.take_events()
    assert event.event is EventType.SUCCESS
    assert dict(event.data) == {"failure_count": 0, "reason": None}


def test_failures_count_then_open_with_exact_events() -> None:
    d = Driver(max_attempts=3)
    d.fail(2, reason="r1")
    events = d.take_events()
    assert [dict(e.data) for e in events] == [
        {"failure_count": 1, "reason": "r1"},
        {"failure_count": 2, "reason": "r1"},
    ]
    assert d.circuit.state is CLOSED and d.circuit.total_failures == 2
    d.advance(1.0)
    d.fail(reason="last")
    events = d.take_events()
    assert [e.event for e in events] == [
        EventType.FAILURE,
        EventType.STATE_CHANGE,
        EventType.CIRCUIT_OPENED,
    ]
    assert dict(events[0].data) == {"failure_count": 3, "reason": "last"}
    change = state_change(events)
    assert {k: change[k] for k in ("previous_state", "new_state", "reason", "failure_count")} == {
        "previous_state": CLOSED,
        "new_state": OPEN,
        "reason": "max_attempts",
        "failure_count": 3,
    }
    assert (change["trigger"], change["rule"], change["last_failure_reason"]) == (
        "failures", "max_attempts", "last")
    opened = dict(events[2].data)
    assert (opened["reason"], opened["failure_count"], opened["expiry"]) == (
        "max_attempts", 3, 60.0)
    assert opened["last_failure_reason"] == "last"
    c = d.circuit
    assert c.opened_at == 1.0 + WALL_OFFSET and c.last_state_change == c.opened_at
    assert c.open_deadline == 61.0 and c.current_expiry == 60.0 and c.opening_step == 1
    assert d.last is not None
    assert d.last.timers == (TimerRequest(EXPIRY_TIMER, 60.0, ExpiryTick(c.generation)),)


# --- open --------------------------------------------------------------------------------


def test_open_rejects_and_counts() -> None:
    d = open_driver()
    for _ in range(3):
        assert d.send(Acquire()).reply == REFUSED
    assert d.circuit.rejected_calls == 3
    assert d.take_events() == []


def test_late_outcomes_while_open_only_touch_totals() -> None:
    d = open_driver()
    before = d.circuit
    d.advance(5.0)
    d.send(Success())
    d.send(Failure("late"))
    c = d.circuit
    assert c.state is OPEN and c.failure_count == before.failure_count
    assert c.open_deadline == before.open_deadline and c.generation == before.generation
    assert (c.total_successes, c.total_failures) == (1, before.total_failures + 1)
    assert c.last_success_time == c.last_failure_time == 5.0 + WALL_OFFSET
    events = d.take_events()
    assert [e.event for e in events] == [EventType.SUCCESS, EventType.FAILURE]
    assert dict(events[0].data) == {"failure_count": 1, "reason": None}
    assert dict(events[1].data) == {"failure_count": 1, "reason": "late"}
    assert d.last is not None and d.last.timers == ()


def test_expiry_goes_half_open_on_its_own() -> None:
    d = open_driver(expiry=5.0)
    opened_at = d.circuit.opened_at
    d.advance(4.999)
    assert d.circuit.state is OPEN
    d.advance(0.001)
    assert d.circuit.state is HALF_OPEN
    events = d.take_events()
    assert [e.event for e in events] == [
        EventType.EXPIRY,
        EventType.STATE_CHANGE,
        EventType.CIRCUIT_HALF_OPENED,
    ]
    assert dict(events[0].data) == {
        "opened_at": opened_at,
        "expired_at": 5.0 + WALL_OFFSET,
        "expiry": 5.0,
    }
    change = state_change(events)
    assert (change["previous_state"], change["new_state"]) == (OPEN, HALF_OPEN)
    assert (change["reason"], change["failure_count"]) == ("expired", 1)
    c = d.circuit
    assert c.failure_count == 1 and c.half_open_successes == 0
    assert c.open_deadline is None and c.opened_at == opened_at
    assert c.last_state_change == 5.0 + WALL_OFFSET


def test_stale_ticks_are_ignored() -> None:
    d = open_driver(expiry=5.0)
    gen = d.circuit.generation
    d.send(CloseCircuit())
    d.take_events()
    closed = d.circuit
    assert d.send(ExpiryTick(gen)).circuit == closed
    assert d.take_events() == []
    d.fail()
    d.take_events()
    assert d.circuit.state is OPEN
    for stale in (gen, d.circuit.generation - 1, d.circuit.generation + 1):
        result = d.send(ExpiryTick(stale))
        assert result.circuit.state is OPEN and result.events == () and result.timers == ()


