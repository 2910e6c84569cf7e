"""EventBus restarts and fork: subscriptions live in the facade, so they survive the death of
the bus actor (a supervisor starts a fresh one that adopts them), and a forked child sees
every inherited bus dead without hanging."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import select
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from pykka import ActorDeadError, ActorRef

from brama.otp import ChildSpec, EventBus, StartContext, Supervisor
from brama.otp._routing import BusActor

from .test_eventbus import WAIT, Recorder, assert_empty, drain, drain_queue, new_bus

BIG = 1_000_000


class Supervised:
    """A bus run by a supervisor through `child_spec`, each start of its actor observed."""

    def __init__(self) -> None:
        self.bus = new_bus(start=False, queue_size=BIG)
        self.starts: queue.Queue[ActorRef[Any]] = queue.Queue()
        spec = self.bus.child_spec("bus")

        def start(ctx: StartContext) -> ActorRef[Any]:
            ref = spec.start(ctx)
            self.starts.put(ref)
            return ref

        self.supervisor = Supervisor(
            [ChildSpec(spec.id, start, restart=spec.restart, shutdown=spec.shutdown)],
            max_restarts=10,
            max_seconds=10,
            name="bus-supervisor",
        )
        self.first = self.next_start()

    def next_start(self) -> ActorRef[Any]:
        """The bus actor started next (waits for the supervisor to restart it)."""
        ref = self.starts.get(timeout=WAIT)
        assert ref is self.bus.actor_ref and ref.is_alive()
        return ref


@pytest.fixture
def crashable(monkeypatch: pytest.MonkeyPatch) -> str:
    """A message that makes the bus actor's handler raise (a bug in the bus, say)."""
    original = BusActor.on_receive

    def on_receive(self: BusActor, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("the bus actor crashed on purpose")
        return original(self, message)

    monkeypatch.setattr(BusActor, "on_receive", on_receive)
    return "crash"


@pytest.fixture
def supervised() -> Iterator[Supervised]:
    run = Supervised()
    yield run
    run.supervisor.stop()
    run.bus.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["stop", "crash"])
