"""Every actor of a system is supervised: kill the registry or the event bus under traffic.

Threads report outcomes on many connections (awake ones, and dormant ones whose next report
starts an actor, which needs the registry) while the registry or the bus actor is stopped or
crashed again and again. Nothing may be lost: the totals equal what the threads reported, a
subscription made before the first kill receives one FAILURE event per failure reported, and
after each kill every connection works again within a second.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Literal

import pytest

from brama import Brama, EventType
from brama.testing import flush_events, kill
from tests.helpers import WAIT, drain, wait_until

CONNECTIONS = [f"c{i}" for i in range(12)]
THREADS = 4
KILLS = 4
RECOVERY = 1.0  # seconds: "every connection working within a second"


def _traffic(system: Brama, stop: threading.Event, counts: dict[str, list[int]],
             errors: list[BaseException], seed: int) -> None:
    """Report outcomes round-robin until stopped; count what was reported."""
    i = seed
    try:
        while not stop.is_set():
            name = CONNECTIONS[i % len(CONNECTIONS)]
            if i % 3 == 0:
                system.failure(name, reason="down")
                counts[name][1] += 1
            else:
                system.success(name)
                counts[name][0] += 1
            i += THREADS
    except BaseException as exc:
        errors.append(exc)


def _restarted(system: Brama, part: str, old: Any) -> bool:
    ref = system.runtime.part(part)
    return ref is not None and ref is not old and ref.is_alive()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["stop", "crash"])
@pytest.mark.parametrize("part", ["registry", "events"])
def test_killing_a_part_under_traffic_loses_nothing(
    part: Literal["registry", "events"], how: Literal["stop", "crash"]
) -> None:
    # max_attempts high: every failure stays a closed-circuit failure, so totals are exact
    # and no call is refused; hibernate_after 0: actors hibernate between reports, so
    # reports keep starting actors (which registers them) while the registry is down.
    with Brama(max_attempts=10**6, hibernate_after=0.0, max_restarts=100,
               max_seconds=1.0) as system:
        for name in CONNECTIONS:
            system.register(name)
        failures = system.subscribe(events=[EventType.FAILURE], queue_size=10**6)
        counts = [{name: [0, 0] for name in CONNECTIONS} for _ in range(THREADS)]
        errors: list[BaseException] = []
        stop = threading.Event()
        threads = [threading.Thread(target=_traffic, args=(system, stop, counts[t], errors, t))
                   for t in range(THREADS)]
        for thread in threads:
            thread.start()
        recoveries = []
        try:
            for k in range(KILLS):
                old = kill(part, how=how, system=system)
                assert old is not None
                killed_at = time.monotonic()
                # a dormant connection's report needs the registry; an awake one's the bus
                probe = CONNECTIONS[k % len(CONNECTIONS)]
                system.failure(probe, reason="probe")
                counts[0][probe][1] += 1  # thread 0's counts are only read after the join
                recoveries.append(time.monotonic() - killed_at)
                wait_until(lambda old=old: _restarted(system, part, old),
                           what=f"{part} restarted")
        finally:
            stop.set()
            for thread in threads:
                thread.join(WAIT)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        for name in CONNECTIONS:
            status = system.status(name)
            assert (status.total_successes, status.total_failures) == (
                sum(c[name][0] for c in counts), sum(c[name][1] for c in counts)), name
        flush_events(system=system)
        received = drain(failures)
        assert failures.dropped == 0
        assert len(received) == sum(sum(c[n][1] for n in CONNECTIONS) for c in counts)
        # each kill's first report came through within a second (most far quicker)
        assert statistics.median(recoveries) < RECOVERY, recoveries
        assert max(recoveries) < 5 * RECOVERY, recoveries


def test_flush_events_waits_out_a_restarting_bus() -> None:
    """`flush_events` right after the bus actor was killed waits for its restart (the events
    published meanwhile are pending, not lost) instead of raising: killed and flushed 40
    times, every FAILURE reaches the subscription."""
    with Brama(max_restarts=100_000, max_seconds=1.0) as system:
        system.register("x", max_attempts=10_000)
        sub = system.subscribe(events=[EventType.FAILURE], queue_size=1_000)
        for _ in range(40):
            assert kill("events", system=system) is not None
            system.failure("x")
            flush_events(system=system)
        assert len(drain(sub)) == 40
