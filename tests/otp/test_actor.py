"""The OTP base actor: exit reasons, monitors, contained BaseExceptions, and `call`."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from brama.otp import (
    HIBERNATED,
    NORMAL,
    Actor,
    ContainedBaseException,
    ErrorReply,
    Exit,
    StartError,
    call,
    demonitor,
    monitor,
)


class Worker(Actor):
    def __init__(self, started: threading.Event | None = None) -> None:
        super().__init__()
        self.started = started

    def on_receive(self, message: Any) -> Any:
        match message:
            case "ping":
                return "pong"
            case "boom":
                raise RuntimeError("boom")
            case "exit":
                raise SystemExit(3)
            case "interrupt":
                raise KeyboardInterrupt
            case "hibernate":
                self.hibernate()
                return "zzz"
            case _:
                return super().on_receive(message)


class BadStart(Actor):
    def on_start(self) -> None:
        raise SystemExit("in on_start")


class BadFailure(Actor):
    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("crash")

    def on_failure(self, *args: Any) -> None:
        raise SystemExit("in on_failure")


class Plain(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


@pytest.fixture(autouse=True)
def _stop_all() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def _exits() -> tuple[queue.Queue[Exit], Any]:
    box: queue.Queue[Exit] = queue.Queue()
    return box, box.put


def test_monitor_reports_normal_stop() -> None:
    ref = Worker.start()
    box, watcher = _exits()
    monitor(ref, watcher)
    ref.stop()
    exit_ = box.get(timeout=5)
    assert exit_.ref is ref
    assert exit_.reason == NORMAL
    assert not exit_.abnormal


def test_monitor_reports_the_exception_of_a_crash_in_tell() -> None:
    ref = Worker.start()
    box, watcher = _exits()
    monitor(ref, watcher)
    ref.tell("boom")
    exit_ = box.get(timeout=5)
    assert isinstance(exit_.reason, RuntimeError)
    assert exit_.abnormal


def test_a_crash_in_a_call_kills_the_actor_and_the_caller_gets_the_exception() -> None:
    """OTP: an exception escaping handle_call terminates the server; the caller sees it."""
    ref = Worker.start()
    box, watcher = _exits()
    monitor(ref, watcher)
    with pytest.raises(RuntimeError, match="boom"):
        call(ref, "boom", timeout=5)
    exit_ = box.get(timeout=5)
    assert isinstance(exit_.reason, RuntimeError)
    assert not ref.is_alive()


def test_a_crash_in_a_queued_ask_kills_the_actor_too() -> None:
    ref = Worker.start()
    box, watcher = _exits()
    monitor(ref, watcher)
    with pytest.raises(RuntimeError, match="boom"):
        ref.ask("boom", timeout=5)
    assert isinstance(box.get(timeout=5).reason, RuntimeError)


def test_an_error_reply_is_raised_in_the_caller_and_the_actor_lives() -> None:
    class Refuser(Actor):
        def on_receive(self, message: Any) -> Any:
            if message == "refuse":
                return ErrorReply(LookupError("no such thing"))
            return "ok"

    ref = Refuser.start()
    with pytest.raises(LookupError, match="no such thing"):
        call(ref, "refuse", timeout=5)
    with pytest.raises(LookupError, match="no such thing"):
        ref.ask("refuse", timeout=5)
    assert call(ref, "again", timeout=5) == "ok"


@pytest.mark.parametrize("message", ["exit", "interrupt"])
def test_base_exception_fails_only_that_actor(message: str) -> None:
    bystander = Plain.start()
    ref = Worker.start()
    box, watcher = _exits()
    monitor(ref, watcher)
    ref.tell(message)
    exit_ = box.get(timeout=5)
    assert isinstance(exit_.reason, ContainedBaseException)
    assert isinstance(exit_.reason.original, (SystemExit, KeyboardInterrupt))
    assert bystander.is_alive()
    assert bystander.ask("still here") == "still here"


def test_base_exception_in_a_call_reaches_caller_wrapped_and_kills_only_that_actor() -> None:
    bystander = Plain.start()
    ref = Worker.start()
    with pytest.raises(ContainedBaseException) as info:
        call(ref, "exit", timeout=5)
    assert isinstance(info.value.original, SystemExit)
    assert not ref.is_alive()
    assert bystander.ask("still here") == "still here"


def test_start_waits_for_on_start_and_raises_if_it_failed() -> None:
    """proc_lib's init_ack: start returns after init succeeded, an error if it did not."""
    bystander = Plain.start()
    with pytest.raises(StartError, match="BadStart failed to start") as info:
        BadStart.start()
    assert isinstance(info.value.__cause__, ContainedBaseException)
    assert bystander.is_alive()

    order: list[str] = []

    class Slow(Actor):
        def on_start(self) -> None:
            threading.Event().wait(0.1)
            order.append("on_start")

    Slow.start()
    order.append("start returned")
    assert order == ["on_start", "start returned"]


