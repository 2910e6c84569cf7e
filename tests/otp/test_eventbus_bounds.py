"""EventBus bounds: every queue is bounded and counts its drops, subscribing costs O(1) in the
number of subscriptions, and a blocked filter or handler delays only its own subscription
and never `stop()` beyond `stop_timeout`."""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from brama.otp import Actor, EventBus

from .test_eventbus import WAIT, assert_empty, drain, drain_queue, new_bus


class Gate(Actor):
    """A subscriber actor that blocks on its first message until `release` is set."""

    def __init__(self, sink: queue.Queue[Any], started: threading.Event,
                 release: threading.Event) -> None:
        super().__init__()
        self.sink, self.started, self.release = sink, started, release

    def on_receive(self, message: Any) -> Any:
        self.started.set()
        self.release.wait(WAIT)
        self.sink.put(message)


# -- per-subscription bounds --


def test_full_mailbox_drops_oldest_and_counts() -> None:
    bus = new_bus()
    try:
        sub = bus.subscribe(queue_size=3)
        for i in range(10):
            bus.publish("t", i)
        bus.flush()
        assert sub.dropped == 7
        assert drain(sub, 3) == [7, 8, 9]
    finally:
        bus.stop()


def test_bus_default_queue_size_applies() -> None:
    bus = new_bus(queue_size=2)
    try:
        sub = bus.subscribe()
        for i in range(5):
            bus.publish("t", i)
        bus.flush()
        assert drain(sub, 2) == [3, 4]
        assert sub.dropped == 3
    finally:
        bus.stop()


def test_handler_lane_keeps_the_newest_events_and_counts_the_rest() -> None:
    bus = new_bus()
    started, release = threading.Event(), threading.Event()
    handled: queue.Queue[int] = queue.Queue()

    def handler(event: int) -> None:
        started.set()
        release.wait(WAIT)
        handled.put(event)

    try:
        sub = bus.subscribe(handler, queue_size=3)
        bus.publish("t", 0)
        assert started.wait(WAIT)  # event 0 is being handled; the lane's queue is empty
        for i in range(1, 11):
            bus.publish("t", i)
        bus.flush()
        assert sub.dropped == 7
        release.set()
        assert drain_queue(handled, 4) == [0, 8, 9, 10]
    finally:
        release.set()
        bus.stop()


def test_actor_subscriber_with_a_full_inbox_loses_the_newest_events() -> None:
    bus = new_bus()
    sink: queue.Queue[int] = queue.Queue()
    started, release = threading.Event(), threading.Event()
    gate = Gate.start(sink, started, release)
    try:
        sub = bus.subscribe(gate, queue_size=3)
        bus.publish("t", 0)
        assert started.wait(WAIT)  # event 0 is being handled; the inbox is empty
        for i in range(1, 11):
            bus.publish("t", i)
        bus.flush()
        assert sub.dropped == 7
        release.set()
        assert drain_queue(sink, 4) == [0, 1, 2, 3]
    finally:
        release.set()
        gate.stop()
        bus.stop()


def test_filtered_actor_subscriber_is_bounded_too() -> None:
    bus = new_bus()
    sink: queue.Queue[int] = queue.Queue()
    started, release, sentinel_seen = threading.Event(), threading.Event(), threading.Event()
    gate = Gate.start(sink, started, release)

    def flt(event: int) -> bool:
        if event == 101:  # filtered after every other event: they are all settled now
            sentinel_seen.set()
            return False
        return True

    try:
        sub = bus.subscribe(gate, queue_size=3, filter=flt)
        bus.publish("t", 0)
        assert started.wait(WAIT)
        for i in range(1, 102):
            bus.publish("t", i)
        assert sentinel_seen.wait(WAIT)
        assert sub.dropped >= 100 - 3  # the inbox holds 3, the rest was dropped
        release.set()
        received = drain_queue(sink, 101 - sub.dropped)
        assert received[0] == 0 and received == sorted(received)
        assert sink.empty()
    finally:
        release.set()
        gate.stop()
        bus.stop()


def test_filtered_mailbox_is_bounded_before_and_after_its_filter() -> None:
    bus = new_bus()
    release = threading.Event()

    def slow_filter(event: int) -> bool:
        release.wait(WAIT)
        return True

    try:
        sub = bus.subscribe(filter=slow_filter, queue_size=2)
        for i in range(10):
            bus.publish("t", i)
        bus.flush()
        assert sub.dropped >= 10 - 1 - 2  # one in the filter, two queued in its lane
        release.set()
        kept: list[int] = []
        while len(kept) + sub.dropped < 10:
            kept.append(sub.get(timeout=WAIT))
        assert kept == sorted(kept) and kept[-1] == 9
        assert len(kept) <= 2
    finally:
        release.set()
        bus.stop()


# -- the bus's own pending queue --


def test_pending_events_are_bounded_and_counted_while_no_bus_actor_runs() -> None:
    bus = new_bus(pending_size=5)
    try:
        sub = bus.subscribe()
        ref = bus.actor_ref
        assert ref is not None
        ref.stop()  # no supervisor here: the bus waits for start_actor()
        for i in range(20):
            bus.publish("t", i)
        assert bus.dropped == 15
        assert_empty(sub)
        bus.start_actor()
        assert drain(sub, 5) == [15, 16, 17, 18, 19]
        assert sub.dropped == 0
    finally:
        bus.stop()


# -- subscribing costs O(1) --


