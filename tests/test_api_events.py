"""Acceptance tests: events (what is emitted, data, order), subscriptions and their delivery
modes, the inactivity sweep, and the log record of each state change."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import pytest

import brama
from brama import CircuitState, ConfigError, Event, EventType, Subscription
from tests.helpers import Recorder, events_before_marker, kinds, take

T0 = 1_000_000.0
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
SC = EventType.STATE_CHANGE


# --- what is emitted -----------------------------------------------------------------------


def test_every_event_type_is_emitted(brama_clock):
    with brama.Brama(clock=brama_clock, cleanup_interval=10, inactive_threshold=50) as system:
        sub = system.subscribe()
        system.register("db", max_attempts=1, expiry=5)
        system.success("db")
        system.failure("db", reason="boom")  # opens
        brama_clock.advance(5)  # expiry, half-open
        assert system.available("db") is True
        system.success("db")  # closes
        system.reset_circuit("db")
        system.register("tmp")
        system.unregister("tmp")
        system.register("idle")
        system.register("rates", failure_rate_threshold=0.5, window_size=2, minimum_calls=2,
                        max_attempts=10)
        system.success("rates")
        system.failure("rates")  # 1 of 2 failed: the failure-rate rule opens it
        system.register("slow", slow_call_duration=1.0, slow_call_rate_threshold=1.0,
                        window_size=1, minimum_calls=1)
        system.success("slow", duration=2.0)  # the slow-call-rate rule opens it
        brama_clock.advance(60)  # sweep removes the closed, idle ones
        # the backend's two events come from a system with a backend: tests/fleet
        local = set(EventType) - {EventType.BACKEND_UNAVAILABLE, EventType.BACKEND_RESTORED}
        seen: set[EventType] = set()
        while seen != local:
            try:
                seen.add(sub.get(timeout=2).event)
            except queue.Empty:
                break
        assert local - seen == set()
        assert len(EventType) == 17


def test_register_and_unregister_events(brama_system, brama_clock):
    sub = brama_system.subscribe()
    brama_clock.advance(1.5)
    brama_system.register("db", scope="s", type="database", metadata={"k": "v"})
    brama_system.unregister("db", scope="s")
    brama_system.unregister("db", scope="s")  # unknown now: ignored, no event
    events = events_before_marker(brama_system, sub)
    assert kinds(events) == [
        EventType.CONNECTION_REGISTERED, EventType.REGISTRATION, EventType.CONNECTION_UNREGISTERED,
    ] or kinds(events) == [
        EventType.REGISTRATION, EventType.CONNECTION_REGISTERED, EventType.CONNECTION_UNREGISTERED,
    ]
    for event in events:
        assert isinstance(event, Event)
        assert event.connection == "db"
        assert event.scope == "s"
        assert event.timestamp == T0 + 1.5


def test_event_data_is_read_only(brama_system):
    sub = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.register("db")
    brama_system.failure("db", reason="x")
    event = sub.get(timeout=2)
    with pytest.raises(TypeError):
        event.data["reason"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        event.connection = "other"  # type: ignore[misc]


def test_failure_and_success_data(brama_system, brama_clock):
    brama_system.register("db", max_attempts=3)
    sub = brama_system.subscribe(events=["failure", "success"])
    brama_clock.advance(2)
    brama_system.failure("db", reason="timeout")
    brama_system.failure("db", reason=ValueError)
    brama_system.success("db")
    brama_system.success("db")
    brama_system.failure("db")
    events = take(sub, 5)
    assert [(e.event, e.data["failure_count"], e.data["reason"]) for e in events] == [
        (EventType.FAILURE, 1, "timeout"),
        (EventType.FAILURE, 2, ValueError),
        (EventType.SUCCESS, 0, None),
        (EventType.SUCCESS, 0, None),
        (EventType.FAILURE, 1, None),
    ]
    assert all(e.timestamp == T0 + 2 for e in events)
    assert all(e.connection == "db" and e.scope is None for e in events)


def test_failure_that_opens_reports_count_after_the_outcome(brama_system):
    brama_system.register("db", max_attempts=2)
    sub = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.failure("db", reason="a")
    brama_system.failure("db", reason="b")
    brama_system.failure("db", reason="late")  # while open: count stays
    events = take(sub, 3)
    assert [(e.data["failure_count"], e.data["reason"]) for e in events] == [
        (1, "a"), (2, "b"), (2, "late"),
    ]


# --- STATE_CHANGE for every transition ----------------------------------------------------


def _change(sub: Subscription) -> tuple[Any, Any, Any, Any]:
    event = sub.get(timeout=2)
    assert event.event is SC, event
    data = event.data
    return data["previous_state"], data["new_state"], data["reason"], data["failure_count"]


def _auto_reason(reason: Any) -> None:
    """Reasons of automatic transitions are not fixed by the contract: a non-empty str."""
    assert isinstance(reason, str) and reason, reason


def test_state_change_on_every_transition(brama_system, brama_clock):
    brama_system.register("db", max_attempts=3, expiry=5)
    sub = brama_system.subscribe(events=[SC])
    specific = brama_system.subscribe(events=[
        EventType.CIRCUIT_OPENED, EventType.CIRCUIT_HALF_OPENED, EventType.CIRCUIT_CLOSED,
        EventType.CIRCUIT_RESET,
    ])

    # closed -> open by failures
    for _ in range(3):
        brama_system.failure("db", reason="boom")
    assert _change(sub) == (CLOSED, OPEN, "max_attempts", 3)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_OPENED

    # open -> half_open by expiry
    brama_clock.advance(5)
    prev, new, reason, count = _change(sub)
    assert (prev, new, count) == (OPEN, HALF_OPEN, brama_system.status("db").failure_count)
    _auto_reason(reason)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_HALF_OPENED

    # half_open -> open by a failed trial call
    assert brama_system.available("db") is True
    brama_system.failure("db", reason="still down")
    prev, new, reason, count = _change(sub)
    assert (prev, new, reason) == (HALF_OPEN, OPEN, "still down")
    assert count == brama_system.status("db").failure_count
    assert specific.get(timeout=2).event is EventType.CIRCUIT_OPENED

    # open -> half_open by reset_expiry
    brama_system.reset_expiry("db")
    prev, new, reason, count = _change(sub)
    assert (prev, new, count) == (OPEN, HALF_OPEN, brama_system.status("db").failure_count)
    _auto_reason(reason)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_HALF_OPENED

    # half_open -> closed by success
    assert brama_system.available("db") is True
    brama_system.success("db")
    prev, new, reason, count = _change(sub)
    assert (prev, new, count) == (HALF_OPEN, CLOSED, 0)
    _auto_reason(reason)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_CLOSED

    # closed -> open manually
    brama_system.failure("db")
    brama_system.open_circuit("db", reason="maintenance")
    assert _change(sub) == (CLOSED, OPEN, "maintenance", 1)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_OPENED

    # open -> closed manually
    brama_system.close_circuit("db", reason="done")
    assert _change(sub) == (OPEN, CLOSED, "done", 0)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_CLOSED

    # open -> closed by reset
    brama_system.open_circuit("db", reason="again")
    assert _change(sub) == (CLOSED, OPEN, "again", 0)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_OPENED
    brama_system.reset_circuit("db", reason="reset!")
    assert _change(sub) == (OPEN, CLOSED, "reset!", 0)
    assert specific.get(timeout=2).event is EventType.CIRCUIT_RESET

    # half_open -> open manually, half_open -> closed manually
    brama_system.open_circuit("db", expires_in=1)
    assert _change(sub)[:2] == (CLOSED, OPEN)
    brama_clock.advance(1)
    assert _change(sub)[:2] == (OPEN, HALF_OPEN)
    brama_system.open_circuit("db", reason="manual from half-open")
    assert _change(sub) == (HALF_OPEN, OPEN, "manual from half-open", 0)
    brama_system.reset_expiry("db")
    assert _change(sub)[:2] == (OPEN, HALF_OPEN)
    brama_system.close_circuit("db", reason="manual close from half-open")
    assert _change(sub) == (HALF_OPEN, CLOSED, "manual close from half-open", 0)

    # every STATE_CHANGE had its timestamp and connection
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_state_change_values_are_circuit_states(brama_system):
    brama_system.register("db", max_attempts=1)
    sub = brama_system.subscribe(events=["state_change"])
    brama_system.failure("db")
    event = sub.get(timeout=2)
    assert event.data["previous_state"] == "closed"
    assert event.data["new_state"] == "open"
    assert isinstance(event.data["new_state"], CircuitState)


def test_expiry_event(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1, expiry=7)
    sub = brama_system.subscribe(events=[EventType.EXPIRY])
    brama_system.failure("db")
    brama_clock.advance(7)
    event = sub.get(timeout=2)
    assert event.event is EventType.EXPIRY
    assert event.connection == "db"
    assert event.timestamp == T0 + 7


def test_order_of_one_connections_events(brama_system, brama_clock):
    sub = brama_system.subscribe(connection="db")
    brama_system.register("db", max_attempts=2, expiry=3)
    brama_system.failure("db", reason="1")
    brama_system.failure("db", reason="2")  # opens
    brama_clock.advance(3)  # expiry
    assert brama_system.available("db") is True
    brama_system.success("db")  # closes
    brama_system.open_circuit("db")
    brama_system.reset_circuit("db")
    brama_system.unregister("db")
    phases: list[set[EventType]] = [
        {EventType.CONNECTION_REGISTERED, EventType.REGISTRATION},
        {EventType.FAILURE},
        {EventType.FAILURE},
        {SC, EventType.CIRCUIT_OPENED},
        {EventType.EXPIRY, SC, EventType.CIRCUIT_HALF_OPENED},
        {EventType.SUCCESS},
        {SC, EventType.CIRCUIT_CLOSED},
        {SC, EventType.CIRCUIT_OPENED},
        {SC, EventType.CIRCUIT_RESET},
        {EventType.CONNECTION_UNREGISTERED},
    ]
    got = take(sub, sum(len(p) for p in phases))
    position = 0
    for phase in phases:
        chunk = got[position:position + len(phase)]
        assert {e.event for e in chunk} == phase, (phase, kinds(got))
        position += len(phase)
    assert [e.data["reason"] for e in got if e.event is EventType.FAILURE] == ["1", "2"]
    # EXPIRY comes before the half-open transition it causes
    expiry_phase = kinds(got[6:9])
    assert expiry_phase.index(EventType.EXPIRY) < expiry_phase.index(EventType.CIRCUIT_HALF_OPENED)
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_order_is_kept_under_concurrent_reporters(brama_system):
    brama_system.register("db", max_attempts=10_000)
    sub = brama_system.subscribe(events=[EventType.FAILURE], connection="db")

    def report() -> None:
        for _ in range(200):
            brama_system.failure("db")

    threads = [threading.Thread(target=report) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = [e.data["failure_count"] for e in take(sub, 800)]
    assert counts == list(range(1, 801))
    assert brama_system.status("db").failure_count == 800


# --- subscribe filters ---------------------------------------------------------------------


def test_subscribe_events_filter_with_enum_and_strings(brama_system):
    by_enum = brama_system.subscribe(events=[EventType.CIRCUIT_OPENED])
    by_str = brama_system.subscribe(events=["circuit_opened", "failure"])
    one_str = brama_system.subscribe(events="circuit_opened")
    brama_system.register("db", max_attempts=1)
    brama_system.failure("db", reason="x")
    assert by_enum.get(timeout=2).event is EventType.CIRCUIT_OPENED
    assert one_str.get(timeout=2).event is EventType.CIRCUIT_OPENED
    assert kinds(take(by_str, 2)) == [EventType.FAILURE, EventType.CIRCUIT_OPENED]
    brama_system.close_circuit("db")
    brama_system.open_circuit("db")
    # the close events were not delivered: the next one is the second opening
    second = by_enum.get(timeout=2)
    assert second.event is EventType.CIRCUIT_OPENED
    assert second.data["reason"] is None
    assert by_str.get(timeout=2).event is EventType.CIRCUIT_OPENED


@pytest.mark.parametrize("events", ["nonsense", ["failure", "nonsense"], [EventType.FAILURE, 3]])
def test_subscribe_unknown_event_name_raises_config_error(brama_system, events):
    with pytest.raises(ConfigError):
        brama_system.subscribe(events=events)
    # and nothing was subscribed: failures still take the fast path of nobody listening
    watcher = brama_system.subscribe(events=[EventType.REGISTRATION])
    brama_system.register("db")
    assert watcher.get(timeout=2).connection == "db"


def test_subscribe_connection_and_scope_filters(brama_system):
    only_a = brama_system.subscribe(connection="a", events=[EventType.FAILURE])
    only_s1 = brama_system.subscribe(scope="s1", events=[EventType.FAILURE])
    a_in_s1 = brama_system.subscribe(connection="a", scope="s1", events=[EventType.FAILURE])
    for identifier, scope in [("b", None), ("b", "s1"), ("a", "s2"), ("a", None), ("a", "s1")]:
        brama_system.register(identifier, scope=scope)
    brama_system.failure("b")
    brama_system.failure("b", scope="s1", reason="b-s1")
    brama_system.failure("a", scope="s2", reason="a-s2")
    brama_system.failure("a", reason="a-none")
    brama_system.failure("a", scope="s1", reason="a-s1")
    assert [e.data["reason"] for e in take(only_a, 3)] == ["a-s2", "a-none", "a-s1"]
    assert [e.data["reason"] for e in take(only_s1, 2)] == ["b-s1", "a-s1"]
    assert [e.data["reason"] for e in take(a_in_s1, 1)] == ["a-s1"]
    for sub in (only_a, only_s1, a_in_s1):
        with pytest.raises(queue.Empty):
            sub.get(timeout=0)


def test_subscribe_predicate_filter(brama_system):
    sub = brama_system.subscribe(
        events=[EventType.FAILURE],
        filter=lambda e: e.data["reason"] == "important",
    )
    brama_system.register("db")
    brama_system.failure("db", reason="noise")
    brama_system.failure("db", reason="important")
    brama_system.failure("db", reason="noise")
    brama_system.failure("db", reason="important")
    events = take(sub, 2)
    assert [e.data["failure_count"] for e in events] == [2, 4]


def test_raising_filter_does_not_break_the_bus(brama_system):
    def bad_filter(event: Event) -> bool:
        raise RuntimeError("filter bug")

    brama_system.subscribe(filter=bad_filter)
    good = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.register("db")
    brama_system.failure("db")
    brama_system.failure("db")
    assert [e.data["failure_count"] for e in take(good, 2)] == [1, 2]


# --- delivery modes ----------------------------------------------------------------------


def test_delivery_to_an_actor(brama_system):
    inbox: queue.Queue[Any] = queue.Queue()
    ref = Recorder.start(inbox)
    try:
        sub = brama_system.subscribe(actor=ref, events=[EventType.FAILURE, EventType.SUCCESS])
        assert isinstance(sub, Subscription)
        brama_system.register("db")
        brama_system.failure("db", reason="r")
        brama_system.success("db")
        first, second = inbox.get(timeout=2), inbox.get(timeout=2)
        assert isinstance(first, Event)
        assert (first.event, first.data["reason"]) == (EventType.FAILURE, "r")
        assert second.event is EventType.SUCCESS
        brama_system.unsubscribe(sub)
        # after unsubscribing nothing more arrives (proved by a second, still subscribed actor)
        witness_inbox: queue.Queue[Any] = queue.Queue()
        witness = Recorder.start(witness_inbox)
        try:
            brama_system.subscribe(actor=witness, events=[EventType.FAILURE])
            brama_system.failure("db", reason="after")
            assert witness_inbox.get(timeout=2).data["reason"] == "after"
            assert inbox.empty()
        finally:
            witness.stop()
    finally:
        ref.stop()


def test_dead_subscriber_actor_does_not_break_delivery(brama_system):
    dead_inbox: queue.Queue[Any] = queue.Queue()
    dead = Recorder.start(dead_inbox)
    brama_system.subscribe(actor=dead, events=[EventType.FAILURE])
    dead.stop()
    live = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.register("db")
    brama_system.failure("db")
    brama_system.failure("db")
    assert [e.data["failure_count"] for e in take(live, 2)] == [1, 2]
    assert dead_inbox.empty()


def test_delivery_to_a_callable_handler(brama_system):
    received: queue.Queue[Event] = queue.Queue()
    threads: set[int] = set()

    def handler(event: Event) -> None:
        threads.add(threading.get_ident())
        received.put(event)

    brama_system.subscribe(handler=handler, events=["failure"])
    brama_system.register("db")
    brama_system.failure("db", reason="one")
    brama_system.failure("db", reason="two")
    assert [received.get(timeout=2).data["reason"] for _ in range(2)] == ["one", "two"]
    assert threading.get_ident() not in threads


def test_delivery_to_an_object_with_handle_event(brama_system):
    class Handler:
        def __init__(self) -> None:
            self.received: queue.Queue[Event] = queue.Queue()

        def handle_event(self, event: Event) -> None:
            self.received.put(event)

    handler = Handler()
    brama_system.subscribe(handler=handler, events=[EventType.CONNECTION_REGISTERED])
    brama_system.register("db", scope="s")
    event = handler.received.get(timeout=2)
    assert (event.event, event.connection, event.scope) == (
        EventType.CONNECTION_REGISTERED, "db", "s")


@pytest.mark.parametrize("exc", [RuntimeError("handler bug"), SystemExit(3), KeyboardInterrupt()])
def test_raising_handler_does_not_stop_delivery(brama_system, exc):
    raised: queue.Queue[Event] = queue.Queue()
    received: queue.Queue[Event] = queue.Queue()

    def bad(event: Event) -> None:
        raised.put(event)
        raise exc

    brama_system.subscribe(handler=bad, events=[EventType.FAILURE])
    brama_system.subscribe(handler=received.put, events=[EventType.FAILURE])
    mailbox = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.register("db", max_attempts=100)
    for _ in range(3):
        brama_system.failure("db")
    assert [received.get(timeout=2).data["failure_count"] for _ in range(3)] == [1, 2, 3]
    assert [e.data["failure_count"] for e in take(mailbox, 3)] == [1, 2, 3]
    # the failing handler keeps receiving, and the system keeps working
    assert [raised.get(timeout=2).data["failure_count"] for _ in range(3)] == [1, 2, 3]
    brama_system.failure("db")
    assert brama_system.status("db").failure_count == 4
    assert received.get(timeout=2).data["failure_count"] == 4


def test_slow_handler_does_not_block_others(brama_system):
    release = threading.Event()
    received: queue.Queue[Event] = queue.Queue()

    def slow(event: Event) -> None:
        release.wait(10)

    brama_system.subscribe(handler=slow)
    brama_system.subscribe(handler=received.put, events=[EventType.FAILURE])
    try:
        brama_system.register("db")
        brama_system.failure("db")
        brama_system.failure("db")
        assert [received.get(timeout=2).data["failure_count"] for _ in range(2)] == [1, 2]
        assert brama_system.status("db").failure_count == 2
    finally:
        release.set()


def test_actor_and_handler_together_is_rejected(brama_system):
    inbox: queue.Queue[Any] = queue.Queue()
    ref = Recorder.start(inbox)
    try:
        with pytest.raises((ValueError, TypeError)):
            brama_system.subscribe(actor=ref, handler=inbox.put)
    finally:
        ref.stop()


# --- Subscription -----------------------------------------------------------------------


def test_subscription_get_timeout_raises_empty(brama_system):
    sub = brama_system.subscribe()
    assert isinstance(sub.id, str) and sub.id
    with pytest.raises(queue.Empty):
        sub.get(timeout=0.05)
    brama_system.register("db")
    assert sub.get(timeout=2).connection == "db"


def test_subscription_ids_are_unique(brama_system):
    ids = {brama_system.subscribe().id for _ in range(5)}
    assert len(ids) == 5


def test_subscription_iteration_and_close(brama_system):
    sub = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.register("db", max_attempts=100)
    for _ in range(3):
        brama_system.failure("db")
    iterator = iter(sub)
    assert [next(iterator).data["failure_count"] for _ in range(3)] == [1, 2, 3]
    assert sub.close() is None
    assert list(sub) == []  # iteration ends once closed and drained
    brama_system.failure("db")
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)
    sub.close()  # idempotent


def test_iteration_ends_for_an_iterating_thread_when_closed(brama_system):
    sub = brama_system.subscribe(events=[EventType.FAILURE])
    seen: list[int] = []
    done = threading.Event()

    def consume() -> None:
        for event in sub:
            seen.append(event.data["failure_count"])
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    brama_system.register("db", max_attempts=100)
    brama_system.failure("db")
    brama_system.failure("db")
    witness = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.failure("db")
    witness.get(timeout=2)
    # three events were dispatched to `sub` before the witness saw the third
    sub.close()
    assert done.wait(5)
    thread.join(5)
    assert seen == [1, 2, 3]


def test_subscription_context_manager(brama_system):
    witness = brama_system.subscribe(events=[EventType.FAILURE])
    brama_system.register("db")
    with brama_system.subscribe(events=[EventType.FAILURE]) as sub:
        assert isinstance(sub, Subscription)
        brama_system.failure("db")
        assert sub.get(timeout=2).data["failure_count"] == 1
    brama_system.failure("db")
    assert [e.data["failure_count"] for e in take(witness, 2)] == [1, 2]
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_unsubscribe_is_idempotent(brama_system):
    sub = brama_system.subscribe(events=[EventType.CONNECTION_REGISTERED])
    witness = brama_system.subscribe(events=[EventType.CONNECTION_REGISTERED])
    assert brama_system.unsubscribe(sub) is None
    brama_system.unsubscribe(sub)
    sub.close()
    brama_system.register("db")
    assert witness.get(timeout=2).connection == "db"
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_subscription_dropped_counts_events_lost_to_a_full_mailbox(brama_system):
    sub = brama_system.subscribe(events=[EventType.CONNECTION_REGISTERED])
    assert sub.dropped == 0
    total = 10_010
    for i in range(total):
        brama_system.register(f"c{i}")
    witness = brama_system.subscribe(events=[EventType.CONNECTION_REGISTERED])
    brama_system.register("last")
    assert witness.get(timeout=5).connection == "last"
    kept = []
    while True:
        try:
            kept.append(sub.get(timeout=0).connection)
        except queue.Empty:
            break
    assert sub.dropped > 0
    assert len(kept) + sub.dropped == total + 1
    assert kept[-1] == "last"
    # the oldest were dropped: what is left is the newest, in order
    assert kept[:-1] == [f"c{i}" for i in range(sub.dropped, total)]


# --- the inactivity sweep ----------------------------------------------------------------


@pytest.fixture
def sweeping(brama_clock):
    with brama.Brama(clock=brama_clock, cleanup_interval=10, inactive_threshold=95) as system:
        yield system


def _cleanup(sub: Subscription) -> tuple[list[Event], Event]:
    """The CONNECTION_REMOVED events up to the next CLEANUP, and that CLEANUP."""
    removed = []
    while True:
        event = sub.get(timeout=2)
        if event.event is EventType.CLEANUP:
            return removed, event
        assert event.event is EventType.CONNECTION_REMOVED
        removed.append(event)


def _listed(cleanup: Event) -> list[tuple[Any, Any]]:
    return sorted(
        ((item["scope"] or "", item["identifier"]) for item in cleanup.data["removed"]),
    )


def test_sweep_removes_inactive_connections(sweeping, brama_clock):
    sub = sweeping.subscribe(events=[EventType.CONNECTION_REMOVED, EventType.CLEANUP])
    sweeping.register("old")
    sweeping.register("old", scope="s")
    sweeping.register("used")
    sweeping.register("fast")
    brama_clock.advance(50)
    sweeping.register("late")
    brama_clock.advance(40)  # T0+90
    sweeping.failure("used")
    sweeping.success("fast")  # a success on a healthy circuit is activity too
    brama_clock.advance(9)  # T0+99: the sweep at T0+90 removed nothing
    assert sorted((c.scope or "", c.identifier) for c in sweeping.connections()) == [
        ("", "fast"), ("", "late"), ("", "old"), ("", "used"), ("s", "old"),
    ]
    brama_clock.advance(1)  # T0+100: "old" (both scopes) idle for 100 s >= 95
    removed, cleanup = _cleanup(sub)
    assert sorted((e.scope or "", e.connection) for e in removed) == [("", "old"), ("s", "old")]
    assert all(e.timestamp == T0 + 100 for e in removed)
    assert cleanup.connection == ""
    assert cleanup.timestamp == T0 + 100
    assert _listed(cleanup) == [("", "old"), ("s", "old")]
    with pytest.raises(brama.NotFoundError):
        sweeping.status("old")
    assert sweeping.available("old") is False
    assert sorted(c.identifier for c in sweeping.connections()) == ["fast", "late", "used"]
    # "late" was registered at T0+50: kept at T0+140, removed at T0+150
    brama_clock.advance(40)
    assert sorted(c.identifier for c in sweeping.connections()) == ["fast", "late", "used"]
    brama_clock.advance(10)
    removed, cleanup = _cleanup(sub)
    assert [e.connection for e in removed] == ["late"]
    assert _listed(cleanup) == [("", "late")]
    # "used" and "fast" were active at T0+90: removed at the sweep of T0+190
    brama_clock.advance(39)
    assert sorted(c.identifier for c in sweeping.connections()) == ["fast", "used"]
    brama_clock.advance(1)
    removed, cleanup = _cleanup(sub)
    assert sorted(e.connection for e in removed) == ["fast", "used"]
    assert _listed(cleanup) == [("", "fast"), ("", "used")]
    assert sweeping.connections() == []


def test_sweep_with_nothing_to_remove_emits_nothing(sweeping, brama_clock):
    sub = sweeping.subscribe()
    sweeping.register("db")
    for _ in range(9):
        brama_clock.advance(10)
        sweeping.failure("db")
    events = events_before_marker(sweeping, sub)
    assert EventType.CLEANUP not in kinds(events)
    assert EventType.CONNECTION_REMOVED not in kinds(events)
    assert sweeping.status("db").total_failures == 9


def test_inactive_threshold_none_never_removes(brama_clock):
    with brama.Brama(clock=brama_clock, cleanup_interval=100, inactive_threshold=None) as system:
        sub = system.subscribe()
        system.register("db")
        system.register("db", scope="s")
        brama_clock.advance(10 * 86400)
        assert sorted((c.scope or "", c.identifier) for c in system.connections()) == [
            ("", "db"), ("s", "db"),
        ]
        events = events_before_marker(system, sub)
        assert EventType.CLEANUP not in kinds(events)


def test_sweeping_is_opt_in_a_quiet_connection_stays_registered(brama_system, brama_clock):
    """Found: a connection registered at start-up and quiet for a day disappeared, after which
    available() said False forever and success() raised NotFoundError."""
    brama_system.register("db")
    brama_clock.advance(7 * 86400)
    assert [c.identifier for c in brama_system.connections()] == ["db"]
    assert brama_system.available("db")
    brama_system.success("db")


# --- logs --------------------------------------------------------------------------------


def test_one_log_record_per_state_change(brama_system, brama_clock, caplog):
    caplog.set_level(logging.INFO, logger="brama")
    brama_system.register("logged-conn", max_attempts=1, expiry=2)
    brama_system.failure("logged-conn", reason="boom-reason")
    brama_clock.advance(2)
    assert brama_system.available("logged-conn") is True
    brama_system.success("logged-conn")
    brama_system.open_circuit("logged-conn", reason="manual-reason")
    brama_system.failure("logged-conn", reason="late")  # no state change: no record
    records = [
        r for r in caplog.records
        if r.name.startswith("brama") and "logged-conn" in r.getMessage()
    ]
    assert len(records) == 4, [r.getMessage() for r in records]
    expected = [
        ("closed", "open", "boom-reason"),
        ("open", "half_open", None),
        ("half_open", "closed", None),
        ("closed", "open", "manual-reason"),
    ]
    for record, (previous, new, reason) in zip(records, expected, strict=True):
        message = record.getMessage()
        assert record.levelno == logging.INFO
        assert f"previous_state='{previous}'" in message or f"previous_state={previous}" in message
        assert f"new_state='{new}'" in message or f"new_state={new}" in message
        assert "reason=" in message
        if reason is not None:
            assert reason in message
