"""After os.fork(), the OTP layer in the child: no inherited actor pretends to be alive, no
call hangs, and new actors and timers work."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from brama.otp import Actor, NotHandledError, Registry, TimerService, call

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        return message


def in_child(body: Callable[[], str], timeout: float = 20.0) -> str:
    """Run `body` in a forked child; return what it returned (or the error it raised)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            try:
                result = body()
            except BaseException as exc:
                result = f"error: {exc!r}"
            os.write(write, result.encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks: list[bytes] = []
    done = threading.Event()

    def reader() -> None:
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    finished = done.wait(timeout)
    if not finished:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.close(read)
    assert finished, "the child hung"
    return b"".join(chunks).decode()


def test_inherited_actors_are_dead_in_the_child_and_calls_do_not_hang() -> None:
    ref = Echo.start()
    registry = Registry(name="forked-registry")
    registry.register("echo", ref)
    busy = threading.Event()
    held = threading.Event()

    class Holder(Actor):
        def on_receive(self, message: Any) -> Any:
            held.set()
            busy.wait(30)  # holds its lock and its thread while the parent forks
            return None

    holder = Holder.start()
    holder.tell("hold")
    assert held.wait(5)
    try:

        def child() -> str:
            results = []
            for target in (ref, holder):
                try:
                    call(target, "hello", timeout=5)
                    results.append("answered")
                except NotHandledError:
                    results.append("dead")
            results.append(str(ref.is_alive()))
            results.append(str(registry.whereis("echo")))
            fresh = Echo.start()
            results.append(call(fresh, "fresh"))
            fresh.stop()
            return ",".join(results)

        assert in_child(child) == "dead,dead,False,None,fresh"
        assert call(ref, "parent unaffected", timeout=5) == "parent unaffected"
        assert registry.whereis("echo") is ref
    finally:
        busy.set()
        holder.stop()
        ref.stop()
        registry.stop()


def test_a_timer_service_keeps_working_in_the_child() -> None:
    with TimerService(name="forked-timers") as service:
        got: queue.Queue[Any] = queue.Queue()

        class Sink:
            def tell(self, message: Any) -> None:
                got.put(message)

        service.send_after(0.0, Sink(), "before fork")
        assert got.get(timeout=5) == "before fork"

        def child() -> str:
            service.send_after(0.01, Sink(), "in the child")
            return str(got.get(timeout=5))

        assert in_child(child) == "in the child"
