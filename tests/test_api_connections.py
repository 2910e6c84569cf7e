"""Acceptance tests: connections (register, unregister, available, success, failure, status,
connections) and the circuit-breaker state machine as seen through the public API."""

from __future__ import annotations

import math

import pytest

import brama
from brama import (
    AlreadyRegisteredError,
    BramaError,
    CircuitState,
    ConfigError,
    ConnectionStatus,
    EventType,
    NotFoundError,
)
from tests.helpers import events_before_marker

T0 = 1_000_000.0
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def fail(system: brama.Brama, identifier: str, times: int, **kw: object) -> None:
    for _ in range(times):
        system.failure(identifier, **kw)


# --- register and its defaults ---------------------------------------------------------------


def test_register_returns_status_with_defaults(brama_system, brama_clock):
    status = brama_system.register("db")
    assert isinstance(status, ConnectionStatus)
    assert status.identifier == "db"
    assert status.scope is None
    assert status.type == "general"
    assert status.state is CLOSED
    assert status.state == "closed"
    assert status.failure_count == 0
    assert status.max_attempts == 10
    assert status.expiry == 60.0
    assert status.expiry_strategy == "fixed"
    assert status.initial_expiry == 60.0
    assert status.max_expiry == 600.0
    assert status.backoff_factor == 2.0
    assert status.half_open_max_calls == 1
    assert status.success_threshold == 1
    assert status.opened_at is None
    assert status.last_failure_time is None
    assert status.last_success_time is None
    assert status.registered_at == T0 == brama_clock.time()
    assert status.expiry_disabled is False
    assert dict(status.metadata) == {}
    assert status.total_successes == 0
    assert status.total_failures == 0
    assert status.rejected_calls == 0
    assert status.success_rate is None
    assert brama_system.status("db") == status


def test_register_with_per_connection_options(brama_system):
    status = brama_system.register(
        "api",
        max_attempts=3,
        expiry=5,
        expiry_strategy="progressive",
        initial_expiry=2.5,
        max_expiry=40.0,
        backoff_factor=3,
        half_open_max_calls=4,
        success_threshold=2,
        hibernate_after=1.0,
    )
    assert status.max_attempts == 3
    assert status.expiry_strategy == "progressive"
    assert status.initial_expiry == 2.5
    assert status.max_expiry == 40.0
    assert status.backoff_factor == 3.0
    assert status.half_open_max_calls == 4
    assert status.success_threshold == 2
    # progressive: the next opening lasts initial_expiry
    assert status.expiry == 2.5
    # and the defaults of another connection are untouched
    other = brama_system.register("other")
    assert (other.max_attempts, other.expiry, other.half_open_max_calls) == (10, 60.0, 1)


def test_register_type_and_metadata_is_an_immutable_copy(brama_system):
    meta = {"host": "db1", "port": 5432}
    status = brama_system.register("db", type="database", metadata=meta)
    meta["host"] = "changed"
    meta["new"] = 1
    assert status.type == "database"
    assert dict(status.metadata) == {"host": "db1", "port": 5432}
    assert dict(brama_system.status("db").metadata) == {"host": "db1", "port": 5432}
    with pytest.raises(TypeError):
        status.metadata["host"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        brama_system.status("db").metadata["x"] = 1  # type: ignore[index]
    assert brama_system.status("db").type == "database"


def test_registered_at_is_clock_time_at_registration(brama_system, brama_clock):
    brama_clock.advance(3.5)
    assert brama_system.register("late").registered_at == T0 + 3.5
    brama_clock.advance(10)
    assert brama_system.status("late").registered_at == T0 + 3.5


def test_duplicate_register_raises_already_registered(brama_system):
    brama_system.register("db", max_attempts=3)
    with pytest.raises(AlreadyRegisteredError, match="db") as info:
        brama_system.register("db", max_attempts=7)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BramaError)
    # the existing connection is untouched
    assert brama_system.status("db").max_attempts == 3
    assert len(brama_system.connections()) == 1


