"""Timers to resume after a restart, and the public status of a circuit."""

from __future__ import annotations

import pytest

from brama._cell import Cell, to_status
from brama._circuit import (
    EXPIRY_TIMER,
    Acquire,
    Circuit,
    DisableExpiry,
    ExpiryTick,
    Now,
    PermitTimeout,
    ResetExpiry,
    Success,
    TimerRequest,
    expiry_for,
    new_circuit,
    permit_timer,
    resume_timers,
    step,
)
from tests.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    WALL_OFFSET,
    Driver,
    half_open_driver,
    make_options,
    open_driver,
)

# --- generations, restarts, snapshots ----------------------------------------------------


def test_resume_timers() -> None:
    d = half_open_driver(half_open_max_calls=2)
    d.send(Acquire())
    d.advance(1.0)
    d.send(Acquire())
    assert resume_timers(d.circuit, d.now()) == (
        TimerRequest(permit_timer(0), 4.0, PermitTimeout(0)),
        TimerRequest(permit_timer(1), 5.0, PermitTimeout(1)),
    )
    d.fail()
    assert d.circuit.state is OPEN
    d.advance(3.0)
    deadline = d.circuit.open_deadline
    assert deadline is not None
    assert resume_timers(d.circuit, d.now()) == (
        TimerRequest(EXPIRY_TIMER, deadline - d.mono, ExpiryTick(d.circuit.generation)),
    )
    late = Now(wall=0.0, mono=deadline + 100)
    assert resume_timers(d.circuit, late)[0].delay == 0.0
    assert resume_timers(Driver().circuit, d.now()) == ()
    d.send(DisableExpiry())
    assert resume_timers(d.circuit, d.now()) == ()


def test_resumed_circuit_continues_where_it_was() -> None:
    d = open_driver(expiry=5.0)
    restarted = Driver(circuit=d.circuit)
    for key, delay, message in resume_timers(restarted.circuit, restarted.now()):
        restarted.arm(key, delay, message)
    restarted.advance(5.0)
    assert restarted.circuit.state is HALF_OPEN


def test_status() -> None:
    d = Driver(max_attempts=4)
    status = d.status()
    assert status.identifier == "db" and status.scope == "s" and status.type == "database"
    assert status.state is CLOSED and status.available
    assert status.success_rate is None
    assert dict(status.metadata) == {"a": 1}
    assert status.registered_at == WALL_OFFSET and status.max_attempts == 4
    assert (status.initial_expiry, status.max_expiry) == (60.0, 600.0)
    assert (status.last_failure_reason, status.half_open_permits_in_use) == (None, 0)
    assert (status.open_until, status.total_openings) == (None, 0)
    d.send(Success())
    d.fail(3, reason="disk full")
    status = d.status()
    assert (status.total_successes, status.total_failures) == (1, 3)
    assert status.success_rate == 0.25 and status.failure_count == 3
    assert status.last_failure_reason == "disk full"


def test_status_adds_fast_path_counters() -> None:
    d = Driver()
    d.advance(1.0)
    d.send(Success())
    d.fail()
    cell = Cell("x", None, "general", {}, d.circuit)
    next(cell.fast_successes)
    next(cell.fast_successes)
    for _ in range(5):
        next(cell.fast_rejections)
    cell.last_fast_success = WALL_OFFSET
    status = to_status(cell, d.circuit, d.options)
    assert status.total_successes == 3 and status.rejected_calls == 5
    assert status.success_rate == 0.75
    assert status.last_success_time == 1.0 + WALL_OFFSET  # the later of the two
    cell.last_fast_success = WALL_OFFSET + 9
    assert to_status(cell, d.circuit, d.options).last_success_time == WALL_OFFSET + 9


def test_status_while_open_and_half_open_for_diagnosis() -> None:
    d = open_driver(expiry=7.0)
    status = d.status()
    assert status.state is OPEN and not status.available
    assert status.opened_at == WALL_OFFSET and status.expiry == 7.0
    assert status.last_state_change == WALL_OFFSET
    assert status.open_until == WALL_OFFSET + 7.0 and status.total_openings == 1
    assert status.last_failure_reason == "boom"
    d.send(DisableExpiry())
    assert d.status().open_until is None
    d.send(ResetExpiry())
    d.send(Acquire())
    status = d.status()
    assert (status.state, status.half_open_permits_in_use, status.open_until) == (
        HALF_OPEN, 1, None
    )


def test_expiry_for_closed_uses_the_next_opening() -> None:
    options = make_options(expiry_strategy="progressive", initial_expiry=2.0)
    assert expiry_for(new_circuit(Now(0.0, 0.0)), options) == 2.0


def test_unknown_message_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        step(Circuit(), make_options(), "bogus", Now(0.0, 0.0))  # type: ignore[arg-type]


def test_last_activity_tracks_outcomes_and_changes() -> None:
    d = Driver(max_attempts=1, expiry=5.0)
    d.advance(2.0)
    d.send(Acquire())
    assert d.circuit.last_activity == 0.0  # admission alone is not activity
    d.fail()
    assert d.circuit.last_activity == 2.0
    d.advance(5.0)
    assert d.circuit.last_activity == 7.0  # the half-open transition