def test_base_exception_in_on_failure_still_answers_queued_asks() -> None:
    ref = BadFailure.start()
    box, watcher = _exits()
    monitor(ref, watcher)
    ref.tell("crash")
    with pytest.raises(pykka.ActorDeadError):
        call(ref, "queued", timeout=5)
    assert box.get(timeout=5).abnormal


def test_monitor_of_a_dead_actor_delivers_at_once() -> None:
    ref = Worker.start()
    ref.stop()
    box, watcher = _exits()
    monitor(ref, watcher)
    assert box.get(timeout=5).ref is ref


def test_monitor_with_an_actor_watcher_sends_exit_message() -> None:
    class Watcher(Actor):
        def __init__(self, box: queue.Queue[Any]) -> None:
            super().__init__()
            self.box = box

        def on_receive(self, message: Any) -> Any:
            self.box.put(message)

    box: queue.Queue[Any] = queue.Queue()
    watcher = Watcher.start(box)
    ref = Worker.start()
    monitor(ref, watcher)
    ref.stop()
    message = box.get(timeout=5)
    assert isinstance(message, Exit)
    assert message.ref is ref


def test_demonitor_stops_notifications_and_handles_are_distinct() -> None:
    ref = Worker.start()
    box, watcher = _exits()
    first = monitor(ref, watcher)
    second = monitor(ref, watcher)
    assert first != second
    demonitor(ref, first)
    ref.stop()
    assert box.get(timeout=5).ref is ref
    with pytest.raises(queue.Empty):
        box.get(timeout=0.1)


def test_monitor_rejects_plain_pykka_actors() -> None:
    ref = Plain.start()
    with pytest.raises(TypeError, match=r"brama\.otp\.Actor"):
        monitor(ref, lambda _exit: None)


def test_hibernate_ends_the_thread_with_reason_hibernated() -> None:
    ref = Worker.start()
    box, watcher = _exits()
    monitor(ref, watcher)
    assert call(ref, "hibernate", timeout=5) == "zzz"
    assert box.get(timeout=5).reason == HIBERNATED
    assert not ref.is_alive()


def test_call_to_a_busy_actor_times_out_and_is_answered_later() -> None:
    """The timeout bounds the wait for a busy actor (a call run directly cannot time out)."""

    class Slow(Actor):
        def on_receive(self, message: Any) -> Any:
            if isinstance(message, threading.Event):
                message.wait(5)
            return "done"

    ref = Slow.start()
    gate = threading.Event()
    ref.tell(gate)  # keeps the actor busy
    with pytest.raises(pykka.Timeout):
        call(ref, "queued", timeout=0.1)
    gate.set()
    assert call(ref, "next", timeout=5) == "done"


def test_call_raises_actor_dead_for_a_dead_actor() -> None:
    ref = Worker.start()
    ref.stop()
    with pytest.raises(pykka.ActorDeadError):
        call(ref, "ping", timeout=5)


def test_call_does_not_hang_when_the_actor_dies_with_the_message_queued() -> None:
    class Blocker(Actor):
        def on_receive(self, message: Any) -> Any:
            if isinstance(message, threading.Event):
                message.wait(5)
                self.hibernate()
            return "late"

    ref = Blocker.start()
    gate = threading.Event()
    ref.tell(gate)
    future_result: queue.Queue[Any] = queue.Queue()

    def caller() -> None:
        try:
            future_result.put(call(ref, "queued behind the stop"))
        except pykka.ActorDeadError as exc:
            future_result.put(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    gate.set()
    assert isinstance(future_result.get(timeout=5), pykka.ActorDeadError)
    thread.join(5)


def test_daemon_threads() -> None:
    assert Actor.use_daemon_thread is True


def test_call_waits_for_a_handler_that_hibernated_and_is_still_running() -> None:
    class LateAnswer(Actor):
        def on_receive(self, message: Any) -> Any:
            self.hibernate()
            threading.Event().wait(0.3)  # keeps working after the stop flag is set
            return "answer"

    ref = LateAnswer.start()
    assert call(ref, "go", timeout=5) == "answer"
