"""Acceptance tests: systems (Brama, start, default, shutdown), the module-level API, threads."""

from __future__ import annotations

import queue
import threading

import pytest

import brama
from brama import BramaError, CircuitState, EventType, NotFoundError
from brama.testing import FakeClock
from tests.helpers import wait_until

T0 = 1_000_000.0


@pytest.fixture
def default_system():
    """The module-level API on a clean default system, shut down afterwards."""
    brama.shutdown()
    yield
    brama.shutdown()


def test_start_returns_the_default_system_and_twice_is_an_error(default_system):
    clock = FakeClock(T0)
    system = brama.start(clock=clock, max_attempts=2)
    assert isinstance(system, brama.Brama)
    assert brama.default() is system
    with pytest.raises(BramaError):
        brama.start()
    with pytest.raises(BramaError):
        brama.start(max_attempts=3)
    # the running system was not replaced
    assert brama.default() is system
    assert brama.register("db").max_attempts == 2
    assert brama.status("db").registered_at == T0


def test_default_starts_lazily_and_is_reused(default_system):
    system = brama.default()
    assert isinstance(system, brama.Brama)
    assert brama.default() is system
    brama.register("db")
    assert [c.identifier for c in system.connections()] == ["db"]


def test_module_level_call_starts_default_lazily(default_system):
    status = brama.register("lazy")
    assert status.identifier == "lazy"
    assert [c.identifier for c in brama.default().connections()] == ["lazy"]


def test_shutdown_is_idempotent_and_a_later_call_starts_a_new_system(default_system):
    first = brama.default()
    brama.register("db")
    assert brama.shutdown() is None
    brama.shutdown()
    brama.shutdown()
    with pytest.raises(BramaError):
        first.register("x")
    # a new system, without the old connections
    assert brama.connections() == []
    second = brama.default()
    assert second is not first
    with pytest.raises(NotFoundError):
        brama.status("db")
    brama.register("db")
    assert brama.status("db").state is CircuitState.CLOSED
    # and start() works again after a shutdown
    brama.shutdown()
    third = brama.start(clock=FakeClock(0.0))
    assert brama.default() is third


def test_module_level_functions_delegate_to_the_default_system(default_system):
    clock = FakeClock(T0)
    system = brama.start(clock=clock)
    sub = brama.subscribe(events=[EventType.CIRCUIT_OPENED], connection="db")
    assert brama.register("db", scope=None, type="http", metadata={"u": 1},
                          max_attempts=2).type == "http"
    assert brama.available("db") is True
    brama.failure("db", reason="x")
    brama.success("db")
    assert brama.status("db").failure_count == 0
    brama.failure("db")
    brama.failure("db")
    assert brama.status("db").state is CircuitState.OPEN
    assert sub.get(timeout=2).connection == "db"
    assert brama.available("db") is False
    brama.set_expiry("db", 3)
    brama.disable_expiry("db")
    clock.advance(10)
    assert brama.status("db").state is CircuitState.OPEN
    brama.reset_expiry("db")
    assert brama.status("db").state is CircuitState.HALF_OPEN
    brama.close_circuit("db")
    brama.open_circuit("db", expires_in=1)
    clock.advance(1)
    assert brama.status("db").state is CircuitState.HALF_OPEN
    brama.reset_circuit("db")
    assert brama.status("db").state is CircuitState.CLOSED
    brama.configure(max_attempts=4)
    brama.configure("db", max_attempts=5)
    assert brama.status("db").max_attempts == 5
    assert system.status("db") == brama.status("db")
    assert [c.identifier for c in brama.connections()] == ["db"]
    assert brama.connections(scope="none") == []
    brama.unsubscribe(sub)
    brama.unsubscribe(sub)
    brama.unregister("db")
    assert brama.connections() == []
    with pytest.raises(NotFoundError):
        brama.status("db")


def test_brama_context_manager(brama_clock):
    with brama.Brama(clock=brama_clock) as system:
        assert isinstance(system, brama.Brama)
        system.register("db")
        assert [c.identifier for c in system.connections()] == ["db"]
    with pytest.raises(BramaError):
        system.register("again")
    with pytest.raises(BramaError):
        system.status("db")
    system.stop()  # idempotent


