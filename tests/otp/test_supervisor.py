"""Tests for brama.otp.supervisor: strategies, restart types, intensity, escalation, dynamic and
dormant children, hibernation, state handoff, ChildAddress and BaseException containment."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from types import TracebackType
from typing import Any

import pykka
import pytest
from pykka import ActorDeadError, ActorRef

from brama.otp import (
    HIBERNATED,
    ChildAddress,
    ChildInfo,
    ChildNotFoundError,
    ChildSpec,
    ContainedBaseException,
    Exit,
    FakeClock,
    RestartIntensityExceeded,
    StartContext,
    Supervisor,
    monitor,
)
from brama.otp import Actor as OtpActor

WAIT = 5.0  # upper bound for anything we wait on


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll `predicate` every 5 ms until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.005)


def wait_thread_count(expected: int) -> None:
    wait_until(lambda: threading.active_count() == expected, what=f"{expected} threads")


def all_threads() -> set[threading.Thread]:
    return set(threading.enumerate())


# -- test actors --------------------------------------------------------------------------------


class Recorder:
    """Thread-safe record of every start (child_id, restarts, last_state), stop and ref."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.starts: list[tuple[Hashable, int, Any]] = []
        self.stops: list[Hashable] = []
        self.refs: dict[Hashable, list[ActorRef[Any]]] = {}
        self.handled: list[tuple[Hashable, Any]] = []
        # gates: a child blocks in on_failure / on_stop until its event is set
        self.failure_gates: dict[Hashable, threading.Event] = {}
        self.stop_gates: dict[Hashable, threading.Event] = {}

    def start(self, ctx: StartContext) -> ActorRef[Any]:
        ref = Worker.start(ctx, self)
        with self.cond:
            self.starts.append((ctx.child_id, ctx.restarts, ctx.last_state))
            self.refs.setdefault(ctx.child_id, []).append(ref)
            self.cond.notify_all()
        return ref

    def spec(self, child_id: Hashable, restart: Any = "permanent", **kw: Any) -> ChildSpec:
        return ChildSpec(child_id, self.start, restart=restart, **kw)

    def wait_starts(self, n: int, timeout: float = WAIT) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.starts) >= n, timeout)
        assert ok, f"expected {n} starts, got {self.starts}"

    def note(self, kind: str, child_id: Hashable, message: Any = None) -> None:
        with self.cond:
            if kind == "stop":
                self.stops.append(child_id)
            else:
                self.handled.append((child_id, message))
            self.cond.notify_all()

    def wait_stops(self, n: int, timeout: float = WAIT) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.stops) >= n, timeout)
        assert ok, f"expected {n} stops, got {self.stops}"

    def latest(self, child_id: Hashable) -> ActorRef[Any]:
        with self.cond:
            return self.refs[child_id][-1]


class Worker(OtpActor):
    """Answers "ping"; crashes on "crash"; stops on "stop"; raises SystemExit on "sysexit"."""

    def __init__(self, ctx: StartContext, rec: Recorder) -> None:
        super().__init__()
        self.ctx = ctx
        self.rec = rec

    def on_receive(self, message: Any) -> Any:
        self.rec.note("handled", self.ctx.child_id, message)
        match message:
            case "ping":
                return "pong"
            case "crash":
                raise RuntimeError(f"{self.ctx.child_id} crashed on purpose")
            case "stop":
                self.stop()
                return None
            case "sysexit":
                raise SystemExit(3)
            case "hibernate":
                self.hibernate()
                return "hibernating"
            case ("publish", value):
                self.ctx.slot.publish(value)
                return value
            case "last_state":
                return self.ctx.last_state
            case "restarts":
                return self.ctx.restarts
            case "raise_dead":
                raise ActorDeadError("raised by the handler itself")
        return super().on_receive(message)

    def on_stop(self) -> None:
        self.rec.note("stop", self.ctx.child_id)
        gate = self.rec.stop_gates.get(self.ctx.child_id)
        if gate is not None:
            gate.wait(WAIT)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gate = self.rec.failure_gates.get(self.ctx.child_id)
        if gate is not None:
            gate.wait(WAIT)


class Plain(pykka.ThreadingActor):
    """An ordinary pykka actor, unrelated to any supervisor."""

    use_daemon_thread = True

    def on_receive(self, message: Any) -> Any:
        return "plain-pong"


