"""Children for the supervisor tests: a worker that records its starts and stops, and friends."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from types import TracebackType
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRef

from brama.otp import Actor, ChildInfo, ChildSpec, Exit, StartContext, Supervisor, monitor
from tests.helpers import WAIT

__all__ = [
    "Echo",
    "Plain",
    "StartLog",
    "Worker",
    "crash_and_wait_restart",
    "exit_event",
    "info",
    "refs",
    "urn",
]


class StartLog:
    """Thread-safe record of every start (child_id, restarts, last_state), stop and ref."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.starts: list[tuple[Hashable, int, Any]] = []
        self.stops: list[Hashable] = []
        self.refs: dict[Hashable, list[ActorRef[Any]]] = {}
        self.handled: list[tuple[Hashable, Any]] = []
        # gates: a child blocks in on_failure / on_stop until its event is set
        self.failure_gates: dict[Hashable, threading.Event] = {}
        self.stop_gates: dict[Hashable, threading.Event] = {}

    def start(self, ctx: StartContext) -> ActorRef[Any]:
        ref = Worker.start(ctx, self)
        with self.cond:
            self.starts.append((ctx.child_id, ctx.restarts, ctx.last_state))
            self.refs.setdefault(ctx.child_id, []).append(ref)
            self.cond.notify_all()
        return ref

    def spec(self, child_id: Hashable, restart: Any = "permanent", **kw: Any) -> ChildSpec:
        return ChildSpec(child_id, self.start, restart=restart, **kw)

    def wait_starts(self, n: int, timeout: float = WAIT) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.starts) >= n, timeout)
        assert ok, f"expected {n} starts, got {self.starts}"

    def note(self, kind: str, child_id: Hashable, message: Any = None) -> None:
        with self.cond:
            if kind == "stop":
                self.stops.append(child_id)
            else:
                self.handled.append((child_id, message))
            self.cond.notify_all()

    def wait_stops(self, n: int, timeout: float = WAIT) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.stops) >= n, timeout)
        assert ok, f"expected {n} stops, got {self.stops}"

    def latest(self, child_id: Hashable) -> ActorRef[Any]:
        with self.cond:
            return self.refs[child_id][-1]


class Worker(Actor):
    """Answers "ping"; crashes on "crash"; stops on "stop"; raises SystemExit on "sysexit"."""

    def __init__(self, ctx: StartContext, rec: StartLog) -> None:
        super().__init__()
        self.ctx = ctx
        self.rec = rec

    def on_receive(self, message: Any) -> Any:
        self.rec.note("handled", self.ctx.child_id, message)
        match message:
            case "ping":
                return "pong"
            case "crash":
                raise RuntimeError(f"{self.ctx.child_id} crashed on purpose")
            case "stop":
                self.stop()
                return None
            case "sysexit":
                raise SystemExit(3)
            case "hibernate":
                self.hibernate()
                return "hibernating"
            case ("publish", value):
                self.ctx.slot.publish(value)
                return value
            case "last_state":
                return self.ctx.last_state
            case "restarts":
                return self.ctx.restarts
            case "raise_dead":
                raise ActorDeadError("raised by the handler itself")
        return super().on_receive(message)

    def on_stop(self) -> None:
        self.rec.note("stop", self.ctx.child_id)
        gate = self.rec.stop_gates.get(self.ctx.child_id)
        if gate is not None:
            gate.wait(WAIT)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gate = self.rec.failure_gates.get(self.ctx.child_id)
        if gate is not None:
            gate.wait(WAIT)


class Plain(pykka.ThreadingActor):
    """An ordinary pykka actor, unrelated to any supervisor."""

    use_daemon_thread = True

    def on_receive(self, message: Any) -> Any:
        return "plain-pong"


class Echo(Actor):
    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def on_receive(self, message: Any) -> Any:
        return f"{self.prefix}{message}"


def info(sup: Supervisor, child_id: Hashable) -> ChildInfo:
    rows = [row for row in sup.which_children() if row.id == child_id]
    assert len(rows) == 1, sup.which_children()
    return rows[0]


def refs(sup: Supervisor) -> dict[Hashable, ActorRef[Any] | None]:
    return {row.id: row.ref for row in sup.which_children()}


def urn(ref: ActorRef[Any] | None) -> str:
    assert ref is not None
    return ref.actor_urn


def exit_event(ref: ActorRef[Any]) -> tuple[threading.Event, list[Exit]]:
    """Monitor `ref` ourselves; registered after the supervisor, so the supervisor has the Exit in
    its inbox by the time the event is set."""
    done = threading.Event()
    got: list[Exit] = []

    def watcher(message: Exit) -> None:
        got.append(message)
        done.set()

    monitor(ref, watcher)
    return done, got


def crash_and_wait_restart(rec: StartLog, child_id: Hashable, message: str = "crash") -> None:
    n = len(rec.starts)
    rec.latest(child_id).tell(message)
    rec.wait_starts(n + 1)
