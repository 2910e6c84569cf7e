"""Worker processes for the multi-process fleet tests: each runs one Brama system on the
test's Redis and obeys commands sent over a queue (spawned, or forked after a system was
made, as gunicorn --preload does). Replies come back on the worker's result queue, in order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import time
from typing import Any

Command = tuple[str, dict[str, Any]]


def serve(url: str, commands: Any, results: Any, system: Any = None) -> None:
    """The worker's loop (see the module docstring)."""
    from brama import Brama, EventType
    from tests.fleet.helpers import drain, subscribed

    permits: list[Any] = []
    subscription: Any = None
    while True:
        command, args = commands.get()
        try:
            reply: Any = None
            if command == "start":
                system = Brama(backend=url, namespace=args["namespace"],
                               **args.get("options", {}))
                reply = system.runtime.fleet.origin
            elif command == "origin":
                reply = (os.getpid(), system.runtime.fleet.origin)
            elif command == "register":
                system.register(args["identifier"], **args.get("options", {}))
                subscribed(system)
                subscription = system.subscribe(
                    events=[EventType(e) for e in args.get("events", ["state_change"])])
            elif command == "trip":  # report failures until this system sees it open
                reply = time.time()
                while system.available(args["identifier"]):
                    system.failure(args["identifier"], reason="down")
            elif command == "watch":  # poll every 0.5 ms until the circuit refuses calls
                results.put("watching")
                while system.available(args["identifier"]):
                    time.sleep(0.0005)
                reply = time.time()
            elif command == "call":
                reply = getattr(system, args["method"])(*args.get("args", ()),
                                                         **args.get("kwargs", {}))
            elif command == "acquire":
                permit = system.acquire(args["identifier"])
                if permit is not None:
                    permits.append(permit)
                reply = None if permit is None else permit.ticket
            elif command == "end":
                getattr(permits.pop(0), args["how"])()
            elif command == "events":
                reply = [(e.event.value, dict(e.data)) for e in drain(subscription, 0.2)]
            elif command == "exit":
                if system is not None:
                    system.stop()
                results.put(None)
                return
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as exc:  # the test sees it as the reply
            reply = exc
        results.put(reply)


class Worker:
    """One worker process and its two queues."""

    def __init__(self, url: str, context: Any = None) -> None:
        context = context or multiprocessing.get_context("spawn")
        self.commands = context.Queue()
        self.results = context.Queue()
        self.process = context.Process(target=serve, args=(url, self.commands, self.results),
                                       daemon=True)
        self.process.start()

    def send(self, command: str, **args: Any) -> None:
        self.commands.put((command, args))

    def reply(self, timeout: float = 30.0) -> Any:
        try:
            value = self.results.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"worker {self.process.pid} did not answer in time") from None
        if isinstance(value, Exception):
            raise value
        return value

    def ask(self, command: str, timeout: float = 30.0, **args: Any) -> Any:
        self.send(command, **args)
        return self.reply(timeout)

    def kill(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(5)

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):  # it may be stuck: killed below
                self.ask("exit", timeout=10)
        self.process.join(10)
        if self.process.is_alive():
            self.kill()