def test_same_identifier_in_two_scopes_is_two_connections(brama_system):
    brama_system.register("db", max_attempts=2)
    brama_system.register("db", scope="tenant-a", max_attempts=5)
    brama_system.register("db", scope="tenant-b")
    fail(brama_system, "db", 2, scope="tenant-a")
    assert brama_system.status("db", scope="tenant-a").failure_count == 2
    assert brama_system.status("db", scope="tenant-a").state is CLOSED
    assert brama_system.status("db").failure_count == 0
    assert brama_system.status("db", scope="tenant-b").failure_count == 0
    fail(brama_system, "db", 2)
    assert brama_system.status("db").state is OPEN
    assert brama_system.available("db") is False
    assert brama_system.available("db", scope="tenant-a") is True
    assert brama_system.status("db", scope="tenant-a").scope == "tenant-a"
    with pytest.raises(AlreadyRegisteredError):
        brama_system.register("db", scope="tenant-a")


def test_unregister_removes_and_unknown_is_ignored(brama_system):
    brama_system.register("db")
    brama_system.register("db", scope="s")
    assert brama_system.unregister("db") is None
    with pytest.raises(NotFoundError):
        brama_system.status("db")
    assert brama_system.available("db") is False
    assert [c.scope for c in brama_system.connections()] == ["s"]
    # unknown: ignored, twice over
    brama_system.unregister("db")
    brama_system.unregister("never-registered", scope="nowhere")
    assert [c.scope for c in brama_system.connections()] == ["s"]
    # and it can be registered again, fresh
    fail(brama_system, "db", 1, scope="s")
    brama_system.unregister("db", scope="s")
    again = brama_system.register("db", scope="s")
    assert again.failure_count == 0
    assert again.total_failures == 0


def test_unknown_connections(brama_system):
    assert brama_system.available("ghost") is False
    assert brama_system.available("ghost", scope="x") is False
    for call in (
        lambda: brama_system.success("ghost"),
        lambda: brama_system.failure("ghost", reason="r"),
        lambda: brama_system.status("ghost"),
        lambda: brama_system.success("ghost", scope="x"),
    ):
        with pytest.raises(NotFoundError) as info:
            call()
        assert isinstance(info.value, LookupError)
        assert isinstance(info.value, BramaError)
        assert "ghost" in str(info.value)
    # an identifier registered in one scope is unknown in another
    brama_system.register("db", scope="a")
    with pytest.raises(NotFoundError):
        brama_system.status("db")
    with pytest.raises(NotFoundError):
        brama_system.failure("db", scope="b")


def test_connections_lists_all_and_by_scope(brama_system):
    assert brama_system.connections() == []
    brama_system.register("a")
    brama_system.register("b", scope="s1")
    brama_system.register("c", scope="s1")
    brama_system.register("a", scope="s2")
    everything = brama_system.connections()
    assert all(isinstance(c, ConnectionStatus) for c in everything)
    assert sorted((c.scope or "", c.identifier) for c in everything) == [
        ("", "a"), ("s1", "b"), ("s1", "c"), ("s2", "a"),
    ]
    assert sorted(c.identifier for c in brama_system.connections(scope="s1")) == ["b", "c"]
    assert [(c.scope, c.identifier) for c in brama_system.connections(scope="s2")] == [("s2", "a")]
    assert brama_system.connections(scope="nope") == []
    fail(brama_system, "b", 3, scope="s1")
    (b,) = [c for c in brama_system.connections(scope="s1") if c.identifier == "b"]
    assert b.failure_count == 3
    assert b == brama_system.status("b", scope="s1")


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [123, None, b"db", ("db",)])
def test_identifier_must_be_str(brama_system, bad):
    with pytest.raises(TypeError, match="identifier"):
        brama_system.register(bad)
    with pytest.raises(TypeError):
        brama_system.status(bad)
    assert brama_system.connections() == []


def test_identifier_must_not_be_empty(brama_system):
    with pytest.raises(ValueError, match="identifier"):
        brama_system.register("")
    with pytest.raises(ValueError):
        brama_system.status("")
    assert brama_system.connections() == []


