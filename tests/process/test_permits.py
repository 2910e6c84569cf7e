"""Permits belong to calls, end to end (the decorator, the guard, `acquire()` / `Permit`).

Found: a slow call admitted while closed, finishing during half-open, freed the trial's
permit (two trials ran with half_open_max_calls=1) and closed the circuit before any trial
finished; an ignored outcome kept its permit until expiry. Now only the owner's outcome
returns a permit, outcomes of calls admitted before the current half-open period count in
the totals only, and a call that ends without an outcome gives its permit back at once. The
plain `available` / `success` / `failure` keep the documented behaviour. The pure state
machine's side is in tests/circuit/test_permits.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brama import (
    Brama,
    CircuitOpenError,
    CircuitState,
    NotFoundError,
    Permit,
    circuit_breaker,
    guard,
)
from brama.testing import FakeClock
from tests.helpers import WAIT, wait_until

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
KINDS = ["decorator", "guard", "permit"]


def counts(system: Brama, name: str = "svc") -> tuple[Any, ...]:
    s = system.status(name)
    return s.state, s.total_successes, s.total_failures, s.half_open_permits_in_use


def make_call(kind: str, system: Brama, body: Callable[[], Any]) -> Callable[[], Any]:
    """`body` run through the breaker of "svc" the way `kind` does it."""
    if kind == "decorator":
        return circuit_breaker("svc", system=system)(body)
    if kind == "guard":
        shared = guard("svc", system=system)

        def guarded() -> Any:
            with shared:
                return body()

        return guarded

    def manual() -> Any:
        permit = system.acquire("svc")
        if permit is None:
            raise CircuitOpenError(system.status("svc"))
        try:
            value = body()
        except Exception as exc:
            permit.failure(repr(exc))
            raise
        permit.success()
        return value

    return manual


class Held:
    """A call on its own thread, held inside its body until `finish()`."""

    def __init__(self, kind: str, system: Brama, fail: bool = False) -> None:
        self.inside, self.leave = threading.Event(), threading.Event()
        self.outcome: list[Any] = []

        def body() -> str:
            self.inside.set()
            self.leave.wait(WAIT)
            if fail:
                raise ConnectionError("down")
            return "ok"

        call = make_call(kind, system, body)

        def run() -> None:
            try:
                self.outcome.append(call())
            except Exception as exc:
                self.outcome.append(type(exc).__name__)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.inside.wait(WAIT), "the call was not admitted"

    def finish(self) -> Any:
        self.leave.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        return self.outcome[0]


def refused(kind: str, system: Brama) -> bool:
    try:
        make_call(kind, system, lambda: None)()
    except CircuitOpenError:
        return True
    return False


@pytest.fixture
def system(brama_system: Brama) -> Iterator[Brama]:
    brama_system.register("svc", max_attempts=1, half_open_max_calls=1, expiry=30)
    yield brama_system


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("slow_fails", [False, True], ids=["slow succeeds", "slow fails"])
def test_a_slow_call_admitted_closed_does_not_take_the_trials_permit(
    system: Brama, brama_clock: FakeClock, kind: str, slow_fails: bool
) -> None:
    slow = Held(kind, system, fail=slow_fails)  # admitted while closed
    system.failure("svc", reason="another call failed")  # opens (max_attempts=1)
    brama_clock.advance(30)
    assert system.status("svc").state is HALF_OPEN
    trial = Held(kind, system)
    assert counts(system)[3] == 1
    assert slow.finish() == ("ConnectionError" if slow_fails else "ok")
    # in the totals only: the trial still holds the only permit, nothing closed or re-opened
    assert counts(system) == (HALF_OPEN, int(not slow_fails), 1 + slow_fails, 1)
    assert refused(kind, system)  # no second trial
    assert trial.finish() == "ok"
    assert system.status("svc").state is CLOSED


@pytest.mark.parametrize("kind", KINDS)
def test_an_outcome_from_an_earlier_half_open_period_counts_in_the_totals_only(
    system: Brama, kind: str
) -> None:
    system.open_circuit("svc")
    system.reset_expiry("svc")
    old = Held(kind, system)  # the trial of the first half-open period
    system.open_circuit("svc", reason="re-opened meanwhile")
    system.reset_expiry("svc")  # a second half-open period
    new = Held(kind, system)
    assert old.finish() == "ok"
    assert counts(system) == (HALF_OPEN, 1, 0, 1)
    assert new.finish() == "ok"
    assert system.status("svc").state is CLOSED


def test_with_asyncio_tasks(system: Brama) -> None:
    async def main() -> None:
        gates = {"slow": asyncio.Event(), "trial": asyncio.Event()}
        inside = {"slow": asyncio.Event(), "trial": asyncio.Event()}

        @circuit_breaker("svc", system=system)
        async def call(name: str) -> str:
            inside[name].set()
            await gates[name].wait()
            return name

        async def guarded(name: str) -> str:
            async with guard("svc", system=system):
                return await call(name)  # nested: runs under the guard's admission

        for runner in (call, guarded):
            for event in (*gates.values(), *inside.values()):
                event.clear()
            system.close_circuit("svc")
            slow = asyncio.ensure_future(runner("slow"))
            await asyncio.wait_for(inside["slow"].wait(), WAIT)
            system.open_circuit("svc")
            system.reset_expiry("svc")
            trial = asyncio.ensure_future(runner("trial"))
            await asyncio.wait_for(inside["trial"].wait(), WAIT)
            gates["slow"].set()
            assert await asyncio.wait_for(slow, WAIT) == "slow"
            assert counts(system)[0::3] == (HALF_OPEN, 1)
            with pytest.raises(CircuitOpenError):
                await runner("refused")
            gates["trial"].set()
            assert await asyncio.wait_for(trial, WAIT) == "trial"
            assert system.status("svc").state is CLOSED

    asyncio.run(main())


def test_trials_in_flight_never_exceed_the_permits_while_old_calls_finish() -> None:
    """Real clock, threads: calls admitted while closed keep finishing during half-open; at
    no moment do more than half_open_max_calls trials run, and the circuit closes only on
    trial successes."""
    with Brama() as system:
        system.register("svc", max_attempts=1, half_open_max_calls=2, success_threshold=3,
                        expiry=60)
        lock = threading.Lock()
        running = {"trials": 0, "most": 0}
        release = threading.Event()
        old_inside = threading.Barrier(9, timeout=WAIT)

        @circuit_breaker("svc", system=system)
        def old_call() -> None:
            old_inside.wait()
            release.wait(WAIT)

        @circuit_breaker("svc", system=system)
        def trial_call() -> None:
            if system.status("svc").state is not HALF_OPEN:
                return  # admitted after the trials closed the circuit: not a trial
            with lock:
                running["trials"] += 1
                running["most"] = max(running["most"], running["trials"])
            threading.Event().wait(random.uniform(0, 0.002))  # a call takes some time
            with lock:
                running["trials"] -= 1

        olds = [threading.Thread(target=old_call, daemon=True) for _ in range(8)]
        for thread in olds:
            thread.start()
        old_inside.wait()  # eight calls admitted while closed are in flight
        system.open_circuit("svc")
        system.reset_expiry("svc")
        stop = threading.Event()

        def trials() -> None:
            while not stop.is_set():
                with contextlib.suppress(CircuitOpenError):
                    trial_call()
                if system.status("svc").state is CLOSED:
                    return

        workers = [threading.Thread(target=trials, daemon=True) for _ in range(4)]
        release.set()  # the old calls finish among the trials
        for thread in workers:
            thread.start()
        wait_until(lambda: system.status("svc").state is CLOSED, what="the trials to close it")
        stop.set()
        for thread in olds + workers:
            thread.join(WAIT)
        assert running["most"] <= 2
        assert system.status("svc").total_successes >= 8 + 3


# -- the plain manual API keeps the documented behaviour -------------------------------------


def test_plain_available_success_failure_return_the_oldest_permit(system: Brama) -> None:
    system.configure("svc", half_open_max_calls=2, success_threshold=2)
    system.open_circuit("svc")
    system.reset_expiry("svc")
    assert system.available("svc") and system.available("svc")
    assert not system.available("svc")
    system.success("svc")  # no ticket: the oldest permit comes back, counted as a trial
    assert counts(system) == (HALF_OPEN, 1, 0, 1)
    assert system.available("svc")
    system.failure("svc", reason="still down")  # a trial failure: re-opens
    assert system.status("svc").state is OPEN


# -- Permit ---------------------------------------------------------------------------------


def test_a_permit_is_ended_by_exactly_one_report(system: Brama) -> None:
    for first, second in [("success", "failure"), ("failure", "success"),
                          ("release", "success"), ("success", "release"),
                          ("release", "release")]:
        system.reset_circuit("svc")
        permit = system.acquire("svc")
        assert isinstance(permit, Permit) and not permit.trial
        getattr(permit, first)()
        with pytest.raises(RuntimeError, match="already reported or released"):
            getattr(permit, second)()
        assert "ended" in repr(permit)
    status = system.status("svc")
    assert (status.total_successes, status.total_failures) == (2, 1)  # the first reports only


def test_releasing_a_permit_admitted_closed_is_harmless(system: Brama) -> None:
    permit = system.acquire("svc")
    assert permit is not None and permit.ticket == -1
    system.open_circuit("svc")
    system.reset_expiry("svc")
    trial = system.acquire("svc")
    assert trial is not None and trial.trial
    permit.release()  # holds no permit: the trial's stays taken
    assert counts(system) == (HALF_OPEN, 0, 0, 1)
    trial.release()  # the trial's comes back, nothing counted
    assert counts(system) == (HALF_OPEN, 0, 0, 0)
    again = system.acquire("svc")
    assert again is not None and again.trial
    again.success(duration=0.01)
    assert system.status("svc").state is CLOSED


def test_acquire_refused_and_unknown(system: Brama) -> None:
    system.open_circuit("svc")
    assert system.acquire("svc") is None
    assert system.status("svc").rejected_calls == 1
    with pytest.raises(NotFoundError):
        system.acquire("nobody")


def test_a_permit_failure_reopens_and_late_reports_of_other_permits_count_only(
    system: Brama,
) -> None:
    system.configure("svc", half_open_max_calls=2)
    system.open_circuit("svc")
    system.reset_expiry("svc")
    first, second = system.acquire("svc"), system.acquire("svc")
    assert first is not None and second is not None
    first.failure("still down")
    assert counts(system) == (OPEN, 0, 1, 0)
    second.success()  # its permit went with the re-opening: totals only, stays open
    assert counts(system) == (OPEN, 1, 1, 0)


# -- outcomes that say nothing about the dependency give the permit back (sync) ---------------


class NotFound(Exception):
    pass


IGNORING: dict[str, Callable[[Brama, Exception], Callable[[], Any]]] = {
    "decorator, class": lambda system, error: circuit_breaker(
        "svc", system=system, ignore_exceptions=NotFound)(_raiser(error)),
    "decorator, predicate": lambda system, error: circuit_breaker(
        "svc", system=system, ignore_exceptions=lambda exc: isinstance(exc, NotFound))(
        _raiser(error)),
    "guard, class": lambda system, error: _guarded(guard(
        "svc", system=system, ignore_exceptions=(KeyError, NotFound)), error),
    "guard, predicate": lambda system, error: _guarded(guard(
        "svc", system=system, ignore_exceptions=lambda exc: "404" in str(exc)), error),
}


def _raiser(error: Exception) -> Callable[[], Any]:
    def call() -> Any:
        raise error

    return call


def _guarded(shared: Any, error: Exception) -> Callable[[], Any]:
    def call() -> Any:
        with shared:
            raise error

    return call


@pytest.mark.parametrize("how", list(IGNORING))
def test_an_ignored_exception_returns_the_permit_at_once(system: Brama, how: str) -> None:
    system.open_circuit("svc")
    system.reset_expiry("svc")
    error = NotFound("404")
    with pytest.raises(NotFound) as caught:
        IGNORING[how](system, error)()
    assert caught.value is error
    assert counts(system) == (HALF_OPEN, 0, 0, 0)
    assert system.available("svc")  # the next trial goes at once


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(2), GeneratorExit()],
                         ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("kind", ["decorator", "guard"])
def test_base_exceptions_from_sync_code_propagate_unchanged_and_return_the_permit(
    system: Brama, kind: str, error: BaseException
) -> None:
    system.open_circuit("svc")
    system.reset_expiry("svc")

    def body() -> None:
        raise error

    with pytest.raises(type(error)) as caught:
        make_call(kind, system, body)()
    assert caught.value is error
    assert counts(system) == (HALF_OPEN, 0, 0, 0)


def test_an_ignore_verdict_returns_the_permit(system: Brama) -> None:
    system.open_circuit("svc")
    system.reset_expiry("svc")

    @circuit_breaker("svc", system=system, error_handler=lambda value: "ignore")
    def cached() -> str:
        return "stale"

    assert cached() == "stale"
    assert counts(system) == (HALF_OPEN, 0, 0, 0)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_error_handler_that_raises_returns_the_permit(system: Brama, is_async: bool) -> None:
    """Its exception propagates and nothing is reported, as documented; the permit must
    come back at once too (found: held until the lease ran out)."""
    system.open_circuit("svc")
    system.reset_expiry("svc")
    error = ValueError("cannot classify")

    def classify(value: Any) -> Any:
        raise error

    if is_async:

        @circuit_breaker("svc", system=system, error_handler=classify)
        async def async_call() -> str:
            return "value"

        def call() -> Any:
            return asyncio.run(async_call())
    else:

        @circuit_breaker("svc", system=system, error_handler=classify)
        def call() -> str:
            return "value"

    with pytest.raises(ValueError) as caught:
        call()
    assert caught.value is error
    assert counts(system) == (HALF_OPEN, 0, 0, 0)
