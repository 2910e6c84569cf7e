"""Tests for brama.otp's EventBus: delivery kinds, topics, match and filters, subscriptions.

Bounds and stop are in test_eventbus_bounds.py, restarts and fork in test_eventbus_restart.py,
asyncio in test_eventbus_async.py; they share the helpers defined here.
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from pykka import ActorDeadError

from brama.otp import Actor, EventBus, Subscription
from tests.helpers import threads_since

_bus_names = itertools.count()
WAIT = 10.0
"""Upper bound, in seconds, for anything these tests wait on (a loaded 2-core machine)."""


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


def new_bus(**options: Any) -> EventBus:
    options.setdefault("name", f"test-bus-{next(_bus_names)}")
    return EventBus(**options)


@pytest.fixture
def bus() -> Iterator[EventBus]:
    event_bus = new_bus()
    yield event_bus
    event_bus.stop()


def drain(sub: Subscription, count: int) -> list[Any]:
    return [sub.get(timeout=WAIT) for _ in range(count)]


def assert_empty(sub: Subscription) -> None:
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def bus_threads(bus: EventBus) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(bus.name)]


# -- delivery --


def test_mailbox_receives_events_in_publish_order(bus: EventBus) -> None:
    sub = bus.subscribe()
    for i in range(1000):
        bus.publish("tick", i)
    assert drain(sub, 1000) == list(range(1000))
    bus.flush()
    assert_empty(sub)


def test_each_subscriber_sees_each_publisher_in_order(bus: EventBus) -> None:
    subs = [bus.subscribe(), bus.subscribe(topics=["a", "b", "c"])]
    handled: queue.Queue[tuple[str, int]] = queue.Queue()
    bus.subscribe(handled.put)
    go = threading.Barrier(3)

    def publish(topic: str) -> None:
        go.wait(WAIT)
        for i in range(2000):
            bus.publish(topic, (topic, i))

    threads = [threading.Thread(target=publish, args=(t,)) for t in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    bus.flush()
    for got in [drain(subs[0], 6000), drain(subs[1], 6000), drain_queue(handled, 6000)]:
        for topic in "abc":
            assert [i for t, i in got if t == topic] == list(range(2000))


def drain_queue(source: queue.Queue[Any], count: int) -> list[Any]:
    return [source.get(timeout=WAIT) for _ in range(count)]


def test_topics_select_events(bus: EventBus) -> None:
    sub = bus.subscribe(topics=["a", "c"])
    for topic in "abcab":
        bus.publish(topic, topic)
    bus.flush()
    assert drain(sub, 3) == ["a", "c", "a"]
    assert_empty(sub)


def test_routes_change_incrementally(bus: EventBus) -> None:
    """Topic and catch-all subscriptions come and go; every remaining one keeps its events."""
    a = bus.subscribe(topics=["a"])
    everything = bus.subscribe()
    ab = bus.subscribe(topics=["a", "b"])
    bus.publish("a", 1)
    bus.publish("b", 2)
    bus.publish("z", 3)
    everything.close()
    bus.publish("a", 4)
    bus.publish("z", 5)  # nobody wants z any more
    again = bus.subscribe()
    a.close()
    bus.publish("a", 6)
    bus.publish("z", 7)
    bus.flush()
    assert drain(everything, 3) == [1, 2, 3]
    assert drain(a, 2) == [1, 4]
    assert drain(ab, 4) == [1, 2, 4, 6]
    assert drain(again, 2) == [6, 7]
    for sub in (a, everything, ab, again):
        assert_empty(sub)


def test_actor_subscriber_receives_events_in_order(bus: EventBus) -> None:
    sink: queue.Queue[Any] = queue.Queue()
    sub = bus.subscribe(Recorder.start(sink), topics=["t"])
    assert sub.kind == "actor"
    for i in range(500):
        bus.publish("t", i)
    assert drain_queue(sink, 500) == list(range(500))


def test_object_with_handle_event_is_called(bus: EventBus) -> None:
    class Listener:
        def __init__(self) -> None:
            self.events: queue.Queue[Any] = queue.Queue()

        def __call__(self, event: Any) -> None:
            raise AssertionError("handle_event is preferred over __call__")

        def handle_event(self, event: Any) -> None:
            self.events.put(event)

    listener = Listener()
    assert bus.subscribe(listener, topics=["t"]).kind == "handler"
    bus.publish("t", "hello")
    assert listener.events.get(timeout=WAIT) == "hello"


def test_handler_runs_in_a_lane_of_its_own(bus: EventBus) -> None:
    threads: queue.Queue[threading.Thread] = queue.Queue()
    bus.subscribe(lambda _event: threads.put(threading.current_thread()))
    bus.publish("t", 1)
    handler_thread = threads.get(timeout=WAIT)
    assert handler_thread is not threading.current_thread()
    assert handler_thread in bus_threads(bus)
    assert handler_thread.name.startswith(f"{bus.name}-handler-")


def test_dead_plain_actor_subscriber_is_dropped_on_delivery(bus: EventBus) -> None:
    ref = PlainRecorder.start(queue.Queue())
    sub = bus.subscribe(ref, topics=["t"])
    assert bus.wanted("t")

    ref.stop()
    bus.publish("t", "lost")
    bus.flush()

    assert not bus.wanted("t")
    assert sub.closed


def test_dead_plain_actor_behind_a_filter_is_dropped_on_delivery(bus: EventBus) -> None:
    ref = PlainRecorder.start(queue.Queue())
    sub = bus.subscribe(ref, topics=["t"], filter=lambda _event: True)
    ref.stop()
    bus.publish("t", "lost")
    deadline = time.monotonic() + WAIT
    while bus.wanted("t"):  # the lane notices, then unsubscribes through the bus
        assert time.monotonic() < deadline
        bus.flush()
    assert sub.closed


def test_stopped_brama_actor_subscriber_is_dropped_without_a_publish(bus: EventBus) -> None:
    ref = Recorder.start(queue.Queue())
    first = bus.subscribe(ref, topics=["t"])
    second = bus.subscribe(ref, topics=["u"], filter=lambda _event: True)
    ref.stop()

    deadline = time.monotonic() + WAIT
    while bus.wanted("t") or bus.wanted("u"):  # each flush is a barrier behind the Exit
        assert time.monotonic() < deadline
        bus.flush()
    assert first.closed and second.closed


# -- match and filters: where each runs --


def test_match_runs_in_the_bus_and_filter_in_the_lane(bus: EventBus) -> None:
    where: queue.Queue[tuple[str, str]] = queue.Queue()

    def match(event: int) -> bool:
        where.put(("match", threading.current_thread().name))
        return event % 2 == 0

    def flt(event: int) -> bool:
        where.put(("filter", threading.current_thread().name))
        return event % 4 == 0

    sub = bus.subscribe(topics=["n"], match=match, filter=flt)
    for i in range(8):
        bus.publish("n", i)
    assert drain(sub, 2) == [0, 4]
    bus.flush()
    seen = drain_queue(where, 12)
    assert {name for what, name in seen if what == "match"} == {bus.name}
    filter_threads = {name for what, name in seen if what == "filter"}
    assert len(filter_threads) == 1
    assert filter_threads.pop().startswith(f"{bus.name}-filter-")


@pytest.mark.parametrize("kind", ["mailbox", "handler", "actor"])
def test_filter_selects_events_for_every_kind(bus: EventBus, kind: str) -> None:
    sink: queue.Queue[Any] = queue.Queue()
    even = lambda n: n % 2 == 0  # noqa: E731
    if kind == "mailbox":
        sub = bus.subscribe(topics=["n"], filter=even)
        received = lambda: drain(sub, 5)  # noqa: E731
    else:
        target: Any = sink.put if kind == "handler" else Recorder.start(sink)
        bus.subscribe(target, topics=["n"], filter=even)
        received = lambda: drain_queue(sink, 5)  # noqa: E731
    for i in range(10):
        bus.publish("n", i)
    assert received() == [0, 2, 4, 6, 8]


def test_match_and_filter_both_apply(bus: EventBus) -> None:
    sub = bus.subscribe(match=lambda n: n > 2, filter=lambda n: n % 2 == 1)
    for i in range(8):
        bus.publish("n", i)
    assert drain(sub, 2) == [3, 5]
    assert sub.get(timeout=WAIT) == 7


@pytest.mark.parametrize("error", [ValueError("bad"), SystemExit(3), KeyboardInterrupt()])
@pytest.mark.parametrize("place", ["filter", "match"])
def test_raising_filter_or_match_skips_the_event_and_kills_nothing(
    bus: EventBus, error: BaseException, place: str, caplog: pytest.LogCaptureFixture
) -> None:
    bystander = Bystander.start()

    def flaky(event: int) -> bool:
        if event == 1:
            raise error
        return True

    filtered = bus.subscribe(**{place: flaky})  # type: ignore[arg-type]
    everything = bus.subscribe()
    with caplog.at_level(logging.ERROR, logger="brama.otp.eventbus"):
        for i in range(3):
            bus.publish("t", i)
        assert drain(filtered, 2) == [0, 2]
    assert drain(everything, 3) == [0, 1, 2]
    assert bus.actor_ref is not None and bus.actor_ref.is_alive()
    assert bystander.ask("still here", timeout=WAIT) == "still here"
    assert any(f"event_{place}_raised" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)
    assert not filtered.closed
    bystander.stop()


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

    with caplog.at_level(logging.ERROR, logger="brama.otp.eventbus"):
        sub = bus.subscribe(handler)
        for i in range(3):
            bus.publish("t", i)
        assert drain_queue(seen, 3) == [0, 1, 2]

    assert bus.actor_ref is not None and bus.actor_ref.is_alive()
    assert bystander.ask("alive?", timeout=WAIT) == "alive?"
    assert any("event_handler_raised" in r.getMessage() for r in caplog.records)
    assert all(t.is_alive() for t in bus_threads(bus))
    assert not sub.closed
    bystander.stop()


def test_slow_handler_does_not_delay_a_mailbox_subscriber(bus: EventBus) -> None:
    release = threading.Event()
    handled: queue.Queue[int] = queue.Queue()

    def slow(event: int) -> None:
        release.wait(WAIT)
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
    assert drain_queue(handled, 100) == list(range(100))


def test_handler_returning_a_coroutine_is_closed_and_logged(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A callable that hides a coroutine (not detected as async) never leaves it un-awaited."""

    async def work(event: Any) -> None:
        raise AssertionError("never run")

    calls: queue.Queue[Any] = queue.Queue()

    def sneaky(event: Any) -> Any:
        calls.put(event)
        return work(event)

    with caplog.at_level(logging.ERROR, logger="brama.otp.eventbus"), warnings.catch_warnings(
        record=True
    ) as caught:
        warnings.simplefilter("always")
        bus.subscribe(sneaky)
        bus.publish("t", 1)
        bus.publish("t", 2)
        assert drain_queue(calls, 2) == [1, 2]  # the first event's outcome is logged by now
        gc.collect()
    assert any("event_handler_returned_awaitable" in r.getMessage() for r in caplog.records)
    assert not [w for w in caught if "never awaited" in str(w.message)]


