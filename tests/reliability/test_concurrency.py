"""Concurrency: many threads on one system; exact totals, valid states, no over-granted
permits, registration churn without errors, and no deadlock (every test has a timeout)."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

from brama import (
    AlreadyRegisteredError,
    Brama,
    CircuitState,
    ConnectionStatus,
    EventType,
    NotFoundError,
)
from brama.testing import FakeClock, flush_events
from tests.helpers import WAIT, drain, wait_until

THREADS = 8


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Any:
    """Switch threads every 20 µs instead of 5 ms, so the threads really interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(2e-5)
    yield
    sys.setswitchinterval(previous)


def check_valid(status: ConnectionStatus) -> None:
    """What must hold for any status, whatever happened concurrently."""
    assert isinstance(status.state, CircuitState)
    assert status.failure_count >= 0
    assert status.total_successes >= 0
    assert status.total_failures >= 0
    assert status.rejected_calls >= 0
    if status.state is CircuitState.CLOSED:
        # nothing in these tests lowers max_attempts, so a closed circuit is below it
        assert status.failure_count < status.max_attempts, status
        assert status.opened_at is None, status
    else:
        assert status.opened_at is not None, status
        assert status.expiry > 0, status


def run_threads(target: Any, count: int = THREADS, timeout: float = 60.0) -> list[Any]:
    """Run `target(index)` in `count` threads; return what each returned; fail on a hang or
    on any exception (re-raised here with the thread's traceback)."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=body, args=(i,), name=f"worker-{i}", daemon=True)
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads still running after {timeout}s (deadlock?): {hung}"
    if errors:
        raise errors[0]
    return results


class Tally:
    """Per-thread counts of what each thread did and what it saw."""

    def __init__(self) -> None:
        self.successes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()


def hammer(system: Brama, names: list[str], ops: int, seed: int, manual: bool) -> Tally:
    """Random operations; every reported outcome and every refusal is counted."""
    rng = random.Random(seed)
    tally = Tally()
    for _ in range(ops):
        name = rng.choice(names)
        roll = rng.random()
        if roll < 0.35:
            if system.available(name):
                if rng.random() < 0.6:
                    system.success(name)
                    tally.successes[name] += 1
                else:
                    system.failure(name, reason="boom")
                    tally.failures[name] += 1
            else:
                tally.rejections[name] += 1
        elif roll < 0.6:
            system.success(name)  # a late answer, whatever the state
            tally.successes[name] += 1
        elif roll < 0.85:
            system.failure(name, reason="late")
            tally.failures[name] += 1
        elif roll < 0.9:
            check_valid(system.status(name))
        elif manual:
            action = rng.choice(["open", "close", "reset", "reset_expiry", "set_expiry"])
            if action == "open":
                system.open_circuit(name, expires_in=rng.choice([None, 0.01, 0.05]))
            elif action == "close":
                system.close_circuit(name)
            elif action == "reset":
                system.reset_circuit(name)
            elif action == "reset_expiry":
                system.reset_expiry(name)
            else:
                system.set_expiry(name, rng.choice([0.01, 0.02, 0.05]))
    return tally


def transitions(system: Brama) -> Any:
    """A mailbox subscription to STATE_CHANGE (it does not slow the success fast path)."""
    return system.subscribe(events=[EventType.STATE_CHANGE])


def reached(system: Brama, subscription: Any) -> Counter[str]:
    """How often each state was entered, from the STATE_CHANGE events received so far."""
    flush_events(system=system)
    return Counter(str(e.data["new_state"]) for e in drain(subscription))


def check_totals(system: Brama, names: list[str], tallies: list[Tally]) -> None:
    successes = sum((t.successes for t in tallies), Counter())
    failures = sum((t.failures for t in tallies), Counter())
    rejections = sum((t.rejections for t in tallies), Counter())
    assert sum(successes.values()) > 0 and sum(failures.values()) > 0
    for name in names:
        status = system.status(name)
        check_valid(status)
        assert status.total_successes == successes[name], name
        assert status.total_failures == failures[name], name
        # available() said False only for a refused call: open, or out of half-open permits
        assert status.rejected_calls == rejections[name], name


@pytest.mark.timeout(120)
def test_threads_on_real_clock_keep_exact_totals_and_valid_states() -> None:
    """8 threads of random calls on 16 connections with short real-time expiries, so circuits
    open, expire, half-open and close while the threads race; a checker thread validates
    every status it reads meanwhile."""
    names = [f"svc-{i}" for i in range(16)]
    with Brama(max_restarts=1000, hibernate_after=0.05) as system:
        for i, name in enumerate(names):
            system.register(
                name,
                max_attempts=1 + i % 4,
                expiry=0.01 + 0.01 * (i % 3),
                half_open_max_calls=1 + i % 3,
                success_threshold=1 + i % 2,
                expiry_strategy="progressive" if i % 2 else "fixed",
                backoff_factor=1.5,
                max_expiry=0.2,
            )
        changes = transitions(system)
        stop = threading.Event()
        checked = Counter[str]()
        checker_errors: list[BaseException] = []

        def checker() -> None:
            try:
                while not stop.is_set():
                    for status in system.connections():
                        check_valid(status)
                        checked[status.state.value] += 1
                    stop.wait(0.001)  # pacing only: leave the GIL to the workers
            except BaseException as exc:
                checker_errors.append(exc)

        watcher = threading.Thread(target=checker, name="checker", daemon=True)
        watcher.start()
        try:
            tallies = run_threads(
                lambda i: hammer(system, names, 4000, seed=i, manual=i % 2 == 0), timeout=100
            )
        finally:
            stop.set()
            watcher.join(WAIT)
        assert not watcher.is_alive()
        assert not checker_errors, checker_errors[0]
        check_totals(system, names, tallies)
        # the run did go through the states it is meant to stress
        assert checked["open"] > 0 and checked["closed"] > 0, checked
        entered = reached(system, changes)
        assert min(entered[s] for s in ("open", "half_open", "closed")) > 0, entered


@pytest.mark.timeout(120)
def test_threads_with_fake_clock_driven_by_one_thread_keep_exact_totals() -> None:
    """Seven threads of random calls while an eighth advances the FakeClock (which fires
    expiry and permit timers synchronously, through the same actors)."""
    clock = FakeClock(1_000_000.0)
    names = [f"svc-{i}" for i in range(12)]
    with Brama(clock=clock, hibernate_after=2.0) as system:
        for i, name in enumerate(names):
            system.register(name, max_attempts=1 + i % 3, expiry=1.0 + i % 4,
                            half_open_max_calls=1 + i % 3)
        changes = transitions(system)
        done = threading.Event()
        advances = [0]
        driver_errors: list[BaseException] = []

        def drive() -> None:
            rng = random.Random(99)
            try:
                while not done.is_set():
                    clock.advance(rng.choice([0.25, 0.5, 1.0, 3.0]))
                    advances[0] += 1
            except BaseException as exc:
                driver_errors.append(exc)

        driver = threading.Thread(target=drive, name="clock-driver", daemon=True)
        driver.start()
        try:
            tallies = run_threads(
                lambda i: hammer(system, names, 4000, seed=100 + i, manual=i % 3 == 0),
                count=THREADS - 1,
                timeout=100,
            )
        finally:
            done.set()
            driver.join(WAIT)
        assert not driver.is_alive(), "FakeClock.advance hung"
        assert not driver_errors, driver_errors[0]
        assert advances[0] > 10
        check_totals(system, names, tallies)
        entered = reached(system, changes)
        assert min(entered[s] for s in ("open", "half_open", "closed")) > 0, entered


@pytest.mark.timeout(60)
@pytest.mark.parametrize("permits", [1, 2, 3])
def test_half_open_permits_are_never_over_granted(
    brama_system: Brama, permits: int
) -> None:
    """N threads released at once call available() on a half-open circuit with
    half_open_max_calls=k: exactly k get True, the others are counted as rejected."""
    callers = 8
    brama_system.register("svc", half_open_max_calls=permits, expiry=30.0)
    for round_ in range(25):
        brama_system.close_circuit("svc")
        brama_system.open_circuit("svc")
        brama_system.reset_expiry("svc")
        assert brama_system.status("svc").state is CircuitState.HALF_OPEN
        before = brama_system.status("svc").rejected_calls
        barrier = threading.Barrier(callers)

        def call(_index: int, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait(timeout=WAIT)
            return brama_system.available("svc")

        granted = run_threads(call, count=callers, timeout=30)
        assert granted.count(True) == permits, (round_, granted)
        status = brama_system.status("svc")
        assert status.rejected_calls - before == callers - permits
        assert status.state is CircuitState.HALF_OPEN


@pytest.mark.timeout(60)
@pytest.mark.parametrize("permits", [1, 2])
def test_trial_calls_in_flight_never_exceed_the_permits(
    brama_system: Brama, permits: int
) -> None:
    """Threads that get a permit make a trial call and report it, handing the permit back.
    Counted from the callers' side (in flight from the grant until just before the report),
    no more than half_open_max_calls trial calls are ever in flight at once."""
    brama_system.register("svc", half_open_max_calls=permits, success_threshold=10**6,
                          expiry=30.0)
    brama_system.open_circuit("svc")
    brama_system.reset_expiry("svc")
    lock = threading.Lock()
    in_flight = [0]
    peak = [0]
    granted = Counter[int]()

    def caller(index: int) -> None:
        for _ in range(400):
            if not brama_system.available("svc"):
                continue
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
                granted[index] += 1
            with lock:
                in_flight[0] -= 1
            brama_system.success("svc")

    run_threads(caller, timeout=50)
    status = brama_system.status("svc")
    assert status.state is CircuitState.HALF_OPEN
    assert 1 <= peak[0] <= permits, peak
    assert status.total_successes == sum(granted.values()) > 0
    assert status.rejected_calls == THREADS * 400 - sum(granted.values())


@pytest.mark.timeout(90)
def test_register_unregister_churn_raises_only_documented_errors() -> None:
    """Threads register, unregister and use the same few names at once. The only errors are
    the documented ones for a name that is (not) registered at that instant; afterwards the
    table is consistent, no connection actor is left running, and the names work again."""
    names = [f"churn-{i}" for i in range(6)]
    unexpected: list[BaseException] = []
    counts = Counter[str]()

    with Brama(hibernate_after=0.01) as system:

        def churn(index: int) -> None:
            rng = random.Random(1000 + index)
            for _ in range(3000):
                name = rng.choice(names)
                op = rng.choice(["register", "register", "unregister", "success", "failure",
                                 "available", "status", "open", "reset", "configure"])
                try:
                    if op == "register":
                        system.register(name, max_attempts=2, expiry=0.01)
                    elif op == "unregister":
                        system.unregister(name)
                    elif op == "success":
                        system.success(name)
                    elif op == "failure":
                        system.failure(name)
                    elif op == "available":
                        system.available(name)
                    elif op == "status":
                        check_valid(system.status(name))
                    elif op == "open":
                        system.open_circuit(name, expires_in=0.01)
                    elif op == "reset":
                        system.reset_circuit(name)
                    else:
                        system.configure(name, half_open_max_calls=2)
                    counts[op] += 1
                except (AlreadyRegisteredError, NotFoundError):
                    counts["refused"] += 1
                except BaseException as exc:
                    unexpected.append(exc)

        run_threads(churn, timeout=80)
        assert not unexpected, [repr(e) for e in unexpected[:5]]
        assert counts["refused"] > 0 and counts["register"] > 0 and counts["failure"] > 0

        listed = {s.identifier for s in system.connections()}
        for name in names:
            if name in listed:
                check_valid(system.status(name))
            system.unregister(name)
        assert system.connections() == []

        def connection_threads() -> list[str]:
            return [t.name for t in threading.enumerate()
                    if t.name.startswith("ConnectionActor") and t.is_alive()]

        wait_until(lambda: not connection_threads(), what="connection actors to stop")

        for name in names:  # fresh connections, fresh state
            system.register(name)
            system.failure(name)
            status = system.status(name)
            assert (status.failure_count, status.total_failures) == (1, 1)
            assert status.total_successes == 0
