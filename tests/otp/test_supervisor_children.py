"""Supervisor: dynamic children, start failures, terminate / restart / delete, validation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pykka import ActorRef

from brama.otp import (
    Actor,
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    FakeClock,
    RestartIntensityExceeded,
    StartContext,
    StartError,
    Supervisor,
)
from tests.helpers import threads_since, wait_until
from tests.otp.children import (
    Plain,
    StartLog,
    crash_and_wait_restart,
    info,
    urn,
)

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


# -- dynamic children ---------------------------------------------------------------------------


def test_start_child_and_duplicates(rec: StartLog, make_sup: Callable[..., Supervisor]) -> None:
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


def test_start_child_dormant(rec: StartLog, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    assert sup.start_child(rec.spec("d"), start=False) is None
    row = info(sup, "d")
    assert row.status == "dormant" and row.ref is None
    assert rec.starts == []
    ref = sup.ensure_child("d")
    assert ref.ask("ping") == "pong"
    assert rec.starts == [("d", 0, None)]


def test_terminate_child_keeps_the_spec_for_restart_child_and_delete_child(
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a"), rec.spec("b")])
    b = rec.latest("b")
    sup.terminate_child("b")
    assert not b.is_alive()
    assert rec.stops == ["b"]
    row = info(sup, "b")
    assert row.status == "stopped" and row.ref is None
    assert sup.count_children() == 2
    sup.terminate_child("b")  # terminating a stopped child is fine
    assert len(rec.starts) == 2  # not restarted by its supervisor
    again = sup.restart_child("b")
    assert again.ask("ping") == "pong"
    assert info(sup, "b").status == "running"
    with pytest.raises(ChildRunningError, match="'b' is running"):
        sup.restart_child("b")
    with pytest.raises(ChildRunningError, match="'b' is running"):
        sup.delete_child("b")
    sup.terminate_child("b")
    sup.delete_child("b")
    assert [r.id for r in sup.which_children()] == ["a"]
    assert sup.alive


@pytest.mark.parametrize("operation", ["terminate_child", "restart_child", "delete_child"])
def test_operations_on_an_unknown_id_raise_child_not_found(
    make_sup: Callable[..., Supervisor], operation: str
) -> None:
    sup = make_sup()
    with pytest.raises(ChildNotFoundError, match="never-there"):
        getattr(sup, operation)("never-there")
    assert sup.alive


def test_a_temporary_child_is_forgotten_when_terminated(
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("t", "temporary")])
    sup.terminate_child("t")
    assert sup.which_children() == []


def test_dormant_children_start_nothing_until_ensure(
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup()
    before = set(threading.enumerate())
    for i in range(50):
        assert sup.start_child(rec.spec(("dormant", i)), start=False) is None
    rows = sup.which_children()
    assert len(rows) == 50 and all(r.status == "dormant" and r.ref is None for r in rows)
    assert threads_since(before) == []
    assert rec.starts == []

    first = sup.ensure_child(("dormant", 7))
    second = sup.ensure_child(("dormant", 7))
    assert urn(first) == urn(second) and first.is_alive()
    assert rec.starts == [(("dormant", 7), 0, None)]
    assert len(threads_since(before)) == 1
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")])
    calls: list[int] = []

    def bad(_ctx: StartContext) -> ActorRef[Any]:
        calls.append(1)
        raise OSError("cannot connect")

    with pytest.raises(StartError, match="failed to start child 'x'") as raised:
        sup.start_child(ChildSpec("x", bad))
    assert isinstance(raised.value.__cause__, OSError)
    assert calls == [1]
    assert [r.id for r in sup.which_children()] == ["a"]
    assert sup.count_children() == 1
    assert sup.alive
    # the id is free again
    assert sup.start_child(rec.spec("x")) is not None
    assert info(sup, "x").status == "running"


def test_start_function_returning_a_non_ref(make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    with pytest.raises(StartError, match="ActorRef"):
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

    with pytest.raises(StartError, match=r"brama\.otp\.Actor"):
        sup.start_child(ChildSpec("x", plain))
    assert sup.count_children() == 0
    assert len(started) == 1
    wait_until(lambda: not started[0].is_alive(), what="the unsupervisable actor to be stopped")


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
    before = set(threading.enumerate())
    with pytest.raises(exc, match=name):
        Supervisor(**kwargs)
    assert threads_since(before) == []  # nothing was started


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
    assert sup.count_children() == 0


# -- more OTP semantics and robustness ----------------------------------------------------------


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_temporary_sibling_is_stopped_not_restarted_by_a_group_restart(
    rec: StartLog, make_sup: Callable[..., Supervisor], strategy: str
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
    rec: StartLog, make_sup: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
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
    assert any("child_restart_failed" in r.getMessage() for r in caplog.records)


class ExitsOnStop(Actor):
    def on_stop(self) -> None:
        raise SystemExit("on_stop exits")


def test_child_raising_system_exit_while_stopping_does_not_abort_shutdown(
    rec: StartLog,
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup()
    started = [sup.start_child(rec.spec(f"w{i}")) for i in range(5)]
    sup.terminate_children(["w1", "w3", "unknown"])
    assert [(row.id, row.status) for row in sup.which_children()] == [
        ("w0", "running"), ("w1", "stopped"), ("w2", "running"), ("w3", "stopped"),
        ("w4", "running"),
    ]
    assert [ref is not None and ref.is_alive() for ref in started] == [
        True, False, True, False, True]
    assert sorted(rec.stops) == ["w1", "w3"]