def test_subscribe_and_close_cost_does_not_grow_with_the_subscriptions() -> None:
    """10,000 subscriptions: the last thousand cost about what the first thousand did."""
    bus = new_bus()
    started = time.monotonic()
    subs = []
    subscribe_times: list[float] = []
    try:
        for _batch in range(10):
            begin = time.perf_counter()
            for i in range(1000):
                topics = None if i % 100 == 0 else [f"topic-{i % 10}"]
                subs.append(bus.subscribe(topics=topics))
            subscribe_times.append(time.perf_counter() - begin)
        bus.publish("topic-3", "hello")
        bus.flush()
        got = 0
        for sub in subs:
            try:
                sub.get(timeout=0)
                got += 1
            except queue.Empty:
                pass
        assert got == 1000 + 100  # the topic-3 subscribers and the catch-all ones
        close_times: list[float] = []
        for batch in range(10):
            begin = time.perf_counter()
            for sub in subs[batch * 1000 : (batch + 1) * 1000]:
                sub.close()
            close_times.append(time.perf_counter() - begin)
        assert not bus.interest.wanted.topics and not bus.interest.wanted.all_topics
    finally:
        bus.stop()
    elapsed = time.monotonic() - started
    print(f"subscribe per 1,000: {[round(t, 3) for t in subscribe_times]}")
    print(f"close per 1,000: {[round(t, 3) for t in close_times]}")
    assert elapsed < 45
    # generous: a quadratic table (the old rebuild) made the last thousand ~10x the first
    assert subscribe_times[-1] < 4 * subscribe_times[0] + 0.2
    assert close_times[0] < 4 * close_times[-1] + 0.2  # the first closes face 10,000 routes


# -- blocked user code delays only its own subscription, never stop() --


def test_blocked_filter_and_handler_delay_only_their_own_subscription(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = new_bus(stop_timeout=0.5)
    release = threading.Event()
    in_filter, in_handler = threading.Event(), threading.Event()

    def stuck_filter(event: Any) -> bool:
        in_filter.set()
        release.wait(30)
        return True

    def stuck_handler(event: Any) -> None:
        in_handler.set()
        release.wait(30)

    try:
        blocked_mailbox = bus.subscribe(filter=stuck_filter)
        bus.subscribe(stuck_handler)
        unrelated = bus.subscribe()
        bus.publish("t", 0)
        assert in_filter.wait(WAIT) and in_handler.wait(WAIT)
        begin = time.monotonic()
        for i in range(1, 100):
            bus.publish("t", i)
        assert drain(unrelated, 100) == list(range(100))
        assert time.monotonic() - begin < 2.0
        assert_empty(blocked_mailbox)

        with caplog.at_level(logging.WARNING, logger="brama.otp.eventbus"):
            begin = time.monotonic()
            bus.stop()
            took = time.monotonic() - begin
        assert took < 0.5 + 1.5, took
        busy = [r.getMessage() for r in caplog.records if "lane_busy" in r.getMessage()]
        assert len(busy) == 2
        assert any(f"{bus.name}-filter-" in m for m in busy)
        assert any(f"{bus.name}-handler-" in m for m in busy)
        assert blocked_mailbox.closed and unrelated.closed
    finally:
        release.set()


def test_idle_lanes_are_not_reported_busy(caplog: pytest.LogCaptureFixture) -> None:
    bus = new_bus(stop_timeout=0)
    handled: queue.Queue[Any] = queue.Queue()
    for _ in range(5):
        bus.subscribe(handled.put)
    bus.subscribe(filter=lambda _event: True)
    bus.publish("t", 1)
    assert drain_queue(handled, 5) == [1] * 5
    with caplog.at_level(logging.WARNING, logger="brama.otp.eventbus"):
        begin = time.monotonic()
        bus.stop()
        assert time.monotonic() - begin < 1.5
    assert not [r for r in caplog.records if "lane_busy" in r.getMessage()]


def test_stop_called_from_a_handler_does_not_wait_for_that_handler() -> None:
    bus = new_bus(stop_timeout=5.0)
    stopped: queue.Queue[float] = queue.Queue()

    def handler(event: Any) -> None:
        begin = time.monotonic()
        bus.stop()
        stopped.put(time.monotonic() - begin)

    bus.subscribe(handler)
    bus.publish("t", 1)
    assert stopped.get(timeout=WAIT) < 2.0


@pytest.mark.parametrize("stop", [False, True])
def test_blocked_user_code_never_blocks_interpreter_exit(stop: bool) -> None:
    script = textwrap.dedent(
        f"""
        import threading
        from brama.otp import EventBus

        bus = EventBus(name="exit-bus", stop_timeout=0.2)
        never, started = threading.Event(), threading.Barrier(3)

        def stuck(event):
            started.wait(10)
            never.wait()
            return True

        bus.subscribe(stuck)
        bus.subscribe(filter=stuck)
        bus.publish("t", 1)
        started.wait(10)
        if {stop}:
            bus.stop()
        print("done", flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


def test_bus_survives_a_full_subscriber_storm() -> None:
    """Many events to a slow handler and a fast mailbox: the bus's memory stays bounded."""
    bus = new_bus(queue_size=50)
    release = threading.Event()
    try:
        slow = bus.subscribe(lambda _event: release.wait(WAIT), queue_size=10)
        fast = bus.subscribe()
        for i in range(5000):
            bus.publish("t", i)
        bus.flush()
        assert fast.dropped == 5000 - 50
        assert drain(fast, 50) == list(range(4950, 5000))
        assert slow.dropped >= 5000 - 1 - 10
    finally:
        release.set()
        bus.stop()


def test_bus_default_options() -> None:
    bus = EventBus(start=False)
    assert bus.name == "event-bus"
    assert bus.actor_ref is None
    assert bus.dropped == 0
    bus.stop()
