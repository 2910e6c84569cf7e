"""Attack: the inactivity sweep over days of fake time.

The bug these tests would have caught: `open_circuit` + `disable_expiry` with
`inactive_threshold=100` was swept (refusals were not activity), the decorator registered the
connection again, closed, and the switched-off function ran 201 times; with the old defaults a
connection quiet for a day disappeared. Now `inactive_threshold` defaults to None (never), and
the sweep never takes open, half-open or expiry-disabled circuits.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import brama
from brama import Brama, CircuitOpenError, CircuitState, EventType
from brama.testing import FakeClock, flush_events
from tests.helpers import drain

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
HOUR, DAY = 3600.0, 86_400.0


def run_days(clock: FakeClock, days: float, step: float, each: Any = None) -> int:
    """Advance `days` of fake time in steps of `step` seconds, calling `each()` after each
    step; returns the number of steps."""
    steps = int(days * DAY / step)
    for _ in range(steps):
        clock.advance(step)
        if each is not None:
            each()
    return steps


@pytest.mark.timeout(60)
def test_circuits_held_open_or_half_open_survive_days_of_sweeps() -> None:
    """inactive_threshold=100 s, a sweep every 10 s, three days of fake time (25,920
    sweeps): a circuit held open (open_circuit + disable_expiry), one open on a two-day
    expiry, one half-open and one with its expiry disabled while closed all survive; a
    decorated function on the held-open one never runs (every call is refused, which is not
    activity, and nothing registers it anew, closed); an idle closed connection is swept
    (the sweep does run)."""
    clock = FakeClock(1_000_000.0)
    with Brama(clock=clock, inactive_threshold=100.0, cleanup_interval=10.0) as system:
        sub = system.subscribe(events=[EventType.CONNECTION_REMOVED], queue_size=100_000)
        system.register("held", max_attempts=1)
        system.open_circuit("held", reason="maintenance")
        system.disable_expiry("held")
        system.register("long-open", expiry=2 * DAY)
        system.open_circuit("long-open", reason="known outage")
        system.register("trial", max_attempts=1, expiry=60.0)
        system.open_circuit("trial")
        system.reset_expiry("trial")  # half-open; no call comes to try it
        system.register("switched", max_attempts=3)
        system.disable_expiry("switched")  # closed, with its expiry switched off
        system.register("idle")

        ran = Counter[str]()

        @brama.circuit_breaker("held", system=system)
        def switched_off() -> str:
            ran["held"] += 1
            return "ran"

        refused = Counter[str]()

        def call_it() -> None:
            try:
                switched_off()
            except CircuitOpenError:
                refused["held"] += 1

        steps = run_days(clock, 3, HOUR / 12, call_it)  # a call every 5 minutes
        flush_events(system=system)
        removed = [e.connection for e in drain(sub)]
        listed = {s.identifier: s.state for s in system.connections()}
    print(f"\n[attack 4] 3 days of fake time ({steps} steps, ~25,920 sweeps): removed "
          f"{dict(Counter(removed))}; the switched-off function ran {ran['held']} times, refused "
          f"{refused['held']} times; left: {listed}")
    assert removed == ["idle"]
    assert ran["held"] == 0 and refused["held"] == steps
    assert listed["held"] is OPEN
    assert listed["long-open"] is HALF_OPEN  # its two days passed: half-open, still there
    assert listed["trial"] is HALF_OPEN
    assert listed["switched"] is CLOSED
    assert set(listed) == {"held", "long-open", "trial", "switched"}


@pytest.mark.timeout(60)
def test_by_default_nothing_is_ever_swept() -> None:
    """The defaults (inactive_threshold None): ten days of fake time with sweeps every
    cleanup_interval, connections in every state and none ever used: none is removed, no
    CLEANUP or CONNECTION_REMOVED event is published."""
    clock = FakeClock(1_000_000.0)
    with Brama(clock=clock) as system:
        assert system.runtime.settings.get("inactive_threshold") is None
        sub = system.subscribe(events=[EventType.CLEANUP, EventType.CONNECTION_REMOVED])
        for name in ("quiet", "used-once", "open", "held", "half"):
            system.register(name, max_attempts=1)
        system.success("used-once")
        system.open_circuit("open")
        system.open_circuit("held")
        system.disable_expiry("held")
        system.open_circuit("half")
        system.reset_expiry("half")
        steps = run_days(clock, 10, 6 * HOUR)
        flush_events(system=system)
        events = drain(sub)
        listed = {s.identifier: s.state for s in system.connections()}
    print(f"\n[attack 4] defaults, 10 days of fake time in {steps} steps: "
          f"{len(events)} sweep events, left: {sorted(listed)}")
    assert events == []
    assert listed == {"quiet": CLOSED, "used-once": CLOSED, "open": HALF_OPEN,
                      "held": OPEN, "half": HALF_OPEN}


@pytest.mark.timeout(60)
def test_a_used_connection_is_never_swept_and_a_removed_one_comes_back_clean() -> None:
    """With sweeping on, a connection that keeps being used through the decorator (fast-path
    successes only, which the actor never sees) stays for days; an idle one is removed, and
    the decorator registers it again, closed, with its options, on its next call."""
    clock = FakeClock(1_000_000.0)
    with Brama(clock=clock, inactive_threshold=300.0, cleanup_interval=30.0) as system:
        calls = Counter[str]()

        @brama.circuit_breaker("busy", system=system, max_attempts=7)
        def busy() -> None:
            calls["busy"] += 1

        @brama.circuit_breaker("rare", system=system, max_attempts=4)
        def rare() -> None:
            calls["rare"] += 1

        busy()
        rare()
        run_days(clock, 2, 60.0, busy)
        assert system.lookup("busy") is not None
        assert system.lookup("rare") is None  # swept after 300 s
        rare()
        status = system.status("rare")
        assert (status.state, status.max_attempts, status.total_successes) == (CLOSED, 4, 1)
        assert system.status("busy").total_successes == calls["busy"]
