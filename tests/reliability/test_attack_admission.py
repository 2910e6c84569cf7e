"""Attack: admissions across re-registration. Decorated calls and guards on a half-open
connection that is unregistered and registered again under them, and trial permits (a
`Permit`, a decorated call in flight) whose registration was discarded.

The bug the first test would have caught: a decorated call raised NotFoundError when its
half-open connection was unregistered during `available()`. The others: permit ids start at
0 in every registration, so an admission of the discarded registration, ended by name, took
another call's trial permit in the new one (and closed, re-opened or released it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import brama
from brama import (
    AlreadyRegisteredError,
    Brama,
    CircuitOpenError,
    CircuitState,
    NotFoundError,
)
from brama.testing import FakeClock
from tests.helpers import WAIT, run_threads

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 20 µs instead of 5 ms, so the threads really interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(2e-5)
    yield
    sys.setswitchinterval(previous)


# -- decorated calls on a half-open connection that is unregistered under them ----------------


class Flaky(Exception):
    """The decorated function's own exception."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["sync", "async", "guard"])
def test_decorated_calls_on_a_half_open_connection_being_reregistered(mode: str) -> None:
    """Four threads call a decorated function (sync or async) or enter a guard on a
    half-open connection while another unregisters it, registers it again and puts it back
    in half-open, in a loop: each call returns, raises the function's own exception, or
    CircuitOpenError; never NotFoundError, BramaError or anything else."""
    options = {"max_attempts": 1, "expiry": 3600.0, "half_open_max_calls": 2}
    done = threading.Event()
    outcomes = Counter[str]()
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    with Brama() as system:

        @brama.circuit_breaker("flaky", system=system, **options)
        def call(fail: bool) -> str:
            if fail:
                raise Flaky("its own")
            return "ok"

        guard = brama.guard("flaky", system=system, **options)

        def through_guard(fail: bool) -> str:
            with guard:
                if fail:
                    raise Flaky("its own")
                return "ok"

        @brama.circuit_breaker("flaky", system=system, **options)
        async def call_async(fail: bool) -> str:
            if fail:
                raise Flaky("its own")
            return "ok"

        def through_async(fail: bool) -> str:
            return asyncio.run(call_async(fail))

        target = {"sync": call, "async": through_async, "guard": through_guard}[mode]
        target(False)  # registers it

        def caller(index: int) -> None:
            rng = random.Random(index)
            mine = Counter[str]()
            while not done.is_set():
                try:
                    target(rng.random() < 0.3)
                    mine["returned"] += 1
                except (Flaky, CircuitOpenError) as exc:
                    mine[type(exc).__name__] += 1
                except BaseException as exc:
                    with lock:
                        unexpected.append(exc)
            with lock:
                outcomes.update(mine)

        def churner() -> int:
            cycles = 0
            try:
                for _ in range(250):
                    system.unregister("flaky")
                    with contextlib.suppress(AlreadyRegisteredError):  # a call was first
                        system.register("flaky", **options)
                    try:
                        system.open_circuit("flaky", reason="churn")
                        system.reset_expiry("flaky")  # half-open
                    except NotFoundError:  # unregistered by nobody else, but be fair
                        pass
                    cycles += 1
            finally:
                done.set()
            return cycles

        def work(index: int) -> int:
            if index == 4:
                return churner()
            caller(index)
            return 0

        cycles = sum(run_threads(work, 5, timeout=50))
        assert system.status("flaky") is not None  # still usable
    print(f"\n[attack 8, {mode}] {cycles} unregister/register/half-open cycles under "
          f"{sum(outcomes.values())} calls: {dict(outcomes)}")
    assert not unexpected, [repr(e) for e in unexpected[:5]]
    assert cycles == 250
    assert outcomes["returned"] > 0 and outcomes["CircuitOpenError"] > 0


# -- an admission of the discarded registration never reports to the new one -----------------


