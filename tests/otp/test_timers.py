"""Tests for brama.otp.timers: send_after on a FakeClock (synchronous) and on the real clock."""

from __future__ import annotations

import logging
import math
import queue
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from brama.otp import Actor, Clock, FakeClock, TimerRef, TimerService
from tests.helpers import threads_since

WAIT = 5.0  # generous upper bound for anything we wait on with a timeout


class Recorder(Actor):
    """Records every message and the clock reading when it was handled."""

    def __init__(
        self,
        clock: Clock | None = None,
        inbox: queue.Queue[tuple[Any, float]] | None = None,
        on_message: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.inbox = inbox
        self.on_message = on_message
        self.seen: list[tuple[Any, float]] = []

    def on_receive(self, message: Any) -> Any:
        now = self.clock.monotonic() if self.clock is not None else time.monotonic()
        self.seen.append((message, now))
        if self.inbox is not None:
            self.inbox.put((message, now))
        if self.on_message is not None:
            self.on_message(message)
        return None


class Failing(Actor):
    """Raises on every message, like a buggy handler."""

    def on_receive(self, message: Any) -> Any:
        raise RuntimeError(f"cannot handle {message!r}")


class TellList:
    """A plain destination with only `tell`."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def tell(self, message: Any) -> None:
        self.got.append(message)


class AskList:
    """A destination with `ask` too; the fake clock must prefer `ask`."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def ask(self, message: Any) -> None:
        self.asked.append(message)

    def tell(self, message: Any) -> None:
        raise AssertionError("tell used where ask was available")


class BrokenTell:
    """A destination whose `tell` always fails."""

    def tell(self, message: Any) -> None:
        raise RuntimeError("broken destination")


def scheduler_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"test-timers-{request.node.name}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def fake(clock: FakeClock, name: str) -> Iterator[TimerService]:
    service = TimerService(clock, name=name)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def real(name: str) -> Iterator[TimerService]:
    service = TimerService(name=name)
    try:
        yield service
    finally:
        service.stop()


# -- FakeClock: synchronous, deterministic --


def test_fires_in_deadline_order_and_handler_sees_the_deadline(
    clock: FakeClock, fake: TimerService
) -> None:
    rec = Recorder.start(clock)
    t3 = fake.send_after(3.0, rec, "c")
    t1 = fake.send_after(1.0, rec, "a")
    t2 = fake.send_after(2.0, rec, "b")
    assert (t1.deadline, t2.deadline, t3.deadline) == (1001.0, 1002.0, 1003.0)
    clock.advance(10.0)
    seen = rec.proxy().seen.get(timeout=WAIT)
    assert seen == [("a", 1001.0), ("b", 1002.0), ("c", 1003.0)]
    assert clock.monotonic() == 1010.0


def test_ties_fire_in_scheduling_order_even_across_services(
    clock: FakeClock, fake: TimerService, name: str
) -> None:
    rec = Recorder.start(clock)
    with TimerService(clock, name=name + "-other") as other:
        for i in range(6):
            (fake if i % 2 else other).send_after(1.0, rec, i)
        clock.advance(1.0)
    assert [m for m, _ in rec.proxy().seen.get(timeout=WAIT)] == list(range(6))


def test_delivery_is_synchronous(clock: FakeClock, fake: TimerService) -> None:
    # No waiting at all: the handler has run by the time advance returns.
    seen: list[Any] = []
    rec = Recorder.start(clock, on_message=seen.append)
    fake.send_after(0.5, rec, "tick")
    clock.advance(0.4)
    assert seen == []
    clock.advance(0.1)
    assert seen == ["tick"]


def test_not_yet_due_timers_wait_for_a_later_advance(clock: FakeClock, fake: TimerService) -> None:
    seen: list[Any] = []
    rec = Recorder.start(clock, on_message=seen.append)
    early = fake.send_after(1.0, rec, "early")
    late = fake.send_after(5.0, rec, "late")
    assert fake.pending == 2
    clock.advance(2.0)
    assert seen == ["early"]
    assert fake.pending == 1
    assert not early.active
    assert late.active
    clock.advance(3.0)
    assert seen == ["early", "late"]
    assert fake.pending == 0


def test_timers_scheduled_during_advance_fire_in_the_same_advance(
    clock: FakeClock, fake: TimerService
) -> None:
    seen: list[tuple[Any, float]] = []

    def reschedule(message: Any) -> None:
        seen.append((message, clock.monotonic()))
        kind, n = message
        if n == 0:
            return
        if kind == "now":
            fake.send_after(0, rec, ("now", n - 1))
        else:
            fake.send_after(1.0, rec, ("step", n - 1))

    rec = Recorder.start(clock, on_message=reschedule)
    fake.send_after(0.5, rec, ("now", 2))
    fake.send_after(1.0, rec, ("step", 10))
    clock.advance(4.0)
    assert seen == [
        (("now", 2), 1000.5),
        (("now", 1), 1000.5),
        (("now", 0), 1000.5),
        (("step", 10), 1001.0),
        (("step", 9), 1002.0),
        (("step", 8), 1003.0),
        (("step", 7), 1004.0),
    ]
    assert fake.pending == 1  # ("step", 6) is due at 1005: not yet
    clock.advance(1.0)
    assert seen[-1] == (("step", 6), 1005.0)


def test_zero_delay_timer_fires_on_the_next_advance(clock: FakeClock, fake: TimerService) -> None:
    dest = TellList()
    fake.send_after(0, dest, "now")
    assert dest.got == []
    clock.advance(0)
    assert dest.got == ["now"]


def test_cancel(clock: FakeClock, fake: TimerService) -> None:
    seen: list[Any] = []
    rec = Recorder.start(clock, on_message=seen.append)
    doomed = fake.send_after(1.0, rec, "doomed")
    kept = fake.send_after(2.0, rec, "kept")
    assert fake.pending == 2
    assert doomed.cancel() is True
    assert doomed.active is False
    assert fake.pending == 1
    assert doomed.cancel() is False  # idempotent
    assert fake.cancel(doomed) is False
    clock.advance(5.0)
    assert seen == ["kept"]
    assert kept.cancel() is False  # already fired
    assert fake.pending == 0


def test_cancel_of_a_foreign_timer_is_refused(clock: FakeClock, fake: TimerService) -> None:
    dest = TellList()
    with TimerService(clock, name="test-timers-foreign") as other:
        timer = other.send_after(1.0, dest, "x")
        assert fake.cancel(timer) is False
        assert timer.active
    assert not timer.active  # dropped by stop


def test_many_cancellations_keep_order_and_counts(clock: FakeClock, fake: TimerService) -> None:
    dest = TellList()
    timers: list[TimerRef] = [fake.send_after(i / 10, dest, i) for i in range(300)]
    cancelled = [i for i in range(300) if i % 3]
    for i in cancelled:
        assert timers[i].cancel()
    assert fake.pending == 100
    clock.advance(30.0)
    assert dest.got == [i for i in range(300) if i % 3 == 0]
    assert fake.pending == 0


def test_ask_is_preferred_for_plain_destinations(clock: FakeClock, fake: TimerService) -> None:
    dest = AskList()
    fake.send_after(1.0, dest, "hi")
    clock.advance(1.0)
    assert dest.asked == ["hi"]


def test_failing_destinations_do_not_stop_later_timers(
    clock: FakeClock, fake: TimerService, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []
    rec = Recorder.start(clock, on_message=seen.append)
    dead = Recorder.start(clock)
    dead.stop()
    failing = Failing.start()
    fake.send_after(1.0, dead, "to the dead")
    fake.send_after(2.0, failing, "to a failing handler")
    fake.send_after(3.0, BrokenTell(), "to a broken tell")
    fake.send_after(4.0, rec, "still delivered")
    with caplog.at_level(logging.DEBUG, logger="brama.otp.timers"):
        clock.advance(5.0)
    assert seen == ["still delivered"]
    assert len([r for r in caplog.records if r.name == "brama.otp.timers"]) == 3
    assert not failing.is_alive()  # a crash in a timer message's handler is a crash, as ever
    assert clock.monotonic() == 1005.0


def test_fake_clock_service_starts_no_thread(clock: FakeClock, fake: TimerService) -> None:
    before = set(threading.enumerate())
    for i in range(50):
        fake.send_after(i, TellList(), i)
    assert scheduler_threads(fake.name) == []
    assert threads_since(before) == []


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, -math.inf])
def test_send_after_rejects_bad_delays(fake: TimerService, bad: float) -> None:
    with pytest.raises(ValueError, match="delay") as info:
        fake.send_after(bad, TellList(), "x")
    assert ">= 0" in str(info.value)
    assert fake.pending == 0


