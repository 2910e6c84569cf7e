"""Tests for brama.otp.clock: the system clock and the hand-driven FakeClock."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pykka
import pytest

from brama.otp import SYSTEM_CLOCK, Actor, Clock, FakeClock, SystemClock, TimerService


class Stamper(Actor):
    """Records the fake time at which each message is handled."""

    def __init__(self, clock: Clock, log: list[tuple[Any, float]]) -> None:
        super().__init__()
        self.clock = clock
        self.log = log

    def on_receive(self, message: Any) -> Any:
        self.log.append((message, self.clock.monotonic()))
        return None


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def test_system_clock_reads_the_real_clocks() -> None:
    assert isinstance(SYSTEM_CLOCK, SystemClock)
    assert isinstance(SYSTEM_CLOCK, Clock)
    assert abs(SYSTEM_CLOCK.time() - time.time()) < 1.0
    before = time.monotonic()
    reading = SYSTEM_CLOCK.monotonic()
    assert before <= reading <= time.monotonic()


def test_fake_clock_is_a_clock_and_starts_at_start() -> None:
    clock = FakeClock(1000.0)
    assert isinstance(clock, Clock)
    assert clock.time() == 1000.0
    assert clock.monotonic() == 1000.0
    assert FakeClock().monotonic() == 0.0
    assert FakeClock(5).time() == 5.0


def test_fake_clock_only_moves_on_advance() -> None:
    clock = FakeClock(10.0)
    assert clock.monotonic() == clock.monotonic() == 10.0
    clock.advance(2.5)
    assert clock.time() == 12.5
    assert clock.monotonic() == 12.5
    clock.advance(0)
    assert clock.monotonic() == 12.5
    clock.advance(Fraction(1, 2))  # type: ignore[arg-type]  # any numbers.Real is accepted
    assert clock.time() == clock.monotonic() == 13.0


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, math.inf, -math.inf])
def test_advance_rejects_bad_values(bad: float) -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="seconds") as info:
        clock.advance(bad)
    assert ">= 0" in str(info.value)
    assert clock.monotonic() == 0.0


@pytest.mark.parametrize("bad", [True, False, "1", None, 1j, [1]])
def test_advance_rejects_non_real_numbers(bad: Any) -> None:
    clock = FakeClock()
    with pytest.raises(TypeError, match="seconds") as info:
        clock.advance(bad)
    assert "not bool" in str(info.value)
    assert clock.monotonic() == 0.0


def test_fake_clock_start_is_validated() -> None:
    with pytest.raises(TypeError, match="start"):
        FakeClock(True)
    with pytest.raises(TypeError, match="start"):
        FakeClock("0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start"):
        FakeClock(math.nan)
    assert FakeClock(-5.0).monotonic() == -5.0  # any finite start is fine


def test_advance_sets_time_to_each_deadline_then_to_the_target() -> None:
    clock = FakeClock(100.0)
    log: list[tuple[Any, float]] = []
    ref = Stamper.start(clock, log)
    with TimerService(clock, name="test-clock-deadlines") as timers:
        timers.send_after(1.0, ref, "a")
        timers.send_after(3.0, ref, "b")
        clock.advance(5.0)
    assert log == [("a", 101.0), ("b", 103.0)]
    assert clock.monotonic() == clock.time() == 105.0


def test_float_rounding_does_not_strand_a_timer() -> None:
    # 0.7 + 0.1 == 0.7999999999999999 < 0.8: the clock allows a nanosecond of slack.
    clock = FakeClock()
    log: list[tuple[Any, float]] = []
    ref = Stamper.start(clock, log)
    with TimerService(clock, name="test-clock-rounding") as timers:
        timers.send_after(0.8, ref, "due")
        clock.advance(0.7)
        assert log == []
        clock.advance(0.1)
        assert log == [("due", 0.8)]


def test_concurrent_advances_serialize() -> None:
    clock = FakeClock()
    log: list[tuple[Any, float]] = []
    ref = Stamper.start(clock, log)
    with TimerService(clock, name="test-clock-concurrent") as timers:
        for i in range(40):
            timers.send_after(i + 0.5, ref, i)
        start = threading.Barrier(4)

        def advancer() -> None:
            start.wait(timeout=10)
            for _ in range(10):
                clock.advance(1.0)

        threads = [threading.Thread(target=advancer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()
    assert clock.monotonic() == 40.0
    # Every timer fired exactly once, in order, at its own deadline.
    assert log == [(i, i + 0.5) for i in range(40)]


def test_stopped_services_are_detached() -> None:
    clock = FakeClock()
    log: list[tuple[Any, float]] = []
    ref = Stamper.start(clock, log)
    timers = TimerService(clock, name="test-clock-detach")
    timers.send_after(1.0, ref, "dropped")
    timers.stop()
    assert clock.attached == 0
    clock.advance(2.0)
    assert log == []
