"""Issue 13, events (the other items are in tests/test_ergonomics.py and
tests/test_ergonomics_options.py):

5. asyncio subscriptions on a `Brama`: an `async def` handler awaited on the subscribing loop
   in event order, the TypeError without a loop, `async for` and `await sub.aget()`;
8. a pykka subscriber actor is the application's: stopped, the interpreter exits; forgotten,
   it keeps the interpreter alive, as docs/api.md says (measured in subprocesses).
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import brama
from brama import Brama, CircuitState, EventType
from brama.testing import flush_events
from tests.helpers import WAIT, drain

CLOSED = CircuitState.CLOSED
ROOT = Path(__file__).resolve().parent.parent


# === 5. asyncio subscriptions ===============================================================


def test_an_async_handler_runs_on_the_subscribing_loop_in_event_order(
    brama_system: Brama,
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.current_thread()
        seen: list[tuple[EventType, Any]] = []
        where: set[tuple[asyncio.AbstractEventLoop, threading.Thread]] = set()

        async def on_event(event: brama.Event) -> None:
            where.add((asyncio.get_running_loop(), threading.current_thread()))
            await asyncio.sleep(0)  # a handler that awaits is not overtaken by the next event
            seen.append((event.event, event.data.get("reason")))

        mailbox = brama_system.subscribe(connection="db")
        brama_system.subscribe(handler=on_event, connection="db")
        brama_system.register("db", max_attempts=3)
        for n in range(3):
            brama_system.failure("db", reason=f"r{n}")  # the third one opens the circuit
        brama_system.reset_expiry("db")
        brama_system.success("db")
        flush_events(system=brama_system)
        expected = [(e.event, e.data.get("reason")) for e in drain(mailbox)]
        assert len(expected) >= 12, expected
        while len(seen) < len(expected):
            await asyncio.sleep(0.005)
        assert seen == expected
        assert where == {(loop, loop_thread)}

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_an_object_with_an_async_handle_event_is_awaited_on_the_loop(
    brama_system: Brama,
) -> None:
    class Alerts:
        def __init__(self) -> None:
            self.opened: asyncio.Queue[str] = asyncio.Queue()

        async def handle_event(self, event: brama.Event) -> None:
            await self.opened.put(event.connection)

    async def main() -> None:
        alerts = Alerts()
        brama_system.subscribe(handler=alerts, events=[EventType.CIRCUIT_OPENED])
        brama_system.register("db", max_attempts=1)
        brama_system.failure("db")
        assert await asyncio.wait_for(alerts.opened.get(), WAIT) == "db"

    asyncio.run(main())


def test_an_async_handler_without_a_running_loop_is_a_type_error_saying_why(
    brama_system: Brama,
) -> None:
    async def on_event(event: brama.Event) -> None:
        pass

    class Listener:
        async def handle_event(self, event: brama.Event) -> None:
            pass

    for handler in (on_event, Listener()):
        with pytest.raises(TypeError) as info:
            brama_system.subscribe(handler=handler)
        message = str(info.value)
        assert message.startswith(f"handler {handler!r} is async: it is awaited on the event "
                                  "loop it was subscribed from, and this thread has no "
                                  "running event loop."), message
        assert "asyncio.run()" in message and "await subscription.aget()" in message
        assert "target" not in message  # the bus's word, not the user's
    assert brama_system.register("db").state is CLOSED  # nothing was half subscribed


def test_a_subscription_is_read_with_async_for_and_aget(brama_system: Brama) -> None:
    async def main() -> None:
        subscription = brama_system.subscribe(events=[EventType.FAILURE])
        with pytest.raises(queue.Empty):
            await subscription.aget(timeout=0.05)
        brama_system.register("db")
        brama_system.failure("db", reason="first")
        first = await subscription.aget(timeout=WAIT)
        assert (first.event, first.data["reason"]) == (EventType.FAILURE, "first")
        brama_system.failure("db", reason="second")
        brama_system.failure("db", reason="third")
        flush_events(system=brama_system)
        subscription.close()  # what was delivered is still read, then the loop ends
        reasons = [event.data["reason"] async for event in subscription]
        assert reasons == ["second", "third"]
        with pytest.raises(queue.Empty):
            await subscription.aget(timeout=0.05)

    asyncio.run(asyncio.wait_for(main(), WAIT * 2))


def test_aget_waits_without_blocking_the_loop(brama_system: Brama) -> None:
    async def main() -> None:
        subscription = brama_system.subscribe(events=[EventType.REGISTRATION])
        reader = asyncio.ensure_future(subscription.aget(timeout=WAIT))
        await asyncio.sleep(0.01)
        assert not reader.done()
        brama_system.register("late")  # from the loop's own thread: the loop is not blocked
        event = await reader
        assert event.connection == "late"

    asyncio.run(main())


# === 8. a pykka subscriber actor at interpreter exit ========================================

SUBSCRIBER_SCRIPT = """
import sys

