"""Tests for brama.otp.eventbus: delivery kinds, filtering, isolation of handlers and mailboxes."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from pykka import ActorDeadError

from brama.otp import Actor, EventBus, Subscription

_bus_names = itertools.count()


class Recorder(Actor):
    """A brama actor subscriber that puts every event it receives into `sink`."""

    def __init__(self, sink: queue.Queue[Any]) -> None:
        super().__init__()
        self.sink = sink

    def on_receive(self, message: Any) -> Any:
        self.sink.put(message)


class PlainRecorder(pykka.ThreadingActor):
    """A plain pykka subscriber (not monitorable by the bus)."""

    use_daemon_thread = True

    def __init__(self, sink: queue.Queue[Any]) -> None:
        super().__init__()
        self.sink = sink

    def on_receive(self, message: Any) -> Any:
        self.sink.put(message)


class Bystander(pykka.ThreadingActor):
    """A plain pykka actor that must survive whatever happens on the bus."""

    use_daemon_thread = True

    def on_receive(self, message: Any) -> Any:
        return message


@pytest.fixture
def bus() -> Iterator[EventBus]:
    event_bus = EventBus(name=f"test-bus-{next(_bus_names)}")
    yield event_bus
    event_bus.stop()
    pykka.ActorRegistry.stop_all()


def drain(sub: Subscription, count: int) -> list[Any]:
    return [sub.get(timeout=5) for _ in range(count)]


def bus_threads(bus: EventBus) -> list[threading.Thread]:
    prefix = bus.actor_ref._actor_weakref()._label  # type: ignore[union-attr]
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_mailbox_receives_events_in_publish_order(bus: EventBus) -> None:
    sub = bus.subscribe()
    for i in range(1000):
        bus.publish("tick", i)
    assert drain(sub, 1000) == list(range(1000))
    bus.flush()
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_topics_select_events(bus: EventBus) -> None:
    sub = bus.subscribe(topics=["a", "c"])
    for topic in "abcab":
        bus.publish(topic, topic)
    bus.flush()
    assert drain(sub, 3) == ["a", "c", "a"]
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_filter_selects_events(bus: EventBus) -> None:
    sub = bus.subscribe(topics=["n"], filter=lambda n: n % 2 == 0)
    for i in range(10):
        bus.publish("n", i)
    bus.flush()
    assert drain(sub, 5) == [0, 2, 4, 6, 8]
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


@pytest.mark.parametrize("error", [ValueError("bad filter"), SystemExit(3), KeyboardInterrupt()])
def test_raising_filter_counts_as_no_match_and_kills_nothing(
    bus: EventBus, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    bystander = Bystander.start()

    def flaky(event: int) -> bool:
        if event == 1:
            raise error
        return True

    filtered = bus.subscribe(filter=flaky)
    everything = bus.subscribe()
    with caplog.at_level(logging.ERROR, logger="brama.otp.eventbus"):
        for i in range(3):
            bus.publish("t", i)
        bus.flush()

    assert drain(filtered, 2) == [0, 2]
    assert drain(everything, 3) == [0, 1, 2]
    assert bus.actor_ref.is_alive()
    assert bystander.ask("still here", timeout=5) == "still here"
    assert any("filter" in record.getMessage() for record in caplog.records)


def test_actor_subscriber_receives_events_in_order(bus: EventBus) -> None:
    sink: queue.Queue[Any] = queue.Queue()
    bus.subscribe(Recorder.start(sink), topics=["t"])
    for i in range(500):
        bus.publish("t", i)
    assert [sink.get(timeout=5) for _ in range(500)] == list(range(500))


def test_dead_plain_actor_subscriber_is_dropped_on_delivery(bus: EventBus) -> None:
    sink: queue.Queue[Any] = queue.Queue()
    ref = PlainRecorder.start(sink)
    sub = bus.subscribe(ref, topics=["t"])
    assert bus.wanted("t")

    ref.stop()
    bus.publish("t", "lost")
    bus.flush()

    assert not bus.wanted("t")
    assert sub.closed


def test_stopped_brama_actor_subscriber_is_dropped_without_a_publish(bus: EventBus) -> None:
    ref = Recorder.start(queue.Queue())
    sub = bus.subscribe(ref, topics=["t"])
    ref.stop()

    deadline = time.monotonic() + 5
    while bus.wanted("t"):  # each flush is a barrier behind the monitor's Exit
        assert time.monotonic() < deadline
        bus.flush()
    assert sub.closed


def test_slow_handler_does_not_delay_a_mailbox_subscriber(bus: EventBus) -> None:
    release = threading.Event()
    handled: queue.Queue[int] = queue.Queue()

    def slow(event: int) -> None:
        release.wait(30)
        handled.put(event)

    bus.subscribe(slow)
    fast = bus.subscribe()
    try:
        for i in range(100):
            bus.publish("t", i)
        assert drain(fast, 100) == list(range(100))
        assert handled.empty()
    finally:
        release.set()
    assert [handled.get(timeout=5) for _ in range(100)] == list(range(100))


@pytest.mark.parametrize("error", [RuntimeError("oops"), SystemExit(1), KeyboardInterrupt()])
def test_failing_handler_keeps_receiving_and_kills_nothing(
    bus: EventBus, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    bystander = Bystander.start()
    seen: queue.Queue[int] = queue.Queue()

    def handler(event: int) -> None:
        seen.put(event)
        if event == 0:
            raise error

    bus.subscribe(handler)
    with caplog.at_level(logging.ERROR, logger="brama.otp.eventbus"):
        for i in range(3):
            bus.publish("t", i)
        assert [seen.get(timeout=5) for _ in range(3)] == [0, 1, 2]

    assert bus.actor_ref.is_alive()
    assert bystander.ask("alive?", timeout=5) == "alive?"
    assert any("handler" in record.getMessage() for record in caplog.records)
    assert all(t.is_alive() for t in bus_threads(bus))


def test_object_with_handle_event_is_called(bus: EventBus) -> None:
    class Listener:
        def __init__(self) -> None:
            self.events: queue.Queue[Any] = queue.Queue()

        def __call__(self, event: Any) -> None:
            raise AssertionError("handle_event is preferred over __call__")

        def handle_event(self, event: Any) -> None:
            self.events.put(event)

    listener = Listener()
    bus.subscribe(listener, topics=["t"])
    bus.publish("t", "hello")
    assert listener.events.get(timeout=5) == "hello"


def test_handler_runs_in_its_own_actor_thread(bus: EventBus) -> None:
    threads: queue.Queue[threading.Thread] = queue.Queue()
    bus.subscribe(lambda _event: threads.put(threading.current_thread()))
    bus.publish("t", 1)
    handler_thread = threads.get(timeout=5)
    assert handler_thread is not threading.current_thread()
    assert handler_thread in bus_threads(bus)
    assert "handler" in handler_thread.name


def test_full_mailbox_drops_oldest_and_counts(bus: EventBus) -> None:
    sub = bus.subscribe(mailbox_size=3)
    for i in range(10):
        bus.publish("t", i)
    bus.flush()
    assert sub.dropped == 7
    assert drain(sub, 3) == [7, 8, 9]


def test_bus_default_mailbox_size_applies() -> None:
    bus = EventBus(name="small-bus", mailbox_size=2)
    try:
        sub = bus.subscribe()
        for i in range(5):
            bus.publish("t", i)
        bus.flush()
        assert drain(sub, 2) == [3, 4]
        assert sub.dropped == 3
    finally:
        bus.stop()


def test_get_times_out_with_queue_empty(bus: EventBus) -> None:
    sub = bus.subscribe()
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        sub.get(timeout=0.05)
    assert time.monotonic() - started >= 0.04


def test_close_wakes_a_blocked_get_and_ends_iteration(bus: EventBus) -> None:
    getter, iterator = bus.subscribe(topics=["quiet"]), bus.subscribe(topics=["t"])
    outcomes: queue.Queue[Any] = queue.Queue()
    ready = threading.Barrier(3)

    def blocked_get() -> None:
        ready.wait(5)
        try:
            getter.get()
        except queue.Empty:
            outcomes.put(("get", "empty"))

    def iterate() -> None:
        ready.wait(5)
        outcomes.put(("iter", list(iterator)))

    threads = [threading.Thread(target=blocked_get), threading.Thread(target=iterate)]
    for thread in threads:
        thread.start()
    ready.wait(5)
    bus.publish("t", "before close")
    bus.flush()

    getter.close()
    iterator.close()

    results = dict(outcomes.get(timeout=5) for _ in threads)
    for thread in threads:
        thread.join(5)
    assert results["iter"] == ["before close"]
    assert results["get"] == "empty"
    assert getter.closed and iterator.closed


def test_unsubscribe_is_idempotent(bus: EventBus) -> None:
    sub = bus.subscribe(topics=["t"])
    bus.unsubscribe(sub)
    bus.unsubscribe(sub)
    sub.close()
    assert sub.closed
    assert not bus.wanted("t")
    bus.publish("t", 1)
    bus.flush()
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_subscription_is_a_context_manager(bus: EventBus) -> None:
    with bus.subscribe(topics=["t"]) as sub:
        assert bus.wanted("t")
    assert sub.closed
    assert not bus.wanted("t")


def test_wanted_reflects_subscriptions(bus: EventBus) -> None:
    assert not bus.wanted("a")
    only_a = bus.subscribe(topics=["a"])
    assert bus.wanted("a")
    assert not bus.wanted("b")

    everything = bus.subscribe(lambda _event: None)
    assert bus.wanted("b")

    everything.close()
    assert not bus.wanted("b")
    assert bus.wanted("a")
    only_a.close()
    assert not bus.wanted("a")


def test_handler_can_close_its_own_subscription(bus: EventBus) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    holder: list[Subscription] = []
    subscribed = threading.Event()

    def once(event: Any) -> None:
        subscribed.wait(5)
        seen.put(event)
        holder[0].close()
        seen.put("closed")

    holder.append(bus.subscribe(once))
    subscribed.set()
    bus.publish("t", 1)
    bus.publish("t", 2)
    assert seen.get(timeout=5) == 1
    assert seen.get(timeout=5) == "closed"
    bus.flush()
    assert not bus.wanted("t")
    assert seen.empty()


def test_unsubscribe_stops_the_handler_actor(bus: EventBus) -> None:
    threads: queue.Queue[threading.Thread] = queue.Queue()
    sub = bus.subscribe(lambda _event: threads.put(threading.current_thread()))
    bus.publish("t", 1)
    handler_thread = threads.get(timeout=5)
    sub.close()
    handler_thread.join(5)
    assert not handler_thread.is_alive()


def test_stop_stops_handler_actors_and_closes_subscriptions() -> None:
    bus = EventBus(name="stopping-bus")
    release = threading.Event()
    handled: queue.Queue[Any] = queue.Queue()

    def slow(event: Any) -> None:
        handled.put(event)
        release.wait(30)

    handlers = [bus.subscribe(handled.put) for _ in range(3)]
    handlers.append(bus.subscribe(slow))
    mailbox = bus.subscribe()
    bus.publish("t", "last")
    assert [handled.get(timeout=5) for _ in handlers] == ["last"] * 4
    threads = bus_threads(bus)
    assert len(threads) == 5  # the bus and four handler actors

    release.set()
    bus.stop()
    bus.stop()

    for thread in threads:
        thread.join(5)
    assert not [t for t in threading.enumerate() if t.name.startswith("stopping-bus")]
    assert all(sub.closed for sub in [*handlers, mailbox])
    assert mailbox.get(timeout=0) == "last"  # delivered before the stop, still readable
    assert not bus.wanted("t")
    bus.publish("t", "ignored after stop")
    bus.flush()
    with pytest.raises(ActorDeadError):
        bus.subscribe()


def test_arguments_are_validated(bus: EventBus) -> None:
    with pytest.raises(TypeError, match="filter"):
        bus.subscribe(filter="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="topics"):
        bus.subscribe(topics="breaker")
    with pytest.raises(TypeError, match="topics"):
        bus.subscribe(topics=[["unhashable"]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="topics"):
        bus.subscribe(topics=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mailbox_size"):
        bus.subscribe(mailbox_size=0)
    with pytest.raises(TypeError, match="mailbox_size"):
        bus.subscribe(mailbox_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="target"):
        bus.subscribe(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mailbox_size"):
        EventBus(mailbox_size=-1)
    with pytest.raises(TypeError, match="topic"):
        bus.publish(["unhashable"], 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Subscription"):
        bus.unsubscribe("sub")  # type: ignore[arg-type]


def test_get_is_only_for_mailbox_subscriptions(bus: EventBus) -> None:
    sub = bus.subscribe(lambda _event: None)
    with pytest.raises(TypeError, match="mailbox"):
        sub.get(timeout=0)


def test_subscriptions_have_unique_ids(bus: EventBus) -> None:
    ids = {bus.subscribe().id for _ in range(50)}
    assert len(ids) == 50


def test_unsubscribe_rejects_another_bus_subscription(bus: EventBus) -> None:
    other = EventBus(name="other-bus")
    try:
        sub = other.subscribe()
        with pytest.raises(ValueError, match="another"):
            bus.unsubscribe(sub)
    finally:
        other.stop()