def test_independent_systems_do_not_share_anything(brama_clock):
    with brama.Brama(clock=brama_clock) as one, brama.Brama(clock=brama_clock) as two:
        sub_two = two.subscribe()
        one.register("db", max_attempts=1)
        two.register("db", max_attempts=5)  # no AlreadyRegisteredError across systems
        one.failure("db")
        assert one.status("db").state is CircuitState.OPEN
        assert two.status("db").state is CircuitState.CLOSED
        assert two.status("db").failure_count == 0
        one.register("only-one")
        assert sorted(c.identifier for c in one.connections()) == ["db", "only-one"]
        assert [c.identifier for c in two.connections()] == ["db"]
        # two's subscriber sees only two's events
        two.failure("db", reason="two")
        first = sub_two.get(timeout=2)
        assert (first.event, first.connection) == (EventType.CONNECTION_REGISTERED, "db")
        assert sub_two.get(timeout=2).event is EventType.REGISTRATION
        third = sub_two.get(timeout=2)
        assert (third.event, third.data["reason"]) == (EventType.FAILURE, "two")
        one.configure(max_attempts=9)
        assert two.register("new").max_attempts == 10
        # one's events never reached two's subscriber: the next event is two's "new"
        assert sub_two.get(timeout=2).connection == "new"


def test_stop_of_one_system_leaves_the_other_running(brama_clock):
    with brama.Brama(clock=brama_clock) as survivor:
        survivor.register("db", max_attempts=2)
        with brama.Brama(clock=brama_clock) as other:
            other.register("db")
        survivor.failure("db")
        survivor.failure("db")
        assert survivor.status("db").state is CircuitState.OPEN
        brama_clock.advance(60)
        assert survivor.status("db").state is CircuitState.HALF_OPEN


def _no_new_threads(before: set[threading.Thread]) -> bool:
    return all(t in before for t in threading.enumerate() if t.is_alive())


def test_stop_leaves_no_threads_behind():
    before = set(threading.enumerate())
    handled: queue.Queue[object] = queue.Queue()
    system = brama.Brama(expiry=30, cleanup_interval=5)  # the real clock: timer thread too
    for i in range(20):
        system.register(f"c{i}", max_attempts=1)
    for i in range(10):
        system.failure(f"c{i}")  # opens: expiry timers armed
    system.success("c15")
    system.subscribe(handler=handled.put, events=[EventType.FAILURE])
    system.subscribe()
    system.failure("c19")
    assert handled.get(timeout=2).connection == "c19"
    assert len(threading.enumerate()) > len(before)
    system.stop()
    assert wait_until(lambda: _no_new_threads(before), timeout=5), [
        t.name for t in threading.enumerate() if t not in before
    ]


def test_stop_of_a_fake_clock_system_leaves_no_threads(brama_clock):
    before = set(threading.enumerate())
    with brama.Brama(clock=brama_clock) as system:
        system.register("db", max_attempts=1)
        system.failure("db")
        brama_clock.advance(60)
        assert system.available("db") is True
    assert wait_until(lambda: _no_new_threads(before), timeout=5), [
        t.name for t in threading.enumerate() if t not in before
    ]


def test_shutdown_stops_the_default_systems_threads(default_system):
    before = set(threading.enumerate())
    brama.register("db", max_attempts=1)
    brama.failure("db")
    brama.shutdown()
    assert wait_until(lambda: _no_new_threads(before), timeout=5), [
        t.name for t in threading.enumerate() if t not in before
    ]


def test_subscriptions_end_when_the_system_stops(brama_clock):
    system = brama.Brama(clock=brama_clock)
    sub = system.subscribe()
    system.register("db")
    system.stop()
    # events that were delivered can still be read; then the subscription reports Empty
    remaining = []
    while True:
        try:
            remaining.append(sub.get(timeout=1).event)
        except queue.Empty:
            break
    assert remaining in ([], [EventType.CONNECTION_REGISTERED],
                         [EventType.CONNECTION_REGISTERED, EventType.REGISTRATION])


def test_start_after_lazy_default_is_an_error(default_system):
    system = brama.default()
    with pytest.raises(BramaError):
        brama.start()
    assert brama.default() is system


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_resumes_the_system_with_its_own_threads() -> None:
    """gunicorn --preload: the system is made before the fork; the child keeps its
    registrations and state and gets working actors (the OTP layer's fork handlers must run
    before the system's: brama._fork imports brama.otp first, whatever the import order)."""
    import os

    with brama.Brama() as system:
        system.register("db", max_attempts=2)
        system.failure("db")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            try:
                system.failure("db")
                answer = system.status("db").state.value
            except BaseException as exc:
                answer = repr(exc)
            os.write(write, answer.encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
        assert answer == "open"
        assert system.status("db").failure_count == 1  # the parent is unchanged
