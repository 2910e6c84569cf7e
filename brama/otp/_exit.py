"""How actors end: exit reasons, `Exit` messages, monitors, and the errors a call can raise.

Each `brama.otp.Actor` has a `Core`, reachable from its `ActorRef` through the actor's
`Inbox` (pykka's public `ref.actor_inbox`), that outlives the actor: it holds how the actor
ended (for monitors that come late), its watchers, and the lock and counters of direct
dispatch. After `os.fork()` every inherited core is marked dead in the
child (no thread survived the fork), and pykka's registry is rid of the inherited actors.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pykka
from pykka import ActorDeadError, ActorRef

from brama.otp._log import get_logger, safe_repr

__all__ = [
    "HIBERNATED",
    "NORMAL",
    "SHUTDOWN",
    "ContainedBaseException",
    "ErrorReply",
    "Exit",
    "ExitReason",
    "NotHandledError",
    "SelfCallError",
    "StartError",
    "demonitor",
    "exit_reason",
    "monitor",
    "monitor_count",
    "set_exit_reason",
]

NORMAL: Final = "normal"
"""Exit reason of an actor that stopped on its own or was stopped by `ref.stop()`."""
SHUTDOWN: Final = "shutdown"
"""Exit reason of an actor stopped by its supervisor, or of a supervisor that gave up."""
HIBERNATED: Final = "hibernated"
"""Exit reason of an actor that released its thread through `Actor.hibernate()`."""

ExitReason = str | BaseException
"""`NORMAL`, `SHUTDOWN`, `HIBERNATED`, or the exception that killed the actor."""

_log = "brama.otp.actor"


@dataclass(frozen=True)
class Exit:
    """Sent to every monitor of an actor when its thread ends (Erlang's `'DOWN'` message).

    `cause` explains a `SHUTDOWN` that was not asked for (a supervisor past its restart
    intensity exits with `SHUTDOWN`, as in OTP, and names the reason here).
    """

    ref: ActorRef[Any]
    reason: ExitReason
    cause: BaseException | None = None

    @property
    def abnormal(self) -> bool:
        """True when the actor died of an exception rather than stopping."""
        return isinstance(self.reason, BaseException)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A handler's answer that makes `call` raise `error` in the caller, the actor living on.

    OTP's `{reply, {error, Reason}, State}`: an expected refusal (a name already taken, say) is
    an answer, not a crash. Any exception that escapes a handler is a crash of the actor.
    """

    error: BaseException


class ContainedBaseException(Exception):
    """A `BaseException` (SystemExit, KeyboardInterrupt, ...) caught inside an actor.

    pykka answers a `BaseException` in any actor by stopping every actor in the process; wrapped
    in this ordinary exception it only fails the actor (or the call) that raised it.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__} raised inside an actor: {original!r}")
        self.original = original


class StartError(Exception):
    """An actor (or a supervisor's child) failed to start; `__cause__` is why."""


class NotHandledError(ActorDeadError):
    """The actor stopped before handling the message: it was not handled at all (so an
    `Address` may safely send it to the actor's successor)."""


class SelfCallError(RuntimeError):
    """An actor's handler called the same actor: that call could never be answered."""


Watcher = ActorRef[Any] | Callable[[Exit], None]
_handles = itertools.count(1)
_cores: weakref.WeakSet[Core] = weakref.WeakSet()


class Core:
    """An actor's bookkeeping, shared by the actor and its `ActorRef`, outliving the actor.

    pykka refs hold their actor only weakly; the core holds it strongly while it lives (for
    direct dispatch) and lets go when it dies, keeping how it ended for late monitors.
    """

    __slots__ = (
        "__weakref__",
        "actor",
        "cause",
        "done",
        "exit",
        "lock",
        "mutex",
        "owner",
        "pending",
        "reason",
        "run",
        "start_error",
        "started",
        "thread",
        "watchers",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards watchers and exit
        self.watchers: dict[int, Watcher] = {}
        self.exit: Exit | None = None
        self.reason: ExitReason = NORMAL
        self.cause: BaseException | None = None
        self.done = threading.Event()  # the thread ended and every queued call was answered
        self.started = threading.Event()  # on_start finished (or failed)
        self.start_error: BaseException | None = None
        self.mutex = threading.Lock()  # guards the writes of pending
        self.pending = 0  # messages put in the inbox whose handler has not finished
        self.run = threading.Lock()  # held while a handler runs, on whatever thread
        self.owner = 0  # ident of the thread running a handler, 0 when none
        self.actor: Any = None  # the Actor while it lives
        self.thread: threading.Thread | None = None
        _cores.add(self)

    def reinit_after_fork(self) -> None:
        """In a forked child: the actor's thread is gone; mark it dead without waiting on
        locks that another thread of the parent may have held at fork time."""
        for name in ("lock", "mutex", "run"):
            setattr(self, name, threading.Lock())
        for event in (self.done, self.started):
            event._at_fork_reinit()  # type: ignore[attr-defined]
            event.set()
        self.watchers = {}
        self.owner = 0
        actor, self.actor = self.actor, None
        if actor is not None:
            actor.actor_stopped._at_fork_reinit()
            actor.actor_stopped.set()


class Inbox(queue.Queue[Any]):
    """A `brama.otp.Actor`'s inbox: it carries the actor's `Core`, and counts what is queued
    so that a call can tell the actor is idle."""

    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        core = self.core
        with core.mutex:
            core.pending += 1
        super().put(item, block, timeout)


def core_of(ref: ActorRef[Any]) -> Core | None:
    """The core of the `brama.otp.Actor` behind `ref`; None for a plain pykka actor."""
    inbox = ref.actor_inbox
    return inbox.core if isinstance(inbox, Inbox) else None


def exit_reason(ref: ActorRef[Any]) -> ExitReason | None:
    """Why the actor behind `ref` stopped (or is stopping); None for a plain pykka actor."""
    core = core_of(ref)
    return None if core is None else core.reason


def set_exit_reason(
    ref: ActorRef[Any], reason: ExitReason, cause: BaseException | None = None
) -> None:
    """Record, before stopping it, why an actor is being stopped (e.g. `SHUTDOWN`)."""
    core = core_of(ref)
    if core is not None:
        core.reason = reason
        core.cause = cause


def deliver_exit(watcher: Watcher, exit_message: Exit) -> None:
    if isinstance(watcher, ActorRef):
        try:  # noqa: SIM105 - the watcher may be gone; nothing else to do then
            watcher.tell(exit_message)
        except ActorDeadError:
            pass
    else:
        try:
            watcher(exit_message)
        except BaseException as exc:  # a watcher's bug must not kill the dying actor's thread
            get_logger(_log).error("exit_watcher_raised", watcher=safe_repr(watcher), exc_info=exc)


def monitor(ref: ActorRef[Any], watcher: Watcher) -> int:
    """Ask to be told when the actor behind `ref` exits; returns a handle for `demonitor`.

    `watcher` is an `ActorRef` (sent an `Exit` with `tell`) or a callable (called with the `Exit`
    in the dying actor's thread; keep it short). If the actor is already gone the `Exit` is
    delivered at once, with its real reason. Only `brama.otp.Actor`s can be monitored.
    """
    core = core_of(ref)
    if core is None:
        actor = ref._actor_weakref()
        kind = "a collected actor" if actor is None else type(actor).__name__
        raise TypeError(f"monitor: ref must point to a brama.otp.Actor, got {kind}")
    handle = next(_handles)
    with core.lock:
        done = core.exit
        if done is None:
            core.watchers[handle] = watcher
            return handle
    deliver_exit(watcher, done)
    return handle


def monitor_count(ref: ActorRef[Any]) -> int:
    """How many monitors watch the actor behind `ref` now (0 once it exited)."""
    core = core_of(ref)
    if core is None:
        return 0
    with core.lock:
        return len(core.watchers)


def demonitor(ref: ActorRef[Any], handle: int) -> None:
    """Stop monitoring; harmless if the actor is gone or the handle unknown."""
    core = core_of(ref)
    if core is not None:
        with core.lock:
            core.watchers.pop(handle, None)


def _forget_inherited_actors() -> None:
    """After `os.fork()`, in the child: no actor thread survived. Every `brama.otp.Actor`
    inherited from the parent is marked dead (calls to it raise `NotHandledError` at once)
    and dropped from pykka's registry, whose lock another thread may have held at fork."""
    pykka.ActorRegistry._actor_refs_lock = threading.RLock()
    refs = pykka.ActorRegistry._actor_refs
    refs[:] = [ref for ref in refs if core_of(ref) is None]
    for core in list(_cores):
        core.reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_actors)
