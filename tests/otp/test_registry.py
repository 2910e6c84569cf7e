"""Tests for brama.otp.registry: unique names, liveness, monitors, via and lock-free lookups."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from pykka import ActorDeadError

from brama.otp import Actor, NameTakenError, Registry, monitor


class Echo(Actor):
    """Answers asks with the message; dies on "boom"; forwards to `sink` if given."""

    def __init__(self, sink: queue.Queue[Any] | None = None) -> None:
        super().__init__()
        self.sink = sink

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom")
        if self.sink is not None:
            self.sink.put(message)
        return message


class PlainEcho(pykka.ThreadingActor):
    """A plain pykka actor (not brama.otp.Actor): the registry cannot monitor it."""

    use_daemon_thread = True

    def on_receive(self, message: Any) -> Any:
        return message


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry(name="test-registry")
    yield reg
    reg.stop()
    pykka.ActorRegistry.stop_all()


def wait_removed(registry: Registry, name: str, deadline: float = 5.0) -> None:
    """Wait until the registry actor has dropped `name` from its table.

    Each round trip to the registry actor is a barrier: an `Exit` told before it is handled first.
    """
    end = time.monotonic() + deadline
    while name in registry._table:
        assert time.monotonic() < end, f"{name!r} still in the table"
        registry.unregister(("barrier", name))


def died_event(ref: pykka.ActorRef[Any]) -> threading.Event:
    done = threading.Event()
    monitor(ref, lambda _exit: done.set())
    return done


def test_register_whereis_lookup_with_value(registry: Registry) -> None:
    ref = Echo.start()
    registry.register("db", ref, value={"pool": 3})

    assert registry.whereis("db") is ref
    assert registry.lookup("db") == (ref, {"pool": 3})
    assert registry.whereis("other") is None
    assert registry.lookup("other") is None
    assert "db" in registry
    assert "other" not in registry
    assert registry.names() == ["db"]
    assert len(registry) == 1


def test_taken_name_raises_name_taken_error_naming_name_and_owner(registry: Registry) -> None:
    owner, other = Echo.start(), Echo.start()
    registry.register("db", owner)

    with pytest.raises(NameTakenError) as info:
        registry.register("db", other)

    assert "'db'" in str(info.value)
    assert owner.actor_urn in str(info.value)
    assert info.value.owner is owner
    assert isinstance(info.value, ValueError)
    assert registry.whereis("db") is owner


def test_dead_owner_name_is_invisible_immediately_and_free(registry: Registry) -> None:
    plain = PlainEcho.start()
    registry.register("svc", plain)
    plain.stop()

    # plain pykka actors are not monitored: the entry stays but is invisible at once
    assert "svc" in registry._table
    assert registry.whereis("svc") is None
    assert registry.lookup("svc") is None
    assert "svc" not in registry
    assert registry.names() == []
    assert len(registry) == 0

    successor = Echo.start()
    registry.register("svc", successor, value=2)
    assert registry.lookup("svc") == (successor, 2)


def test_brama_actor_name_invisible_right_after_stop(registry: Registry) -> None:
    ref = Echo.start()
    registry.register("svc", ref)
    ref.stop()
    assert registry.whereis("svc") is None


def test_name_disappears_after_actor_stops(registry: Registry) -> None:
    ref = Echo.start()
    registry.register("svc", ref)
    ref.stop()
    wait_removed(registry, "svc")
    assert registry.names() == []


def test_name_disappears_after_actor_dies_of_exception_in_tell(registry: Registry) -> None:
    ref = Echo.start()
    registry.register("svc", ref)
    died = died_event(ref)

    ref.tell("boom")

    assert died.wait(5)
    assert registry.whereis("svc") is None
    wait_removed(registry, "svc")


def test_one_actor_holds_several_names(registry: Registry) -> None:
    ref, other = Echo.start(), Echo.start()
    registry.register("a", ref, value=1)
    registry.register("b", ref, value=2)
    registry.register("c", other)

    assert registry.lookup("a") == (ref, 1)
    assert registry.lookup("b") == (ref, 2)
    assert set(registry.names()) == {"a", "b", "c"}

    ref.stop()
    wait_removed(registry, "a")
    wait_removed(registry, "b")
    assert registry.names() == ["c"]


def test_unregister_is_idempotent_and_frees_the_name(registry: Registry) -> None:
    ref, other = Echo.start(), Echo.start()
    registry.register("svc", ref)

    registry.unregister("svc")
    registry.unregister("svc")
    registry.unregister("never-registered")

    assert registry.whereis("svc") is None
    registry.register("svc", other)
    assert registry.whereis("svc") is other


def test_unregistering_the_last_name_stops_monitoring(registry: Registry) -> None:
    ref = Echo.start()
    actor = ref._actor_weakref()
    assert isinstance(actor, Echo)
    registry.register("a", ref)
    registry.register("b", ref)
    assert len(actor._otp_box.watchers) == 1

    registry.unregister("a")
    assert len(actor._otp_box.watchers) == 1
    registry.unregister("b")
    assert actor._otp_box.watchers == {}


def test_via_resolves_the_name_at_send_time(registry: Registry) -> None:
    sink: queue.Queue[Any] = queue.Queue()
    first, second = Echo.start(sink), Echo.start(sink)
    via = registry.via("svc")

    with pytest.raises(ActorDeadError):
        via.tell("nobody")
    with pytest.raises(ActorDeadError):
        via.ask("nobody", timeout=1)

    registry.register("svc", first)
    via.tell("hello")
    assert sink.get(timeout=5) == "hello"
    assert via.ask("ping", timeout=5) == "ping"
    assert sink.get(timeout=5) == "ping"

    first.stop()
    with pytest.raises(ActorDeadError):
        via.tell("after death")

    registry.register("svc", second)
    assert via.ask("again", timeout=5) == "again"


def test_lookups_do_not_wait_for_the_registry_actor(registry: Registry) -> None:
    ref = Echo.start()
    registry.register("svc", ref, value="v")

    actor = registry.actor_ref._actor_weakref()
    assert actor is not None
    entered, release = threading.Event(), threading.Event()
    original = actor.on_receive

    def blocking_on_receive(message: Any) -> Any:
        if message == "block":
            entered.set()
            release.wait(30)
            return None
        return original(message)

    actor.on_receive = blocking_on_receive
    registry.actor_ref.tell("block")
    assert entered.wait(5)
    try:
        started = time.monotonic()
        assert registry.whereis("svc") is ref
        assert registry.lookup("svc") == (ref, "v")
        assert registry.names() == ["svc"]
        assert "svc" in registry
        assert len(registry) == 1
        assert time.monotonic() - started < 1.0
        with pytest.raises(pykka.Timeout):  # a writer does wait for the busy actor
            registry.actor_ref.ask("block", timeout=0.05)
    finally:
        release.set()


def test_concurrent_register_of_one_name_has_exactly_one_winner(registry: Registry) -> None:
    refs = [Echo.start() for _ in range(8)]
    start = threading.Barrier(len(refs))
    outcomes: queue.Queue[tuple[pykka.ActorRef[Any], BaseException | None]] = queue.Queue()

    def contend(ref: pykka.ActorRef[Any]) -> None:
        start.wait(5)
        try:
            registry.register("leader", ref)
        except NameTakenError as exc:
            outcomes.put((ref, exc))
        else:
            outcomes.put((ref, None))

    threads = [threading.Thread(target=contend, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    results = [outcomes.get(timeout=10) for _ in refs]
    for thread in threads:
        thread.join(5)

    winners = [ref for ref, error in results if error is None]
    assert len(winners) == 1
    assert all(isinstance(error, NameTakenError) for ref, error in results if ref is not winners[0])
    assert registry.whereis("leader") is winners[0]


def test_register_validates_arguments(registry: Registry) -> None:
    ref = Echo.start()
    with pytest.raises(TypeError, match="name"):
        registry.register(["not", "hashable"], ref)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ref"):
        registry.register("svc", "not a ref")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        registry.whereis({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        registry.via([])  # type: ignore[arg-type]


def test_register_dead_ref_raises(registry: Registry) -> None:
    ref = Echo.start()
    ref.stop()
    with pytest.raises(ActorDeadError):
        registry.register("svc", ref)
    assert "svc" not in registry._table


def test_stop_is_idempotent_and_forgets_names(registry: Registry) -> None:
    ref = Echo.start()
    registry.register("svc", ref)

    registry.stop()
    registry.stop()

    assert registry.whereis("svc") is None
    assert registry.names() == []
    registry.unregister("svc")
    with pytest.raises(ActorDeadError):
        registry.register("svc", ref)
