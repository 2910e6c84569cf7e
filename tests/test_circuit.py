"""Tests of the pure circuit state machine: transitions, events, timers and invariants."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brama.circuit import (
    Acquire,
    Circuit,
    CloseCircuit,
    Configure,
    DisableExpiry,
    Emit,
    ExpiryTick,
    Failure,
    Message,
    Now,
    OpenCircuit,
    PermitTimeout,
    ResetCircuit,
    ResetExpiry,
    SetExpiry,
    Step,
    Success,
    TimerRequest,
    expiry_for,
    expiry_overrides,
    new_circuit,
    next_opening_expiry,
    resume_timers,
    step,
    to_status,
)
from brama.config import Options, Settings
from brama.errors import ConfigError
from brama.types import CircuitState, EventType

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
WALL_OFFSET = 1_000_000.0  # wall clock = monotonic + offset, so the two are told apart


def make_options(**overrides: Any) -> Options:
    return Settings({}, environ={}).resolve(overrides)


class Driver:
    """Feeds messages to the pure circuit and plays its timers on a simulated clock."""

    def __init__(self, circuit: Circuit | None = None, **overrides: Any) -> None:
        self.mono = 0.0
        self.settings = Settings({}, environ={})
        self.circuit = circuit if circuit is not None else new_circuit(self.now(), overrides)
        self.timers: list[tuple[float, int, ExpiryTick | PermitTimeout]] = []
        self.seq = itertools.count()
        self.events: list[Emit] = []
        self.last: Step | None = None

    def now(self) -> Now:
        return Now(wall=self.mono + WALL_OFFSET, mono=self.mono)

    @property
    def options(self) -> Options:
        return self.settings.resolve(self.circuit.overrides)

    def send(self, message: Message) -> Step:
        result = step(self.circuit, self.options, message, self.now())
        check_invariants(result.circuit, self.options)
        self.circuit = result.circuit
        self.events.extend(result.events)
        for timer in result.timers:
            assert timer.delay >= 0
            heapq.heappush(self.timers, (self.mono + timer.delay, next(self.seq), timer.message))
        self.last = result
        return result

    def advance(self, seconds: float) -> None:
        target = self.mono + seconds
        while self.timers and self.timers[0][0] <= target:
            due, _, message = heapq.heappop(self.timers)
            self.mono = max(self.mono, due)
            self.send(message)
        self.mono = target

    def fail(self, times: int = 1, reason: Any = None) -> None:
        for _ in range(times):
            self.send(Failure(reason))

    def take_events(self) -> list[Emit]:
        events, self.events = self.events, []
        return events

    def kinds(self) -> list[EventType]:
        return [e.event for e in self.take_events()]


def check_invariants(c: Circuit, options: Options) -> None:
    assert c.failure_count >= 0
    assert len(c.permits) <= options.half_open_max_calls
    assert c.total_successes >= 0 and c.total_failures >= 0 and c.rejected_calls >= 0
    if c.state is OPEN:
        assert c.opened_at is not None and c.current_expiry is not None
        assert (c.open_deadline is None) == c.expiry_disabled
    if c.state is CLOSED:
        assert c.permits == () and c.opened_at is None and c.opening_step == 0
        assert c.current_expiry is None and c.half_open_successes == 0
    if c.state is not HALF_OPEN:
        assert c.permits == ()
    if c.state is not OPEN:
        assert c.open_deadline is None
    ids = [p[0] for p in c.permits]
    assert ids == sorted(ids) and all(i < c.next_permit_id for i in ids)


def state_change(events: list[Emit]) -> dict[str, Any]:
    [change] = [e for e in events if e.event is EventType.STATE_CHANGE]
    return dict(change.data)


def open_driver(**overrides: Any) -> Driver:
    d = Driver(max_attempts=1, **overrides)
    d.fail(reason="boom")
    assert d.circuit.state is OPEN
    d.take_events()
    return d


# --- closed ------------------------------------------------------------------------------


def test_new_circuit() -> None:
    c = new_circuit(Now(wall=5.0, mono=1.0), {"expiry": 3.0})
    assert c.state is CLOSED and c.failure_count == 0
    assert c.registered_at == 5.0 and c.last_activity == 1.0
    assert dict(c.overrides) == {"expiry": 3.0}
    with pytest.raises(TypeError):
        c.overrides["x"] = 1  # type: ignore[index]


def test_acquire_in_closed_grants_without_permit() -> None:
    d = Driver()
    assert d.send(Acquire()).reply is True
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
        "reason": "last",
        "failure_count": 3,
    }
    assert change["trigger"] == "failures"
    opened = dict(events[2].data)
    assert (opened["reason"], opened["failure_count"], opened["expiry"]) == ("last", 3, 60.0)
    c = d.circuit
    assert c.opened_at == 1.0 + WALL_OFFSET and c.last_state_change == c.opened_at
    assert c.open_deadline == 61.0 and c.current_expiry == 60.0 and c.opening_step == 1
    assert d.last is not None
    assert d.last.timers == (TimerRequest(60.0, ExpiryTick(c.generation)),)


# --- open --------------------------------------------------------------------------------


def test_open_rejects_and_counts() -> None:
    d = open_driver()
    for _ in range(3):
        assert d.send(Acquire()).reply is False
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


# --- half-open ---------------------------------------------------------------------------


def half_open_driver(**overrides: Any) -> Driver:
    d = open_driver(expiry=5.0, **overrides)
    d.advance(5.0)
    assert d.circuit.state is HALF_OPEN
    d.take_events()
    return d


def test_permits_granted_up_to_max_then_rejected_and_counted() -> None:
    d = half_open_driver(half_open_max_calls=2)
    assert d.send(Acquire()).reply is True
    assert d.last is not None
    assert d.last.timers == (TimerRequest(5.0, PermitTimeout(0)),)
    assert d.send(Acquire()).reply is True
    assert d.send(Acquire()).reply is False
    assert d.send(Acquire()).reply is False
    assert [p[0] for p in d.circuit.permits] == [0, 1]
    assert d.circuit.permits[0][1] == 10.0  # now (5) + expiry (5)
    assert d.circuit.rejected_calls == 2
    assert d.take_events() == []


def test_permit_timeout_returns_the_permit() -> None:
    d = half_open_driver()
    assert d.send(Acquire()).reply is True
    assert d.send(Acquire()).reply is False
    d.advance(5.0)  # the permit lease (status().expiry) runs out
    assert d.circuit.permits == ()
    assert d.take_events() == []
    assert d.send(Acquire()).reply is True
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
    assert d.send(Acquire()).reply is True  # the returned permit can be taken again
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
    assert to_status_of(d).expiry == 5.0
    d.fail(2)
    lengths = [d.circuit.current_expiry]
    for _ in range(4):
        d.advance(d.circuit.current_expiry or 0.0)
        assert d.circuit.state is HALF_OPEN
        assert to_status_of(d).expiry == lengths[-1]
        d.fail()
        lengths.append(d.circuit.current_expiry)
    assert lengths == [5.0, 10.0, 20.0, 30.0, 30.0]
    d.advance(30.0)
    d.send(Success())
    assert d.circuit.state is CLOSED
    assert to_status_of(d).expiry == 5.0
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
    assert to_status_of(d).expiry == 2.5
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
    assert to_status_of(d).expiry_disabled is True


def test_disable_expiry_persists_across_openings_until_manual_action() -> None:
    d = Driver(max_attempts=1, expiry=5.0)
    d.send(DisableExpiry())
    d.fail()
    assert d.circuit.state is OPEN and d.circuit.open_deadline is None
    assert d.last is not None and d.last.timers == ()
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
    assert d.last is not None and d.last.timers == (TimerRequest(5.0, ExpiryTick(c.generation)),)
    assert to_status_of(d).expiry == 15.0
    d.advance(4.9)
    assert d.circuit.state is OPEN
    d.advance(0.1)
    assert d.circuit.state is HALF_OPEN
    d.advance(60.0)  # the original tick is stale
    assert d.circuit.state is HALF_OPEN


def test_set_expiry_in_closed_and_half_open() -> None:
    d = Driver(max_attempts=1)
    d.send(SetExpiry(3.0))
    assert d.take_events() == [] and to_status_of(d).expiry == 3.0
    d.fail()
    assert d.circuit.current_expiry == 3.0
    d.advance(3.0)
    d.send(SetExpiry(8.0))
    assert to_status_of(d).expiry == 8.0
    assert d.send(Acquire()).timers == (TimerRequest(8.0, PermitTimeout(0)),)


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


# --- generations, restarts, snapshots ----------------------------------------------------


def test_resume_timers() -> None:
    d = half_open_driver(half_open_max_calls=2)
    d.send(Acquire())
    d.advance(1.0)
    d.send(Acquire())
    assert resume_timers(d.circuit, d.now()) == (
        TimerRequest(4.0, PermitTimeout(0)),
        TimerRequest(5.0, PermitTimeout(1)),
    )
    d.fail()
    assert d.circuit.state is OPEN
    d.advance(3.0)
    deadline = d.circuit.open_deadline
    assert deadline is not None
    assert resume_timers(d.circuit, d.now()) == (
        TimerRequest(deadline - d.mono, ExpiryTick(d.circuit.generation)),
    )
    late = Now(wall=0.0, mono=deadline + 100)
    assert resume_timers(d.circuit, late)[0].delay == 0.0
    assert resume_timers(Driver().circuit, d.now()) == ()
    d.send(DisableExpiry())
    assert resume_timers(d.circuit, d.now()) == ()


def test_resumed_circuit_continues_where_it_was() -> None:
    d = open_driver(expiry=5.0)
    restarted = Driver(circuit=d.circuit)
    for timer in resume_timers(restarted.circuit, restarted.now()):
        heapq.heappush(restarted.timers, (timer.delay, 0, timer.message))
    restarted.advance(5.0)
    assert restarted.circuit.state is HALF_OPEN


def to_status_of(d: Driver, **kwargs: Any) -> Any:
    return to_status(
        d.circuit,
        d.options,
        identifier="db",
        scope="s",
        type="database",
        metadata={"a": 1},
        **kwargs,
    )


def test_to_status() -> None:
    d = Driver(max_attempts=4)
    status = to_status_of(d)
    assert status.identifier == "db" and status.scope == "s" and status.type == "database"
    assert status.state is CLOSED and status.available
    assert status.success_rate is None
    assert dict(status.metadata) == {"a": 1}
    assert status.registered_at == WALL_OFFSET and status.max_attempts == 4
    assert (status.initial_expiry, status.max_expiry) == (60.0, 600.0)
    d.send(Success())
    d.fail(3)
    status = to_status_of(d)
    assert (status.total_successes, status.total_failures) == (1, 3)
    assert status.success_rate == 0.25 and status.failure_count == 3


def test_to_status_adds_fast_path_counters() -> None:
    d = Driver()
    d.advance(1.0)
    d.send(Success())
    d.fail()
    status = to_status_of(d, extra_successes=2, extra_rejections=5, last_fast_success=WALL_OFFSET)
    assert status.total_successes == 3 and status.rejected_calls == 5
    assert status.success_rate == 0.75
    assert status.last_success_time == 1.0 + WALL_OFFSET  # the later of the two
    later = to_status_of(d, last_fast_success=WALL_OFFSET + 9)
    assert later.last_success_time == WALL_OFFSET + 9
    assert (
        to_status(
            Driver().circuit,
            make_options(),
            identifier="x",
            scope=None,
            type="general",
            metadata=None,
            last_fast_success=3.0,
        ).last_success_time
        == 3.0
    )


def test_to_status_while_open() -> None:
    d = open_driver(expiry=7.0)
    status = to_status_of(d)
    assert status.state is OPEN and not status.available
    assert status.opened_at == WALL_OFFSET and status.expiry == 7.0
    assert status.last_state_change == WALL_OFFSET


def test_expiry_for_closed_uses_the_next_opening() -> None:
    options = make_options(expiry_strategy="progressive", initial_expiry=2.0)
    assert expiry_for(new_circuit(Now(0.0, 0.0)), options) == 2.0


def test_emit_data_is_read_only() -> None:
    emit = Emit(EventType.SUCCESS, {"failure_count": 0})
    with pytest.raises(TypeError):
        emit.data["x"] = 1  # type: ignore[index]


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


# --- properties ----------------------------------------------------------------------------

MESSAGES = st.one_of(
    st.just(Success()),
    st.builds(Failure, st.sampled_from([None, "x"])),
    st.just(Acquire()),
    st.builds(
        OpenCircuit,
        st.none(),
        st.one_of(st.none(), st.floats(min_value=0.1, max_value=50.0)),
    ),
    st.builds(CloseCircuit),
    st.builds(ResetCircuit),
    st.just(ResetExpiry()),
    st.builds(SetExpiry, st.floats(min_value=0.1, max_value=50.0)),
    st.just(DisableExpiry()),
    st.builds(PermitTimeout, st.integers(min_value=0, max_value=5)),
    st.builds(ExpiryTick, st.integers(min_value=0, max_value=20)),
)
ACTIONS = st.lists(
    st.one_of(
        MESSAGES.map(lambda m: ("send", m)),
        st.floats(min_value=0.0, max_value=30.0).map(lambda t: ("advance", t)),
    ),
    max_size=60,
)
OVERRIDES = st.fixed_dictionaries(
    {
        "max_attempts": st.integers(min_value=1, max_value=4),
        "half_open_max_calls": st.integers(min_value=1, max_value=3),
        "success_threshold": st.integers(min_value=1, max_value=3),
        "expiry_strategy": st.sampled_from(["fixed", "progressive"]),
        "expiry": st.floats(min_value=0.5, max_value=20.0),
    }
)


def run(overrides: Mapping[str, Any], actions: list[tuple[str, Any]]) -> Driver:
    d = Driver(**overrides)
    for kind, value in actions:
        if kind == "send":
            d.send(value)
        else:
            d.advance(value)
    return d


@settings(max_examples=300, deadline=None)
@given(OVERRIDES, ACTIONS)
def test_random_sequences_keep_invariants(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = Driver(**overrides)
    previous = d.circuit
    for kind, value in actions:
        if kind == "send":
            result = d.send(value)
            changes = [e for e in result.events if e.event is EventType.STATE_CHANGE]
            if result.circuit.state is not previous.state:
                assert len(changes) == 1
                data = changes[0].data
                assert data["previous_state"] is previous.state
                assert data["new_state"] is result.circuit.state
                assert data["failure_count"] == result.circuit.failure_count
                assert result.circuit.generation > previous.generation
            else:
                assert changes == []
            if isinstance(value, Acquire):
                assert isinstance(result.reply, bool)
                if result.reply is False:
                    assert result.circuit.rejected_calls == previous.rejected_calls + 1
        else:
            d.advance(value)
        previous = d.circuit
        check_invariants(d.circuit, d.options)
    status = to_status_of(d)
    outcomes = status.total_successes + status.total_failures
    assert status.success_rate is None if outcomes == 0 else 0 <= status.success_rate <= 1


@settings(max_examples=200, deadline=None)
@given(OVERRIDES, ACTIONS)
def test_open_circuit_always_reaches_half_open_unless_disabled(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = run(overrides, actions)
    if d.circuit.state is OPEN:
        length = d.circuit.current_expiry
        assert length is not None
        d.advance(length + 1.0)
        if d.circuit.expiry_disabled:
            assert d.circuit.state is OPEN
        else:
            assert d.circuit.state is HALF_OPEN


@settings(max_examples=200, deadline=None)
@given(OVERRIDES, ACTIONS)
def test_progressive_openings_follow_the_formula(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = Driver(**{**overrides, "expiry_strategy": "progressive"})
    for kind, value in actions:
        if kind != "send":
            d.advance(value)
            continue
        step_before = d.circuit.opening_step
        options = d.options
        d.send(value)
        opened = [e for e in d.take_events() if e.event is EventType.CIRCUIT_OPENED]
        if opened and not (isinstance(value, OpenCircuit) and value.expires_in is not None):
            assert opened[0].data["expiry"] == next_opening_expiry(step_before, options)
            assert d.circuit.opening_step == step_before + 1
        if d.circuit.state is CLOSED:
            assert d.circuit.opening_step == 0


@settings(max_examples=100, deadline=None)
@given(OVERRIDES, ACTIONS)
def test_resume_timers_rebuild_the_same_future(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = run(overrides, actions)
    restarted = Driver(circuit=d.circuit)
    restarted.mono = d.mono
    for timer in resume_timers(d.circuit, d.now()):
        heapq.heappush(restarted.timers, (d.mono + timer.delay, 0, timer.message))
    d.advance(100.0)
    restarted.advance(100.0)
    assert restarted.circuit.state is d.circuit.state
    assert restarted.circuit.permits == d.circuit.permits
