"""ServerClock: the offset estimate, sample selection, monotonic readings, a real server."""

from __future__ import annotations

import time
from collections.abc import Callable

from brama._fleet import FleetConfig, FleetStore, ServerClock
from brama.otp import Clock


class Ticker:
    """A settable monotonic clock."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_unsynced_clock_reads_local_wall_time() -> None:
    clock = ServerClock()
    assert not clock.synced
    assert abs(clock.time() - time.time()) < 0.5
    assert isinstance(clock, Clock)


def test_offset_is_measured_at_the_midpoint_of_a_round_trip() -> None:
    local = Ticker(100.0)
    clock = ServerClock(monotonic=local, wall=lambda: 0.0)
    assert clock.observe(100.0, 100.004, 5_000.002)  # the server said 5000.002 mid-trip
    assert clock.synced and abs(clock.offset - 4_900.0) < 1e-9
    local.now = 100.004
    assert abs(clock.uncertainty() - 0.002) < 1e-9
    local.now = 101.0
    assert abs(clock.monotonic() - 5_001.0) < 1e-9
    assert clock.now() == (clock.monotonic(), clock.monotonic())


def test_a_slow_round_trip_does_not_replace_a_precise_sample() -> None:
    local = Ticker(0.0)
    clock = ServerClock(monotonic=local, wall=lambda: 0.0)
    clock.observe(0.0, 0.001, 1_000.0005)
    assert not clock.observe(0.002, 0.202, 1_000.1021)  # ±100 ms, consistent: ignored
    assert abs(clock.offset - 1_000.0) < 1e-9
    local.now = 1_000.0  # after a long time the kept sample has aged: a fresh one wins
    assert clock.observe(1_000.0, 1_000.004, 2_000.002)


def test_a_contradicting_sample_means_the_server_clock_moved() -> None:
    local = Ticker(0.0)
    clock = ServerClock(monotonic=local, wall=lambda: 0.0)
    clock.observe(0.0, 0.001, 1_000.0005)
    assert clock.observe(1.0, 1.1, 1_006.05)  # 5 s ahead, beyond both error bounds
    assert abs(clock.offset - 1_005.0) < 1e-9


def test_readings_never_go_backwards() -> None:
    local = Ticker(10.0)
    clock = ServerClock(monotonic=local, wall=lambda: 0.0)
    clock.observe(10.0, 10.0, 1_000.0)
    assert clock.monotonic() == 1_000.0
    clock.observe(10.0, 10.0, 990.0)  # the server stepped back 10 s
    assert clock.monotonic() == 1_000.0  # paused, not backwards
    local.now = 25.0
    assert clock.monotonic() == 1_005.0


def test_store_scripts_keep_the_clock_in_step(store: FleetStore) -> None:
    assert not store.clock.synced
    store.sync_clock()
    assert store.clock.synced
    server_seconds, micros = store.client.time()
    server_now = server_seconds + micros / 1e6
    assert abs(store.clock.time() - server_now) < 0.05
    samples = store.clock.samples
    store.counters(store.key("x"))
    assert store.clock.samples == samples + 1


def test_a_host_with_a_wrong_clock_still_reads_server_time(
        make_store: Callable[..., FleetStore], config: FleetConfig) -> None:
    """A host whose own clocks are an hour off: deadlines still come out in server time."""
    skewed = ServerClock(monotonic=lambda: time.monotonic() + 3_600.0,
                         wall=lambda: time.time() + 3_600.0)
    store = make_store(config, clock=skewed)
    store.sync_clock()
    seconds, micros = store.client.time()
    assert abs(skewed.time() - (seconds + micros / 1e6)) < 0.05
