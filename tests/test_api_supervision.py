"""Acceptance tests: a crashed connection actor is restarted from its last state."""

from __future__ import annotations

import logging
import threading

import pytest

import brama
from brama import CircuitState, EventType
from brama.testing import crash_connection
from tests.helpers import take, wait_until

T0 = 1_000_000.0
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def _crash_logged(caplog: pytest.LogCaptureFixture, start: int) -> bool:
    """An ERROR record from brama or pykka appeared after record index `start`."""
    return any(
        r.levelno >= logging.ERROR and r.name.split(".")[0] in ("brama", "pykka")
        for r in caplog.records[start:]
    )


def test_crash_of_open_connection_keeps_state_and_deadline(brama_system, brama_clock, caplog):
    caplog.set_level(logging.ERROR)
    brama_system.register("db", max_attempts=3, expiry=30)
    for _ in range(3):
        brama_system.failure("db", reason="down")
    brama_clock.advance(10)
    before = brama_system.status("db")
    assert before.state is OPEN
    start = len(caplog.records)
    assert crash_connection("db", system=brama_system) is None
    assert wait_until(lambda: _crash_logged(caplog, start), timeout=5)
    # the actor is gone and restarted; nothing of its state was lost
    brama_system.failure("db", reason="late")  # needs a live actor; updates totals only
    after = brama_system.status("db")
    assert after.state is OPEN
    assert after.failure_count == 3
    assert after.opened_at == before.opened_at == T0
    assert after.total_failures == 4
    assert after.expiry == 30.0
    assert brama_system.available("db") is False
    # the expiry still fires at the original deadline, T0 + 30
    brama_clock.advance(20 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    status = brama_system.status("db")
    assert status.state is HALF_OPEN
    assert status.last_state_change == T0 + 30


def test_crash_of_open_connection_without_other_messages_still_expires(
    brama_system, brama_clock
):
    sub = brama_system.subscribe(events=[EventType.CIRCUIT_HALF_OPENED])
    brama_system.register("db", max_attempts=1, expiry=5)
    brama_system.failure("db")
    brama_clock.advance(1)
    crash_connection("db", system=brama_system)
    brama_clock.advance(4 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN
    event = sub.get(timeout=2)
    assert event.timestamp == T0 + 5


def test_crash_of_closed_connection_keeps_failure_count(brama_system, caplog):
    caplog.set_level(logging.ERROR)
    brama_system.register("db", max_attempts=5)
    for _ in range(3):
        brama_system.failure("db")
    start = len(caplog.records)
    crash_connection("db", system=brama_system)
    assert wait_until(lambda: _crash_logged(caplog, start), timeout=5)
    status = brama_system.status("db")
    assert status.state is CLOSED
    assert status.failure_count == 3
    brama_system.failure("db")
    assert brama_system.status("db").failure_count == 4
    assert brama_system.status("db").state is CLOSED
    brama_system.failure("db")
    assert brama_system.status("db").state is OPEN


def test_reports_right_after_a_crash_are_not_lost(brama_system):
    brama_system.register("db", max_attempts=1000)
    sub = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.failure("db")
    crash_connection("db", system=brama_system)
    for _ in range(20):
        brama_system.failure("db")  # no ActorDeadError may reach the caller
    status = brama_system.status("db")
    assert status.total_failures == 21
    assert status.failure_count == 21
    assert [e.data["failure_count"] for e in take(sub, 21)] == list(range(1, 22))


def test_concurrent_reports_around_a_crash_are_exact(brama_system):
    brama_system.register("db", max_attempts=10_000)
    errors: list[BaseException] = []
    ready = threading.Barrier(5)

    def report() -> None:
        ready.wait()
        try:
            for _ in range(50):
                brama_system.failure("db")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=report) for _ in range(4)]
    for thread in threads:
        thread.start()
    ready.wait()
    crash_connection("db", system=brama_system)
    for thread in threads:
        thread.join(30)
    assert errors == []
    status = brama_system.status("db")
    assert status.total_failures == 200
    assert status.failure_count == 200


def test_crash_of_half_open_connection(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=2, success_threshold=2)
    brama_system.failure("db")
    brama_clock.advance(2)
    assert brama_system.available("db") is True
    brama_system.success("db")
    crash_connection("db", system=brama_system)
    status = brama_system.status("db")
    assert status.state is HALF_OPEN
    assert brama_system.available("db") is True
    brama_system.success("db")  # the second success of the threshold
    assert brama_system.status("db").state is CLOSED


def test_crash_of_unknown_connection_raises_not_found(brama_system):
    with pytest.raises(brama.NotFoundError):
        crash_connection("ghost", system=brama_system)


def test_other_connections_are_not_affected_by_a_crash(brama_system):
    brama_system.register("a", max_attempts=3)
    brama_system.register("b", max_attempts=3)
    brama_system.failure("a")
    brama_system.failure("b")
    brama_system.failure("b")
    crash_connection("a", system=brama_system)
    brama_system.failure("b")
    assert brama_system.status("b").state is OPEN
    assert brama_system.status("a").failure_count == 1
    brama_system.failure("a")
    assert brama_system.status("a").failure_count == 2


def test_crash_on_default_system(brama_clock):
    brama.shutdown()
    try:
        brama.start(clock=brama_clock)
        brama.register("db", max_attempts=2)
        brama.failure("db")
        crash_connection("db")
        brama.failure("db")
        assert brama.status("db").state is OPEN
        assert brama.status("db").total_failures == 2
    finally:
        brama.shutdown()


def test_crashes_beyond_restart_intensity_lose_no_reports(brama_system, brama_clock):
    # max_restarts=3 within max_seconds=5 (defaults): the fourth crash makes the connections
    # supervisor give up and escalate; the root restarts it and connections resume from their
    # state. The system is not down, so no report may be lost and no error may reach callers.
    brama_system.register("db", max_attempts=100)
    brama_system.register("open", max_attempts=1, expiry=30)
    brama_system.failure("open")
    for _ in range(4):
        crash_connection("db", system=brama_system)
        brama_system.failure("db")
    status = brama_system.status("db")
    assert status.total_failures == 4
    assert status.failure_count == 4
    brama_system.failure("db")
    assert brama_system.status("db").failure_count == 5
    # the other connection kept its open circuit and its deadline
    assert brama_system.status("open").state is OPEN
    assert brama_system.status("open").opened_at == T0
    brama_clock.advance(30)
    assert brama_system.status("open").state is HALF_OPEN


def test_hibernation_is_not_counted_as_a_crash():
    # hibernate_after=0 is valid: a closed connection gives its thread back right after each
    # message and is woken by the next one. Hibernating is not dying: it must never use up the
    # supervisor's restart intensity, lose a report or take the system down.
    reports = 3000
    with brama.Brama(hibernate_after=0.0) as system:
        system.register("db", max_attempts=10**6)
        for n in range(reports):
            try:
                system.failure("db")
            except brama.BramaError as exc:
                pytest.fail(f"report {n + 1} of {reports} failed: {exc!r}")
        status = system.status("db")
        assert status.total_failures == reports
        assert status.failure_count == reports