@pytest.mark.parametrize("bad", [True, "1", None, 2j])
def test_send_after_rejects_non_numbers(fake: TimerService, bad: Any) -> None:
    with pytest.raises(TypeError, match="delay"):
        fake.send_after(bad, TellList(), "x")
    assert fake.pending == 0


def test_stop_drops_pending_timers_and_is_idempotent(clock: FakeClock, name: str) -> None:
    dest = TellList()
    service = TimerService(clock, name=name)
    timer = service.send_after(1.0, dest, "never")
    service.stop()
    service.stop()
    assert service.pending == 0
    assert not timer.active
    assert timer.cancel() is False
    clock.advance(2.0)
    assert dest.got == []
    with pytest.raises(RuntimeError, match="stopped"):
        service.send_after(1.0, dest, "late")


def test_context_manager_stops(clock: FakeClock, name: str) -> None:
    with TimerService(clock, name=name) as service:
        timer = service.send_after(1.0, TellList(), "x")
    assert not timer.active
    with pytest.raises(RuntimeError):
        service.send_after(1.0, TellList(), "x")


# -- real clock: one scheduler thread --


def test_real_clock_delivers_with_tell(real: TimerService) -> None:
    inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
    rec = Recorder.start(inbox=inbox)
    timer = real.send_after(0.01, rec, "hello")
    message, at = inbox.get(timeout=WAIT)
    assert message == "hello"
    assert at >= timer.deadline
    assert not timer.active
    assert real.pending == 0


