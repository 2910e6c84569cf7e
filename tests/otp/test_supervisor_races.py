"""Supervisor: hibernation, state handoff, addresses, races between deaths and calls, and
contained BaseExceptions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from pykka import ActorDeadError, ActorRef

from brama.otp import (
    HIBERNATED,
    ChildAddress,
    ChildSpec,
    ContainedBaseException,
    NotHandledError,
    RestartIntensityExceeded,
    StartContext,
    Supervisor,
)
from tests.helpers import WAIT, wait_until
from tests.otp.children import (
    Plain,
    StartLog,
    exit_event,
    info,
    refs,
    urn,
)

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


# -- hibernation --------------------------------------------------------------------------------


def test_hibernation_releases_the_thread_and_is_not_a_restart(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
        # at most: a thread of an earlier test may end meanwhile too
        wait_until(lambda n=threads - 1: threading.active_count() <= n, what="the thread to end")
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


def test_hibernate_in_a_tell(rec: StartLog, make_sup: Callable[..., Supervisor]) -> None:
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


def test_state_handoff_across_a_crash(rec: StartLog, make_sup: Callable[..., Supervisor]) -> None:
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    sup = make_sup()
    sup.start_child(rec.spec("d"), start=False)
    addr = sup.address("d")
    assert isinstance(addr, ChildAddress) and addr.child_id == "d"
    assert addr.ask("ping") == "pong"
    assert rec.starts == [("d", 0, None)]
    assert addr.ask("ping") == "pong"
    assert len(rec.starts) == 1


def test_address_survives_a_crash_between_calls(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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


def test_address_tell(rec: StartLog, make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    sup.start_child(rec.spec("d"), start=False)
    addr = sup.address("d")
    addr.tell(("publish", "told"))  # wakes the dormant child
    assert addr.ask("ping") == "pong"  # queued behind the tell
    slot = sup.slot("d")
    assert slot is not None and slot.value == "told"
    assert [m for _, m in rec.handled] == [("publish", "told"), "ping"]


def test_address_tell_after_death(rec: StartLog, make_sup: Callable[..., Supervisor]) -> None:
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
) -> None:
    """An ActorDeadError raised by the handler is a crash like any other: not resent."""
    sup = make_sup([rec.spec("a")])
    with pytest.raises(ActorDeadError, match="raised by the handler itself") as raised:
        sup.address("a").ask("raise_dead")
    assert not isinstance(raised.value, NotHandledError)
    assert rec.handled.count(("a", "raise_dead")) == 1
    rec.wait_starts(2)  # the crash restarted it
    assert rec.latest("a").is_alive()


# -- races --------------------------------------------------------------------------------------


def test_ensure_child_sees_a_death_before_its_exit(
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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
    rec: StartLog, make_sup: Callable[..., Supervisor]
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


