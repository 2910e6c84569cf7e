"""The bridge against a real server: notices once and in order, reconnection, stopping.

Callbacks put what they get into one queue, so a test reads the bridge's story in order:
`"reconnect"` when a subscription became live, then the notices that followed it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from brama._circuit import Failure, new_circuit, step
from brama._config import Settings
from brama._fleet import (
    Bridge,
    BridgeInfo,
    BridgeStatus,
    ChangeNotice,
    FleetConfig,
    FleetState,
    FleetStore,
    Stepped,
)
from brama.otp import ChildSpec, Supervisor, call
from brama.types import EventType
from tests.fleet.harness import RedisServer
from tests.helpers import WAIT, timed_call, wait_until

OPTIONS = Settings(environ={}).resolve({"max_attempts": 2})


class Story:
    """What a bridge told its owner, in order."""

    def __init__(self) -> None:
        self.items: queue.Queue[Any] = queue.Queue()
        self.reconnects = 0

    def on_change(self, notice: ChangeNotice) -> None:
        self.items.put(notice)

    def on_reconnect(self) -> None:
        self.reconnects += 1
        self.items.put("reconnect")

    def next(self, timeout: float = WAIT) -> Any:
        return self.items.get(timeout=timeout)

    def notices(self, count: int) -> list[ChangeNotice]:
        return [self.next() for _ in range(count)]


@pytest.fixture
def start_bridge() -> Iterator[Callable[..., tuple[pykka.ActorRef[Bridge], Story]]]:
    refs: list[pykka.ActorRef[Bridge]] = []

    def start(config: FleetConfig, **options: Any) -> tuple[pykka.ActorRef[Bridge], Story]:
        story = Story()
        ref = Bridge.start(config, story.on_change, on_reconnect=story.on_reconnect, **options)
        refs.append(ref)
        assert story.next() == "reconnect"  # subscribed: from now on nothing is missed
        return ref, story

    yield start
    for ref in refs:
        outcome = timed_call(ref.stop, timeout=10)
        assert outcome.error is None or isinstance(outcome.error, pykka.ActorDeadError)


def failures(store: FleetStore, identifier: str, count: int) -> list[int]:
    """`count` failures reported through the store; the versions written."""
    key = store.key(identifier)
    known = store.join(key, FleetState(new_circuit(store.clock.now())))
    version, state = known.version, known.state
    written = []

    def run(shared: FleetState) -> Stepped[None]:
        result = step(shared.circuit, OPTIONS, Failure("down"), store.clock.now())
        return Stepped(shared.advance(result.circuit, store.origin), result.events, None)

    for _ in range(count):
        applied = store.apply(key, version, state, run)
        version, state = applied.version, applied.state
        written.append(version)
    return written


def status(ref: pykka.ActorRef[Bridge]) -> BridgeStatus:
    result: BridgeStatus = call(ref, BridgeInfo())
    return result


def test_notices_arrive_once_in_version_order_with_their_origin(
        start_bridge: Callable[..., Any], make_store: Callable[..., FleetStore],
        config: FleetConfig) -> None:
    ref, story = start_bridge(config)
    a, b = make_store(config, origin="a/1/x"), make_store(config, origin="b/2/y")
    written = failures(a, "payments", 3) + failures(b, "payments", 2)
    notices = story.notices(5)
    assert [n.version for n in notices] == written
    assert written == list(range(written[0], written[0] + 5))
    assert [n.origin for n in notices] == ["a/1/x"] * 3 + ["b/2/y"] * 2
    assert all(n.key == a.key("payments") for n in notices)
    second = notices[1]
    assert second.state.circuit.state.value == "open"
    kinds = [e.event for e in second.events]
    assert kinds == [EventType.FAILURE, EventType.STATE_CHANGE, EventType.CIRCUIT_OPENED]
    assert abs(second.time - a.clock.time()) < 5
    marker = failures(b, "marker", 1)  # anything duplicated would come before the marker
    assert story.next().version == marker[0]
    assert story.items.empty()
    assert status(ref).notices == 6


def test_own_notices_are_skipped_only_when_asked(start_bridge: Callable[..., Any],
                                                 make_store: Callable[..., FleetStore],
                                                 config: FleetConfig) -> None:
    a, b = make_store(config, origin="a/1/x"), make_store(config, origin="b/2/y")
    ref, story = start_bridge(config, skip_own=True, origin="a/1/x")
    failures(a, "payments", 2)
    theirs = failures(b, "payments", 1)
    assert story.next().version == theirs[0]
    assert status(ref).skipped == 2


def test_bad_messages_and_failing_callbacks_are_contained(
        make_store: Callable[..., FleetStore], config: FleetConfig,
        server: RedisServer) -> None:
    story = Story()

    def on_change(notice: ChangeNotice) -> None:
        if notice.key.identifier == "bad":
            raise RuntimeError("owner bug")
        story.on_change(notice)

    ref = Bridge.start(config, on_change, on_reconnect=story.on_reconnect)
    try:
        assert story.next() == "reconnect"
        server.admin().publish(f"brama:{config.namespace}:changes", b"{garbage")
        store = make_store(config)
        failures(store, "bad", 1)
        written = failures(store, "good", 1)
        assert story.next().version == written[0]
        assert status(ref).undecodable == 1 and status(ref).notices == 2
    finally:
        assert timed_call(ref.stop).error is None


def test_reconnects_after_a_restart_and_asks_for_a_re_read(
        start_bridge: Callable[..., Any], make_store: Callable[..., FleetStore],
        own_server: RedisServer, namespace: str) -> None:
    config = FleetConfig.from_url(own_server.url, namespace=namespace, timeout=0.5,
                                  probe_min=0.02, probe_max=0.2)
    ref, story = start_bridge(config)
    own_server.kill()
    wait_until(lambda: not status(ref).subscribed, what="the bridge to notice the kill")
    own_server.restart()
    assert story.next() == "reconnect"
    written = failures(make_store(config), "payments", 1)
    assert story.next().version == written[0]
    assert status(ref).subscriptions == 2 and story.reconnects == 2


def test_a_hung_server_is_noticed_by_the_heartbeat(
        start_bridge: Callable[..., Any], own_server: RedisServer, namespace: str) -> None:
    config = FleetConfig.from_url(own_server.url, namespace=namespace, timeout=0.2,
                                  heartbeat=0.2, probe_min=0.02, probe_max=0.2)
    ref, story = start_bridge(config)
    own_server.pause()
    try:
        wait_until(lambda: not status(ref).subscribed, timeout=3.0,
                   what="the heartbeat to give up on a hung server")
    finally:
        own_server.resume()
    assert story.next() == "reconnect"
    assert "TimeoutError" in (status(ref).last_error or "")


@pytest.mark.parametrize("situation", ["paused", "killed", "callback blocked"])
def test_stop_never_hangs(make_store: Callable[..., FleetStore], own_server: RedisServer,
                          namespace: str, situation: str) -> None:
    config = FleetConfig.from_url(own_server.url, namespace=namespace, timeout=0.2,
                                  probe_min=0.02, probe_max=0.2)
    entered, forever = threading.Event(), threading.Event()

    def on_change(notice: ChangeNotice) -> None:
        entered.set()
        forever.wait(30)

    subscribed = threading.Event()
    ref = Bridge.start(config, on_change, on_reconnect=subscribed.set)
    try:
        assert subscribed.wait(WAIT)
        if situation == "paused":
            own_server.pause()
        elif situation == "killed":
            own_server.kill()
        else:
            failures(make_store(config), "payments", 1)
            assert entered.wait(WAIT)
        outcome = timed_call(ref.stop, timeout=10)
        assert outcome.error is None and outcome.seconds < 3.0
        assert not ref.is_alive()
    finally:
        forever.set()
        own_server.resume()


def test_a_supervisor_restarts_a_crashed_bridge(make_store: Callable[..., FleetStore],
                                                config: FleetConfig) -> None:
    story = Story()

    def on_change(notice: ChangeNotice) -> None:
        if notice.key.identifier == "poison":
            raise SystemExit("a BaseException escapes the owner's callback")
        story.on_change(notice)

    supervisor = Supervisor([ChildSpec.for_actor("bridge", Bridge, config, on_change,
                                                 on_reconnect=story.on_reconnect)])
    try:
        assert story.next() == "reconnect"
        first = supervisor.whereis_child("bridge")
        store = make_store(config)
        failures(store, "poison", 1)
        assert story.next() == "reconnect"  # a new bridge subscribed
        assert supervisor.whereis_child("bridge") is not first
        written = failures(store, "payments", 1)
        assert story.next().version == written[0]
    finally:
        outcome = timed_call(supervisor.stop, timeout=10)
        assert outcome.error is None
