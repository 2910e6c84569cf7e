"""Supervisor: simple_one_for_one children, and the timers a supervisor owns for its children."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pykka import ActorRef

from brama.otp import (
    Actor,
    ChildNotFoundError,
    ChildSpec,
    FakeClock,
    StartContext,
    Supervisor,
    TimerService,
    call,
)
from tests.helpers import WAIT
from tests.otp.children import StartLog, exit_event

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


class Keeper(Actor):
    """A child that records what its timers deliver, tagged with its incarnation."""

    def __init__(self, ctx: StartContext, inbox: queue.Queue[Any]) -> None:
        super().__init__()
        self.ctx = ctx
        self.inbox = inbox

    def on_receive(self, message: Any) -> Any:
        match message:
            case "crash":
                raise RuntimeError("crashed on purpose")
            case "hibernate":
                self.hibernate()
                return None
            case "whoami":
                return (self.ctx.child_id, self.ctx.restarts)
            case _:
                self.inbox.put((self.ctx.child_id, self.ctx.restarts, message))
                return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def timers(clock: FakeClock) -> Iterator[TimerService]:
    service = TimerService(clock, name="sup-timers")
    yield service
    service.stop()


@pytest.fixture
def inbox() -> queue.Queue[Any]:
    return queue.Queue()


@pytest.fixture
def simple(
    make_sup: Callable[..., Supervisor], timers: TimerService, inbox: queue.Queue[Any]
) -> Supervisor:
    def start(ctx: StartContext) -> ActorRef[Any]:
        if ctx.child_id == "forbidden":
            raise ChildNotFoundError("forbidden is not a child")
        return Keeper.start(ctx, inbox)

    return make_sup([ChildSpec("keeper", start)], strategy="simple_one_for_one", timers=timers)


def delivered(inbox: queue.Queue[Any]) -> list[Any]:
    items = []
    while not inbox.empty():
        items.append(inbox.get_nowait())
    return items


# -- simple_one_for_one --------------------------------------------------------------------------


def test_simple_one_for_one_starts_children_from_its_template_by_id(simple: Supervisor) -> None:
    assert simple.which_children() == []
    first = simple.ensure_child("a")
    assert simple.ensure_child("a") is first
    assert call(first, "whoami") == ("a", 0)
    assert call(simple.ensure_child(("b", 2)), "whoami") == (("b", 2), 0)
    assert [row.id for row in simple.which_children()] == ["a", ("b", 2)]


def test_simple_one_for_one_children_are_unrecorded_while_dormant(simple: Supervisor) -> None:
    ref = simple.ensure_child("a")
    done, _ = exit_event(ref)
    call(ref, "hibernate")
    assert done.wait(WAIT)
    assert simple.which_children() == []
    woken = simple.ensure_child("a")
    assert woken is not ref
    assert call(woken, "whoami") == ("a", 0)


def test_simple_one_for_one_restarts_a_crashed_child_with_its_id(simple: Supervisor) -> None:
    ref = simple.ensure_child("a")
    done, _ = exit_event(ref)
    with pytest.raises(RuntimeError):
        call(ref, "crash")
    assert done.wait(WAIT)
    assert call(simple.ensure_child("a"), "whoami") == ("a", 1)


def test_simple_one_for_one_refusals(simple: Supervisor, rec: StartLog) -> None:
    with pytest.raises(ChildNotFoundError, match="forbidden"):
        simple.ensure_child("forbidden")
    assert simple.which_children() == []
    with pytest.raises(TypeError, match="ensure_child"):
        simple.start_child(rec.spec("x"))
    with pytest.raises(ChildNotFoundError):
        simple.terminate_child("never-started")
    simple.terminate_children(["never-started"])  # tolerated
    assert simple.alive


@pytest.mark.parametrize("count", [0, 2])
def test_simple_one_for_one_takes_exactly_one_template(rec: StartLog, count: int) -> None:
    with pytest.raises(ValueError, match="exactly one child spec"):
        Supervisor([rec.spec(i) for i in range(count)], strategy="simple_one_for_one")


# -- timers ------------------------------------------------------------------------------------


def test_a_timer_reaches_the_running_child(
    simple: Supervisor, clock: FakeClock, inbox: queue.Queue[Any]
) -> None:
    simple.ensure_child("a")
    simple.send_after("a", "tick", 5.0, "tick")
    assert simple.pending_timers("a") == 1
    clock.advance(4.9)
    assert delivered(inbox) == []
    clock.advance(0.1)
    assert delivered(inbox) == [("a", 0, "tick")]
    assert simple.pending_timers() == 0


def test_a_timer_survives_a_restart_of_the_child_and_reaches_its_successor(
    simple: Supervisor, clock: FakeClock, inbox: queue.Queue[Any]
) -> None:
    ref = simple.ensure_child("a")
    simple.send_after("a", "expiry", 10.0, "expired")
    done, _ = exit_event(ref)
    with pytest.raises(RuntimeError):
        call(ref, "crash")
    assert done.wait(WAIT)
    assert simple.pending_timers("a") == 1  # nobody re-armed it
    clock.advance(10.0)
    assert delivered(inbox) == [("a", 1, "expired")]


def test_a_timer_wakes_a_dormant_child(
    simple: Supervisor, clock: FakeClock, inbox: queue.Queue[Any]
) -> None:
    ref = simple.ensure_child("a")
    simple.send_after("a", "tick", 1.0, "wake up")
    done, _ = exit_event(ref)
    call(ref, "hibernate")
    assert done.wait(WAIT)
    clock.advance(1.0)
    assert delivered(inbox) == [("a", 0, "wake up")]


def test_arming_a_key_again_replaces_the_previous_timer(
    simple: Supervisor, clock: FakeClock, inbox: queue.Queue[Any], timers: TimerService
) -> None:
    simple.ensure_child("a")
    first = simple.send_after("a", "expiry", 5.0, "first")
    simple.send_after("a", "expiry", 8.0, "second")
    simple.send_after("a", ("permit", 1), 6.0, "permit")
    assert not first.active
    assert simple.pending_timers("a") == 2 and timers.pending == 2
    clock.advance(10.0)
    assert delivered(inbox) == [("a", 0, "permit"), ("a", 0, "second")]


def test_cancel_timer(simple: Supervisor, clock: FakeClock, inbox: queue.Queue[Any]) -> None:
    simple.ensure_child("a")
    simple.send_after("a", "expiry", 5.0, "never")
    assert simple.cancel_timer("a", "expiry") is True
    assert simple.cancel_timer("a", "expiry") is False
    clock.advance(6.0)
    assert delivered(inbox) == []


def test_terminating_a_child_cancels_its_timers_even_unrecorded_ones(
    simple: Supervisor, clock: FakeClock, inbox: queue.Queue[Any], timers: TimerService
) -> None:
    simple.ensure_child("a")
    simple.send_after("a", "expiry", 5.0, "never")
    simple.send_after("dormant", "expiry", 5.0, "never either")  # a child not running now
    simple.terminate_child("a")
    simple.terminate_children(["dormant"])
    assert simple.pending_timers() == 0 and timers.pending == 0
    clock.advance(6.0)
    assert delivered(inbox) == []


def test_stopping_the_supervisor_cancels_every_timer(
    make_sup: Callable[..., Supervisor], timers: TimerService, inbox: queue.Queue[Any]
) -> None:
    sup = make_sup(
        [ChildSpec("k", lambda ctx: Keeper.start(ctx, inbox))],
        strategy="simple_one_for_one", timers=timers,
    )
    sup.send_after("a", "t", 5.0, "x")
    sup.send_after("b", "t", 5.0, "y")
    sup.stop()
    assert timers.pending == 0


def test_send_after_needs_a_timer_service(make_sup: Callable[..., Supervisor]) -> None:
    sup = make_sup()
    with pytest.raises(RuntimeError, match="timers="):
        sup.send_after("a", "t", 1.0, "x")