# -- wanted and interest --


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


def test_interest_is_replaced_only_when_the_wanted_topics_change(bus: EventBus) -> None:
    interest = bus.interest
    first = bus.subscribe(topics=["a"])
    after_a = interest.wanted
    assert after_a.topics == {"a"} and not after_a.all_topics
    second = bus.subscribe(topics=["a"])
    assert interest.wanted is after_a  # same set of topics: nothing rebuilt
    first.close()
    assert interest.wanted is after_a
    everything = bus.subscribe()
    assert interest.wanted.all_topics
    everything.close()
    second.close()
    assert not interest.wanted.all_topics and not interest.wanted.topics


def test_unwanted_events_are_not_queued(bus: EventBus) -> None:
    bus.subscribe(topics=["a"])
    bus.publish("b", 1)
    assert bus.pending == 0


# -- subscriptions --


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
        ready.wait(WAIT)
        try:
            getter.get()
        except queue.Empty:
            outcomes.put(("get", "empty"))

    def iterate() -> None:
        ready.wait(WAIT)
        outcomes.put(("iter", list(iterator)))

    threads = [threading.Thread(target=blocked_get), threading.Thread(target=iterate)]
    for thread in threads:
        thread.start()
    ready.wait(WAIT)
    bus.publish("t", "before close")
    bus.flush()

    getter.close()
    iterator.close()

    results = dict(outcomes.get(timeout=WAIT) for _ in threads)
    for thread in threads:
        thread.join(WAIT)
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
    assert_empty(sub)


