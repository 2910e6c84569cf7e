"""Hibernation: a connection holds a thread only while it needs one.

Registration starts no actor; reads never start one; the first message that needs an actor
wakes it through the supervisor; a closed connection idle for `hibernate_after` seconds
gives its thread back, keeping its state in the published snapshot.
"""

from __future__ import annotations

import threading

import pykka
import pytest

from brama import Brama, CircuitState
from brama._connection import ConnectionActor
from brama.testing import FakeClock
from tests.helpers import threads_since, wait_until


def running_actors() -> int:
    """How many connection actors are alive in this process right now."""
    return sum(ref.is_alive() for ref in pykka.ActorRegistry.get_by_class(ConnectionActor))


def test_registration_starts_no_actor(brama_system: Brama) -> None:
    for i in range(200):
        brama_system.register(f"host-{i}")
    brama_system.register("scoped", scope="eu")
    assert running_actors() == 0
    assert len(brama_system.connections()) == 201


def test_reads_and_fast_successes_never_wake_a_dormant_connection(brama_system: Brama) -> None:
    brama_system.register("db")
    for _ in range(50):
        assert brama_system.available("db")
        brama_system.success("db")
        brama_system.status("db")
        brama_system.connections()
    assert running_actors() == 0
    assert brama_system.status("db").total_successes == 50


def test_a_failure_wakes_the_actor_and_idleness_puts_it_back_to_sleep(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("db", max_attempts=5)
    brama_system.failure("db", reason="timeout")
    assert running_actors() == 1
    brama_clock.advance(4.9)
    assert running_actors() == 1
    brama_clock.advance(0.1)  # hibernate_after (5 s) since the last message
    assert running_actors() == 0
    status = brama_system.status("db")
    assert (status.state, status.failure_count, status.total_failures) == (
        CircuitState.CLOSED, 1, 1)


def test_a_woken_actor_resumes_from_the_snapshot(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("db", max_attempts=3)
    brama_system.failure("db")
    brama_system.failure("db")
    brama_clock.advance(10)
    assert running_actors() == 0
    brama_system.failure("db")  # the third failure, counted on top of the first two
    assert brama_system.status("db").state is CircuitState.OPEN
    assert brama_system.status("db").failure_count == 3


def test_activity_postpones_hibernation(brama_system: Brama, brama_clock: FakeClock) -> None:
    brama_system.register("db", max_attempts=100)
    brama_system.failure("db")
    for _ in range(5):
        brama_clock.advance(3)
        brama_system.failure("db")  # never 5 s idle
        assert running_actors() == 1
    brama_clock.advance(5)
    assert running_actors() == 0


def test_open_and_half_open_circuits_keep_their_actor(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("db", max_attempts=1, expiry=60.0, half_open_max_calls=1)
    brama_system.failure("db")
    brama_clock.advance(50)  # ten times hibernate_after, still open
    assert running_actors() == 1
    brama_clock.advance(10)  # the expiry timer needs the actor, and it fires on time
    assert brama_system.status("db").state is CircuitState.HALF_OPEN
    brama_clock.advance(30)
    assert running_actors() == 1
    assert brama_system.available("db")
    brama_system.success("db")
    assert brama_system.status("db").state is CircuitState.CLOSED
    brama_clock.advance(5)
    assert running_actors() == 0


def test_hibernate_after_is_a_per_connection_and_a_global_option(
    brama_clock: FakeClock,
) -> None:
    with Brama(clock=brama_clock, hibernate_after=2.0) as system:
        system.register("quick")
        system.register("slow", hibernate_after=100.0)
        system.failure("quick")
        system.failure("slow")
        assert running_actors() == 2
        brama_clock.advance(2)
        assert running_actors() == 1  # "slow" keeps its thread
        system.configure("slow", hibernate_after=3.0)  # the message wakes nothing new
        brama_clock.advance(3)
        assert running_actors() == 0
        system.configure(hibernate_after=50.0)  # global: for connections without their own
        system.failure("quick")
        brama_clock.advance(10)
        assert running_actors() == 1


def test_hundreds_of_woken_connections_give_their_threads_back(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    baseline = threading.active_count()
    before = set(threading.enumerate())
    names = [f"host-{i}" for i in range(300)]
    for name in names:
        brama_system.register(name)
        brama_system.failure(name)
    assert running_actors() == len(names)
    assert len(threads_since(before)) >= len(names)
    brama_clock.advance(5)
    assert running_actors() == 0
    # An actor that hibernates while its check runs on another thread (direct dispatch)
    # ends its own thread a moment later.
    wait_until(lambda: threading.active_count() <= baseline + 1, what="the threads to end")
    assert all(brama_system.status(n).failure_count == 1 for n in names)


@pytest.mark.timeout(60)
def test_reports_racing_hibernation_on_the_real_clock_are_neither_lost_nor_doubled() -> None:
    """hibernate_after=0: every actor goes back to sleep as soon as it is idle, so reports
    keep landing on hibernating actors; each is delivered exactly once, in order per caller."""
    errors: list[BaseException] = []
    per_thread = 300

    def report(system: Brama, name: str) -> None:
        try:
            for _ in range(per_thread):
                system.failure(name)
                system.success(name)  # after a failure: through the actor
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    with Brama(hibernate_after=0.0) as system:
        system.register("a")
        system.register("b")
        threads = [
            threading.Thread(target=report, args=(system, name)) for name in ("a", "a", "b")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(50)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        a, b = system.status("a"), system.status("b")
        assert (a.total_failures, a.total_successes) == (2 * per_thread, 2 * per_thread)
        assert (b.total_failures, b.total_successes) == (per_thread, per_thread)
        assert a.failure_count == b.failure_count == 0


def test_crash_restart_of_a_dormant_closed_connection_keeps_its_counts(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    from brama.testing import crash_connection

    brama_system.register("db", max_attempts=10)
    for _ in range(3):
        brama_system.failure("db")
    brama_clock.advance(5)
    assert running_actors() == 0
    crash_connection("db", system=brama_system)  # wakes it, then kills it
    brama_system.failure("db")
    assert brama_system.status("db").failure_count == 4


def test_a_global_hibernate_after_change_reaches_awake_actors(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("db")
    brama_system.failure("db")
    brama_clock.advance(1)
    brama_system.configure(hibernate_after=2.0)  # was 5: the pending check moves earlier
    brama_clock.advance(1)
    assert running_actors() == 0
    brama_system.failure("db")
    brama_system.configure(hibernate_after=30.0)  # and later
    brama_clock.advance(20)
    assert running_actors() == 1
    brama_clock.advance(10)
    assert running_actors() == 0
