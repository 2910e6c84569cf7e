"""Brama systems on a Redis that dies, hangs or forgets: no caller waits or fails, breakers
keep working alone, BACKEND_UNAVAILABLE / BACKEND_RESTORED are emitted, and the fleet is
reconciled when Redis is back (docs/fleet.md, "Faults" and "Reconciliation").

Real clocks here (faults are about time); `backend_timeout` is the default 0.1 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brama import Brama, CircuitOpenError, CircuitState, EventType, circuit_breaker
from brama._fleet.slot import ADOPTED
from tests.fleet.harness import RedisServer
from tests.fleet.helpers import drain, eventually, fleet_version, subscribed
from tests.fleet.partition import Partition

OPEN, CLOSED = CircuitState.OPEN, CircuitState.CLOSED
BACKEND = [EventType.BACKEND_UNAVAILABLE, EventType.BACKEND_RESTORED]


@pytest.fixture
def systems(own_server: RedisServer, namespace: str) -> Iterator[Callable[..., Brama]]:
    made: list[Brama] = []

    def make(**options: Any) -> Brama:
        system = Brama(backend=own_server.url, namespace=namespace, **options)
        made.append(system)
        return system

    try:
        yield make
    finally:
        started = time.monotonic()
        for system in made:
            system.stop()
        assert time.monotonic() - started < 5.0  # stopping never hangs on a dead backend


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_redis_killed_then_restarted_on_the_same_port(systems, own_server) -> None:
    a, b = systems(), systems()
    for system in (a, b):
        system.register("pay", max_attempts=3, expiry=30)
    subscribed(a, b)
    events = a.subscribe(events=BACKEND)
    a.success("pay")
    own_server.kill()
    # the first operation finds it dead within the timeout, the next ones fail at once
    waits = [timed(lambda: a.failure("pay", reason="down")) for _ in range(3)]
    assert max(waits) < 0.5 and sorted(waits)[1] < 0.05, waits
    assert a.status("pay").state is OPEN  # the local breaker works alone
    assert not a.available("pay")
    assert b.status("pay").state is CLOSED  # b cannot hear it: it never will, see below
    unavailable = eventually(lambda: [e for e in drain(events, 0.01)
                                      if e.event is EventType.BACKEND_UNAVAILABLE])
    assert unavailable[0].connection == "" and unavailable[0].data["backend"] == own_server.url
    assert unavailable[0].data["error"]
    own_server.restart()
    restored = eventually(lambda: [e for e in drain(events, 0.01)
                                   if e.event is EventType.BACKEND_RESTORED], timeout=15)
    assert restored[0].data["down_for"] > 0
    # a's opening, still in force, was written to the fleet (the server came back empty)
    eventually(lambda: b.status("pay").state is OPEN, timeout=10, what="b sees a's opening")
    assert not b.available("pay")
    assert eventually(lambda: fleet_version(a, "pay") > 0)
    assert a.status("pay").total_failures == 3  # nothing counted twice or lost locally


def test_a_hung_redis_never_holds_the_hot_path(systems, own_server) -> None:
    a = systems()
    a.register("pay", max_attempts=2)
    a.register("idle")
    subscribed(a)
    events = a.subscribe(events=BACKEND)
    own_server.pause()
    try:
        slowest = max(timed(lambda: (a.available("idle"), a.success("idle")))
                      for _ in range(2000))
        assert slowest < 0.05  # healthy calls touch no Redis, hung or not
        first = timed(lambda: a.failure("pay"))
        assert first < 0.5  # one backend_timeout, then the breaker steps alone
        assert timed(lambda: a.failure("pay")) < 0.05
        assert a.status("pay").state is OPEN
        eventually(lambda: any(e.event is EventType.BACKEND_UNAVAILABLE
                               for e in drain(events, 0.01)), timeout=5)
    finally:
        own_server.resume()
    eventually(lambda: any(e.event is EventType.BACKEND_RESTORED for e in drain(events, 0.01)),
               timeout=15)
    eventually(lambda: fleet_version(a, "pay") > 0)
    store = a.runtime.fleet.store
    assert store.read(store.key("pay")).state.circuit.state is OPEN  # written on return


def test_a_flushed_redis_is_refilled_from_the_local_state(systems, own_server) -> None:
    a, b = systems(), systems()
    for system in (a, b):
        system.register("pay", max_attempts=2, expiry=30)
    subscribed(a, b)
    a.failure("pay")
    a.failure("pay")
    eventually(lambda: b.status("pay").state is OPEN)
    before = fleet_version(a, "pay")
    own_server.flushall()
    assert fleet_version(a, "pay") == 0
    b.failure("pay", reason="late")  # a late answer: the next transition re-creates the key
    assert fleet_version(a, "pay") > before  # above every version the fleet saw
    state = a.runtime.fleet.store.read(a.runtime.fleet.store.key("pay")).state.circuit
    assert (state.state, state.total_failures) == (OPEN, 3)
    eventually(lambda: a.status("pay").total_failures == 3)
    assert a.status("pay").state is OPEN


def test_a_system_started_while_redis_is_down_joins_when_it_comes_back(
        systems, own_server) -> None:
    a = systems()
    a.register("pay", max_attempts=1, expiry=60)
    subscribed(a)
    a.failure("pay")  # the fleet is open
    own_server.kill()
    started = time.monotonic()
    late = systems()
    late.register("pay", max_attempts=1)  # cannot join: starts closed, alone
    assert time.monotonic() - started < 1.0
    assert late.available("pay")
    own_server.restart()  # empty: a's resync writes its state back, late adopts it
    eventually(lambda: late.status("pay").state is OPEN, timeout=15)


def test_no_exception_reaches_a_caller_while_redis_comes_and_goes(systems, own_server) -> None:
    a = systems()
    calls = {"n": 0}

    @circuit_breaker("flaky", system=a, max_attempts=3, expiry=0.2)
    def flaky() -> int:
        calls["n"] += 1
        if calls["n"] % 4 == 0:
            raise ConnectionError("dependency down")
        return 1

    surprises: list[BaseException] = []
    deadline = time.monotonic() + 3.0
    phase = 0
    while time.monotonic() < deadline:
        elapsed = 3.0 - (deadline - time.monotonic())
        if phase == 0 and elapsed > 0.5:
            own_server.kill()
            phase = 1
        elif phase == 1 and elapsed > 1.5:
            own_server.restart()
            phase = 2
        try:
            started = time.perf_counter()
            flaky()
            assert time.perf_counter() - started < 0.5
        except (ConnectionError, CircuitOpenError):
            pass
        except BaseException as exc:  # anything else would be Redis leaking to the caller
            surprises.append(exc)
        time.sleep(0.001)
    assert surprises == []
    assert calls["n"] > 100


def test_the_backend_password_is_never_shown(redis_binary: str, namespace: str) -> None:
    password = "s3cret-Pa55"
    server = RedisServer(redis_binary, password=password,
                         extra=["--requirepass", password]).start()
    try:
        url = f"redis://default:{password}@127.0.0.1:{server.port}/0"  # an ACL user too
        system = Brama(backend=url, namespace=namespace)
        try:
            system.register("pay", max_attempts=1)
            subscribed(system)
            events = system.subscribe(events=BACKEND)
            server.kill()
            system.failure("pay")  # finds it dead
            event = eventually(lambda: drain(events, 0.01))[0]
            assert event.event is EventType.BACKEND_UNAVAILABLE
            shown = [event.data["backend"], event.data["error"], repr(system),
                     repr(system.runtime.fleet), repr(system.runtime.fleet.store),
                     repr(system.status("pay"))]
            assert all(password not in text for text in shown), shown
            assert ":***@" in event.data["backend"]
        finally:
            system.stop()
    finally:
        server.destroy()


def test_a_partitioned_system_catches_up_with_what_it_did_not_hear(
        systems, own_server, namespace) -> None:
    """b is cut off from Redis (a TCP proxy dropped) while a trips the circuit: pub/sub keeps
    nothing, so b never hears a's events; when the partition heals, b's resync adopts the
    fleet's state and its subscribers get one STATE_CHANGE (and CIRCUIT_OPENED) from the
    state they last saw, marked as adopted on resync."""
    watched = [EventType.STATE_CHANGE, EventType.CIRCUIT_OPENED, *BACKEND]
    with Partition(own_server.port) as partition:
        a = systems()
        b = Brama(backend=partition.url, namespace=namespace)
        try:
            for system in (a, b):
                system.register("pay", max_attempts=2, expiry=30)
            subscribed(a, b)
            events = b.subscribe(events=watched)
            partition.cut()
            eventually(lambda: any(e.event is EventType.BACKEND_UNAVAILABLE
                                   for e in drain(events, 0.01)), timeout=10,
                       what="b notices the partition")
            a.failure("pay", reason="refused")
            a.failure("pay", reason="refused")
            assert a.status("pay").state is OPEN
            assert b.status("pay").state is CLOSED and b.available("pay")  # it cannot know

            partition.heal()
            eventually(lambda: b.status("pay").state is OPEN, timeout=15,
                       what="b adopts the fleet's opening")
            assert not b.available("pay")
            seen = eventually(lambda: [e for e in drain(events, 0.2)
                                       if e.event is not EventType.BACKEND_RESTORED],
                              timeout=5, what="b's subscribers hear of it")
            seen += [e for e in drain(events, 0.3) if e.event is not EventType.BACKEND_RESTORED]
            assert [e.event for e in seen] == [EventType.STATE_CHANGE, EventType.CIRCUIT_OPENED]
            change, opened = seen
            assert change.data["previous_state"] is CLOSED and change.data["new_state"] is OPEN
            for event in seen:
                assert event.connection == "pay"
                assert event.data["reason"] == ADOPTED and event.data["trigger"] == "resync"
                assert event.data["origin"] == b.runtime.fleet.origin
                assert event.data["failure_count"] == 2
            assert opened.data["expiry"] == 30
        finally:
            b.stop()