def test_subscription_is_a_context_manager(bus: EventBus) -> None:
    with bus.subscribe(topics=["t"]) as sub:
        assert bus.wanted("t")
        assert not sub.closed
    assert sub.closed
    assert not bus.wanted("t")


def test_handler_can_close_its_own_subscription(bus: EventBus) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    holder: list[Subscription] = []
    subscribed = threading.Event()

    def once(event: Any) -> None:
        subscribed.wait(WAIT)
        seen.put(event)
        holder[0].close()
        seen.put("closed")

    holder.append(bus.subscribe(once))
    subscribed.set()
    bus.publish("t", 1)
    bus.publish("t", 2)
    assert seen.get(timeout=WAIT) == 1
    assert seen.get(timeout=WAIT) == "closed"
    bus.flush()
    assert not bus.wanted("t")
    assert seen.empty()


def test_handler_and_filter_may_use_the_bus(bus: EventBus) -> None:
    """User code runs outside the bus actor, so it may subscribe, publish and flush."""
    made: queue.Queue[Subscription] = queue.Queue()

    def flt(event: Any) -> bool:
        bus.flush()
        return True

    def handler(event: Any) -> None:
        made.put(bus.subscribe(topics=["inner"]))
        bus.publish("inner", "from a handler")

    bus.subscribe(handler, topics=["outer"], filter=flt)
    bus.publish("outer", 1)
    inner = made.get(timeout=WAIT)
    assert inner.get(timeout=WAIT) == "from a handler"


