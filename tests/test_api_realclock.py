"""Acceptance tests on the real clock: one per timer path (expiry, half-open permit timeout,
inactivity sweep). Every other timing test uses the FakeClock."""

from __future__ import annotations

import time

import brama
from brama import CircuitState, EventType

TOLERANCE = 0.05


def test_expiry_fires_on_its_own_timer_within_50ms():
    expiry = 0.3
    with brama.Brama(expiry=expiry) as system:
        sub = system.subscribe(events=[EventType.CIRCUIT_HALF_OPENED], connection="db")
        system.register("db", max_attempts=1)
        system.failure("db")
        opened_at = system.status("db").opened_at
        assert system.status("db").state is CircuitState.OPEN
        assert opened_at is not None
        event = sub.get(timeout=2)
        received = time.time()
        deadline = opened_at + expiry
        assert event.event is EventType.CIRCUIT_HALF_OPENED
        assert deadline - 0.001 <= event.timestamp <= deadline + TOLERANCE
        assert received - deadline <= TOLERANCE
        status = system.status("db")
        assert status.state is CircuitState.HALF_OPEN
        assert deadline - 0.001 <= status.last_state_change <= deadline + TOLERANCE


def test_half_open_permit_returns_after_lease_on_real_clock():
    with brama.Brama() as system:
        system.register("db", max_attempts=1, expiry=0.25)
        system.failure("db")
        system.reset_expiry("db")  # half-open now; the lease of a permit is status().expiry
        lease = system.status("db").expiry
        assert lease == 0.25
        assert system.available("db") is True
        granted = time.monotonic()
        refusals = 0
        returned_at = None
        deadline = granted + 2.0
        while time.monotonic() < deadline:
            if system.available("db"):
                returned_at = time.monotonic()
                break
            refusals += 1
            time.sleep(0.002)
        assert returned_at is not None, "the permit never came back"
        assert lease - 0.001 <= returned_at - granted <= lease + TOLERANCE
        assert refusals >= 1
        assert system.status("db").rejected_calls == refusals
        assert system.status("db").state is CircuitState.HALF_OPEN


def test_inactivity_sweep_on_real_clock():
    interval, threshold = 0.05, 0.1
    with brama.Brama(cleanup_interval=interval, inactive_threshold=threshold) as system:
        sub = system.subscribe(events=[EventType.CLEANUP])
        registered = system.register("idle").registered_at
        cleanup = sub.get(timeout=2)
        assert cleanup.connection == ""
        assert [item["identifier"] for item in cleanup.data["removed"]] == ["idle"]
        waited = cleanup.timestamp - registered
        # removed by the first sweep at which it had been idle for `threshold` seconds
        assert threshold - 0.001 <= waited <= threshold + interval + TOLERANCE
        assert system.connections() == []
        assert system.available("idle") is False
