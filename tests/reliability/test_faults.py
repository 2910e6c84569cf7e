"""Faults: crashed connection actors, supervisors past their restart intensity, BaseExceptions
in user code, pykka's stop_all, and dead / slow / raising subscribers."""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import Counter
from typing import Any

import pykka
import pytest
from pykka import ActorDeadError

import brama
from brama import Brama, BramaError, CircuitState, EventType
from brama.testing import FakeClock, crash_connection, flush_events
from tests.helpers import WAIT, Outcome, Recorder, drain, timed_call, wait_until

# -- helpers ---------------------------------------------------------------------------------

GAVE_UP = "event='supervisor_gave_up' child="


def restarts_of(system: Brama, identifier: str, scope: str | None = None) -> int:
    """How often the connections supervisor restarted this connection's actor."""
    cell = system.lookup(identifier, scope)
    for info in system.runtime.connections.which_children():
        if info.id is cell:
            return info.restarts
    raise AssertionError(f"no supervisor child for {identifier!r}")


def brama_error_or_value(outcome: Outcome, what: str, within: float = 1.0) -> None:
    """The outcome of a call on a failing system: a value or a BramaError, quickly."""
    assert outcome.error is None or isinstance(outcome.error, BramaError), (what, outcome)
    assert not isinstance(outcome.error, ActorDeadError), (what, outcome)
    assert outcome.seconds < within, (what, outcome)


def brama_works(system: Brama, name: str) -> None:
    """A new connection can be registered, used and observed, events included."""
    with system.subscribe(connection=name) as sub:
        system.register(name, max_attempts=2)
        system.failure(name, reason="x")
        system.failure(name, reason="y")
        status = system.status(name)
        assert status.state is CircuitState.OPEN
        assert status.total_failures == 2
        seen = [sub.get(timeout=WAIT).event for _ in range(6)]
    assert EventType.CIRCUIT_OPENED in seen, seen


def user_actor_alive(ref: pykka.ActorRef[Any]) -> None:
    assert ref.is_alive()
    assert ref.ask("ping", timeout=WAIT) == "pong"


# -- crashes below the restart intensity --------------------------------------------------------


def test_crashed_connection_resumes_from_its_state(brama_system: Brama, brama_clock: Any) -> None:
    """A crash never closes an open circuit, forgets a failure count, loses a timer or a
    half-open permit: the restarted actor resumes from the last published state."""
    system = brama_system
    system.register("db", max_attempts=5, expiry=10.0, half_open_max_calls=1)
    for _ in range(3):
        system.failure("db")
    crash_connection("db", system=system)
    system.failure("db")  # handled by the restarted actor
    assert system.status("db").failure_count == 4
    crash_connection("db", system=system)
    system.failure("db")
    status = system.status("db")
    assert (status.state, status.failure_count, status.total_failures) == (
        CircuitState.OPEN, 5, 5)

    opened_at = status.opened_at
    crash_connection("db", system=system)
    system.failure("db", reason="late")  # a late answer while open: totals only
    status = system.status("db")
    assert (status.state, status.opened_at, status.total_failures) == (
        CircuitState.OPEN, opened_at, 6)

    brama_clock.advance(9.5)
    assert system.status("db").state is CircuitState.OPEN
    brama_clock.advance(0.5)  # the expiry timer survived the crashes
    assert system.status("db").state is CircuitState.HALF_OPEN

    assert system.available("db") is True  # the one permit
    crash_connection("db", system=system)
    assert system.available("db") is False  # still taken after the restart
    brama_clock.advance(10.0)  # the permit timeout was re-armed: the permit comes back
    assert system.available("db") is True
    crash_connection("db", system=system)
    system.success("db")
    status = system.status("db")
    assert (status.state, status.failure_count) == (CircuitState.CLOSED, 0)
    assert restarts_of(system, "db") == 5


