"""Several `Brama` systems in one process sharing their circuits through a real Redis.

Each system is a member of the fleet of its own (its own store, bridge and origin), exactly
as separate processes are; test_fleet_processes.py repeats the key checks across processes.
Most tests give every system one `FakeClock`: the fleet then steps on that clock (not the
server's), and `sync_fleet` brings the systems to one view, so the checks are deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from brama import Brama, CircuitState, EventType
from brama.testing import FakeClock, sync_fleet
from tests.fleet.helpers import drain, eventually, fleet_version, script_calls, subscribed

T0 = 1_000_000.0
OPEN, CLOSED, HALF_OPEN = CircuitState.OPEN, CircuitState.CLOSED, CircuitState.HALF_OPEN
CHANGES = [EventType.STATE_CHANGE, EventType.EXPIRY]
MakeBrama = Callable[..., Brama]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def fleet_of(make_brama: MakeBrama, count: int, clock: FakeClock | None = None,
             **options: Any) -> list[Brama]:
    systems = [make_brama(**({} if clock is None else {"clock": clock})) for _ in range(count)]
    for system in systems:
        system.register("pay", **options)
    return systems


def test_consecutive_failures_add_up_and_the_trip_is_everyones(make_brama, clock) -> None:
    a, b, c = fleet_of(make_brama, 3, clock, max_attempts=3)
    a.failure("pay", reason="timeout")
    b.failure("pay", reason="timeout")
    sync_fleet(a, b, c)
    assert [s.status("pay").failure_count for s in (a, b, c)] == [2, 2, 2]
    assert all(s.available("pay") for s in (a, b, c))
    c.failure("pay", reason="refused")  # the third of the fleet: c's own count is 1
    sync_fleet(a, b, c)
    for system in (a, b, c):
        status = system.status("pay")
        assert (status.state, status.failure_count, status.total_failures) == (OPEN, 3, 3)
        assert status.last_failure_reason == "refused"
        assert status.opened_at == T0
        assert not system.available("pay")


def test_a_success_anywhere_resets_the_consecutive_count(make_brama, clock) -> None:
    a, b = fleet_of(make_brama, 2, clock, max_attempts=3)
    a.failure("pay")
    a.failure("pay")
    sync_fleet(a, b)
    b.success("pay")  # b sees 2 failures: this success goes through the fleet
    sync_fleet(a, b)
    assert a.status("pay").failure_count == 0
    a.failure("pay")
    a.failure("pay")
    sync_fleet(a, b)
    assert a.status("pay").state is CLOSED  # the count started again from 0


def test_totals_and_the_latest_success_add_up(make_brama, clock) -> None:
    a, b, c = fleet_of(make_brama, 3, clock, max_attempts=2)
    for _ in range(5):
        a.success("pay")
    clock.advance(1.0)
    for _ in range(3):
        b.success("pay")
    sync_fleet(a, b, c)
    for system in (a, b, c):
        status = system.status("pay")
        assert (status.total_successes, status.total_failures) == (8, 0)
        assert status.last_success_time == T0 + 1.0  # b's, seen by all
    c.failure("pay")
    c.failure("pay")  # open
    sync_fleet(a, b, c)
    for system in (a, b, b, c):
        assert not system.available("pay")  # 4 rejections, counted where they happened
    sync_fleet(a, b, c)
    for system in (a, b, c):
        status = system.status("pay")
        assert (status.total_successes, status.total_failures, status.rejected_calls) == (
            8, 2, 4)
        assert status.success_rate == 0.8


def test_rate_windows_add_up_across_the_fleet(make_brama, clock) -> None:
    """Two calls each: neither system alone reaches minimum_calls, the fleet's window does."""
    a, b = fleet_of(make_brama, 2, clock, failure_rate_threshold=0.5, minimum_calls=4,
                    window_size=10, max_attempts=10)
    a.success("pay")
    b.success("pay")
    a.failure("pay")
    sync_fleet(a, b)
    assert a.status("pay").calls_in_window == 3 == b.status("pay").calls_in_window
    b.failure("pay")  # 2 of 4 failed, over the fleet
    sync_fleet(a, b)
    for system in (a, b):
        status = system.status("pay")
        assert (status.state, status.failure_rate, status.calls_in_window) == (OPEN, 0.5, 4)


