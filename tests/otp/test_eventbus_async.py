"""EventBus and asyncio: `async def` handlers awaited on the subscriber's loop, in order and
bounded; mailboxes read with `await sub.aget()` and `async for`, never blocking the loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import random
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from brama.otp import EventBus
from tests.helpers import threads_since

from .test_eventbus import WAIT, new_bus


def run(main: Callable[[EventBus], Awaitable[None]], **options: Any) -> None:
    """Run `main(bus)` on a fresh event loop, stopping the bus afterwards."""
    bus = new_bus(**options)
    try:
        asyncio.run(asyncio.wait_for(main(bus), WAIT * 2))
    finally:
        bus.stop()


# -- async handlers --


def test_async_handler_is_awaited_on_its_loop_strictly_in_order() -> None:
    async def main(bus: EventBus) -> None:
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        loops: set[asyncio.AbstractEventLoop] = set()
        done = asyncio.Event()

        async def handler(event: int) -> None:
            loops.add(asyncio.get_running_loop())
            await asyncio.sleep(random.choice([0, 0, 0.001]))  # later events never overtake
            seen.append(event)
            if event == 299:
                done.set()

        sub = bus.subscribe(handler)
        assert sub.kind == "async"
        for i in range(300):
            bus.publish("t", i)
        await done.wait()
        assert seen == list(range(300))
        assert loops == {loop}

    run(main)


def test_object_with_an_async_handle_event_is_awaited() -> None:
    class Listener:
        def __init__(self) -> None:
            self.events: asyncio.Queue[Any] = asyncio.Queue()

        async def handle_event(self, event: Any) -> None:
            await self.events.put(event)

    async def main(bus: EventBus) -> None:
        listener = Listener()
        assert bus.subscribe(listener, topics=["t"]).kind == "async"
        bus.publish("t", "hello")
        assert await listener.events.get() == "hello"

    run(main)


def test_async_filter_runs_in_the_consumer_on_the_loop() -> None:
    async def main(bus: EventBus) -> None:
        loop_thread = threading.current_thread()
        filter_threads: set[threading.Thread] = set()
        got: asyncio.Queue[int] = asyncio.Queue()

        def even(event: int) -> bool:
            filter_threads.add(threading.current_thread())
            return event % 2 == 0

        async def handler(event: int) -> None:
            await got.put(event)

        bus.subscribe(handler, filter=even)
        for i in range(6):
            bus.publish("t", i)
        assert [await got.get() for _ in range(3)] == [0, 2, 4]
        assert filter_threads == {loop_thread}

    run(main)


@pytest.mark.parametrize("error", [ValueError("bad"), SystemExit(2), KeyboardInterrupt()])
def test_async_handler_errors_are_contained(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    async def main(bus: EventBus) -> None:
        got: asyncio.Queue[int] = asyncio.Queue()

        async def handler(event: int) -> None:
            await got.put(event)
            if event == 0:
                raise error

        def flt(event: int) -> bool:
            if event == 1:
                raise error
            return True

        sub = bus.subscribe(handler, filter=flt)
        for i in range(3):
            bus.publish("t", i)
        assert [await got.get() for _ in range(2)] == [0, 2]
        assert not sub.closed

    with caplog.at_level(logging.ERROR, logger="brama.otp.eventbus"):
        run(main)
    messages = [r.getMessage() for r in caplog.records]
    assert any("event_handler_raised" in m for m in messages)
    assert any("event_filter_raised" in m for m in messages)


def test_async_handler_queue_is_bounded() -> None:
    async def main(bus: EventBus) -> None:
        started, release = asyncio.Event(), asyncio.Event()
        handled: list[int] = []
        finished = asyncio.Event()

        async def handler(event: int) -> None:
            started.set()
            await release.wait()
            handled.append(event)
            if event == 10:
                finished.set()

        sub = bus.subscribe(handler, queue_size=3)
        bus.publish("t", 0)
        await started.wait()
        for i in range(1, 11):
            bus.publish("t", i)
        bus.flush()
        assert sub.dropped == 7
        release.set()
        await finished.wait()
        assert handled == [0, 8, 9, 10]

    run(main)


def test_async_handler_without_a_running_loop_is_refused() -> None:
    bus = new_bus()
    before = set(threading.enumerate())

    async def handler(event: Any) -> None:
        raise AssertionError("never run")

    class Listener:
        async def handle_event(self, event: Any) -> None:
            raise AssertionError("never run")

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for target in (handler, Listener()):
                with pytest.raises(TypeError, match="running event loop") as raised:
                    bus.subscribe(target)
                assert "aget" in str(raised.value)  # says what to do instead
            bus.publish("t", 1)
            bus.flush()
            gc.collect()
        assert not [w for w in caught if "never awaited" in str(w.message)]
        assert not bus.wanted("t")
        assert threads_since(before) == []  # no lane, no loop thread was started
    finally:
        bus.stop()


def test_the_subscription_ends_with_its_event_loop() -> None:
    bus = new_bus()
    holder: list[Any] = []

    async def handler(event: Any) -> None:
        pass

    async def main() -> None:
        holder.append(bus.subscribe(handler, topics=["t"]))

    try:
        asyncio.run(main())  # cancels the consumer task when main returns
        assert holder[0].closed
        assert not bus.wanted("t")
    finally:
        bus.stop()


def test_a_closed_event_loop_drops_the_subscription() -> None:
    bus = new_bus()
    loop = asyncio.new_event_loop()
    holder: list[Any] = []

    async def handler(event: Any) -> None:
        pass

    async def subscribe() -> None:
        holder.append(bus.subscribe(handler, topics=["t"]))

    try:
        loop.run_until_complete(subscribe())
        loop.close()  # without cancelling the consumer task
        bus.publish("t", 1)
        bus.flush()
        assert holder[0].closed
        assert not bus.wanted("t")
    finally:
        bus.stop()


# -- reading a mailbox from coroutines --


def test_aget_waits_without_blocking_the_loop() -> None:
    async def main(bus: EventBus) -> None:
        sub = bus.subscribe()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        publisher = threading.Timer(0.05, lambda: [bus.publish("t", i) for i in range(3)])
        publisher.start()
        try:
            assert await sub.aget() == 0
            assert ticks > 0  # the loop kept running while aget waited
            assert [await sub.aget(timeout=WAIT) for _ in range(2)] == [1, 2]
        finally:
            publisher.join(WAIT)
            ticking.cancel()

    run(main)


def test_aget_raises_queue_empty_on_timeout_like_get() -> None:
    async def main(bus: EventBus) -> None:
        sub = bus.subscribe()
        begin = time.monotonic()
        with pytest.raises(queue.Empty):
            await sub.aget(timeout=0.05)
        assert time.monotonic() - begin >= 0.04
        with pytest.raises(queue.Empty):
            await sub.aget(timeout=0)
        bus.publish("t", "now")
        bus.flush()
        assert await sub.aget(timeout=0) == "now"

    run(main)


def test_close_wakes_aget_and_ends_async_iteration() -> None:
    async def main(bus: EventBus) -> None:
        waiting = bus.subscribe(topics=["quiet"])
        iterated = bus.subscribe(topics=["t"])

        async def collect() -> list[int]:
            return [event async for event in iterated]

        pending_get = asyncio.create_task(waiting.aget())
        collecting = asyncio.create_task(collect())
        await asyncio.sleep(0)  # both are waiting now

        def from_another_thread() -> None:
            for i in range(100):
                bus.publish("t", i)
            bus.flush()
            waiting.close()
            iterated.close()

        closer = threading.Thread(target=from_another_thread)
        closer.start()
        try:
            with pytest.raises(queue.Empty):
                await pending_get
            assert await collecting == list(range(100))
        finally:
            closer.join(WAIT)

    run(main)


def test_aget_is_only_for_mailbox_subscriptions() -> None:
    async def main(bus: EventBus) -> None:
        sub = bus.subscribe(lambda _event: None)
        with pytest.raises(TypeError, match="mailbox"):
            await sub.aget(timeout=0)

    run(main)


def test_readers_on_two_loops_share_one_mailbox() -> None:
    bus = new_bus()
    sub = bus.subscribe()
    results: queue.Queue[list[int]] = queue.Queue()

    def reader() -> None:
        async def read() -> list[int]:
            return [event async for event in sub]

        results.put(asyncio.run(read()))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for i in range(1000):
            bus.publish("t", i)
        bus.flush()
        sub.close()  # the readers still drain what the mailbox holds, then stop
        got = results.get(timeout=WAIT) + results.get(timeout=WAIT)
        assert sorted(got) == list(range(1000))
    finally:
        sub.close()
        for thread in threads:
            thread.join(WAIT)
        bus.stop()