@pytest.mark.timeout(120)
def test_reports_racing_repeated_crashes_are_not_lost() -> None:
    """Six threads report outcomes while another crashes the same connections again and
    again: no call fails (no ActorDeadError, no BramaError) and the totals are exact."""
    names = ["a", "b", "c"]
    crashes = 150
    with Brama(max_restarts=100_000, max_seconds=1.0) as system:
        for name in names:
            system.register(name, max_attempts=4, expiry=0.02)
        done = threading.Event()
        errors: list[BaseException] = []
        reported = [Counter[str](), Counter[str]()]  # successes, failures
        lock = threading.Lock()

        def reporter(seed: int) -> None:
            rng = random.Random(seed)
            mine = [Counter[str](), Counter[str]()]
            give_up = time.monotonic() + 90
            try:
                while not done.is_set() and time.monotonic() < give_up:
                    name = rng.choice(names)
                    if rng.random() < 0.5:
                        system.success(name)
                        mine[0][name] += 1
                    else:
                        system.failure(name, reason="boom")
                        mine[1][name] += 1
                    if rng.random() < 0.1:
                        system.available(name)
            except BaseException as exc:
                errors.append(exc)
            finally:
                with lock:
                    reported[0].update(mine[0])
                    reported[1].update(mine[1])

        def crasher() -> None:
            rng = random.Random(7)
            try:
                for _ in range(crashes):
                    name = rng.choice(names)
                    crash_connection(name, system=system)
                    system.failure(name, reason="after crash")  # waits for the restart
                    with lock:
                        reported[1][name] += 1
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        threads = [threading.Thread(target=reporter, args=(i,), daemon=True) for i in range(6)]
        threads.append(threading.Thread(target=crasher, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(100)
        assert not any(t.is_alive() for t in threads), "a caller hung"
        assert not errors, [repr(e) for e in errors[:5]]
        assert sum(restarts_of(system, n) for n in names) >= crashes
        for name in names:
            status = system.status(name)
            assert status.total_successes == reported[0][name], name
            assert status.total_failures == reported[1][name], name


# -- past the restart intensity -----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_past_the_restart_intensity_calls_fail_with_brama_error_and_others_survive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Brama(max_restarts=1, max_seconds=60): crashing one connection again and again makes
    its supervisor give up. That is logged at ERROR; meanwhile calls either succeed (after
    the root restarted the subtree) or raise BramaError, never hang, never ActorDeadError;
    the other connections work again with their state; past the root's intensity too, every
    call fails fast with BramaError."""
    caplog.set_level(logging.ERROR)
    clock = FakeClock(1_000_000.0)
    system = Brama(clock=clock, max_restarts=1, max_seconds=60.0)
    try:
        system.register("bad")
        system.register("other", max_attempts=5)
        system.register("held")
        system.failure("other")
        system.failure("other")
        system.open_circuit("held", reason="maintenance", expires_in=30.0)
        held_opened_at = system.status("held").opened_at

        # 1. crash "bad" until its supervisor gives up (the second restart within 60 s);
        #    the failure report after each crash waits for the restart.
        outcomes: list[Outcome] = []
        for _ in range(4):
            timed_call(lambda: crash_connection("bad", system=system))  # tested separately
            outcomes.append(timed_call(lambda: system.failure("bad")))
            if GAVE_UP in caplog.text:
                break
        assert any(
            r.levelno >= logging.ERROR and GAVE_UP in r.getMessage() for r in caplog.records
        ), "giving up was not logged at ERROR"
        for outcome in outcomes:
            brama_error_or_value(outcome, "failure(bad)")
        # a report that returned normally was counted (it may also wait for the restart)
        accepted = sum(1 for o in outcomes if o.error is None)
        wait_until(lambda: timed_call(lambda: system.status("bad")).error is None,
                   what="status(bad) to answer")
        assert system.status("bad").total_failures == accepted

        # 2. the root restarts the connections subtree; a probe through the actor (an
        #    empty configure changes nothing) tells when "other" answers again.
        def other_answers() -> bool:
            outcome = timed_call(lambda: system.configure("other"))
            brama_error_or_value(outcome, "configure(other)")
            return outcome.error is None

        wait_until(other_answers, what="the connections subtree to be restarted")
        status = system.status("other")
        assert (status.state, status.failure_count, status.total_failures) == (
            CircuitState.CLOSED, 2, 2)
        system.failure("other")
        assert system.status("other").failure_count == 3
        held = system.status("held")
        assert (held.state, held.opened_at) == (CircuitState.OPEN, held_opened_at)
        clock.advance(30.0)  # its expiry timer still fires after the subtree restart
        assert system.status("held").state is CircuitState.HALF_OPEN

        # 3. keep crashing: past the root's intensity the whole system is down
        for _ in range(10):
            timed_call(lambda: crash_connection("bad", system=system))
            outcome = timed_call(lambda: system.failure("bad"))
            brama_error_or_value(outcome, "failure(bad)")
            if not system.runtime.root.alive:
                break
        wait_until(lambda: not system.runtime.root.alive, what="the root supervisor to give up")
        for what, call in [
            ("failure(other)", lambda: system.failure("other")),
            ("open_circuit(other)", lambda: system.open_circuit("other")),
            ("available(held)", lambda: system.available("held")),
            ("register(new)", lambda: system.register("new")),
            ("configure(other)", lambda: system.configure("other", max_attempts=2)),
        ]:
            outcome = timed_call(call)
            assert isinstance(outcome.error, BramaError), (what, outcome)
            assert outcome.seconds < 1.0, (what, outcome)
    finally:
        outcome = timed_call(system.stop)
    assert outcome.error is None and outcome.seconds < 2.0, outcome


@pytest.mark.timeout(60)
def test_crash_connection_on_a_system_past_its_intensity_raises_brama_error() -> None:
    """The testing helper is a public call too: on a system whose supervisors gave up it
    raises BramaError, not pykka's ActorDeadError."""
    system = Brama(clock=FakeClock(0.0), max_restarts=0, max_seconds=60.0)
    try:
        system.register("bad")
        system.failure("bad")
        crash_connection("bad", system=system)
        wait_until(lambda: not system.runtime.root.alive, what="the root supervisor to give up")
        outcome = timed_call(lambda: crash_connection("bad", system=system))
        assert isinstance(outcome.error, BramaError), outcome
    finally:
        system.stop()


# -- BaseException in user code -----------------------------------------------------------------

CONTAINED = [SystemExit, KeyboardInterrupt]


class Raiser:
    """User code that raises `exc_type` on every call, counting the calls."""

    def __init__(self, exc_type: type[BaseException], result: Any = None) -> None:
        self.exc_type = exc_type
        self.calls = 0
        self.twice = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self.lock:
            self.calls += 1
            if self.calls >= 2:
                self.twice.set()
        raise self.exc_type("raised by user code")

    def handle_event(self, event: Any) -> None:
        self(event)


@pytest.fixture
def bystander() -> Any:
    """A plain pykka actor of the user's, to prove nobody called ActorRegistry.stop_all()."""
    ref = Recorder.start()
    yield ref
    if ref.is_alive():
        ref.stop()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc_type", CONTAINED)
@pytest.mark.parametrize("place", ["handler", "handle_event", "filter"])
def test_base_exception_in_subscription_code_is_contained(
    brama_system: Brama, bystander: Any, exc_type: type[BaseException], place: str
) -> None:
    raiser = Raiser(exc_type)
    if place == "handler":
        sub = brama_system.subscribe(events=[EventType.FAILURE], handler=raiser)
    elif place == "handle_event":
        sub = brama_system.subscribe(events=[EventType.FAILURE], handler=_Obj(raiser))
    else:
        sub = brama_system.subscribe(events=[EventType.FAILURE], filter=raiser)
    brama_system.register("svc", max_attempts=100)
    brama_system.failure("svc")
    brama_system.failure("svc")
    assert raiser.twice.wait(WAIT), "user code was not called twice"
    flush_events(system=brama_system)
    user_actor_alive(bystander)
    brama_works(brama_system, "after")
    calls = raiser.calls
    brama_system.failure("svc")  # the subscription itself keeps going
    wait_until(lambda: raiser.calls > calls, what="the raising code to be called again")
    assert not sub.closed


class _Obj:
    def __init__(self, raiser: Raiser) -> None:
        self.raiser = raiser

    def handle_event(self, event: Any) -> None:
        self.raiser(event)


class _Caller(pykka.ThreadingActor):
    """A user's actor that calls a decorated function (a normal place to call one from)."""

    def __init__(self, func: Any) -> None:
        super().__init__()
        self.func = func

    def on_receive(self, message: Any) -> Any:
        try:
            return ("returned", self.func())
        except Exception as exc:
            return ("raised", exc)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc_type", CONTAINED)
def test_base_exception_in_error_handler_is_contained(
    brama_system: Brama, bystander: Any, exc_type: type[BaseException]
) -> None:
    """An error_handler raising SystemExit / KeyboardInterrupt inside a user's actor must not
    stop every pykka actor (Brama's and the user's): DESIGN.md, user code is contained."""
    from brama import circuit_breaker

    raiser = Raiser(exc_type)

    @circuit_breaker("svc", error_handler=raiser, system=brama_system)
    def call() -> str:
        return "ok"

    caller = _Caller.start(call)
    try:
        future = caller.ask("go", block=False)
        with contextlib.suppress(Exception):  # what the call gives back is not the point
            future.get(timeout=2.0)
        assert raiser.calls == 1
        user_actor_alive(bystander)
        brama_works(brama_system, "after")
    finally:
        if caller.is_alive():
            caller.stop()


# -- pykka.ActorRegistry.stop_all() -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_calls_after_stop_all_raise_brama_error_quickly(brama_system: Brama) -> None:
    system = brama_system
    system.register("closed")
    system.register("open")
    system.register("half", half_open_max_calls=1)
    system.failure("closed")
    system.open_circuit("open")
    system.open_circuit("half")
    system.reset_expiry("half")
    pykka.ActorRegistry.stop_all()

    must_fail = {
        "failure": lambda: system.failure("closed"),
        "success (not the fast path)": lambda: system.success("closed"),
        "available (half-open)": lambda: system.available("half"),
        "open_circuit": lambda: system.open_circuit("closed"),
        "close_circuit": lambda: system.close_circuit("open"),
        "reset_circuit": lambda: system.reset_circuit("open"),
        "reset_expiry": lambda: system.reset_expiry("open"),
        "set_expiry": lambda: system.set_expiry("open", 5.0),
        "disable_expiry": lambda: system.disable_expiry("open"),
        "configure(connection)": lambda: system.configure("closed", max_attempts=3),
        "register": lambda: system.register("new"),
        "subscribe": lambda: system.subscribe(),
    }
    failures = {}
    for what, call in must_fail.items():
        outcome = timed_call(call)
        if not isinstance(outcome.error, BramaError) or outcome.seconds >= 1.0:
            failures[what] = outcome
    assert not failures, failures

    snapshot_reads = {  # answered from snapshots: a value is fine, a hang or ActorDeadError not
        "status": lambda: system.status("open"),
        "available (open)": lambda: system.available("open"),
        "connections": lambda: system.connections(),
        "configure(global)": lambda: system.configure(max_attempts=4),
        "unregister": lambda: system.unregister("closed"),
    }
    for what, call in snapshot_reads.items():
        brama_error_or_value(timed_call(call), what)
    outcome = timed_call(system.stop)
    assert outcome.error is None and outcome.seconds < 2.0, outcome


@pytest.mark.timeout(60)
def test_stop_after_stop_all_from_fresh_threads_is_clean() -> None:
    """After stop_all, a fresh thread (which may well get the dead bus thread's ident: the
    OS reuses thread stacks) gets a BramaError from subscribe and a clean stop()."""
    system = Brama(clock=FakeClock(0.0))
    system.register("svc")
    pykka.ActorRegistry.stop_all()
    for _ in range(3):
        outcome = timed_call(system.subscribe)
        assert isinstance(outcome.error, BramaError), outcome
    outcome = timed_call(system.stop)
    assert outcome.error is None and outcome.seconds < 2.0, outcome


@pytest.mark.timeout(60)
def test_module_api_recovers_after_stop_all_with_shutdown() -> None:
    brama.shutdown()
    try:
        brama.start(clock=FakeClock(0.0))
        brama.register("svc")
        brama.failure("svc")
        pykka.ActorRegistry.stop_all()
        outcome = timed_call(lambda: brama.failure("svc"))
        assert isinstance(outcome.error, BramaError) and outcome.seconds < 1.0, outcome
        outcome = timed_call(brama.shutdown)
        assert outcome.error is None and outcome.seconds < 2.0, outcome
        brama.register("svc")  # a fresh default system
        brama.failure("svc")
        status = brama.status("svc")
        assert (status.total_failures, status.failure_count) == (1, 1)
        with brama.subscribe(connection="svc") as sub:
            brama.failure("svc")
            assert sub.get(timeout=WAIT).event is EventType.FAILURE
    finally:
        brama.shutdown()


# -- bad subscribers never delay the good ones ------------------------------------------------


class _Blocker(pykka.ThreadingActor):
    """A subscriber actor that blocks on every message until released."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def on_receive(self, message: Any) -> Any:
        self.release.wait(WAIT * 4)


@pytest.mark.timeout(60)
def test_dead_slow_and_raising_subscribers_do_not_delay_a_mailbox(brama_system: Brama) -> None:
    system = brama_system
    release = threading.Event()
    slow_started = threading.Event()

    def slow_handler(event: Any) -> None:
        slow_started.set()
        release.wait(WAIT * 4)

    def raising_handler(event: Any) -> None:
        raise RuntimeError("subscriber bug")

    def raising_filter(event: Any) -> bool:
        raise ValueError("filter bug")

    dead = Recorder.start()
    blocker = _Blocker.start(release)
    dead_sub = system.subscribe(actor=dead)
    system.subscribe(handler=slow_handler)
    system.subscribe(handler=raising_handler)
    system.subscribe(filter=raising_filter)
    system.subscribe(actor=blocker)
    dead.stop()
    mailbox = system.subscribe(events=[EventType.FAILURE], connection="svc")
    try:
        system.register("svc", max_attempts=10**6)
        system.failure("svc", reason=0)
        assert slow_started.wait(WAIT)  # the slow handler is now stuck on its first event
        started = time.monotonic()
        for i in range(1, 200):
            system.failure("svc", reason=i)
        reasons = [mailbox.get(timeout=1.0).data["reason"] for _ in range(200)]
        elapsed = time.monotonic() - started
        assert reasons == list(range(200))
        assert elapsed < 1.0, f"the mailbox waited {elapsed:.2f}s behind bad subscribers"
        assert not release.is_set()
        wait_until(lambda: dead_sub.closed, what="the dead subscriber to be dropped")
    finally:
        release.set()
        if blocker.is_alive():
            blocker.stop()
    assert drain(mailbox) == []
    with pytest.raises(queue.Empty):
        mailbox.get(timeout=0)