def test_thread_is_lazy_and_stop_joins_it(name: str) -> None:
    service = TimerService(name=name)
    try:
        assert scheduler_threads(name) == []  # no timer yet, no thread
        service.send_after(60.0, TellList(), "far away")
        assert len(scheduler_threads(name)) == 1
        assert scheduler_threads(name)[0].daemon
    finally:
        service.stop()
    assert scheduler_threads(name) == []
    service.stop()  # idempotent
    assert scheduler_threads(name) == []
    with pytest.raises(RuntimeError, match="stopped"):
        service.send_after(1.0, TellList(), "late")


def test_one_thread_for_many_timers(real: TimerService) -> None:
    inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
    rec = Recorder.start(inbox=inbox)
    before = threading.active_count()
    for i in range(1000):
        real.send_after(0.05 + (i % 100) / 1000, rec, i)
    assert len(scheduler_threads(real.name)) == 1
    assert threading.active_count() <= before + 1
    received = {inbox.get(timeout=WAIT)[0] for _ in range(1000)}
    assert received == set(range(1000))
    assert len(scheduler_threads(real.name)) == 1
    assert real.pending == 0


def test_real_clock_cancel(real: TimerService) -> None:
    inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
    rec = Recorder.start(inbox=inbox)
    doomed = real.send_after(0.03, rec, "doomed")
    real.send_after(0.06, rec, "marker")
    assert real.pending == 2
    assert doomed.cancel() is True
    assert real.pending == 1
    assert inbox.get(timeout=WAIT)[0] == "marker"  # the cancelled one, due earlier, never came
    assert inbox.empty()
    assert doomed.cancel() is False


def test_real_clock_timers_fire_within_20ms(real: TimerService) -> None:
    inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
    rec = Recorder.start(inbox=inbox)
    # 50 .. 500 ms, 50 ms apart: one scheduling stall (up to ~70 ms) delays one sample, not a
    # run of neighbours, so the one-sample tolerance below holds for one stall on a loaded box
    delays = [0.05 * (i + 1) for i in range(10)]
    deadlines = {i: real.send_after(d, rec, i).deadline for i, d in enumerate(delays)}
    lateness = []
    for _ in delays:
        i, at = inbox.get(timeout=WAIT)
        assert at >= deadlines[i]  # never early
        lateness.append(at - deadlines[i])
    # The spec is 20 ms. One sample can be delayed by an unlucky scheduling hiccup on a loaded
    # CI machine, so we hold the median and the 90th percentile (9th of 10) to it, not the max.
    lateness.sort()
    assert statistics.median(lateness) < 0.020, lateness
    assert lateness[8] < 0.020, lateness


