"""Shutdown: stop() is idempotent, leaves no thread behind, and calls racing it either
complete or fail fast with BramaError (never hang, never ActorDeadError)."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

import brama
from brama import Brama, BramaError, CircuitState, EventType
from brama.testing import FakeClock
from tests.helpers import WAIT, Recorder, timed_call, wait_no_new_threads, wait_until


def busy_system(system: Brama, *, recorder: Any) -> None:
    """Give a system every kind of thread it can have: running and hibernated connection
    actors, expiry and permit timers, handler actors, an actor subscriber and a mailbox."""
    for i in range(20):
        system.register(f"svc-{i}", max_attempts=1, expiry=30.0, hibernate_after=0.0 if i % 2
                        else 60.0)
    for i in range(0, 20, 3):
        system.failure(f"svc-{i}")  # open: an expiry timer each
    system.open_circuit("svc-1")
    system.reset_expiry("svc-1")
    assert system.available("svc-1")  # half-open with a permit out: a permit timer
    system.subscribe(handler=lambda event: None)
    system.subscribe(handler=lambda event: None, events=[EventType.FAILURE])
    system.subscribe(actor=recorder)
    system.subscribe()
    system.failure("svc-2")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("clock", ["real", "fake"])
def test_stop_leaves_no_thread_behind(clock: str) -> None:
    before = set(threading.enumerate())
    recorder = Recorder.start()  # the user's actor: ours to stop, not Brama's
    system = Brama(clock=FakeClock(0.0)) if clock == "fake" else Brama()
    busy_system(system, recorder=recorder)
    assert len(threading.enumerate()) > len(before) + 5
    outcome = timed_call(system.stop)
    assert outcome.error is None and outcome.seconds < 2.0, outcome
    recorder.stop()
    wait_no_new_threads(before)


@pytest.mark.timeout(60)
def test_stop_is_idempotent_also_when_called_from_many_threads_at_once() -> None:
    before = set(threading.enumerate())
    recorder = Recorder.start()
    system = Brama()
    busy_system(system, recorder=recorder)
    barrier = threading.Barrier(6)
    outcomes: list[Any] = []

    def stopper() -> None:
        barrier.wait(timeout=WAIT)
        outcomes.append(timed_call(system.stop))

    threads = [threading.Thread(target=stopper, daemon=True) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert len(outcomes) == 6
    assert all(o.error is None for o in outcomes), outcomes
    # the callers that found it stopping return once it is stopped
    assert not system.running
    for _ in range(3):
        outcome = timed_call(system.stop)
        assert outcome.error is None and outcome.seconds < 0.5, outcome
    recorder.stop()
    wait_no_new_threads(before)


@pytest.mark.timeout(30)
def test_context_manager_stops_even_on_error() -> None:
    before = set(threading.enumerate())
    with pytest.raises(ZeroDivisionError), Brama() as system:
        system.register("svc")
        system.failure("svc")
        1 / 0  # noqa: B018
    assert not system.running
    with pytest.raises(BramaError):
        system.failure("svc")
    wait_no_new_threads(before)


CALLS = ["failure", "success", "available", "status", "register", "open", "close",
         "subscribe", "configure", "connections", "unregister"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("clock", ["real", "fake"])
def test_calls_racing_stop_complete_or_fail_fast_with_brama_error(clock: str) -> None:
    """Six threads call everything in a loop while stop() runs: each call returns or raises
    BramaError within a second; once stop() returned, every call that needs the system
    raises BramaError at once."""
    before = set(threading.enumerate())
    system = Brama(clock=FakeClock(0.0)) if clock == "fake" else Brama(hibernate_after=0.01)
    names = [f"svc-{i}" for i in range(8)]
    for name in names:
        system.register(name, max_attempts=2, expiry=0.05)
    warmed = threading.Barrier(7)
    finished = threading.Event()
    problems: list[str] = []
    stop_seconds = [0.0]
    seen = Counter[str]()
    lock = threading.Lock()

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        count = 0
        while not finished.is_set():
            op = rng.choice(CALLS)
            name = rng.choice(names)
            started = time.monotonic()
            try:
                if op == "failure":
                    system.failure(name)
                elif op == "success":
                    system.success(name)
                elif op == "available":
                    system.available(name)
                elif op == "status":
                    system.status(name)
                elif op == "register":
                    system.register(f"{name}-{seed}-{count}")
                elif op == "open":
                    system.open_circuit(name, expires_in=0.02)
                elif op == "close":
                    system.close_circuit(name)
                elif op == "subscribe":
                    system.subscribe(connection=name).close()
                elif op == "configure":
                    system.configure(name, max_attempts=3)
                elif op == "connections":
                    system.connections()
                else:
                    system.unregister(f"{name}-{seed}-{count - 1}")
                outcome = "ok"
            except BramaError as exc:
                outcome = type(exc).__name__
            except BaseException as exc:
                outcome = "bad"
                with lock:
                    problems.append(f"{op}: {exc!r}")
            took = time.monotonic() - started
            with lock:
                seen[outcome] += 1
                if took > 1.0:
                    problems.append(f"{op} took {took:.2f}s")
            count += 1
            if count == 50:
                with contextlib.suppress(threading.BrokenBarrierError):
                    warmed.wait(timeout=WAIT)

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(6)]
    for thread in threads:
        thread.start()
    try:
        warmed.wait(timeout=WAIT)  # every caller is in full swing
        outcome = timed_call(system.stop)
        # stop() itself shares the GIL with six busy callers: it must end, not be quick
        assert outcome.error is None and outcome.seconds < WAIT, outcome
        stop_seconds[0] = outcome.seconds
        # let the callers run against the stopped system for a moment, then end them
        with lock:
            refused = seen["BramaError"] + seen["NotFoundError"]
        wait_until(lambda: seen["BramaError"] + seen["NotFoundError"] >= refused + 20,
                   what=f"calls on the stopped system to be refused (seen: {seen})")
    finally:
        finished.set()
        for thread in threads:
            thread.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert not problems, problems[:10]

    must_fail = {
        "failure": lambda: system.failure("svc-0"),
        "success": lambda: system.success("svc-0"),
        "available": lambda: system.available("svc-0"),
        "status": lambda: system.status("svc-0"),
        "register": lambda: system.register("late"),
        "open_circuit": lambda: system.open_circuit("svc-0"),
        "subscribe": lambda: system.subscribe(),
        "configure(connection)": lambda: system.configure("svc-0", max_attempts=2),
        "connections": lambda: system.connections(),
    }
    for what, call in must_fail.items():
        result = timed_call(call)
        assert isinstance(result.error, BramaError), (what, result)
        assert result.seconds < 0.5, (what, result)
    wait_no_new_threads(before)


@pytest.mark.timeout(60)
def test_stop_racing_a_fake_clock_advance_does_not_hang() -> None:
    """A thread advancing the FakeClock (delivering timers synchronously to actors that are
    being stopped) returns promptly once the system is stopped."""
    clock = FakeClock(0.0)
    system = Brama(clock=clock, hibernate_after=0.5)
    for i in range(30):
        system.register(f"svc-{i}", max_attempts=1, expiry=0.25 + (i % 4) * 0.25)
    done = threading.Event()
    errors: list[BaseException] = []
    advanced = threading.Event()

    def drive() -> None:
        rng = random.Random(3)
        try:
            while not done.is_set():
                for i in range(30):
                    name = f"svc-{i}"
                    try:
                        if system.status(name).state is CircuitState.CLOSED:
                            system.failure(name)
                        else:
                            system.available(name)
                    except BramaError:
                        pass
                clock.advance(rng.choice([0.25, 0.5]))
                advanced.set()
        except BaseException as exc:
            errors.append(exc)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        assert advanced.wait(WAIT)
        outcome = timed_call(system.stop)
    finally:
        done.set()
        driver.join(WAIT)
    assert not driver.is_alive(), "FakeClock.advance hung after stop()"
    assert outcome.error is None and outcome.seconds < 2.0, outcome
    assert not errors, errors


@pytest.mark.timeout(30)
def test_stop_from_inside_an_event_handler_returns() -> None:
    """A handler that stops its own system (say, on the first circuit opening) does not
    deadlock waiting for itself, and the system's threads all end."""
    before = set(threading.enumerate())
    system = Brama()
    stopped = threading.Event()
    problems: list[BaseException] = []

    def on_open(event: Any) -> None:
        try:
            system.stop()
        except BaseException as exc:
            problems.append(exc)
        finally:
            stopped.set()

    system.subscribe(events=[EventType.CIRCUIT_OPENED], handler=on_open)
    system.register("svc", max_attempts=1)
    system.failure("svc")
    assert stopped.wait(WAIT), "stop() called from a handler did not return"
    assert not problems, problems
    assert not system.running
    wait_no_new_threads(before)


@pytest.mark.timeout(30)
def test_module_shutdown_is_idempotent_and_a_later_call_starts_anew() -> None:
    brama.shutdown()
    brama.shutdown()
    try:
        first = brama.default()
        brama.register("svc")
        brama.failure("svc")
        brama.shutdown()
        brama.shutdown()
        assert not first.running
        with pytest.raises(BramaError):
            first.failure("svc")
        brama.register("svc")  # a new default system: fresh state
        assert brama.default() is not first
        status = brama.status("svc")
        assert (status.total_failures, status.failure_count) == (0, 0)
    finally:
        brama.shutdown()