class Echo(OtpActor):
    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def on_receive(self, message: Any) -> Any:
        return f"{self.prefix}{message}"


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test (and its fixtures) must leave no actor thread behind."""
    threads_before = all_threads()
    yield
    wait_until(lambda: all_threads() <= threads_before, what="actor threads to end")


@pytest.fixture
def make_sup() -> Iterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(*args: Any, **kwargs: Any) -> Supervisor:
        sup = Supervisor(*args, **kwargs)
        made.append(sup)
        return sup

    yield make
    for sup in reversed(made):
        sup.stop()
    pykka.ActorRegistry.stop_all()


def info(sup: Supervisor, child_id: Hashable) -> ChildInfo:
    rows = [row for row in sup.which_children() if row.id == child_id]
    assert len(rows) == 1, sup.which_children()
    return rows[0]


def refs(sup: Supervisor) -> dict[Hashable, ActorRef[Any] | None]:
    return {row.id: row.ref for row in sup.which_children()}


def urn(ref: ActorRef[Any] | None) -> str:
    assert ref is not None
    return ref.actor_urn


def exit_event(ref: ActorRef[Any]) -> tuple[threading.Event, list[Exit]]:
    """Monitor `ref` ourselves; registered after the supervisor, so the supervisor has the Exit in
    its inbox by the time the event is set."""
    done = threading.Event()
    got: list[Exit] = []

    def watcher(message: Exit) -> None:
        got.append(message)
        done.set()

    monitor(ref, watcher)
    return done, got


def crash_and_wait_restart(rec: Recorder, child_id: Hashable, message: str = "crash") -> None:
    n = len(rec.starts)
    rec.latest(child_id).tell(message)
    rec.wait_starts(n + 1)


# -- static children, which_children, stop ------------------------------------------------------


def test_static_children_start_in_order_and_which_children(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("b", "transient"), rec.spec("c", "temporary")])
    assert rec.starts == [("a", 0, None), ("b", 0, None), ("c", 0, None)]
    rows = sup.which_children()
    assert [r.id for r in rows] == ["a", "b", "c"]
    assert [r.restart for r in rows] == ["permanent", "transient", "temporary"]
    assert all(r.status == "running" and r.restarts == 0 for r in rows)
    for row in rows:
        assert row.ref is not None and row.ref.is_alive()
        assert urn(row.ref) == urn(rec.latest(row.id))
        assert urn(sup.whereis_child(row.id)) == urn(row.ref)
        assert row.ref.ask("ping") == "pong"
    assert sup.count_children() == 3
    assert sup.alive and sup.failure is None


def test_stop_is_reverse_order_idempotent_and_leaves_no_threads(rec: Recorder) -> None:
    names_before = {t.name for t in threading.enumerate()}
    count_before = threading.active_count()
    sup = Supervisor([rec.spec("a"), rec.spec("b"), rec.spec("c")])
    assert threading.active_count() == count_before + 4
    child_refs = [rec.latest(c) for c in "abc"]
    sup.stop()
    assert rec.stops == ["c", "b", "a"]
    assert not sup.alive
    assert not any(r.is_alive() for r in child_refs)
    sup.stop()  # idempotent
    with sup:
        pass  # __exit__ stops again, harmlessly
    assert rec.stops == ["c", "b", "a"]
    wait_until(lambda: threading.active_count() == count_before, what="threads to end")
    assert {t.name for t in threading.enumerate()} == names_before
    assert len(rec.starts) == 3  # nothing was restarted while stopping


def test_context_manager_stops(rec: Recorder) -> None:
    with Supervisor([rec.spec("a")]) as sup:
        ref = rec.latest("a")
        assert ref.is_alive()
    assert not sup.alive and not ref.is_alive()
    assert rec.stops == ["a"]


def test_for_actor_spec(make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup([ChildSpec.for_actor("e", Echo, "x-", restart="transient")])
    assert info(sup, "e").restart == "transient"
    assert sup.ensure_child("e").ask("hi") == "x-hi"


def test_initial_child_failing_to_start_stops_the_started_ones(rec: Recorder) -> None:
    def bad(_ctx: StartContext) -> ActorRef[Any]:
        raise RuntimeError("no start for you")

    with pytest.raises(RuntimeError, match="no start for you"):
        Supervisor([rec.spec("a"), ChildSpec("bad", bad)])
    assert rec.stops == ["a"]
    assert not rec.latest("a").is_alive()


def test_duplicate_static_ids_rejected(rec: Recorder) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Supervisor([rec.spec("a"), rec.spec("a")])
    assert not rec.latest("a").is_alive()


# -- strategies ---------------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_failed_child(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("b"), rec.spec("c")])
    before = refs(sup)
    crash_and_wait_restart(rec, "b")
    after = refs(sup)
    assert urn(after["a"]) == urn(before["a"])
    assert urn(after["c"]) == urn(before["c"])
    assert urn(after["b"]) != urn(before["b"])
    assert not before["b"].is_alive()  # type: ignore[union-attr]
    assert after["b"].ask("ping") == "pong"  # type: ignore[union-attr]
    assert rec.starts[3:] == [("b", 1, None)]
    assert [(r.id, r.restarts, r.status) for r in sup.which_children()] == [
        ("a", 0, "running"),
        ("b", 1, "running"),
        ("c", 0, "running"),
    ]
    assert rec.stops == []  # siblings were not stopped
    assert len(rec.starts) == 4


def test_one_for_all_restarts_all_children_in_start_order(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("b"), rec.spec("c")], strategy="one_for_all")
    before = refs(sup)
    rec.latest("b").tell("crash")
    rec.wait_starts(6)
    after = refs(sup)
    assert rec.starts[3:] == [("a", 1, None), ("b", 1, None), ("c", 1, None)]
    assert rec.stops == ["c", "a"]  # the survivors were stopped in reverse start order
    for cid in "abc":
        assert urn(after[cid]) != urn(before[cid])
        assert not before[cid].is_alive()  # type: ignore[union-attr]
        assert after[cid].ask("ping") == "pong"  # type: ignore[union-attr]
    assert [r.restarts for r in sup.which_children()] == [1, 1, 1]
    assert len(rec.starts) == 6


def test_rest_for_one_restarts_failed_and_later_children(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec(c) for c in "abcd"], strategy="rest_for_one")
    before = refs(sup)
    rec.latest("b").tell("crash")
    rec.wait_starts(7)
    after = refs(sup)
    assert rec.starts[4:] == [("b", 1, None), ("c", 1, None), ("d", 1, None)]
    assert rec.stops == ["d", "c"]
    assert urn(after["a"]) == urn(before["a"]) and after["a"].is_alive()  # type: ignore[union-attr]
    for cid in "bcd":
        assert urn(after[cid]) != urn(before[cid])
        assert not before[cid].is_alive()  # type: ignore[union-attr]
    assert [r.restarts for r in sup.which_children()] == [0, 1, 1, 1]
    assert len(rec.starts) == 7


def test_rest_for_one_last_child_restarts_alone(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec(c) for c in "abc"], strategy="rest_for_one")
    crash_and_wait_restart(rec, "c")
    assert rec.starts[3:] == [("c", 1, None)]
    assert [r.restarts for r in sup.which_children()] == [0, 0, 1]
    assert rec.stops == []


# -- restart types ------------------------------------------------------------------------------


def test_permanent_restarted_after_normal_stop(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("p")])
    old = rec.latest("p")
    old.stop()  # somebody else stops it: a normal exit
    rec.wait_starts(2)
    assert rec.starts[1] == ("p", 1, None)
    row = info(sup, "p")
    assert row.status == "running" and row.restarts == 1
    assert urn(row.ref) != urn(old)
    # and it stopping itself counts the same
    rec.latest("p").tell("stop")
    rec.wait_starts(3)
    assert info(sup, "p").restarts == 2


def test_transient_not_restarted_after_normal_stop(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("t", "transient")])
    old = rec.latest("t")
    done, _ = exit_event(old)
    old.stop()
    assert done.wait(WAIT)
    row = info(sup, "t")  # handled after the Exit
    assert row.status == "stopped" and row.ref is None and row.restarts == 0
    assert len(rec.starts) == 1
    assert sup.count_children() == 1  # still recorded


def test_transient_restarted_after_crash(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("t", "transient")])
    crash_and_wait_restart(rec, "t")
    row = info(sup, "t")
    assert row.status == "running" and row.restarts == 1
    assert rec.starts == [("t", 0, None), ("t", 1, None)]


@pytest.mark.parametrize("how", ["crash", "stop", "external_stop"])
def test_temporary_never_restarted_and_removed(
    rec: Recorder, make_sup: Callable[..., Supervisor], how: str
) -> None:
    sup = make_sup([rec.spec("keep"), rec.spec("tmp", "temporary")])
    old = rec.latest("tmp")
    done, _ = exit_event(old)
    if how == "external_stop":
        old.stop()
    else:
        old.tell(how)
    assert done.wait(WAIT)
    assert [r.id for r in sup.which_children()] == ["keep"]
    assert sup.count_children() == 1
    assert sup.whereis_child("tmp") is None
    assert len(rec.starts) == 2
    with pytest.raises(ChildNotFoundError):
        sup.ensure_child("tmp")


# -- restart intensity --------------------------------------------------------------------------


def test_restart_intensity_exceeded_gives_up(
    rec: Recorder, make_sup: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="brama.otp.supervisor")
    clock = FakeClock()
    sup = make_sup(
        [rec.spec("a"), rec.spec("b")], max_restarts=2, max_seconds=5, clock=clock, name="s1"
    )
    crash_and_wait_restart(rec, "a")
    clock.advance(1)
    crash_and_wait_restart(rec, "a")
    assert sup.alive and sup.failure is None
    clock.advance(1)
    last_a, b = rec.latest("a"), rec.latest("b")
    last_a.tell("crash")
    wait_until(lambda: not sup.alive, what="supervisor to give up")
    assert isinstance(sup.failure, RestartIntensityExceeded)
    assert "s1" in str(sup.failure)
    assert not b.is_alive() and not last_a.is_alive()
    assert rec.stops == ["b"]  # the survivor was shut down
    assert len(rec.starts) == 4  # no third restart
    records = [
        r
        for r in caplog.records
        if r.name == "brama.otp.supervisor" and "more than 2 restarts" in r.getMessage()
    ]
    assert records and all(r.levelno == logging.ERROR for r in records)
    with pytest.raises(ActorDeadError):
        sup.which_children()
    sup.stop()  # harmless after giving up


def test_restart_intensity_zero_gives_up_on_first_crash(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")], max_restarts=0)
    rec.latest("a").tell("crash")
    wait_until(lambda: not sup.alive)
    assert isinstance(sup.failure, RestartIntensityExceeded)
    assert len(rec.starts) == 1


def test_restarts_spread_over_time_do_not_trip_intensity(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    clock = FakeClock(start=100.0)
    sup = make_sup([rec.spec("a")], max_restarts=2, max_seconds=5, clock=clock)
    for i in range(6):
        crash_and_wait_restart(rec, "a")
        if i % 2 == 1:
            clock.advance(6)  # two restarts per window, then the window moves on
    assert sup.alive and sup.failure is None
    assert info(sup, "a").restarts == 6


def test_restarts_just_inside_window_trip(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    clock = FakeClock()
    sup = make_sup([rec.spec("a")], max_restarts=2, max_seconds=5, clock=clock)
    crash_and_wait_restart(rec, "a")
    clock.advance(6)  # this one falls out of the window
    crash_and_wait_restart(rec, "a")
    clock.advance(2)
    crash_and_wait_restart(rec, "a")
    assert sup.alive
    clock.advance(2.9)  # restarts at 6, 8 and 10.9: three within 5 s
    rec.latest("a").tell("crash")
    wait_until(lambda: not sup.alive)
    assert isinstance(sup.failure, RestartIntensityExceeded)


# -- escalation ---------------------------------------------------------------------------------


def test_nested_supervisor_giving_up_is_restarted_by_parent(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    parent = make_sup(
        [rec.spec("sibling"), Supervisor.child_spec("inner", [rec.spec("w")], max_restarts=0)],
        max_restarts=3,
    )
    assert rec.starts == [("sibling", 0, None), ("w", 0, None)]
    inner_before = info(parent, "inner").ref
    assert inner_before is not None
    rec.latest("w").tell("crash")
    rec.wait_starts(3)
    assert rec.starts[2] == ("w", 0, None)  # a fresh nested supervisor started it again
    wait_until(lambda: not inner_before.is_alive())
    row = info(parent, "inner")
    assert row.restarts == 1 and row.status == "running"
    assert urn(row.ref) != urn(inner_before)
    assert rec.latest("w").ask("ping") == "pong"
    assert info(parent, "sibling").restarts == 0
    assert parent.alive
    parent.stop()
    assert rec.stops[-2:] == ["w", "sibling"]  # the nested tree is stopped, last child first


def test_escalation_reaches_the_top(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    parent = make_sup(
        [rec.spec("sibling"), Supervisor.child_spec("inner", [rec.spec("w")], max_restarts=0)],
        max_restarts=0,
        name="top",
    )
    inner = info(parent, "inner").ref
    assert inner is not None
    rec.latest("w").tell("crash")
    wait_until(lambda: not parent.alive, what="the top supervisor to give up")
    assert isinstance(parent.failure, RestartIntensityExceeded)
    assert "inner" in str(parent.failure)
    assert not inner.is_alive()
    assert not rec.latest("sibling").is_alive()
    assert len(rec.starts) == 2


# -- dynamic children ---------------------------------------------------------------------------


def test_start_child_and_duplicates(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup([rec.spec("a")])
    ref = sup.start_child(rec.spec("d1"))
    assert ref is not None and ref.ask("ping") == "pong"
    assert urn(ref) == urn(rec.latest("d1"))
    with pytest.raises(ValueError, match="d1"):
        sup.start_child(rec.spec("d1"))
    with pytest.raises(ValueError, match="'a'"):
        sup.start_child(rec.spec("a"))
    assert [r.id for r in sup.which_children()] == ["a", "d1"]
    assert len(rec.starts) == 2
    # dynamic children are supervised like static ones
    crash_and_wait_restart(rec, "d1")
    assert info(sup, "d1").restarts == 1
    # and stopped first on shutdown (reverse start order)
    sup.stop()
    assert rec.stops == ["d1", "a"]


def test_start_child_dormant(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    assert sup.start_child(rec.spec("d"), start=False) is None
    row = info(sup, "d")
    assert row.status == "dormant" and row.ref is None
    assert rec.starts == []
    ref = sup.ensure_child("d")
    assert ref.ask("ping") == "pong"
    assert rec.starts == [("d", 0, None)]


def test_terminate_child(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("b")])
    b = rec.latest("b")
    sup.terminate_child("b")
    assert not b.is_alive()
    assert rec.stops == ["b"]
    assert [r.id for r in sup.which_children()] == ["a"]
    assert sup.count_children() == 1
    assert sup.whereis_child("b") is None
    sup.terminate_child("b")  # already gone
    sup.terminate_child("never-there")
    with pytest.raises(ChildNotFoundError):
        sup.ensure_child("b")
    assert len(rec.starts) == 2  # not restarted
    assert sup.alive


def test_add_dormant_child_starts_nothing_until_ensure(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup()
    threads_before = threading.active_count()
    for i in range(50):
        sup.add_dormant_child(rec.spec(("dormant", i)))
    rows = sup.which_children()  # an ask: handled after every add
    assert len(rows) == 50 and all(r.status == "dormant" and r.ref is None for r in rows)
    assert threading.active_count() == threads_before
    assert rec.starts == []
    sup.add_dormant_child(rec.spec(("dormant", 0), "temporary"))  # existing id: left as it is
    assert info(sup, ("dormant", 0)).restart == "permanent"

    first = sup.ensure_child(("dormant", 7))
    second = sup.ensure_child(("dormant", 7))
    assert urn(first) == urn(second) and first.is_alive()
    assert rec.starts == [(("dormant", 7), 0, None)]
    assert threading.active_count() == threads_before + 1
    assert info(sup, ("dormant", 7)).status == "running"


def test_ensure_child_unknown_id(make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    with pytest.raises(ChildNotFoundError, match="nope"):
        sup.ensure_child("nope")
    assert isinstance(ChildNotFoundError("x"), LookupError)
    with pytest.raises(ChildNotFoundError):
        sup.address("nope").ask("ping")
    assert sup.whereis_child("nope") is None and sup.slot("nope") is None
    assert sup.alive  # an unknown id does not hurt the supervisor


def test_start_function_raising_leaves_no_record(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")])
    calls: list[int] = []

    def bad(_ctx: StartContext) -> ActorRef[Any]:
        calls.append(1)
        raise OSError("cannot connect")

    with pytest.raises(OSError, match="cannot connect"):
        sup.start_child(ChildSpec("x", bad))
    assert calls == [1]
    assert [r.id for r in sup.which_children()] == ["a"]
    assert sup.count_children() == 1
    assert sup.alive
    # the id is free again
    assert sup.start_child(rec.spec("x")) is not None
    assert info(sup, "x").status == "running"


def test_start_function_returning_a_non_ref(make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    with pytest.raises(TypeError, match="ActorRef"):
        sup.start_child(ChildSpec("x", lambda _ctx: "not a ref"))  # type: ignore[arg-type,return-value]
    assert sup.count_children() == 0


def test_start_function_returning_a_plain_pykka_actor_is_not_leaked(
    make_sup: Callable[..., Supervisor],
) -> None:
    sup = make_sup()
    started: list[ActorRef[Any]] = []

    def plain(_ctx: StartContext) -> ActorRef[Any]:
        ref = Plain.start()
        started.append(ref)
        return ref

    with pytest.raises(TypeError, match=r"brama\.otp\.Actor"):
        sup.start_child(ChildSpec("x", plain))
    assert sup.count_children() == 0
    assert len(started) == 1
    wait_until(lambda: not started[0].is_alive(), what="the unsupervisable actor to be stopped")


# -- hibernation --------------------------------------------------------------------------------


def test_hibernation_releases_the_thread_and_is_not_a_restart(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("h"), rec.spec("other")], max_restarts=1, strategy="one_for_all")
    other = rec.latest("other")
    for i in range(4):  # more hibernations than max_restarts allows restarts
        ref = sup.ensure_child("h")
        assert ref.ask(("publish", f"s{i}")) == f"s{i}"
        threads = threading.active_count()
        done, got = exit_event(ref)
        assert ref.ask("hibernate") == "hibernating"
        assert done.wait(WAIT)
        assert got[0].reason == HIBERNATED and not got[0].abnormal
        row = info(sup, "h")
        assert row.status == "dormant" and row.ref is None and row.restarts == 0
        wait_thread_count(threads - 1)
    assert sup.alive and sup.failure is None
    assert urn(info(sup, "other").ref) == urn(other)  # one_for_all did not kick in
    # waking up hands over the last published state, with the restart count unchanged
    woken = sup.ensure_child("h")
    assert woken.ask("last_state") == "s3"
    assert rec.starts[-1] == ("h", 0, "s3")
    assert [s for s in rec.starts if s[0] == "h"] == [
        ("h", 0, None),
        ("h", 0, "s0"),
        ("h", 0, "s1"),
        ("h", 0, "s2"),
        ("h", 0, "s3"),
    ]
    assert len([s for s in rec.starts if s[0] == "other"]) == 1


def test_hibernate_in_a_tell(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup([rec.spec("h")])
    ref = rec.latest("h")
    done, _ = exit_event(ref)
    ref.tell("hibernate")
    assert done.wait(WAIT)
    assert info(sup, "h").status == "dormant"
    assert len(rec.starts) == 1
    assert sup.address("h").ask("ping") == "pong"
    assert info(sup, "h").status == "running"


# -- state handoff ------------------------------------------------------------------------------


def test_state_handoff_across_a_crash(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("b")], strategy="one_for_all")
    state = {"opened": 3}
    rec.latest("a").ask(("publish", state))
    rec.latest("b").ask(("publish", "b-state"))
    slot = sup.slot("a")
    assert slot is not None and slot.value is state
    rec.latest("a").tell("crash")
    rec.wait_starts(4)
    assert rec.starts[2:] == [("a", 1, state), ("b", 1, "b-state")]
    assert rec.latest("a").ask("last_state") is state
    assert rec.latest("a").ask("restarts") == 1
    assert rec.latest("b").ask("last_state") == "b-state"


# -- ChildAddress -------------------------------------------------------------------------------


def test_address_ask_wakes_a_dormant_child(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup()
    sup.add_dormant_child(rec.spec("d"))
    addr = sup.address("d")
    assert isinstance(addr, ChildAddress) and addr.child_id == "d"
    assert addr.ask("ping") == "pong"
    assert rec.starts == [("d", 0, None)]
    assert addr.ask("ping") == "pong"
    assert len(rec.starts) == 1


def test_address_survives_a_crash_between_calls(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")])
    addr = sup.address("a")
    assert addr.ask("ping") == "pong"
    old = rec.latest("a")
    done, _ = exit_event(old)
    addr.tell("crash")
    assert addr.ask("ping", timeout=WAIT) == "pong"
    assert done.wait(WAIT)
    row = info(sup, "a")  # after the Exit: whichever path restarted it, it was once
    assert row.restarts == 1 and row.status == "running"
    assert len(rec.starts) == 2
    assert urn(row.ref) != urn(old)


def test_address_tell(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    sup.add_dormant_child(rec.spec("d"))
    addr = sup.address("d")
    addr.tell(("publish", "told"))  # wakes the dormant child
    assert addr.ask("ping") == "pong"  # queued behind the tell
    slot = sup.slot("d")
    assert slot is not None and slot.value == "told"
    assert [m for _, m in rec.handled] == [("publish", "told"), "ping"]


def test_address_tell_after_death(rec: Recorder, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup([rec.spec("t", "transient")])
    old = rec.latest("t")
    done, _ = exit_event(old)
    old.stop()
    assert done.wait(WAIT)
    assert info(sup, "t").status == "stopped"
    sup.address("t").tell(("publish", 1))
    wait_until(lambda: ("t", ("publish", 1)) in rec.handled)
    assert info(sup, "t").status == "running"


def test_address_tell_to_a_child_dead_before_its_exit(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")])
    gate = threading.Event()
    rec.failure_gates["a"] = gate
    old = rec.latest("a")
    done, _ = exit_event(old)
    try:
        old.tell("crash")
        wait_until(lambda: not old.is_alive())
        sup.address("a").tell(("publish", "after"))  # the old ref is dead: goes to a new one
        assert not done.is_set()
    finally:
        gate.set()
    wait_until(lambda: ("a", ("publish", "after")) in rec.handled)
    assert done.wait(WAIT)
    row = info(sup, "a")
    assert row.restarts == 1 and urn(row.ref) != urn(old)
    assert len(rec.starts) == 2


def test_address_does_not_retry_actor_dead_error_from_the_handler(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")])
    with pytest.raises(ActorDeadError, match="raised by the handler itself"):
        sup.address("a").ask("raise_dead")
    assert rec.handled.count(("a", "raise_dead")) == 1
    assert len(rec.starts) == 1
    assert rec.latest("a").is_alive()


# -- races --------------------------------------------------------------------------------------


def test_ensure_child_sees_a_death_before_its_exit(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("b")])
    gate = threading.Event()
    rec.failure_gates["a"] = gate  # the dying child waits in on_failure: its Exit is held back
    old = rec.latest("a")
    done, got = exit_event(old)
    try:
        old.tell("crash")
        wait_until(lambda: not old.is_alive(), what="the child to be marked dead")
        new = sup.ensure_child("a")
        assert not done.is_set()  # the Exit really was still on its way
        assert urn(new) != urn(old) and new.is_alive()
        assert new.ask("ping") == "pong"
    finally:
        gate.set()
    assert done.wait(WAIT)
    assert got[0].abnormal
    row = info(sup, "a")  # handled after the late Exit
    assert row.restarts == 1 and urn(row.ref) == urn(new) and new.is_alive()
    assert rec.starts == [("a", 0, None), ("b", 0, None), ("a", 1, None)]
    assert info(sup, "b").restarts == 0


def test_ensure_child_right_after_a_crash_restarts_once(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")], max_restarts=100)
    for i in range(1, 21):
        old = rec.latest("a")
        done, _ = exit_event(old)
        old.tell("crash")
        new = sup.ensure_child("a")  # either still the old one, or already a restarted one
        assert done.wait(WAIT)
        if urn(new) == urn(old):
            rec.wait_starts(i + 1)
        row = info(sup, "a")
        assert row.restarts == i, (i, row)
        assert len(rec.starts) == i + 1
        assert row.ref is not None and row.ref.is_alive()


def test_ensure_child_sees_a_hibernation_before_its_exit(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("h")])
    gate = threading.Event()
    rec.stop_gates["h"] = gate
    old = rec.latest("h")
    old.ask(("publish", "zz"))
    done, _ = exit_event(old)
    try:
        old.tell("hibernate")
        wait_until(lambda: not old.is_alive())
        new = sup.ensure_child("h")
        assert not done.is_set()
    finally:
        gate.set()
    assert done.wait(WAIT)
    del rec.stop_gates["h"]
    row = info(sup, "h")
    assert row.restarts == 0 and row.status == "running" and urn(row.ref) == urn(new)
    assert rec.starts == [("h", 0, None), ("h", 0, "zz")]


def test_ensure_child_sees_a_transient_normal_stop_before_its_exit(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    """Whether or not the Exit arrived first, ensure_child on a transient child that stopped
    normally just starts it again: no restart is counted and its siblings are left alone."""
    sup = make_sup(
        [rec.spec("a"), rec.spec("t", "transient"), rec.spec("c")],
        strategy="one_for_all",
        max_restarts=0,
    )
    before = refs(sup)
    gate = threading.Event()
    rec.stop_gates["t"] = gate
    old = rec.latest("t")
    done, _ = exit_event(old)
    try:
        old.tell("stop")
        wait_until(lambda: not old.is_alive())
        new = sup.ensure_child("t")
    finally:
        gate.set()
    assert done.wait(WAIT)
    assert sup.alive and sup.failure is None
    after = refs(sup)
    assert urn(after["a"]) == urn(before["a"]) and urn(after["c"]) == urn(before["c"])
    assert urn(after["t"]) == urn(new) and new.is_alive()
    assert info(sup, "t").restarts == 0
    assert rec.starts[3:] == [("t", 0, None)]


def test_ensure_child_race_can_exceed_intensity(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")], max_restarts=0)
    gate = threading.Event()
    rec.failure_gates["a"] = gate
    old = rec.latest("a")
    try:
        old.tell("crash")
        wait_until(lambda: not old.is_alive())
        with pytest.raises(RestartIntensityExceeded):
            sup.ensure_child("a")
    finally:
        gate.set()
    wait_until(lambda: not sup.alive)
    assert isinstance(sup.failure, RestartIntensityExceeded)
    assert len(rec.starts) == 1


# -- BaseException containment ------------------------------------------------------------------


def test_system_exit_in_a_child_is_contained_and_restarted(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    bystander = Plain.start()
    try:
        sup = make_sup([rec.spec("a"), rec.spec("b")])
        old = rec.latest("a")
        done, got = exit_event(old)
        old.tell("sysexit")
        rec.wait_starts(3)
        assert done.wait(WAIT)
        assert isinstance(got[0].reason, ContainedBaseException)
        assert isinstance(got[0].reason.original, SystemExit)
        assert rec.starts[2] == ("a", 1, None)
        assert bystander.is_alive() and bystander.ask("x") == "plain-pong"
        assert rec.latest("b").is_alive()
        assert sup.alive
        assert rec.latest("a").ask("ping") == "pong"
    finally:
        bystander.stop()


def test_start_raising_base_exception_during_restart_does_not_orphan_children(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    def flaky(ctx: StartContext) -> ActorRef[Any]:
        if ctx.restarts > 0:
            raise KeyboardInterrupt("start interrupted")
        return rec.start(ctx)

    sup = make_sup([rec.spec("a"), ChildSpec("f", flaky)])
    a = rec.latest("a")
    rec.latest("f").tell("crash")
    wait_until(lambda: not sup.alive, what="the supervisor to fail")
    wait_until(lambda: not a.is_alive(), what="the surviving child to be stopped")
    assert rec.stops == ["a"]


def test_failed_restart_of_a_later_child_does_not_leak_earlier_ones(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    fail_once = [True]

    def flaky(ctx: StartContext) -> ActorRef[Any]:
        if ctx.restarts > 0 and fail_once[0]:
            fail_once[0] = False
            raise RuntimeError("transient start failure")
        return rec.start(ctx)

    sup = make_sup([rec.spec("a"), ChildSpec("b", flaky)], strategy="rest_for_one")
    rec.latest("a").tell("crash")
    wait_until(lambda: len(rec.refs["b"]) == 2, what="b to be started again")
    assert sup.alive
    live_a = [r for r in rec.refs["a"] if r.is_alive()]
    assert len(live_a) == 1, "an incarnation of 'a' was orphaned"
    assert urn(live_a[0]) == urn(info(sup, "a").ref)
    assert [r.is_alive() for r in rec.refs["b"]] == [False, True]


# -- validation ---------------------------------------------------------------------------------


def _ok_start(ctx: StartContext) -> ActorRef[Any]:
    raise AssertionError("never started")


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"strategy": "one_for_some"}, ValueError, "strategy"),
        ({"strategy": None}, ValueError, "strategy"),
        ({"max_restarts": -1}, ValueError, "max_restarts"),
        ({"max_restarts": 1.5}, ValueError, "max_restarts"),
        ({"max_restarts": True}, ValueError, "max_restarts"),
        ({"max_restarts": "3"}, ValueError, "max_restarts"),
        ({"max_seconds": 0}, ValueError, "max_seconds"),
        ({"max_seconds": -1.0}, ValueError, "max_seconds"),
        ({"max_seconds": float("inf")}, ValueError, "max_seconds"),
        ({"max_seconds": float("nan")}, ValueError, "max_seconds"),
        ({"max_seconds": True}, ValueError, "max_seconds"),
        ({"max_seconds": "5"}, ValueError, "max_seconds"),
        ({"children": ["not a spec"]}, TypeError, "children"),
    ],
)
def test_supervisor_validation(kwargs: dict[str, Any], exc: type[Exception], name: str) -> None:
    threads = threading.active_count()
    with pytest.raises(exc, match=name):
        Supervisor(**kwargs)
    assert threading.active_count() == threads  # nothing was started


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"restart": "sometimes"}, ValueError, "restart"),
        ({"restart": None}, ValueError, "restart"),
        ({"start": 42}, TypeError, "start"),
        ({"start": None}, TypeError, "start"),
        ({"shutdown": 0}, ValueError, "shutdown"),
        ({"shutdown": -1}, ValueError, "shutdown"),
        ({"shutdown": True}, ValueError, "shutdown"),
        ({"shutdown": float("nan")}, ValueError, "shutdown"),
    ],
)
def test_child_spec_validation(kwargs: dict[str, Any], exc: type[Exception], name: str) -> None:
    args: dict[str, Any] = {"id": "x", "start": _ok_start, **kwargs}
    with pytest.raises(exc, match=name):
        ChildSpec(**args)


def test_dynamic_api_validation(make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    with pytest.raises(TypeError, match="spec"):
        sup.start_child("not a spec")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="spec"):
        sup.add_dormant_child({"id": "x"})  # type: ignore[arg-type]
    assert sup.count_children() == 0


# -- more OTP semantics and robustness ----------------------------------------------------------


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_temporary_sibling_is_stopped_not_restarted_by_a_group_restart(
    rec: Recorder, make_sup: Callable[..., Supervisor], strategy: str
) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("tmp", "temporary"), rec.spec("c")], strategy=strategy)
    tmp = rec.latest("tmp")
    rec.latest("a").tell("crash")
    rec.wait_starts(5)
    assert rec.starts[3:] == [("a", 1, None), ("c", 1, None)]
    assert not tmp.is_alive()
    assert "tmp" in rec.stops
    assert [r.id for r in sup.which_children()] == ["a", "c"]
    assert len(rec.starts) == 5


def test_failing_restarts_count_towards_intensity(
    rec: Recorder, make_sup: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="brama.otp.supervisor")
    attempts: list[int] = []

    def once(ctx: StartContext) -> ActorRef[Any]:
        attempts.append(ctx.restarts)
        if ctx.restarts > 0:
            raise RuntimeError("cannot come back")
        return rec.start(ctx)

    sup = make_sup([ChildSpec("f", once), rec.spec("b")], max_restarts=2, clock=FakeClock())
    rec.latest("f").tell("crash")
    wait_until(lambda: not sup.alive, what="the supervisor to give up")
    assert isinstance(sup.failure, RestartIntensityExceeded)
    assert attempts == [0, 1, 2]  # the first start, then max_restarts attempts
    assert not rec.latest("b").is_alive()
    assert any("restart of 'f' failed" in r.getMessage() for r in caplog.records)


class ExitsOnStop(OtpActor):
    def on_stop(self) -> None:
        raise SystemExit("on_stop exits")


def test_child_raising_system_exit_while_stopping_does_not_abort_shutdown(
    rec: Recorder,
) -> None:
    sup = Supervisor([rec.spec("a"), ChildSpec.for_actor("bad", ExitsOnStop), rec.spec("c")])
    a, c = rec.latest("a"), rec.latest("c")
    bad = sup.whereis_child("bad")
    assert bad is not None
    sup.stop()
    assert not sup.alive
    assert not a.is_alive() and not c.is_alive() and not bad.is_alive()
    assert rec.stops == ["c", "a"]


def test_terminate_children_stops_and_forgets_many_in_one_call(
    rec: Recorder, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup()
    started = [sup.start_child(rec.spec(f"w{i}")) for i in range(5)]
    sup.terminate_children(["w1", "w3", "unknown"])
    assert [row.id for row in sup.which_children()] == ["w0", "w2", "w4"]
    assert [ref is not None and ref.is_alive() for ref in started] == [
        True, False, True, False, True]
    assert sorted(rec.stops) == ["w1", "w3"]
