"""After `os.fork()` every live system resumes in the child (found: the child hung).

Registered before the fork (as the quick start does, at import), then forked: in the child
every system (the default one and any `Brama`) resumes from its published state with fresh
threads; its calls never wait on a thread of the parent, even one that held a lock at fork
time; the parent is unaffected; the parent's subscriptions are not inherited. The
multiprocessing pool and the gunicorn-like preload, in fresh interpreters, are in
`test_fork_workers.py`.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import brama
from brama import Brama, BramaError, CircuitOpenError, CircuitState, EventType
from brama.otp import TimerService
from brama.testing import FakeClock, default_system, flush_events
from tests.helpers import WAIT, in_child, threads_since, wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
QUICK = 1.0
"""The longest a call in a child may take (found: 30 s, or forever)."""


def snapshot(system: Brama) -> dict[str, Any]:
    """What a child must resume: every connection's state and options, and the groups."""
    return {
        "connections": {
            (s.scope, s.identifier): (
                s.state, s.failure_count, s.max_attempts, s.expiry, s.half_open_max_calls,
                s.success_threshold, dict(s.metadata), s.type, s.opened_at, s.open_until,
                s.total_failures, s.expiry_disabled,
            )
            for s in system.connections()
        },
        "groups": system.groups(),
    }


def timed(action: Any) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


@pytest.fixture
def system() -> Iterator[Brama]:
    with Brama() as real_clock_system:
        yield real_clock_system


def test_a_child_resumes_registrations_options_groups_and_states(system: Brama) -> None:
    system.configure(success_threshold=2)  # a global option
    system.register("dormant", max_attempts=3, expiry=60, metadata={"dc": "eu"}, type="sql")
    system.register("awake", max_attempts=3)
    system.failure("awake", reason="before the fork")  # its actor runs
    system.register("db", scope="tenant-a", max_attempts=2, half_open_max_calls=2)
    system.register("opened", expiry=2.0)  # the child subscribes well before
    system.open_circuit("opened", reason="down")
    system.register("pinned")
    system.open_circuit("pinned")
    system.disable_expiry("pinned")
    system.register_group("storage", ["dormant", "awake"])
    before = snapshot(system)
    open_until = system.status("opened").open_until
    assert open_until is not None

    def child() -> dict[str, Any]:
        resumed = snapshot(system)
        half_opened = system.subscribe(events=[EventType.CIRCUIT_HALF_OPENED],
                                       connection="opened")
        took = {
            "failure, dormant": timed(lambda: system.failure("dormant", reason="child")),
            "failure, awake": timed(lambda: system.failure("awake", reason="child")),
            "failure, scoped": timed(lambda: system.failure("db", scope="tenant-a")),
            "group_failure": timed(lambda: system.group_failure("storage")),
            "register": timed(lambda: system.register("new in the child")),
            "configure": timed(lambda: system.configure("dormant", max_attempts=5)),
        }
        event = half_opened.get(timeout=WAIT)  # on the child's own timer
        seen = time.time()
        return {
            "resumed": resumed, "took": took, "half_open_lateness": seen - open_until,
            "event": (event.event, event.connection),
            "after": {s.identifier: (s.state, s.failure_count) for s in system.connections()},
        }

    result = in_child(child)
    assert result["resumed"] == before
    assert max(result["took"].values()) < QUICK, result["took"]
    assert result["event"] == (EventType.CIRCUIT_HALF_OPENED, "opened")
    assert -0.05 < result["half_open_lateness"] < 1.0, result["half_open_lateness"]
    assert result["after"]["dormant"] == (CLOSED, 2)
    assert result["after"]["awake"] == (OPEN, 3)  # 1 inherited + its own + the group's
    assert result["after"]["db"] == (CLOSED, 1)
    assert result["after"]["pinned"] == (OPEN, 0)
    # The parent is unaffected by what the child did, and its own timer half-opens it too.
    after = snapshot(system)
    del after["connections"][(None, "opened")], before["connections"][(None, "opened")]
    assert after == before
    wait_until(lambda: system.status("opened").state is HALF_OPEN, what="the parent's expiry")


