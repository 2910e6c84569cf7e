"""Testing code that uses Brama with the pytest plugin's fixtures: no sleeping, no flakiness.

The plugin (installed with Brama, through the `pytest11` entry point) provides:

- `brama_clock`: a `brama.testing.FakeClock`; `brama_clock.advance(seconds)` moves time and
  fires every timer that falls due before it returns, so an expiry is a one-liner.
- `brama_system`: a fresh `brama.Brama` on that clock, stopped after the test.

Pass `system=brama_system` to the decorator, `guard` and the `brama.testing` helpers.

Run: python -m pytest -q examples/test_with_fixtures.py
"""

from __future__ import annotations

import pytest

import brama
from brama import CircuitOpenError, CircuitState, EventType
from brama.testing import FakeClock, add_failures, set_state


def test_the_circuit_half_opens_exactly_at_its_expiry(
    brama_system: brama.Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("api", max_attempts=2, expiry=30.0)
    brama_system.failure("api", reason="timeout")
    brama_system.failure("api", reason="timeout")
    assert brama_system.status("api").state is CircuitState.OPEN
    assert not brama_system.available("api")

    brama_clock.advance(29.9)
    assert brama_system.status("api").state is CircuitState.OPEN

    brama_clock.advance(0.1)  # the expiry timer fires inside advance()
    assert brama_system.status("api").state is CircuitState.HALF_OPEN
    assert brama_system.available("api")  # the one trial call
    brama_system.success("api")
    assert brama_system.status("api").state is CircuitState.CLOSED


def test_progressive_expiry_doubles_after_a_failed_trial(
    brama_system: brama.Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("api", max_attempts=1, expiry_strategy="progressive",
                          initial_expiry=5.0, backoff_factor=2.0, max_expiry=60.0)
    brama_system.failure("api")
    assert brama_system.status("api").expiry == 5.0
    brama_clock.advance(5.0)
    assert brama_system.available("api")
    brama_system.failure("api")  # the trial call fails: open again, for twice as long
    assert brama_system.status("api").expiry == 10.0
    brama_clock.advance(9.0)
    assert brama_system.status("api").state is CircuitState.OPEN
    brama_clock.advance(1.0)
    assert brama_system.status("api").state is CircuitState.HALF_OPEN


def test_a_decorated_function_uses_its_fallback_while_open(
    brama_system: brama.Brama, brama_clock: FakeClock
) -> None:
    calls: list[str] = []

    @brama.circuit_breaker("pricing", fallback=lambda sku: -1, system=brama_system)
    def price(sku: str) -> int:
        calls.append(sku)
        return 42

    brama_system.register("pricing", max_attempts=3, expiry=10.0)
    set_state("pricing", "open", system=brama_system)
    assert price("A1") == -1
    assert calls == []  # not called while open

    brama_clock.advance(10.0)
    assert price("A1") == 42  # the trial call goes through and closes the circuit
    assert brama_system.status("pricing").state is CircuitState.CLOSED


def test_guard_raises_circuit_open_error(brama_system: brama.Brama) -> None:
    brama_system.register("db", max_attempts=3)
    add_failures("db", 3, system=brama_system)
    with pytest.raises(CircuitOpenError) as info, brama.guard("db", system=brama_system):
        pass
    assert info.value.status.state is CircuitState.OPEN
    assert info.value.status.rejected_calls == 1


def test_events_tell_the_whole_story(
    brama_system: brama.Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("api", max_attempts=1, expiry=1.0)
    with brama_system.subscribe(events=["state_change"], connection="api") as changes:
        brama_system.failure("api", reason="HTTP 500")
        brama_clock.advance(1.0)
        brama_system.success("api")
        seen = [changes.get(timeout=2) for _ in range(3)]
    assert all(event.event is EventType.STATE_CHANGE for event in seen)
    assert [(e.data["previous_state"], e.data["new_state"]) for e in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    # an automatic trip names its rule; the failure's own reason rides along
    assert seen[0].data["reason"] == "max_attempts"
    assert seen[0].data["last_failure_reason"] == "HTTP 500"