def test_scope_must_be_none_or_non_empty_str(brama_system):
    with pytest.raises(ValueError, match="scope"):
        brama_system.register("db", scope="")
    with pytest.raises(TypeError, match="scope"):
        brama_system.register("db", scope=5)
    with pytest.raises(ValueError, match="scope"):
        brama_system.connections(scope="")
    with pytest.raises(TypeError, match="scope"):
        brama_system.connections(scope=["s"])
    assert brama_system.connections() == []


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"bogus_option": 1}, "bogus_option"),
        ({"max_attemps": 3}, "max_attemps"),
        ({"cleanup_interval": 1.0}, "cleanup_interval"),  # global only, not per connection
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"half_open_max_calls": False}, "half_open_max_calls"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"expiry": math.nan}, "expiry"),
        ({"expiry": math.inf}, "expiry"),
        ({"expiry": -1.0}, "expiry"),
        ({"expiry": 0}, "expiry"),
        ({"expiry": True}, "expiry"),
        ({"initial_expiry": -5}, "initial_expiry"),
        ({"max_expiry": math.inf}, "max_expiry"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"backoff_factor": math.nan}, "backoff_factor"),
        ({"expiry_strategy": "linear"}, "expiry_strategy"),
        ({"hibernate_after": -1}, "hibernate_after"),
    ],
)
def test_bad_options_rejected_and_nothing_changes(brama_system, options, named):
    brama_system.register("existing", max_attempts=4)
    fail(brama_system, "existing", 1)
    sub = brama_system.subscribe()
    before_status = brama_system.status("existing")
    before_all = brama_system.connections()
    with pytest.raises(ConfigError, match=named) as info:
        brama_system.register("new", **options)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigError, match=named):
        brama_system.register("existing2", scope="s", **options)
    assert brama_system.status("existing") == before_status
    assert brama_system.connections() == before_all
    with pytest.raises(NotFoundError):
        brama_system.status("new")
    assert events_before_marker(brama_system, sub) == []
    # the system still works normally
    fail(brama_system, "existing", 3)
    assert brama_system.status("existing").state is OPEN


def test_rejected_register_arguments_emit_nothing(brama_system):
    sub = brama_system.subscribe()
    brama_system.register("db")
    before = brama_system.connections()
    assert [e.event for e in events_before_marker(brama_system, sub)] == [
        EventType.CONNECTION_REGISTERED, EventType.REGISTRATION,
    ]
    for call in (
        lambda: brama_system.register(""),
        lambda: brama_system.register(42),
        lambda: brama_system.register("x", scope=""),
        lambda: brama_system.register("x", metadata=[("a", 1)]),
        lambda: brama_system.register("x", type=3),
        lambda: brama_system.register("db"),
        lambda: brama_system.success("ghost"),
        lambda: brama_system.failure("ghost"),
    ):
        with pytest.raises((TypeError, ValueError, LookupError)):
            call()
    assert brama_system.connections() == before
    assert events_before_marker(brama_system, sub) == []


# --- the state machine through the API -------------------------------------------------------


def test_closed_opens_at_max_attempts(brama_system, brama_clock):
    brama_system.register("db", max_attempts=3)
    fail(brama_system, "db", 2, reason="timeout")
    status = brama_system.status("db")
    assert (status.state, status.failure_count, status.total_failures) == (CLOSED, 2, 2)
    assert status.last_failure_time == T0
    assert brama_system.available("db") is True
    brama_clock.advance(1.25)
    brama_system.failure("db", reason="timeout")
    status = brama_system.status("db")
    assert status.state is OPEN
    assert status.failure_count == 3
    assert status.opened_at == T0 + 1.25
    assert status.last_state_change == T0 + 1.25
    assert status.expiry == 60.0
    assert status.available is False


def test_success_resets_failure_count(brama_system):
    brama_system.register("db", max_attempts=3)
    fail(brama_system, "db", 2)
    brama_system.success("db")
    assert brama_system.status("db").failure_count == 0
    fail(brama_system, "db", 2)
    assert brama_system.status("db").state is CLOSED
    assert brama_system.status("db").failure_count == 2
    brama_system.failure("db")
    assert brama_system.status("db").state is OPEN


def test_open_rejects_and_counts_rejections(brama_system):
    brama_system.register("db", max_attempts=1)
    assert brama_system.available("db") is True
    brama_system.failure("db")
    assert [brama_system.available("db") for _ in range(5)] == [False] * 5
    status = brama_system.status("db")
    assert status.rejected_calls == 5
    assert status.state is OPEN