def test_subscriptions_survive_a_restart_of_the_bus_actor(
    supervised: Supervised, crashable: str, how: str
) -> None:
    bus, supervisor, first = supervised.bus, supervised.supervisor, supervised.first
    assert supervisor.whereis_child("bus") is first
    mailbox = bus.subscribe(topics=["n"])
    handled: queue.Queue[int] = queue.Queue()
    bus.subscribe(handled.put, topics=["n"])
    sink: queue.Queue[int] = queue.Queue()
    bus.subscribe(Recorder.start(sink), topics=["n"])
    filtered = bus.subscribe(topics=["n"], filter=lambda n: n % 2 == 0)

    published = 0
    enough, done = threading.Event(), threading.Event()
    restarted_at: list[int] = []

    def publish() -> None:
        nonlocal published
        while not done.is_set():
            for _ in range(50):
                bus.publish("n", published)
                published += 1
            if published >= 2000:
                enough.set()
            if restarted_at and published > restarted_at[0] + 2000:
                return
            time.sleep(0.0005)  # pacing, so that the restart happens mid-stream

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        assert enough.wait(WAIT)
        if how == "stop":
            first.stop()
        else:
            first.tell(crashable)
        second = supervised.next_start()
        restarted_at.append(published)
        publisher.join(WAIT)
    finally:
        done.set()
        publisher.join(WAIT)
    assert supervisor.whereis_child("bus") is second
    bus.flush()
    total = published
    assert total > restarted_at[0] + 2000
    assert drain(mailbox, total) == list(range(total))  # nothing lost, nothing twice
    assert_empty(mailbox)
    assert drain_queue(handled, total) == list(range(total))
    assert drain_queue(sink, total) == list(range(total))
    assert drain(filtered, total // 2 + total % 2) == list(range(0, total, 2))


def test_the_restarted_bus_actor_monitors_the_subscriber_actors(
    supervised: Supervised,
) -> None:
    bus = supervised.bus
    alive, dies_in_gap = Recorder.start(queue.Queue()), Recorder.start(queue.Queue())
    kept = bus.subscribe(alive, topics=["a"])
    lost = bus.subscribe(dies_in_gap, topics=["b"])
    supervised.first.stop()
    dies_in_gap.stop()  # maybe before, maybe after the restart: dropped either way
    supervised.next_start()
    alive.stop()
    deadline = time.monotonic() + WAIT
    while bus.wanted("a") or bus.wanted("b"):
        assert time.monotonic() < deadline
        bus.flush()
    assert kept.closed and lost.closed


def test_without_a_bus_actor_publish_keeps_events_and_calls_fail_fast() -> None:
    bus = new_bus()
    try:
        sub = bus.subscribe(topics=["t"])
        other = bus.subscribe(topics=["u"])
        ref = bus.actor_ref
        assert ref is not None
        ref.stop()
        bus.publish("t", "kept")
        for attempt in (bus.subscribe, bus.flush, lambda: bus.unsubscribe(sub)):
            begin = time.monotonic()
            with pytest.raises(ActorDeadError, match="no running bus actor"):
                attempt()
            assert time.monotonic() - begin < 1.0
        assert not sub.closed  # unsubscribe refused: nothing changed
        other.close()  # close() never raises: the route is dropped without the actor
        assert other.closed and not bus.wanted("u")
        assert bus.start_actor() is bus.actor_ref
        assert sub.get(timeout=WAIT) == "kept"
        with pytest.raises(RuntimeError, match="already runs"):
            bus.start_actor()
    finally:
        bus.stop()


def test_a_bus_started_later_adopts_what_was_published() -> None:
    bus = new_bus(start=False)
    try:
        assert bus.actor_ref is None
        with pytest.raises(ActorDeadError):
            bus.subscribe()
        bus.start_actor()
        sub = bus.subscribe()
        bus.publish("t", 1)
        assert sub.get(timeout=WAIT) == 1
    finally:
        bus.stop()


def test_stopping_a_supervised_bus_closes_it_for_good(
    supervised: Supervised,
) -> None:
    bus, supervisor = supervised.bus, supervised.supervisor
    sub = bus.subscribe()
    bus.stop()
    assert sub.closed
    # the supervisor restarts its permanent child: an idle actor, the bus stays stopped
    supervised.next_start()
    assert supervisor.alive
    bus.publish("t", 1)
    assert not bus.wanted("t")
    with pytest.raises(ActorDeadError, match="stopped"):
        bus.subscribe()


# -- fork --


def _child_checks(bus: EventBus, subs: dict[str, Any]) -> dict[str, Any]:
    """Runs in the forked child: everything must answer at once."""
    report: dict[str, Any] = {}
    begin = time.monotonic()
    mailbox = subs["mailbox"]
    report["closed"] = all(sub.closed for sub in subs.values())
    report["readable"] = mailbox.get(timeout=5)
    try:
        mailbox.get(timeout=5)
        report["drained"] = "got an event"
    except queue.Empty:
        report["drained"] = "empty"
    report["iterated"] = list(subs["iterated"])
    try:
        asyncio.run(subs["iterated"].aget(timeout=5))
        report["aget"] = "got an event"
    except queue.Empty:
        report["aget"] = "empty"
    bus.publish("t", "in the child")
    report["wanted"] = bus.wanted("t")
    subs["handler"].close()
    bus.flush()
    bus.stop()
    try:
        bus.subscribe()
        report["subscribe"] = "accepted"
    except ActorDeadError:
        report["subscribe"] = "dead"
    fresh = EventBus(name="child-bus")  # a bus made in the child works
    child_sub = fresh.subscribe()
    fresh.publish("t", "fresh")
    report["fresh"] = child_sub.get(timeout=5)
    fresh.stop()
    report["seconds"] = time.monotonic() - begin
    return report


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_sees_every_inherited_bus_dead() -> None:
    bus = new_bus()
    release = threading.Event()
    busy = threading.Event()

    def stuck(event: Any) -> None:
        busy.set()
        release.wait(WAIT)

    subs = {
        "mailbox": bus.subscribe(),
        "iterated": bus.subscribe(topics=["other"]),
        "handler": bus.subscribe(stuck),
        "filtered": bus.subscribe(filter=lambda _e: True),
    }
    bus.publish("t", "before fork")
    bus.flush()
    assert busy.wait(WAIT)  # a lane is busy at fork time
    holding, forked = threading.Event(), threading.Event()

    def hold_locks() -> None:  # threads that hold the bus's locks when the process forks
        with bus.holding_locks():
            holding.set()
            forked.wait(WAIT)

    holder = threading.Thread(target=hold_locks)
    holder.start()
    assert holding.wait(WAIT)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read)
            try:
                report = _child_checks(bus, subs)
            except BaseException as exc:
                report = {"error": repr(exc)}
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    reported = False
    try:
        os.close(write)
        forked.set()
        holder.join(WAIT)
        ready, _, _ = select.select([read], [], [], 30)
        assert ready, "the child did not report in time (hung?)"
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        report = json.loads(b"".join(chunks))
        reported = True
    finally:
        os.close(read)
        if not reported:
            os.kill(pid, signal.SIGKILL)  # never leave the test waiting on a hung child
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "error" not in report, report
    assert report["closed"] is True
    assert report["readable"] == "before fork"
    assert report["drained"] == "empty"
    assert report["iterated"] == []
    assert report["aget"] == "empty"
    assert report["wanted"] is False
    assert report["subscribe"] == "dead"
    assert report["fresh"] == "fresh"
    assert report["seconds"] < 5
    # the parent's bus is untouched
    release.set()
    bus.publish("t", "after fork")
    assert drain(subs["mailbox"], 2) == ["before fork", "after fork"]
    bus.stop()
