"""Permits belong to calls: tickets, owned outcomes, releases, and the timers that go with them.

The decorator and guard admit each call with `Acquire` and report its outcome with the ticket
they were given; the plain manual API reports without one (LEGACY) and keeps the documented
behaviour: it returns the oldest permit.
"""

from __future__ import annotations

from brama._circuit import (
    EXPIRY_TIMER,
    NO_PERMIT,
    REFUSED,
    Acquire,
    CloseCircuit,
    Failure,
    OpenCircuit,
    PermitTimeout,
    Release,
    Success,
    TimerRequest,
    permit_timer,
    step,
)
from brama.types import EventType
from tests.circuit import CLOSED, HALF_OPEN, OPEN, Driver, half_open_driver, open_driver


def test_a_call_admitted_closed_finishing_in_half_open_takes_no_permit() -> None:
    """Found: a slow call admitted while closed, finishing during half-open, freed the trial's
    permit (two trials ran with half_open_max_calls=1) and closed the circuit."""
    d = Driver(max_attempts=1, expiry=5.0)
    slow = d.send(Acquire()).reply
    assert slow == NO_PERMIT
    d.fail()
    d.advance(5.0)
    assert d.circuit.state is HALF_OPEN
    trial = d.send(Acquire()).reply
    assert trial == 0
    d.send(Success(slow))  # the slow call ends: totals only
    assert d.circuit.state is HALF_OPEN
    assert [p[0] for p in d.circuit.permits] == [trial]
    assert d.circuit.half_open_successes == 0 and d.circuit.total_successes == 1
    assert d.send(Acquire()).reply == REFUSED  # the trial still holds the only permit
    d.send(Failure("late failure of an old call", slow))
    assert d.circuit.state is HALF_OPEN  # neither re-opens
    assert d.circuit.total_failures == 2
    d.send(Success(trial))
    assert d.circuit.state is CLOSED


def test_an_outcome_of_a_previous_half_open_period_counts_in_the_totals_only() -> None:
    d = half_open_driver(half_open_max_calls=1)
    old = d.send(Acquire()).reply
    d.send(OpenCircuit())
    d.send(CloseCircuit())
    d.send(OpenCircuit(expires_in=1.0))
    d.advance(1.0)
    assert d.circuit.state is HALF_OPEN
    new = d.send(Acquire()).reply
    assert new != old
    d.send(Success(old))
    assert d.circuit.state is HALF_OPEN and [p[0] for p in d.circuit.permits] == [new]


def test_only_the_owners_outcome_returns_a_permit_and_counts_as_a_trial() -> None:
    d = half_open_driver(half_open_max_calls=2, success_threshold=2)
    first = d.send(Acquire()).reply
    second = d.send(Acquire()).reply
    d.send(Success(second))
    assert [p[0] for p in d.circuit.permits] == [first]
    assert d.circuit.half_open_successes == 1
    d.send(Success(first))
    assert d.circuit.state is CLOSED


def test_a_release_returns_the_permit_and_counts_nothing() -> None:
    """Cancelled calls and ignored outcomes give their permit back at once (found: it was
    held until expiry, and the circuit stayed half-open although the service was back)."""
    d = half_open_driver()
    trial = d.send(Acquire()).reply
    before = d.circuit
    result = d.send(Release(trial))
    assert d.circuit.permits == () and result.events == ()
    assert (d.circuit.total_successes, d.circuit.total_failures) == (
        before.total_successes, before.total_failures
    )
    assert d.circuit.half_open_successes == 0
    assert result.timers == (TimerRequest(permit_timer(trial), 0.0, None),)  # cancelled
    assert d.send(Acquire()).reply >= 0  # the next trial may go


def test_release_of_a_ticket_without_permit_changes_nothing() -> None:
    d = half_open_driver()
    d.send(Acquire())
    for ticket in (NO_PERMIT, 99):
        before = d.circuit
        assert d.send(Release(ticket)).circuit is before


def test_legacy_outcomes_keep_the_documented_behaviour() -> None:
    d = half_open_driver(half_open_max_calls=2, success_threshold=2)
    oldest = d.send(Acquire()).reply
    d.send(Acquire())
    d.send(Success())  # no ticket: returns the oldest permit and counts as a trial
    assert oldest not in [p[0] for p in d.circuit.permits]
    assert d.circuit.half_open_successes == 1


def test_a_timed_out_permit_no_longer_counts_as_a_trial() -> None:
    d = half_open_driver()
    trial = d.send(Acquire()).reply
    d.advance(5.0)  # its lease runs out
    assert d.circuit.permits == ()
    d.send(Success(trial))
    assert d.circuit.state is HALF_OPEN and d.circuit.total_successes == 1


def test_returned_permits_cancel_their_timeout() -> None:
    d = half_open_driver(half_open_max_calls=2, success_threshold=3)
    first = d.send(Acquire()).reply
    second = d.send(Acquire()).reply
    assert set(d.pending) == {permit_timer(first), permit_timer(second)}
    d.send(Success(first))
    assert set(d.pending) == {permit_timer(second)}
    d.send(Failure("still down", second))  # re-opens: the expiry is armed, permits gone
    assert d.circuit.state is OPEN
    assert set(d.pending) == {EXPIRY_TIMER}


def test_closing_cancels_the_expiry_and_every_permit_timer() -> None:
    d = open_driver(expiry=30.0)
    assert set(d.pending) == {EXPIRY_TIMER}
    d.send(CloseCircuit())
    assert d.pending == {}
    d = half_open_driver(half_open_max_calls=2)
    d.send(Acquire())
    d.send(Acquire())
    d.send(CloseCircuit())
    assert d.pending == {}


def test_reopening_replaces_the_expiry_timer_instead_of_adding_one() -> None:
    d = open_driver(expiry=30.0)
    for _ in range(50):
        d.send(OpenCircuit())
    assert list(d.pending) == [EXPIRY_TIMER]


def test_events_are_built_only_when_someone_wants_them() -> None:
    d = Driver(max_attempts=1)
    nothing = step(d.circuit, d.options, Failure("x"), d.now(), frozenset())
    assert nothing.circuit.state is OPEN and nothing.events == ()
    only = step(d.circuit, d.options, Failure("x"), d.now(), frozenset({EventType.CIRCUIT_OPENED}))
    assert [e.event for e in only.events] == [EventType.CIRCUIT_OPENED]
    assert only.circuit.total_openings == 1


def test_permit_timeouts_of_another_period_are_ignored() -> None:
    d = half_open_driver()
    d.send(Acquire())
    before = d.circuit
    assert d.send(PermitTimeout(42)).circuit is before