def test_late_outcomes_while_open_update_totals_only(brama_system, brama_clock):
    brama_system.register("db", max_attempts=3, expiry=30)
    fail(brama_system, "db", 3)
    opened = brama_system.status("db")
    assert opened.state is OPEN
    brama_clock.advance(10)
    brama_system.success("db")
    brama_clock.advance(5)
    brama_system.failure("db", reason="late")
    status = brama_system.status("db")
    assert status.state is OPEN
    assert status.failure_count == 3
    assert status.opened_at == opened.opened_at == T0
    assert status.total_successes == 1
    assert status.total_failures == 4
    assert status.last_success_time == T0 + 10
    assert status.last_failure_time == T0 + 15
    assert status.last_state_change == T0
    # the deadline stays at opened_at + 30
    brama_clock.advance(15 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN


def test_open_goes_half_open_exactly_at_deadline_without_calls(brama_system, brama_clock):
    brama_system.register("db", max_attempts=2, expiry=5)
    fail(brama_system, "db", 2)
    brama_clock.advance(5 - 0.001)
    assert brama_system.status("db").state is OPEN
    assert brama_system.available("db") is False
    brama_clock.advance(0.001)
    status = brama_system.status("db")
    assert status.state is HALF_OPEN
    assert status.last_state_change == T0 + 5
    assert status.opened_at == T0
    assert status.rejected_calls == 1


def test_half_open_permits_limited(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=5, half_open_max_calls=2,
                          success_threshold=5)
    brama_system.failure("db")
    brama_clock.advance(5)
    assert brama_system.status("db").state is HALF_OPEN
    assert brama_system.status("db").available is True
    assert brama_system.available("db") is True
    assert brama_system.available("db") is True
    assert brama_system.available("db") is False
    assert brama_system.available("db") is False
    assert brama_system.status("db").rejected_calls == 2
    # a success returns a permit (the threshold of 5 is not reached)
    brama_system.success("db")
    assert brama_system.status("db").state is HALF_OPEN
    assert brama_system.available("db") is True
    assert brama_system.available("db") is False
    assert brama_system.status("db").rejected_calls == 3


def test_half_open_permit_returns_after_expiry_if_never_reported(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=4)
    brama_system.failure("db")
    brama_clock.advance(4)
    lease = brama_system.status("db").expiry
    assert lease == 4.0
    assert brama_system.available("db") is True
    assert brama_system.available("db") is False
    brama_clock.advance(lease - 0.001)
    assert brama_system.available("db") is False
    brama_clock.advance(0.001)
    assert brama_system.available("db") is True
    assert brama_system.available("db") is False
    assert brama_system.status("db").state is HALF_OPEN
    assert brama_system.status("db").rejected_calls == 3


def test_half_open_permit_returned_by_failure_report(brama_system, brama_clock):
    # a failure in half-open re-opens; after the next expiry a fresh permit is available
    brama_system.register("db", max_attempts=1, expiry=2)
    brama_system.failure("db")
    brama_clock.advance(2)
    assert brama_system.available("db") is True
    brama_system.failure("db")
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(2)
    assert brama_system.status("db").state is HALF_OPEN
    assert brama_system.available("db") is True


def test_success_threshold(brama_system, brama_clock):
    brama_system.register("db", max_attempts=2, expiry=1, success_threshold=2)
    fail(brama_system, "db", 2)
    brama_clock.advance(1)
    assert brama_system.available("db") is True
    brama_system.success("db")
    assert brama_system.status("db").state is HALF_OPEN
    assert brama_system.available("db") is True
    brama_clock.advance(0.5)
    brama_system.success("db")
    status = brama_system.status("db")
    assert status.state is CLOSED
    assert status.failure_count == 0
    assert status.opened_at is None
    assert status.last_state_change == T0 + 1.5
    assert brama_system.available("db") is True
    # closed again: it takes max_attempts failures to open
    brama_system.failure("db")
    assert brama_system.status("db").state is CLOSED


def test_failure_in_half_open_reopens_at_next_backoff_step(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry_strategy="progressive",
                          initial_expiry=5, backoff_factor=2, max_expiry=100)
    brama_system.failure("db")
    assert brama_system.status("db").expiry == 5.0
    brama_clock.advance(5)
    assert brama_system.available("db") is True
    brama_clock.advance(1)
    brama_system.failure("db", reason="still down")
    status = brama_system.status("db")
    assert status.state is OPEN
    assert status.expiry == 10.0
    assert status.opened_at == T0 + 6
    brama_clock.advance(10 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN


def test_progressive_expiry_doubles_caps_and_resets(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry_strategy="progressive",
                          initial_expiry=5, backoff_factor=2, max_expiry=35)
    brama_system.failure("db")
    observed = []
    for _ in range(5):
        status = brama_system.status("db")
        assert status.state is OPEN
        observed.append(status.expiry)
        brama_clock.advance(status.expiry - 0.001)
        assert brama_system.status("db").state is OPEN
        brama_clock.advance(0.001)
        assert brama_system.status("db").state is HALF_OPEN
        assert brama_system.available("db") is True
        brama_system.failure("db")
    assert observed == [5.0, 10.0, 20.0, 35.0, 35.0]
    # close through half-open: the backoff returns to its first step
    brama_clock.advance(35)
    assert brama_system.available("db") is True
    brama_system.success("db")
    assert brama_system.status("db").state is CLOSED
    assert brama_system.status("db").expiry == 5.0
    brama_system.failure("db")
    assert brama_system.status("db").expiry == 5.0
    brama_clock.advance(5)
    assert brama_system.status("db").state is HALF_OPEN


def test_fixed_expiry_does_not_grow(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=3)
    for _ in range(3):
        brama_system.failure("db")
        assert brama_system.status("db").expiry == 3.0
        brama_clock.advance(3)
        assert brama_system.status("db").state is HALF_OPEN
        assert brama_system.available("db") is True


def test_success_rate_and_totals(brama_system):
    brama_system.register("db")
    assert brama_system.status("db").success_rate is None
    for _ in range(3):
        brama_system.success("db")
    brama_system.failure("db")
    status = brama_system.status("db")
    assert status.total_successes == 3
    assert status.total_failures == 1
    assert status.success_rate == pytest.approx(0.75)
    brama_system.success("db")
    status = brama_system.status("db")
    assert status.failure_count == 0
    assert status.success_rate == pytest.approx(0.8)


def test_success_updates_last_success_time(brama_system, brama_clock):
    brama_system.register("db")
    brama_clock.advance(2)
    brama_system.success("db")
    assert brama_system.status("db").last_success_time == T0 + 2
    brama_system.failure("db")
    brama_clock.advance(3)
    brama_system.success("db")
    status = brama_system.status("db")
    assert status.last_success_time == T0 + 5
    assert status.last_failure_time == T0 + 2


def test_reregistered_connection_ignores_old_registrations_deadline(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1)  # expiry 60
    brama_system.failure("db")  # opened at T0: deadline T0+60
    brama_clock.advance(1)
    brama_system.unregister("db")
    fresh = brama_system.register("db", max_attempts=1)
    assert fresh.state is CLOSED
    brama_clock.advance(49)
    brama_system.failure("db")  # opened at T0+50: deadline T0+110
    assert brama_system.status("db").opened_at == T0 + 50
    brama_clock.advance(10.5)  # T0+60.5: the first registration's deadline has passed
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(49.5 - 0.001)
    assert brama_system.status("db").state is OPEN
    brama_clock.advance(0.001)
    assert brama_system.status("db").state is HALF_OPEN


def test_reregistered_connection_keeps_its_half_open_permits(brama_system, brama_clock):
    # a permit lease of the first registration must not take back a permit of the second
    brama_system.register("db", max_attempts=1, expiry=10)
    brama_system.failure("db")
    brama_clock.advance(10)
    assert brama_system.available("db") is True  # permit 0, lease until T0+20
    brama_system.unregister("db")
    brama_system.register("db", max_attempts=1, expiry=10)
    brama_clock.advance(1)
    brama_system.failure("db")  # T0+11
    brama_clock.advance(8)
    brama_system.reset_expiry("db")  # half-open at T0+19
    assert brama_system.available("db") is True  # lease until T0+29
    brama_clock.advance(1.5)  # T0+20.5: the old lease has run out, the new one has not
    assert brama_system.available("db") is False


def test_concurrent_available_in_half_open_grants_exactly_the_permits(brama_system, brama_clock):
    import threading

    brama_system.register("db", max_attempts=1, expiry=1, half_open_max_calls=3)
    brama_system.failure("db")
    brama_clock.advance(1)
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def try_call() -> None:
        barrier.wait()
        granted = brama_system.available("db")
        with lock:
            results.append(granted)

    threads = [threading.Thread(target=try_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [False] * 5 + [True] * 3
    assert brama_system.status("db").rejected_calls == 5