def test_the_default_system_and_decorators_resume_in_the_child(system: Brama) -> None:
    with default_system(system):
        brama.register("svc", max_attempts=2, expiry=30)

        @brama.circuit_breaker("svc")
        def call(fail: bool) -> str:
            if fail:
                raise ValueError("down")
            return "ok"

        assert call(False) == "ok"  # bound in the parent

        def child() -> list[Any]:
            seen: list[Any] = [brama.default() is system]
            for fail in (True, True, False):
                try:
                    seen.append(call(fail))
                except (ValueError, CircuitOpenError) as exc:
                    seen.append(type(exc).__name__)
            status = brama.status("svc")
            seen.append((status.state, status.total_failures, status.rejected_calls))
            return seen

        assert in_child(child) == [True, "ValueError", "ValueError", "CircuitOpenError",
                                   (OPEN, 2, 1)]
        status = brama.status("svc")
        assert (status.state, status.total_failures, status.total_successes) == (CLOSED, 0, 1)
        assert call(False) == "ok"


def test_the_parents_subscriptions_are_not_inherited(system: Brama) -> None:
    system.register("svc")
    handled: list[int] = []
    handler = system.subscribe(events=[EventType.FAILURE],
                               handler=lambda event: handled.append(os.getpid()))
    mailbox = system.subscribe(events=[EventType.FAILURE])

    def child() -> dict[str, Any]:
        system.failure("svc", reason="before subscribing")
        own = system.subscribe(events=[EventType.FAILURE])
        system.failure("svc", reason="after subscribing")
        event = own.get(timeout=WAIT)
        flush_events(system=system)
        return {"mine": event.data["reason"], "handled here": handled.count(os.getpid()),
                "inherited closed": (handler.closed, mailbox.closed)}

    assert in_child(child) == {"mine": "after subscribing", "handled here": 0,
                               "inherited closed": (True, True)}
    system.failure("svc", reason="in the parent")  # the parent's subscriptions still work
    assert mailbox.get(timeout=WAIT).data["reason"] == "in the parent"
    wait_until(lambda: handled == [os.getpid()], what="the parent's handler")
    assert not handler.closed


def test_an_open_circuit_half_opens_on_the_childs_fake_clock() -> None:
    clock = FakeClock(1_000.0)
    with Brama(clock=clock) as system:
        system.register("svc", expiry=30)
        system.open_circuit("svc")
        clock.advance(10)

        def child() -> list[CircuitState]:
            states = [system.status("svc").state]
            clock.advance(19.9)
            states.append(system.status("svc").state)
            clock.advance(0.1)
            states.append(system.status("svc").state)
            return states

        assert in_child(child) == [OPEN, OPEN, HALF_OPEN]
        assert system.status("svc").state is OPEN  # the child's clock is the child's
        clock.advance(20)
        assert system.status("svc").state is HALF_OPEN


def test_a_grandchild_resumes_too(system: Brama) -> None:
    system.register("svc", max_attempts=10)
    system.failure("svc")

    def child() -> Any:
        system.failure("svc")

        def grandchild() -> int:
            system.failure("svc")
            return system.status("svc").failure_count

        return grandchild(), in_child(grandchild), system.status("svc").failure_count

    assert in_child(child) == (3, 4, 3)
    assert system.status("svc").failure_count == 1


def names(threads: list[threading.Thread]) -> list[str]:
    """Thread names without their numbers (ConnectionActor-7 -> ConnectionActor), sorted."""
    return sorted(re.sub(r"-\d+$", "", thread.name) for thread in threads)