def test_earlier_timer_added_later_wakes_the_scheduler(real: TimerService) -> None:
    inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
    rec = Recorder.start(inbox=inbox)
    late = real.send_after(5.0, rec, "late")
    early = real.send_after(0.05, rec, "early")
    message, at = inbox.get(timeout=WAIT)
    assert message == "early"
    # Had the scheduler slept until the 5 s timer, this would be ~4.95 s late; the 20 ms
    # precision itself is measured over many samples in the test above.
    assert at - early.deadline < 0.1
    assert late.active
    assert late.cancel()


def test_real_clock_survives_dead_and_broken_destinations(
    real: TimerService, caplog: pytest.LogCaptureFixture
) -> None:
    inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
    rec = Recorder.start(inbox=inbox)
    dead = Recorder.start()
    dead.stop()
    with caplog.at_level(logging.DEBUG, logger="brama.otp.timers"):
        real.send_after(0.01, dead, "to the dead")
        real.send_after(0.02, BrokenTell(), "to a broken tell")
        real.send_after(0.03, rec, "still delivered")
        assert inbox.get(timeout=WAIT)[0] == "still delivered"
    assert len([r for r in caplog.records if r.name == "brama.otp.timers"]) == 2
    assert scheduler_threads(real.name)[0].is_alive()
    real.send_after(0.01, rec, "and again")
    assert inbox.get(timeout=WAIT)[0] == "and again"


def test_stop_drops_pending_real_timers(name: str) -> None:
    dest = TellList()
    service = TimerService(name=name)
    timer = service.send_after(0.05, dest, "never")
    service.stop()
    assert not timer.active
    assert service.pending == 0
    assert scheduler_threads(name) == []
    assert dest.got == []


class RaisesBaseException:
    """A destination whose `tell` raises SystemExit: it must not end the scheduler thread."""

    def tell(self, message: Any) -> None:
        raise SystemExit("from a destination")


class FlakyClock:
    """The real clock, except that `monotonic()` raises once in the scheduler thread, after
    `ok` good readings there."""

    def __init__(self, ok: int, thread_name: str) -> None:
        self.ok = ok
        self.thread_name = thread_name
        self.raised = threading.Event()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        if threading.current_thread().name != self.thread_name:
            return time.monotonic()
        self.ok -= 1
        if self.ok == 0:
            self.raised.set()
            raise OSError("clock hiccup")
        return time.monotonic()


@pytest.mark.parametrize("never", [1e10, 1e300, math.inf])
def test_a_delay_beyond_the_process_lifetime_never_fires_and_spares_the_scheduler(
    never: float,
) -> None:
    """1e10 is how people write "never": it used to overflow the thread's wait and kill it."""
    inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
    rec = Recorder.start(inbox=inbox)
    with TimerService(name="never-service") as service:
        far = service.send_after(never, rec, "never")
        service.send_after(0.02, rec, "soon")
        assert inbox.get(timeout=WAIT)[0] == "soon"
        assert far.active and service.pending == 1
        assert scheduler_threads("never-service")
        service.send_after(0.01, rec, "still working")
        assert inbox.get(timeout=WAIT)[0] == "still working"
    rec.stop()


def test_the_scheduler_survives_a_destination_raising_a_base_exception() -> None:
    got = TellList()
    with TimerService(name="survivor") as service:
        service.send_after(0.0, RaisesBaseException(), "boom")
        service.send_after(0.01, got, "after")
        wait_for(lambda: got.got == ["after"])
        assert len(scheduler_threads("survivor")) == 1


def test_the_scheduler_survives_an_exception_in_its_own_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FlakyClock(ok=2, thread_name="flaky-clock")
    got = TellList()
    with caplog.at_level(logging.ERROR, logger="brama.otp.timers"), TimerService(
        clock, name="flaky-clock"
    ) as service:
        for i in range(3):
            service.send_after(0.01 * (i + 1), got, i)
        wait_for(lambda: got.got == [0, 1, 2])
    assert clock.raised.is_set()
    assert any("timer_loop_failed" in r.getMessage() for r in caplog.records)


def wait_for(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        threading.Event().wait(0.005)