def test_the_expiry_half_opens_once_for_the_fleet(make_brama, clock) -> None:
    a, b, c = fleet_of(make_brama, 3, clock, max_attempts=1, expiry=10)
    subs = [s.subscribe(events=[EventType.EXPIRY, EventType.CIRCUIT_HALF_OPENED])
            for s in (a, b, c)]
    a.failure("pay")
    sync_fleet(a, b, c)
    before = fleet_version(a, "pay")
    clock.advance(10)  # every system's expiry timer fires; the first write wins
    sync_fleet(a, b, c)
    assert fleet_version(a, "pay") == before + 1  # one transition for the fleet
    origins = set()
    for system, sub in zip((a, b, c), subs, strict=True):
        assert system.status("pay").state is HALF_OPEN
        events = drain(sub)
        assert [e.event for e in events] == [EventType.EXPIRY, EventType.CIRCUIT_HALF_OPENED]
        origins |= {e.data["origin"] for e in events}
        assert events[0].timestamp == T0 + 10
    assert len(origins) == 1  # decided by one system, relayed to the others


def test_half_open_permits_are_fleet_wide_and_a_trial_closes_everywhere(
        make_brama, clock) -> None:
    systems = fleet_of(make_brama, 3, clock, max_attempts=1, expiry=5,
                       half_open_max_calls=2, success_threshold=2)
    a, b, c = systems
    a.failure("pay")
    clock.advance(5)
    sync_fleet(*systems)
    permits = [p for s in (a, b, c, a, b, c) if (p := s.acquire("pay")) is not None]
    assert len(permits) == 2  # two for the whole fleet
    sync_fleet(*systems)
    assert [s.status("pay").half_open_permits_in_use for s in systems] == [2, 2, 2]
    for permit in permits:
        permit.success()
    sync_fleet(*systems)
    assert [s.status("pay").state for s in systems] == [CLOSED] * 3


def test_a_trial_failure_reopens_everywhere(make_brama, clock) -> None:
    a, b = fleet_of(make_brama, 2, clock, max_attempts=1, expiry=5,
                    expiry_strategy="progressive", backoff_factor=2.0)
    a.failure("pay")
    clock.advance(5)
    sync_fleet(a, b)
    permit = b.acquire("pay")
    assert permit is not None and permit.trial
    sync_fleet(a, b)
    assert a.acquire("pay") is None  # b holds the one permit
    permit.failure(reason="still down")
    sync_fleet(a, b)
    for system in (a, b):
        status = system.status("pay")
        assert (status.state, status.expiry, status.total_openings) == (OPEN, 10.0, 2)


def test_a_permit_never_reported_comes_back_after_its_timeout(make_brama, clock) -> None:
    a, b = fleet_of(make_brama, 2, clock, max_attempts=1, expiry=5)
    a.failure("pay")
    clock.advance(5)
    sync_fleet(a, b)
    assert a.acquire("pay") is not None  # never ended: as if its process died
    sync_fleet(a, b)
    assert b.acquire("pay") is None
    clock.advance(5)  # the permit's deadline (status().expiry)
    sync_fleet(a, b)
    assert b.acquire("pay") is not None


def test_a_joining_system_reads_the_state_and_never_resets_it(make_brama, clock) -> None:
    a, b = fleet_of(make_brama, 2, clock, max_attempts=2, expiry=30)
    a.failure("pay")
    a.failure("pay")
    sync_fleet(a, b)
    version = fleet_version(a, "pay")
    clock.advance(3)
    late = make_brama(clock=clock)
    status = late.register("pay", max_attempts=50)  # other options: its own business
    assert (status.state, status.opened_at, status.failure_count) == (OPEN, T0, 2)
    assert status.registered_at == T0  # the fleet's registration
    assert fleet_version(a, "pay") == version  # joining wrote nothing
    assert not late.available("pay")
    clock.advance(27)  # the fleet's deadline, armed in the newcomer too
    sync_fleet(a, b, late)
    assert [s.status("pay").state for s in (a, b, late)] == [HALF_OPEN] * 3


