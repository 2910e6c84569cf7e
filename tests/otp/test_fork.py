"""After os.fork(), the OTP layer in the child: no inherited actor pretends to be alive, no
call hangs, and new actors and timers work."""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

import pytest

from brama.otp import Actor, NotHandledError, Registry, TimerService, call
from tests.helpers import in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        return message


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
