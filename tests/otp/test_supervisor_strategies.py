"""Supervisor: static children, strategies, restart types, restart intensity and escalation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pykka import ActorDeadError, ActorRef

from brama.otp import (
    SHUTDOWN,
    ChildNotFoundError,
    ChildSpec,
    FakeClock,
    RestartIntensityExceeded,
    StartContext,
    StartError,
    Supervisor,
)
from tests.helpers import WAIT, threads_since, wait_until
from tests.otp.children import (
    Echo,
    StartLog,
    crash_and_wait_restart,
    exit_event,
    info,
    refs,
    urn,
)

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


# -- static children, which_children, stop ------------------------------------------------------


def test_static_children_start_in_order_and_which_children(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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


def test_stop_is_reverse_order_idempotent_and_leaves_no_threads(rec: StartLog) -> None:
    before = set(threading.enumerate())
    sup = Supervisor([rec.spec("a"), rec.spec("b"), rec.spec("c")])
    assert len(threads_since(before)) == 4
    child_refs = [rec.latest(c) for c in "abc"]
    sup.stop()
    assert rec.stops == ["c", "b", "a"]
    assert not sup.alive
    assert not any(r.is_alive() for r in child_refs)
    sup.stop()  # idempotent
    with sup:
        pass  # __exit__ stops again, harmlessly
    assert rec.stops == ["c", "b", "a"]
    wait_until(lambda: not threads_since(before), what="threads to end")
    assert len(rec.starts) == 3  # nothing was restarted while stopping


def test_context_manager_stops(rec: StartLog) -> None:
    with Supervisor([rec.spec("a")]) as sup:
        ref = rec.latest("a")
        assert ref.is_alive()
    assert not sup.alive and not ref.is_alive()
    assert rec.stops == ["a"]


def test_for_actor_spec(make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup([ChildSpec.for_actor("e", Echo, "x-", restart="transient")])
    assert info(sup, "e").restart == "transient"
    assert sup.ensure_child("e").ask("hi") == "x-hi"


def test_initial_child_failing_to_start_stops_the_started_ones(rec: StartLog) -> None:
    def bad(_ctx: StartContext) -> ActorRef[Any]:
        raise RuntimeError("no start for you")

    with pytest.raises(StartError, match="failed to start child 'bad'") as raised:
        Supervisor([rec.spec("a"), ChildSpec("bad", bad)])
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert rec.stops == ["a"]
    assert not rec.latest("a").is_alive()


def test_duplicate_static_ids_rejected_before_anything_starts(rec: StartLog) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Supervisor([rec.spec("a"), rec.spec("a")])
    assert rec.starts == []


# -- strategies ---------------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_failed_child(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_a_group_restart_starts_every_non_temporary_child_also_terminated_ones(
    rec: StartLog, make_sup: Callable[..., Supervisor], strategy: str
) -> None:
    """OTP restarts every non-temporary child spec of the set, running or not."""
    sup = make_sup([rec.spec("a"), rec.spec("b"), rec.spec("c")], strategy=strategy)
    sup.terminate_child("c")
    assert info(sup, "c").status == "stopped"
    rec.latest("a").tell("crash")
    rec.wait_starts(6)
    assert rec.starts[3:] == [("a", 1, None), ("b", 1, None), ("c", 1, None)]
    assert [r.status for r in sup.which_children()] == ["running"] * 3


def test_rest_for_one_restarts_failed_and_later_children(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec(c) for c in "abc"], strategy="rest_for_one")
    crash_and_wait_restart(rec, "c")
    assert rec.starts[3:] == [("c", 1, None)]
    assert [r.restarts for r in sup.which_children()] == [0, 0, 1]
    assert rec.stops == []


# -- restart types ------------------------------------------------------------------------------


def test_permanent_restarted_after_normal_stop(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("t", "transient")])
    crash_and_wait_restart(rec, "t")
    row = info(sup, "t")
    assert row.status == "running" and row.restarts == 1
    assert rec.starts == [("t", 0, None), ("t", 1, None)]


@pytest.mark.parametrize("how", ["crash", "stop", "external_stop"])
def test_temporary_never_restarted_and_removed(
    rec: StartLog, make_sup: Callable[..., Supervisor], how: str
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
    rec: StartLog, make_sup: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
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
    assert "more than 2 restarts" in str(sup.failure)
    records = [
        r
        for r in caplog.records
        if r.name == "brama.otp.supervisor" and "supervisor_gave_up" in r.getMessage()
    ]
    assert records and all(r.levelno == logging.ERROR for r in records)
    assert "max_restarts=2" in records[0].getMessage()
    with pytest.raises(ActorDeadError):
        sup.which_children()
    sup.stop()  # harmless after giving up


def test_a_supervisor_past_its_intensity_exits_with_shutdown_and_the_cause(
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    """OTP: reaching the restart intensity terminates the supervisor with reason shutdown."""
    sup = make_sup([rec.spec("a")], max_restarts=0)
    done, got = exit_event(sup.ref)
    rec.latest("a").tell("crash")
    assert done.wait(WAIT)
    assert got[0].reason == SHUTDOWN
    assert not got[0].abnormal
    assert isinstance(got[0].cause, RestartIntensityExceeded)
    assert got[0].cause is sup.failure


def test_a_transient_parent_does_not_restart_a_child_supervisor_that_gave_up(
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    parent = make_sup(
        [Supervisor.child_spec("inner", [rec.spec("w")], restart="transient", max_restarts=0)]
    )
    inner = info(parent, "inner").ref
    assert inner is not None
    done, _ = exit_event(inner)
    rec.latest("w").tell("crash")
    assert done.wait(WAIT)
    row = info(parent, "inner")
    assert row.status == "stopped" and row.restarts == 0
    assert parent.alive
    assert len(rec.starts) == 1


def test_restart_intensity_zero_gives_up_on_first_crash(
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup([rec.spec("a")], max_restarts=0)
    rec.latest("a").tell("crash")
    wait_until(lambda: not sup.alive)
    assert isinstance(sup.failure, RestartIntensityExceeded)
    assert len(rec.starts) == 1


def test_restarts_spread_over_time_do_not_trip_intensity(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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


def test_escalation_reaches_the_top(rec: StartLog, make_sup: Callable[..., Supervisor]) -> None:
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


