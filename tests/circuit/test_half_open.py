"""Half-open: permits, trials, closing and re-opening."""

from __future__ import annotations

from brama._circuit import (
    REFUSED,
    Acquire,
    PermitTimeout,
    Success,
    TimerRequest,
    permit_timer,
)
from brama.types import EventType
from tests.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    half_open_driver,
    state_change,
)


def test_permits_granted_up_to_max_then_rejected_and_counted() -> None:
    d = half_open_driver(half_open_max_calls=2)
    assert d.send(Acquire()).reply >= 0
    assert d.last is not None
    assert d.last.timers == (TimerRequest(permit_timer(0), 5.0, PermitTimeout(0)),)
    assert d.send(Acquire()).reply >= 0
    assert d.send(Acquire()).reply == REFUSED
    assert d.send(Acquire()).reply == REFUSED
    assert [p[0] for p in d.circuit.permits] == [0, 1]
    assert d.circuit.permits[0][1] == 10.0  # now (5) + expiry (5)
    assert d.circuit.rejected_calls == 2
    assert d.take_events() == []


def test_permit_timeout_returns_the_permit() -> None:
    d = half_open_driver()
    assert d.send(Acquire()).reply >= 0
    assert d.send(Acquire()).reply == REFUSED
    d.advance(5.0)  # the permit lease (status().expiry) runs out
    assert d.circuit.permits == ()
    assert d.take_events() == []
    assert d.send(Acquire()).reply >= 0
    assert d.circuit.state is HALF_OPEN


def test_unknown_permit_timeout_is_a_no_op() -> None:
    d = half_open_driver()
    d.send(Acquire())
    before = d.circuit
    assert d.send(PermitTimeout(99)).circuit is before


def test_success_in_half_open_closes_with_exact_events() -> None:
    d = half_open_driver()
    d.send(Acquire())
    d.send(Success())
    events = d.take_events()
    assert [e.event for e in events] == [
        EventType.SUCCESS,
        EventType.STATE_CHANGE,
        EventType.CIRCUIT_CLOSED,
    ]
    assert dict(events[0].data) == {"failure_count": 0, "reason": None}
    change = state_change(events)
    assert {k: change[k] for k in ("previous_state", "new_state", "reason", "failure_count")} == {
        "previous_state": HALF_OPEN,
        "new_state": CLOSED,
        "reason": "success_threshold_reached",
        "failure_count": 0,
    }
    c = d.circuit
    assert c.state is CLOSED and c.failure_count == 0 and c.opening_step == 0
    assert c.opened_at is None and c.permits == () and c.current_expiry is None


def test_success_threshold_counts_and_returns_oldest_permit() -> None:
    d = half_open_driver(half_open_max_calls=3, success_threshold=3)
    for _ in range(3):
        d.send(Acquire())
    d.send(Success())
    assert [p[0] for p in d.circuit.permits] == [1, 2]
    assert d.circuit.half_open_successes == 1 and d.circuit.state is HALF_OPEN
    assert d.send(Acquire()).reply >= 0  # the returned permit can be taken again
    d.send(Success())
    assert d.circuit.state is HALF_OPEN
    d.take_events()
    d.send(Success())
    assert d.circuit.state is CLOSED
    assert EventType.CIRCUIT_CLOSED in d.kinds()


def test_failure_in_half_open_reopens_at_next_step() -> None:
    d = half_open_driver(expiry_strategy="progressive", initial_expiry=5.0, max_expiry=100.0)
    d.send(Acquire())
    d.fail(reason="still down")
    events = d.take_events()
    assert [e.event for e in events] == [
        EventType.FAILURE,
        EventType.STATE_CHANGE,
        EventType.CIRCUIT_OPENED,
    ]
    assert dict(events[0].data) == {"failure_count": 2, "reason": "still down"}
    change = state_change(events)
    assert (change["previous_state"], change["new_state"]) == (HALF_OPEN, OPEN)
    assert (change["reason"], change["failure_count"]) == ("still down", 2)
    assert change["trigger"] == "half_open_failure"
    assert events[2].data["expiry"] == 10.0
    assert d.circuit.state is OPEN and d.circuit.permits == ()
    assert d.circuit.current_expiry == 10.0 and d.circuit.opening_step == 2