def test_namespaces_are_isolated(make_brama, clock, namespace) -> None:
    shop = make_brama(clock=clock)
    other = make_brama(clock=clock, namespace=namespace + "-other")
    for system in (shop, other):
        system.register("pay", max_attempts=1)
    shop.failure("pay")
    sync_fleet(shop, other)
    assert shop.status("pay").state is OPEN
    assert other.status("pay").state is CLOSED and other.status("pay").total_failures == 0


def test_manual_controls_act_on_the_fleet(make_brama, clock) -> None:
    a, b = fleet_of(make_brama, 2, clock, expiry=60)
    a.open_circuit("pay", reason="maintenance", expires_in=120)
    sync_fleet(a, b)
    status = b.status("pay")
    assert (status.state, status.expiry, status.open_until) == (OPEN, 120.0, T0 + 120)
    b.disable_expiry("pay")
    sync_fleet(a, b)
    assert a.status("pay").expiry_disabled and a.status("pay").open_until is None
    a.reset_expiry("pay")
    sync_fleet(a, b)
    assert b.status("pay").state is HALF_OPEN
    b.reset_circuit("pay", reason="all clear")
    sync_fleet(a, b)
    assert a.status("pay").state is CLOSED


def test_events_are_relayed_once_in_version_order_with_their_origin(
        make_brama, clock) -> None:
    systems = fleet_of(make_brama, 3, clock, max_attempts=1, expiry=5)
    a, b, c = systems
    subs = [s.subscribe(events=CHANGES) for s in systems]
    a.failure("pay")  # closed -> open, by a
    clock.advance(5)  # open -> half_open, by whichever fired first
    b.reset_circuit("pay")  # half_open -> closed, by b
    c.open_circuit("pay")  # closed -> open, by c
    a.close_circuit("pay")  # open -> closed, by a
    sync_fleet(*systems)
    origin = {s: s.runtime.fleet.origin for s in systems}
    seen = []
    for sub in subs:
        events = [e for e in drain(sub) if e.event is EventType.STATE_CHANGE]
        seen.append([(e.data["previous_state"], e.data["new_state"], e.data["origin"])
                     for e in events])
    assert seen[0] == seen[1] == seen[2]  # every subscriber, the same history
    transitions = [(p, n) for p, n, _ in seen[0]]
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED),
                           (CLOSED, OPEN), (OPEN, CLOSED)]
    assert isinstance(transitions[0][1], CircuitState)
    deciders = [o for _, _, o in seen[0]]
    assert deciders[0] == origin[a] and deciders[2] == origin[b]
    assert deciders[3] == origin[c] and deciders[4] == origin[a]


def test_options_stay_per_process(make_brama, clock) -> None:
    """Each system judges the fleet's count by its own max_attempts (docs/fleet.md)."""
    strict = make_brama(clock=clock)
    lenient = make_brama(clock=clock)
    strict.register("pay", max_attempts=2)
    lenient.register("pay", max_attempts=5)
    lenient.failure("pay")
    lenient.failure("pay")
    sync_fleet(strict, lenient)
    assert lenient.status("pay").state is CLOSED  # 2 < 5
    strict.failure("pay")  # 3 >= 2: strict opens it, for everyone
    sync_fleet(strict, lenient)
    assert lenient.status("pay").state is OPEN
    assert lenient.status("pay").max_attempts == 5


def test_a_healthy_call_sends_nothing_to_redis(make_brama, clock, server) -> None:
    a, b = fleet_of(make_brama, 2, clock)
    sync_fleet(a, b)
    before = script_calls(server.url)
    for _ in range(2000):
        assert a.available("pay")
        a.success("pay")
    assert script_calls(server.url) == before  # counted in the cell, nothing else
    clock.advance(1.0)  # the flusher adds them in one batch
    assert script_calls(server.url) == before + 1
    sync_fleet(a, b)
    assert b.status("pay").total_successes == 2000


