"""The OTP layer on its own: a supervised pool of named worker actors (no circuit breakers).

`brama.otp` is usable by any pykka application. Here:

- a `Supervisor` (one_for_one) starts three `Worker` actors and restarts one that crashes;
- each worker is registered by name in a `Registry` when it starts, so callers address
  "worker-1" through `registry.via(...)`, whichever incarnation currently holds the name;
- a restarted worker resumes from the state its predecessor published in its `StateSlot`;
- `monitor` tells us how an actor ended (Erlang's 'DOWN' message);
- workers publish "job_done" events on an `EventBus`; a mailbox subscription counts them;
- a `TimerService` delivers a job later (`send_after`), like `erlang:send_after`.

Run: python examples/otp_worker_pool.py
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pykka import ActorDeadError, ActorRef

from brama.otp import (
    Actor,
    ChildSpec,
    EventBus,
    Exit,
    Registry,
    StartContext,
    StateSlot,
    Supervisor,
    TimerService,
    monitor,
)

NAMES = ["worker-0", "worker-1", "worker-2"]


@dataclass(frozen=True)
class Square:
    """A job: square `n`."""

    n: int


@dataclass(frozen=True)
class Poison:
    """A job that makes the worker crash."""


@dataclass(frozen=True)
class JobDone:
    """Published on the bus by a worker after each job."""

    worker: str
    n: int
    result: int


class Worker(Actor):
    """Squares numbers; counts its jobs and publishes the count for its successor."""

    def __init__(self, name: str, slot: StateSlot, bus: EventBus) -> None:
        super().__init__()
        self.name = name
        self.slot = slot
        self.bus = bus
        self.jobs_done: int = slot.value or 0  # resume where the last incarnation stopped

    def on_receive(self, message: Any) -> Any:
        match message:
            case Square(n=n):
                self.jobs_done += 1
                self.slot.publish(self.jobs_done)
                self.bus.publish("job_done", JobDone(self.name, n, n * n))
                return n * n
            case Poison():
                raise RuntimeError(f"{self.name} choked on a poisoned job")
            case "jobs_done":
                return self.jobs_done
            case _:
                return super().on_receive(message)


def worker_spec(name: str, registry: Registry, bus: EventBus) -> ChildSpec:
    """How the supervisor (re)starts a worker: start it, then register it under its name."""

    def start(ctx: StartContext) -> ActorRef[Any]:
        ref = Worker.start(name, ctx.slot, bus)
        registry.register(name, ref)
        if ctx.restarts:
            print(f"  supervisor: restarted {name} (restart #{ctx.restarts}, "
                  f"resuming from {ctx.last_state} jobs done)")
        return ref

    return ChildSpec(name, start)


def ask_by_name(registry: Registry, name: str, message: Any, timeout: float = 5.0) -> Any:
    """Ask whoever holds `name`; while a worker is being restarted, the name is briefly free."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return registry.via(name).ask(message, timeout=timeout)
        except ActorDeadError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def on_exit(name: str) -> Callable[[Exit], None]:
    def report(exit_message: Exit) -> None:
        print(f"  monitor: {name} exited, reason={exit_message.reason!r}")

    return report


def main() -> None:
    logging.getLogger("pykka").setLevel(logging.CRITICAL)  # the monitor reports the crash
    logging.getLogger("brama.otp").setLevel(logging.CRITICAL)
    registry = Registry(name="pool-registry")
    bus = EventBus(name="pool-events")
    timers = TimerService(name="pool-timers")
    done = bus.subscribe(topics=["job_done"])  # a mailbox subscription
    pool = Supervisor([worker_spec(name, registry, bus) for name in NAMES],
                      strategy="one_for_one", max_restarts=3, max_seconds=5.0, name="pool")
    try:
        print(f"registered: {sorted(map(str, registry.names()))}")
        results = [ask_by_name(registry, NAMES[n % 3], Square(n)) for n in range(6)]
        print(f"squares of 0..5, round-robin over the pool: {results}")

        first = registry.whereis("worker-1")
        assert first is not None
        monitor(first, on_exit("worker-1"))
        print("sending a poisoned job to worker-1...")
        registry.via("worker-1").tell(Poison())

        print(f"worker-1 is found by name again: 7 * 7 = "
              f"{ask_by_name(registry, 'worker-1', Square(7))}")
        second = registry.whereis("worker-1")
        assert second is not None
        print(f"  a new actor holds the name: {first.actor_urn[-8:]} -> "
              f"{second.actor_urn[-8:]}, jobs done: "
              f"{ask_by_name(registry, 'worker-1', 'jobs_done')}")
        for child in pool.which_children():
            print(f"  child {child.id}: {child.status}, restarts={child.restarts}")

        print("a timer sends a job to worker-2 in 0.1 s...")
        timers.send_after(0.1, registry.via("worker-2"), Square(9))
        events = [done.get(timeout=2) for _ in range(8)]
        last = events[-1]
        print(f"bus: {len(events)} job_done events, the last from {last.worker}: "
              f"{last.n} * {last.n} = {last.result}")
    finally:
        timers.stop()
        pool.stop()
        bus.stop()
        registry.stop()


if __name__ == "__main__":
    main()