def test_a_match_predicate_cannot_call_the_bus(bus: EventBus) -> None:
    errors: queue.Queue[BaseException] = queue.Queue()

    def match(event: Any) -> bool:
        for attempt in (bus.subscribe, bus.flush):
            try:
                attempt()
            except RuntimeError as exc:
                errors.put(exc)
        return True

    bus.subscribe(match=match)
    bus.publish("t", 1)
    bus.flush()
    assert all("match" in str(errors.get(timeout=WAIT)) for _ in range(2))


def test_unsubscribe_stops_the_lane(bus: EventBus) -> None:
    threads: queue.Queue[threading.Thread] = queue.Queue()
    sub = bus.subscribe(lambda _event: threads.put(threading.current_thread()))
    bus.publish("t", 1)
    handler_thread = threads.get(timeout=WAIT)
    sub.close()
    handler_thread.join(WAIT)
    assert not handler_thread.is_alive()


def test_stop_stops_lanes_and_closes_subscriptions() -> None:
    bus = new_bus()
    handled: queue.Queue[Any] = queue.Queue()
    handlers = [bus.subscribe(handled.put) for _ in range(3)]
    filtered = bus.subscribe(filter=lambda _event: True)
    mailbox = bus.subscribe()
    bus.publish("t", "last")
    assert drain_queue(handled, 3) == ["last"] * 3
    assert filtered.get(timeout=WAIT) == "last"
    threads = bus_threads(bus)
    assert len(threads) == 5  # the bus and four lanes

    bus.publish("t", "published before stop")
    bus.stop()
    bus.stop()

    for thread in threads:
        thread.join(WAIT)
    assert not bus_threads(bus)
    assert all(sub.closed for sub in [*handlers, filtered, mailbox])
    assert drain(mailbox, 2) == ["last", "published before stop"]  # still readable
    assert_empty(mailbox)
    assert not bus.wanted("t")
    bus.publish("t", "ignored after stop")
    bus.flush()
    with pytest.raises(ActorDeadError):
        bus.subscribe()


def test_subscriptions_have_unique_ids_and_readable_reprs(bus: EventBus) -> None:
    subs = [bus.subscribe() for _ in range(50)]
    assert len({sub.id for sub in subs}) == 50
    assert "mailbox open" in repr(subs[0])
    subs[0].close()
    assert "closed" in repr(subs[0])
    assert bus.name in repr(bus)


# -- validation --


def test_arguments_are_validated_before_anything_changes(bus: EventBus) -> None:
    before = set(threading.enumerate())
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (TypeError, "filter", {"filter": "yes"}),
        (TypeError, "match", {"match": 3}),
        (TypeError, "filter", {"filter": _async_predicate, "target": print}),
        (TypeError, "topics", {"topics": "breaker"}),
        (TypeError, "topics", {"topics": [["unhashable"]]}),
        (TypeError, "topics", {"topics": 42}),
        (ValueError, "queue_size", {"queue_size": 0, "target": print}),
        (TypeError, "queue_size", {"queue_size": 2.5}),
        (TypeError, "queue_size", {"queue_size": True}),
        (TypeError, "target", {"target": 42}),
    ]
    for error, argument, kwargs in cases:
        target = kwargs.pop("target", None)
        with pytest.raises(error, match=argument) as raised:
            bus.subscribe(target, **kwargs)
        assert "got" in str(raised.value)  # names the value it refused
    assert not bus.wanted("anything")
    assert threads_since(before) == []  # no lane was started
    with pytest.raises(TypeError, match="topic"):
        bus.publish(["unhashable"], 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Subscription"):
        bus.unsubscribe("sub")  # type: ignore[arg-type]


async def _async_predicate(event: Any) -> bool:
    return True


@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"queue_size": -1}, ValueError, "queue_size"),
        ({"pending_size": 0}, ValueError, "pending_size"),
        ({"stop_timeout": -1}, ValueError, "stop_timeout"),
        ({"stop_timeout": float("nan")}, ValueError, "stop_timeout"),
        ({"name": ""}, ValueError, "name"),
        ({"name": 3}, TypeError, "name"),
        ({"start": "yes"}, TypeError, "start"),
    ],
)
def test_bus_options_are_validated(
    options: dict[str, Any], error: type[Exception], argument: str
) -> None:
    before = set(threading.enumerate())
    with pytest.raises(error, match=argument):
        EventBus(**options)
    assert threads_since(before) == []


def test_get_is_only_for_mailbox_subscriptions(bus: EventBus) -> None:
    sub = bus.subscribe(lambda _event: None)
    with pytest.raises(TypeError, match="mailbox"):
        sub.get(timeout=0)


def test_unsubscribe_rejects_another_bus_subscription(bus: EventBus) -> None:
    other = new_bus()
    try:
        sub = other.subscribe()
        with pytest.raises(ValueError, match="another"):
            bus.unsubscribe(sub)
        assert not sub.closed
    finally:
        other.stop()
