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

from brama.otp import Actor, NameTakenError, Registry, monitor, monitor_count


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


def wait_removed(registry: Registry, name: str, remaining: int = 0, deadline: float = 5.0) -> None:
    """Wait until the registry actor has dropped `name` (the table holds `remaining` names).

    Each round trip to the registry actor is a barrier: an `Exit` told before it is handled first.
    """
    end = time.monotonic() + deadline
    while registry.size() > remaining:
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
    assert registry.size() == 1
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
    wait_removed(registry, "a and b", remaining=1)
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
    registry.register("a", ref)
    registry.register("b", ref)
    assert monitor_count(ref) == 1

    registry.unregister("a")
    assert monitor_count(ref) == 1
    registry.unregister("b")
    assert monitor_count(ref) == 0


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


class SlowName:
    """A name whose second hash (the registry's handler looking it up, after the caller's
    argument check) blocks while `gate` is closed: it holds the registry actor busy."""

    def __init__(self, entered: threading.Event, gate: threading.Event) -> None:
        self.entered = entered
        self.gate = gate
        self.hashes = 0

    def __hash__(self) -> int:
        self.hashes += 1
        if self.hashes == 2:
            self.entered.set()
            self.gate.wait(30)
        return 7


def test_lookups_do_not_wait_for_the_registry_actor(registry: Registry) -> None:
    ref = Echo.start()
    registry.register("svc", ref, value="v")
    entered, gate = threading.Event(), threading.Event()
    slow = SlowName(entered, gate)
    writer = threading.Thread(target=lambda: registry.unregister(slow))
    writer.start()  # the registry's handler now blocks inside the table lookup
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
            registry.actor_ref.ask(("anything",), timeout=0.05)
    finally:
        gate.set()
        writer.join(5)


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
    assert registry.size() == 0


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


def test_a_supervised_registry_restarts_empty_and_its_dependants_register_again() -> None:
    """Like an Elixir Registry: the table dies with its process; rest_for_one restarts the
    actors registered in it, which register again."""
    from brama.otp import ChildSpec, StartContext, Supervisor

    registry = Registry(name="supervised-registry", start=False)

    class Member(Actor):
        def on_start(self) -> None:
            registry.register("member", self.actor_ref)

        def on_receive(self, message: Any) -> Any:
            return message

    def start_member(_ctx: StartContext) -> pykka.ActorRef[Any]:
        return Member.start()

    sup = Supervisor(
        [registry.child_spec("registry"), ChildSpec("member", start_member)],
        strategy="rest_for_one",
    )
    try:
        first_registry = registry.actor_ref
        first = registry.whereis("member")
        assert first is not None
        died = died_event(first_registry)
        first_registry.stop()  # a stop, like a crash, restarts the subtree
        assert died.wait(5)
        deadline = time.monotonic() + 5
        while registry.whereis("member") in (None, first):
            assert time.monotonic() < deadline, "the member did not register again"
            threading.Event().wait(0.005)
        assert registry.actor_ref is not first_registry
        assert not first.is_alive()
    finally:
        sup.stop()
