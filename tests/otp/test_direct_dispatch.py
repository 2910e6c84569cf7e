"""Direct dispatch: a call to an idle actor runs its handler on the caller's thread.

What must not change: one message at a time, FIFO per sender (tells and calls mixed), a crash
is a crash of the actor, BaseExceptions are contained, hibernation and stop still work, and a
handler that calls its own actor fails clearly instead of deadlocking.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from brama.otp import (
    HIBERNATED,
    Actor,
    ChildSpec,
    ContainedBaseException,
    Exit,
    NotHandledError,
    SelfCallError,
    Supervisor,
    call,
    monitor,
)


@pytest.fixture(autouse=True)
def _stop_all() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


class Probe(Actor):
    """Records which thread ran each message, and any overlap between two handlers."""

    def __init__(self, log: list[Any] | None = None) -> None:
        super().__init__()
        self.log: list[Any] = [] if log is None else log
        self.inside = 0
        self.overlaps = 0
        self.thread_ident = 0

    def on_start(self) -> None:
        self.thread_ident = threading.get_ident()

    def on_receive(self, message: Any) -> Any:
        self.inside += 1
        try:
            if self.inside > 1:
                self.overlaps += 1
            match message:
                case ("where",):
                    return threading.get_ident(), self.thread_ident
                case ("gate", gate):
                    gate.wait(5)
                    return "opened"
                case ("gate", gate, entered):
                    entered.set()
                    gate.wait(5)
                    return "opened"
                case ("log", item):
                    self.log.append(item)
                    return len(self.log)
                case ("slow", item):
                    threading.Event().wait(0.0005)
                    self.log.append(item)
                    return None
                case ("overlaps",):
                    return self.overlaps
                case ("gate-then-boom", gate, entered):
                    entered.set()
                    gate.wait(5)
                    raise RuntimeError("boom after the gate")
                case ("boom",):
                    raise RuntimeError("boom inline")
                case ("exit",):
                    raise SystemExit(1)
                case ("hibernate",):
                    self.hibernate()
                    return "zzz"
                case ("self",):
                    return call(self.actor_ref, ("where",), timeout=1)
                case _:
                    return super().on_receive(message)
        finally:
            self.inside -= 1


def test_a_call_to_an_idle_actor_runs_on_the_callers_thread() -> None:
    ref = Probe.start()
    runner, actor_thread = call(ref, ("where",))
    assert runner == threading.get_ident()
    assert runner != actor_thread


def test_a_call_to_a_busy_actor_is_queued_and_runs_on_the_actor_thread() -> None:
    ref = Probe.start()
    gate = threading.Event()
    ref.tell(("gate", gate))
    answers: queue.Queue[Any] = queue.Queue()
    caller = threading.Thread(target=lambda: answers.put(call(ref, ("where",), timeout=5)))
    caller.start()
    gate.set()
    runner, actor_thread = answers.get(timeout=5)
    caller.join(5)
    assert runner == actor_thread


def test_one_message_at_a_time_under_contention() -> None:
    ref = Probe.start()
    threads_n, per_thread = 8, 300
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        barrier.wait(5)
        try:
            for i in range(per_thread):
                if i % 3 == 0:
                    ref.tell(("slow", (n, i)))
                else:
                    call(ref, ("slow", (n, i)), timeout=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not errors
    assert call(ref, ("overlaps",), timeout=10) == 0
    log = call(ref, ("log", "end"), timeout=10)
    assert log == threads_n * per_thread + 1


def test_fifo_per_sender_mixing_tell_and_call() -> None:
    log: list[Any] = []
    ref = Probe.start(log)
    senders = 4

    def send(n: int) -> None:
        for i in range(200):
            if i % 2:
                ref.tell(("log", (n, i)))
            else:
                call(ref, ("log", (n, i)), timeout=10)

    workers = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    call(ref, ("log", "end"), timeout=10)
    for n in range(senders):
        mine = [i for (sender, i) in log[:-1] if sender == n]
        assert mine == list(range(200)), f"sender {n} out of order"


def test_a_crash_inline_is_a_crash_of_the_actor_and_its_supervisor_restarts_it() -> None:
    supervisor = Supervisor([ChildSpec.for_actor("probe", Probe)], max_restarts=3)
    try:
        first = supervisor.whereis_child("probe")
        assert first is not None
        exits: queue.Queue[Exit] = queue.Queue()
        monitor(first, exits.put)
        with pytest.raises(RuntimeError, match="boom inline"):
            call(first, ("boom",), timeout=5)
        assert not first.is_alive()
        assert isinstance(exits.get(timeout=5).reason, RuntimeError)
        second = supervisor.ensure_child("probe", timeout=5)
        assert second is not first
        assert call(second, ("log", "after"), timeout=5) == 1
    finally:
        supervisor.stop()


def test_a_base_exception_inline_is_contained_to_that_actor() -> None:
    bystander = Probe.start()
    ref = Probe.start()
    with pytest.raises(ContainedBaseException) as info:
        call(ref, ("exit",), timeout=5)
    assert isinstance(info.value.original, SystemExit)
    assert not ref.is_alive()
    assert bystander.is_alive()
    assert call(bystander, ("log", 1), timeout=5) == 1


def test_messages_queued_behind_an_inline_crash_are_answered_not_handled() -> None:
    ref = Probe.start()
    gate, entered = threading.Event(), threading.Event()
    crashed: queue.Queue[BaseException] = queue.Queue()

    def crash_inline() -> None:
        try:
            call(ref, ("gate-then-boom", gate, entered), timeout=5)
        except BaseException as exc:
            crashed.put(exc)

    holder = threading.Thread(target=crash_inline)
    holder.start()
    assert entered.wait(5)
    queued = ref.ask(("log", "queued"), block=False)
    gate.set()
    assert isinstance(crashed.get(timeout=5), RuntimeError)
    holder.join(5)
    with pytest.raises(NotHandledError):
        queued.get(timeout=5)
    with pytest.raises(NotHandledError):
        call(ref, ("log", "late"), timeout=5)


def test_hibernation_inline_ends_the_thread_and_a_later_call_is_not_handled() -> None:
    ref = Probe.start()
    exits: queue.Queue[Exit] = queue.Queue()
    monitor(ref, exits.put)
    assert call(ref, ("hibernate",), timeout=5) == "zzz"
    assert exits.get(timeout=5).reason == HIBERNATED
    with pytest.raises(NotHandledError):
        call(ref, ("where",), timeout=5)


def test_hibernated_child_wakes_through_its_supervisor() -> None:
    supervisor = Supervisor([ChildSpec.for_actor("probe", Probe)])
    try:
        ref = supervisor.whereis_child("probe")
        assert ref is not None
        assert call(ref, ("hibernate",), timeout=5) == "zzz"
        woken = supervisor.ensure_child("probe", timeout=5)
        assert woken is not ref
        runner, _ = call(woken, ("where",), timeout=5)
        assert runner == threading.get_ident()
    finally:
        supervisor.stop()


def test_stop_while_a_caller_runs_inline_waits_for_the_handler() -> None:
    ref = Probe.start()
    gate, entered = threading.Event(), threading.Event()
    answers: queue.Queue[Any] = queue.Queue()
    caller = threading.Thread(
        target=lambda: answers.put(call(ref, ("gate", gate, entered), timeout=5))
    )
    caller.start()
    assert entered.wait(5)
    stopping = ref.stop(block=False)
    assert ref.is_alive()  # the stop is queued behind the running handler
    gate.set()
    assert answers.get(timeout=5) == "opened"
    assert stopping.get(timeout=5) is True
    caller.join(5)
    assert not ref.is_alive()


def test_an_actor_calling_itself_fails_clearly_instead_of_deadlocking() -> None:
    ref = Probe.start()
    with pytest.raises(SelfCallError, match="called itself"):
        call(ref, ("self",), timeout=5)
    # the SelfCallError escaped the handler: that is a crash of the actor
    assert not ref.is_alive()

    queued = Probe.start()
    gate = threading.Event()
    queued.tell(("gate", gate))
    future = queued.ask(("self",), block=False)  # runs on the actor thread
    gate.set()
    with pytest.raises(SelfCallError):
        future.get(timeout=5)