def half_open_again(system: Brama, **options: Any) -> None:
    """Register "x" anew and put it in half-open."""
    system.unregister("x")
    system.register("x", max_attempts=1, half_open_max_calls=1, expiry=3600.0, **options)
    system.open_circuit("x")
    system.reset_expiry("x")


@pytest.mark.parametrize("outcome", ["success", "failure", "release"])
def test_a_permit_of_a_discarded_registration_never_reaches_the_new_one(outcome: str) -> None:
    """A trial permit taken on a registration that is then unregistered and registered
    again, half-open, with its one trial permit taken by another call: ending the old permit
    (success, failure or release) raises NotFoundError and does not touch the new
    registration. It used to: permit ids started again at 0, and the old permit's success
    closed the new circuit, taking the other call's permit."""
    with Brama(clock=FakeClock(1_000_000.0)) as system:
        half_open_again(system)
        old = system.acquire("x")
        assert old is not None and old.trial
        half_open_again(system)
        new = system.acquire("x")
        assert new is not None and new.ticket != old.ticket  # each registration its own ids
        with pytest.raises(NotFoundError, match="unregistered"):  # its registration is gone
            getattr(old, outcome)()
        status = system.status("x")
        assert (status.state, status.half_open_permits_in_use) == (HALF_OPEN, 1), status
        assert (status.total_successes, status.total_failures) == (0, 0)
        assert system.available("x") is False  # the other call still holds the only permit
        new.success()
        assert system.status("x").state is CLOSED


@pytest.mark.parametrize("outcome", ["success", "failure", "release"])
def test_a_ticket_of_a_discarded_registration_names_no_permit_of_the_new_one(
    outcome: str,
) -> None:
    """The by-name ticket API (`admit`, then `success` / `failure` / `release` with
    `ticket=`): a ticket taken on a registration that is then unregistered and registered
    again names no permit of the new one, so it cannot end another call's trial."""
    with Brama(clock=FakeClock(1_000_000.0)) as system:
        half_open_again(system)
        old = system.admit("x")
        assert old >= 0
        half_open_again(system)
        new = system.admit("x")
        assert new >= 0 and new != old
        if outcome == "release":
            system.release("x", old)
        else:
            getattr(system, outcome)("x", ticket=old)
        status = system.status("x")
        assert (status.state, status.half_open_permits_in_use) == (HALF_OPEN, 1), status
        system.success("x", ticket=new)
        assert system.status("x").state is CLOSED


class Ignored(Exception):
    """An exception the decorator is told to ignore: the call's permit is released."""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ending", ["returns", "raises", "ignored"])
def test_a_decorated_call_in_flight_across_reregistration_reports_to_its_own(ending: str) -> None:
    """A decorated call admitted with a trial permit is still running when its connection is
    unregistered, registered again, put in half-open and its one trial permit taken by
    another caller: when the old call ends (returning, raising, or with an ignored
    exception, which releases its permit) the new registration is untouched."""
    entered, leave = threading.Event(), threading.Event()
    with Brama() as system:
        half_open_again(system)

        @brama.circuit_breaker("x", system=system, max_attempts=1, half_open_max_calls=1,
                               expiry=3600.0, ignore_exceptions=Ignored)
        def in_flight() -> str:
            entered.set()
            leave.wait(WAIT)
            if ending == "raises":
                raise Flaky("late failure")
            if ending == "ignored":
                raise Ignored("says nothing")
            return "late success"

        def call() -> None:
            with contextlib.suppress(Flaky, Ignored):
                in_flight()

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        assert entered.wait(WAIT)
        assert system.status("x").half_open_permits_in_use == 1
        half_open_again(system)
        other = system.acquire("x")
        assert other is not None and other.trial
        leave.set()
        caller.join(WAIT)
        assert not caller.is_alive()
        status = system.status("x")
        assert (status.state, status.half_open_permits_in_use) == (HALF_OPEN, 1), status
        assert (status.total_successes, status.total_failures) == (0, 0)
        other.failure("the other call failed")
        assert system.status("x").state is OPEN