def test_the_flusher_adds_every_connections_counts_in_one_round_trip(
        make_brama, clock, server) -> None:
    """300 connections with successes to add: one flush sends one script call each, all
    pipelined (the server's socket reads barely move), and the fleet has every count."""
    a, b = make_brama(clock=clock), make_brama(clock=clock)
    names = [f"svc-{i}" for i in range(300)]
    for name in names:
        a.register(name)
        b.register(name)
    sync_fleet(a, b)
    for name in names:
        a.success(name)
        a.success(name)
    admin = server.admin()
    calls, reads = script_calls(server.url), int(admin.info("stats")["total_reads_processed"])
    clock.advance(1.0)  # one tick of each system's flusher (b has nothing to add)
    reads = int(admin.info("stats")["total_reads_processed"]) - reads
    assert script_calls(server.url) - calls == 300
    assert reads < 60, reads  # one call at a time would take 300 reads and more
    sync_fleet(a, b)
    assert {b.status(name).total_successes for name in names} == {2}


def test_unregister_and_stop_flush_what_was_counted(make_brama, clock) -> None:
    a, b, c = fleet_of(make_brama, 3, clock)
    for _ in range(7):
        a.success("pay")
    a.unregister("pay")
    for _ in range(4):
        b.success("pay")
    b.stop()
    sync_fleet(c)
    assert c.status("pay").total_successes == 11


def test_a_trip_is_seen_by_available_everywhere_within_100_ms(make_brama) -> None:
    """Real clocks (the server's): the time from the failure that trips the circuit in one
    system to `available()` answering False in the two others (callers polling every 0.5 ms:
    spinning threads would only measure the GIL). The first round also wakes the actors."""
    systems = fleet_of(make_brama, 3, None, max_attempts=1, expiry=60)
    subscribed(*systems)
    a, others = systems[0], systems[1:]
    latencies: list[float] = []
    for _ in range(5):
        for system in systems:
            eventually(lambda s=system: s.status("pay").state is CLOSED)
        seen: dict[int, float] = {}
        ready = threading.Barrier(len(others) + 1)

        def watch(index: int, system: Brama, ready: threading.Barrier = ready,
                  seen: dict[int, float] = seen) -> None:
            ready.wait()
            while system.available("pay"):
                time.sleep(0.0005)
            seen[index] = time.perf_counter()

        threads = [threading.Thread(target=watch, args=(i, s)) for i, s in enumerate(others)]
        for thread in threads:
            thread.start()
        ready.wait()
        started = time.perf_counter()
        a.failure("pay")
        for thread in threads:
            thread.join(5)
        assert len(seen) == len(others)
        latencies += [t - started for t in seen.values()]
        a.reset_circuit("pay")
    print(f"trip seen elsewhere: median {sorted(latencies)[len(latencies) // 2] * 1000:.2f} "
          f"ms, max {max(latencies) * 1000:.2f} ms")
    assert max(latencies) < 0.1


@pytest.mark.parametrize("part", ["bridge", "flusher"])
def test_a_crashed_bridge_or_flusher_is_restarted_and_the_fleet_goes_on(
        make_brama, part: str) -> None:
    """The bridge is a root child before the connections (rest_for_one): its restart also
    restarts the connection actors, which resume from their cells, and the new subscription
    resyncs every connection (transitions missed meanwhile are read back)."""
    from brama.testing import kill

    a, b = fleet_of(make_brama, 2, None, max_attempts=1, expiry=60)
    subscribed(a, b)
    for _ in range(5):
        b.success("pay")
    killed = kill(part, system=b)
    assert killed is not None
    eventually(lambda: (ref := b.runtime.part(part)) is not None and ref != killed
               and ref.is_alive(), what=f"the {part} restarted")
    subscribed(b)
    a.failure("pay")
    eventually(lambda: not b.available("pay"), what="b hears a's trip")
    eventually(lambda: a.status("pay").total_successes == 5, timeout=10,
               what="b's counts reach a")