def test_the_child_runs_the_threads_of_one_fresh_runtime() -> None:
    """Nothing of the parent's runtime keeps a thread in the child (found: its timer service
    was restarted there, one more thread per fork generation, firing the parent's timers)."""
    before = set(threading.enumerate())
    with Brama() as system:
        system.register("svc", expiry=30)
        system.open_circuit("svc")  # an awake actor, an expiry timer
        parent = names(threads_since(before))

        def child() -> list[str]:
            system.failure("svc")  # wakes the connection's actor in the child too
            return names([t for t in threading.enumerate() if t is not threading.main_thread()])

        assert in_child(child) == parent


def test_a_stopped_system_stays_stopped_in_the_child() -> None:
    system = Brama()
    system.register("svc")
    system.stop()

    def child() -> str:
        try:
            system.failure("svc")
        except BramaError as exc:
            return type(exc).__name__
        return "no error"

    assert in_child(child) == "BramaError"


def test_a_trial_in_flight_in_the_parent_does_not_hold_the_childs_permit(system: Brama) -> None:
    """The parent's calls are not the child's: a half-open trial running on another thread
    of the parent at fork time can never report in the child, so it holds no permit there."""
    system.register("svc", half_open_max_calls=1, expiry=60)
    system.open_circuit("svc")
    system.reset_expiry("svc")
    entered, leave = threading.Event(), threading.Event()

    @brama.circuit_breaker("svc", system=system)
    def trial() -> str:
        entered.set()
        leave.wait(WAIT)
        return "ok"

    worker = threading.Thread(target=trial)
    worker.start()
    try:
        assert entered.wait(WAIT)
        assert system.status("svc").half_open_permits_in_use == 1

        def child() -> Any:
            permit = system.acquire("svc")
            return permit is not None and permit.trial

        assert in_child(child) is True
    finally:
        leave.set()
        worker.join(WAIT)
    assert system.status("svc").state is CLOSED  # the parent's trial closed the parent's circuit


def test_a_fork_inside_a_decorated_call(system: Brama) -> None:
    """The forking thread is inside a call (a pool created by a decorated function): in the
    child that call is the parent's, not the child's, so a call made there is a call of the
    child, counted on the child's circuit; the parent's call reports once, in the parent."""
    system.register("svc", max_attempts=5)

    @brama.circuit_breaker("svc", system=system)
    def spawn(fail: bool) -> Any:
        if fail:
            raise ConnectionError("down")

        def child() -> Any:
            with contextlib.suppress(ConnectionError):
                spawn(True)
            return system.status("svc").total_failures

        return in_child(child)

    assert spawn(False) == 1
    status = system.status("svc")
    assert (status.total_successes, status.total_failures) == (1, 0)


# -- locks held by other threads at fork time ------------------------------------------------


class GateClock:
    """The real clock, except that a thread that armed it blocks the next time it reads it
    (inside whatever Brama was doing, holding whatever it held) until `release`."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.reached = threading.Event()
        self.released = threading.Event()

    def arm(self) -> None:
        self.local.armed = True

    def _gate(self) -> None:
        if getattr(self.local, "armed", False):
            self.local.armed = False
            self.reached.set()
            self.released.wait(WAIT * 2)

    def time(self) -> float:
        self._gate()
        return time.time()

    def monotonic(self) -> float:
        self._gate()
        return time.monotonic()


def fork_while_blocked(clock: GateClock, blocked: Any, child: Any) -> Any:
    """Run `blocked()` on a thread that blocks inside it on the clock, fork, release it."""

    def run() -> None:
        clock.arm()
        blocked()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert clock.reached.wait(WAIT), "the thread never reached the clock"
        return in_child(child)
    finally:
        clock.released.set()
        thread.join(WAIT)
        assert not thread.is_alive()


def child_work(system: Brama) -> dict[str, float]:
    """What a child does to show nothing of the parent's threads blocks it."""
    return {
        "failure": timed(lambda: system.failure("busy", reason="child")),
        "register": timed(lambda: system.register(f"child-{os.getpid()}")),
        "configure one": timed(lambda: system.configure("busy", max_attempts=9)),
        "configure all": timed(lambda: system.configure(success_threshold=1)),
        "set_expiry": timed(lambda: system.set_expiry("busy", 5)),
        "open": timed(lambda: system.open_circuit("idle")),
        "subscribe": timed(lambda: system.subscribe(events=[EventType.FAILURE]).close()),
        "stop": timed(system.stop),
    }