import pykka

import brama
from brama.testing import flush_events


class Alerts(pykka.ThreadingActor):
    def on_receive(self, message):
        if isinstance(message, brama.Event):
            print("opened", message.connection, flush=True)
        return "synced"


ref = Alerts.start()
brama.subscribe(actor=ref, events=["circuit_opened"])
brama.register("db", max_attempts=1)
brama.failure("db")
flush_events()
assert ref.ask("sync") == "synced"  # the actor has handled every event before it
if sys.argv[1] == "stop":
    ref.stop()
elif sys.argv[1] == "stop_all":
    brama.shutdown()  # first: stop_all() would stop Brama's own actors under its supervisor
    pykka.ActorRegistry.stop_all()
print("main done", flush=True)
"""


def run_script(mode: str, grace: float) -> tuple[int | None, list[str]]:
    """Run the subscriber script until it prints its last line, then give it `grace` seconds
    to exit: its exit code (None: still running, then killed) and its output lines."""
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen([sys.executable, "-c", SUBSCRIBER_SCRIPT, mode], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: [lines.put(line.rstrip()) for line in stdout],
                         daemon=True).start()
        output: list[str] = []
        try:
            while "main done" not in output:
                output.append(lines.get(timeout=30))
        except queue.Empty:
            process.kill()
            pytest.fail(f"the script did not get to its end: {output}")
        try:
            code: int | None = process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            code = None
        process.kill()
        process.wait()
    while True:  # what it printed after its last line (at exit), once the pipe is closed
        try:
            output.append(lines.get(timeout=1))
        except queue.Empty:
            return code, output


@pytest.mark.parametrize("mode", ["stop", "stop_all"])
def test_a_subscriber_actor_the_application_stops_lets_the_interpreter_exit(mode: str) -> None:
    code, output = run_script(mode, grace=WAIT * 2)
    assert (code, output) == (0, ["opened db", "main done"])  # and nothing logged at exit


def test_a_forgotten_subscriber_actor_keeps_the_interpreter_alive_as_the_docs_say() -> None:
    """docs/api.md: a pykka subscriber actor is the application's; Brama never stops it and,
    like any live pykka actor (pykka 4 starts actors on non-daemon threads), it keeps the
    interpreter running at exit. Measured: the script's main thread ends, and seconds later
    the process is still there (the same script stopping its actor exits at once, above)."""
    code, output = run_script("forget", grace=3.0)
    assert output == ["opened db", "main done"]
    assert code is None, f"the interpreter exited ({code}): docs/api.md needs updating"


def test_stopping_brama_leaves_a_subscriber_actor_running(brama_system: Brama) -> None:
    import pykka

    class Box(pykka.ThreadingActor):
        use_daemon_thread = True

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def on_receive(self, message: Any) -> Any:
            if message == "seen":
                return list(self.seen)
            self.seen.append(message.event.value)
            return None

    ref = Box.start()
    try:
        brama_system.subscribe(actor=ref, events=[EventType.CIRCUIT_OPENED])
        brama_system.register("db", max_attempts=1)
        brama_system.failure("db")
        flush_events(system=brama_system)
        assert ref.ask("seen", timeout=WAIT) == ["circuit_opened"]
        brama_system.stop()
        assert ref.is_alive()  # the actor is the application's: Brama never stops it
    finally:
        ref.stop()