def test_fork_while_another_thread_is_inside_a_connection_actor() -> None:
    clock = GateClock()
    with Brama(clock=clock) as system:
        system.register("busy", max_attempts=100)
        system.register("idle")
        system.failure("busy")  # awake

        took = fork_while_blocked(clock, lambda: system.failure("busy", reason="blocked"),
                                  lambda: child_work(system))
        assert max(took.values()) < QUICK, took
        wait_until(lambda: system.status("busy").failure_count == 2)


def test_fork_while_another_thread_holds_the_settings_lock() -> None:
    clock = GateClock()
    with Brama(clock=clock) as system:
        system.register("busy")
        system.register("idle")
        took = fork_while_blocked(clock, lambda: system.register("registering"),
                                  lambda: child_work(system))
        assert max(took.values()) < QUICK, took
        wait_until(lambda: "registering" in [s.identifier for s in system.connections()])


def test_fork_while_a_subscription_handler_runs(system: Brama) -> None:
    system.register("busy")
    system.register("idle")
    inside, leave = threading.Event(), threading.Event()

    def handler(event: brama.Event) -> None:
        inside.set()
        leave.wait(WAIT)

    system.subscribe(handler=handler)
    system.failure("busy")
    try:
        assert inside.wait(WAIT)
        took = in_child(lambda: child_work(system))
    finally:
        leave.set()
    assert max(took.values()) < QUICK, took


def test_fork_under_load_never_hangs_a_child(system: Brama) -> None:
    """Forks at random moments while threads report, read, configure and publish."""
    for name in ("busy", "idle", "other"):
        system.register(name, max_attempts=3, expiry=0.05)
    stop = threading.Event()
    system.subscribe(handler=lambda event: None)
    mailbox = system.subscribe(queue_size=10)

    def load(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            name = rng.choice(("busy", "other"))
            try:
                rng.choice((system.failure, system.success))(name)
                system.available(name)
                system.status(name)
                if rng.random() < 0.05:
                    system.configure(name, max_attempts=rng.randint(2, 4))
            except BramaError:
                pass

    threads = [threading.Thread(target=load, args=(seed,), daemon=True) for seed in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(6):
            stop.wait(random.uniform(0.0, 0.05))
            took = in_child(lambda: child_work(system), timeout=10)
            assert max(took.values()) < QUICK, took
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    assert mailbox.dropped >= 0


def test_fork_while_another_thread_advances_a_fake_clock() -> None:
    """A test suite's FakeClock: a thread inside `advance` (delivering a timer whose
    destination is busy) holds the clock's locks when the process forks."""
    clock = FakeClock(0.0)
    inside, leave = threading.Event(), threading.Event()

    class Busy:
        def tell(self, message: Any) -> None:
            inside.set()
            leave.wait(WAIT)

    with TimerService(clock) as service, Brama(clock=clock) as system:
        system.register("svc", expiry=30)
        system.open_circuit("svc")
        service.send_after(1.0, Busy(), "tick")
        advancing = threading.Thread(target=clock.advance, args=(1.0,), daemon=True)
        advancing.start()
        try:
            assert inside.wait(WAIT)

            def child() -> list[Any]:
                clock.advance(30)
                return [system.status("svc").state, clock.monotonic()]

            assert in_child(child, timeout=10) == [HALF_OPEN, 31.0]
        finally:
            leave.set()
            advancing.join(WAIT)
