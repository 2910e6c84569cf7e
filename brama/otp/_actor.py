"""The OTP base actor: exit signals, monitors and contained `BaseException`s on top of pykka.

pykka has no links or monitors, and a `BaseException` raised inside any actor makes pykka stop
every actor in the process. `Actor` fixes both: whoever monitors an actor is told how it ended
(an `Exit` message, like Erlang's `{'DOWN', Ref, process, Pid, Reason}`), and a `BaseException`
escaping a handler is turned into an ordinary failure of that one actor.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final

import pykka
from pykka import ActorDeadError, ActorRef

__all__ = [
    "HIBERNATED",
    "NORMAL",
    "SHUTDOWN",
    "Actor",
    "ContainedBaseException",
    "ErrorReply",
    "Exit",
    "ExitReason",
    "call",
    "demonitor",
    "exit_reason",
    "monitor",
    "set_exit_reason",
]

NORMAL: Final = "normal"
"""Exit reason of an actor that stopped on its own or was stopped by `ref.stop()`."""
SHUTDOWN: Final = "shutdown"
"""Exit reason of an actor stopped by its supervisor."""
HIBERNATED: Final = "hibernated"
"""Exit reason of an actor that released its thread through `Actor.hibernate()`."""

ExitReason = str | BaseException
"""`NORMAL`, `SHUTDOWN`, `HIBERNATED`, or the exception that killed the actor."""


@dataclass(frozen=True)
class Exit:
    """Sent to every monitor of an actor when its thread ends (Erlang's `'DOWN'` message)."""

    ref: ActorRef[Any]
    reason: ExitReason

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
    in this ordinary exception it only fails the actor (or the `ask`) that raised it.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__} raised inside an actor: {original!r}")
        self.original = original


Watcher = ActorRef[Any] | Callable[[Exit], None]
_handles = itertools.count(1)


class _ExitBox:
    """How an actor ended, kept apart from the actor so it outlives it.

    Attached to the actor and to its `ActorRef`: pykka refs hold their actor only weakly, and
    a short-lived actor may be garbage-collected before anyone asks how it died.
    """

    __slots__ = ("done", "exit", "lock", "reason", "watchers")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watchers: dict[int, Watcher] = {}
        self.exit: Exit | None = None
        self.reason: ExitReason = NORMAL
        self.done = threading.Event()  # set once the thread ended and every ask was answered


class Actor(pykka.ThreadingActor):
    """A pykka `ThreadingActor` that can be monitored, supervised and hibernated.

    Subclasses implement `on_receive` as usual. Threads are daemon threads so a forgotten actor
    never keeps the interpreter alive.
    """

    use_daemon_thread: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._otp_box = _ExitBox()
        self._actor_ref._otp_box = self._otp_box  # type: ignore[attr-defined]

    # -- exit reason bookkeeping (pykka internals are overridden here, and only here) --

    def _handle_receive(self, message: Any) -> Any:
        try:
            return super()._handle_receive(message)
        except Exception:
            raise
        except BaseException as exc:  # contained: see the class docstring
            raise ContainedBaseException(exc) from exc

    def _actor_loop_setup(self) -> None:
        try:
            super()._actor_loop_setup()
        except BaseException as exc:
            self._handle_failure(ContainedBaseException, ContainedBaseException(exc), None)

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exception_value is not None and self._otp_box.reason == NORMAL:
            self._otp_box.reason = exception_value
        super()._handle_failure(exception_type, exception_value, traceback)

    def _actor_loop(self) -> None:
        box = self._otp_box
        try:
            super()._actor_loop()
        except BaseException as exc:
            if box.reason == NORMAL:
                box.reason = exc
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_stopped.set()
            self._actor_loop_teardown()
        finally:
            box.done.set()
            with box.lock:
                exit_message = Exit(self.actor_ref, box.reason)
                box.exit = exit_message
                watchers = list(box.watchers.values())
                box.watchers.clear()
            for watcher in watchers:
                _deliver_exit(watcher, exit_message)

    def set_exit_reason(self, reason: ExitReason) -> None:
        """Record why this actor is about to stop (used by supervisors and `hibernate`)."""
        self._otp_box.reason = reason

    def hibernate(self) -> None:
        """Stop this actor's thread now, without handling the rest of its inbox.

        Monitors receive `Exit(reason=HIBERNATED)`; a supervisor keeps the child's record and
        starts it again on the next `ensure_child`. Messages still queued are dropped: callers
        waiting with `call` see `ActorDeadError` and retry through the supervisor. Call it from
        inside a message handler.
        """
        self._otp_box.reason = HIBERNATED
        self._stop()


def _box(ref: ActorRef[Any]) -> _ExitBox | None:
    box = getattr(ref, "_otp_box", None)
    return box if isinstance(box, _ExitBox) else None


def exit_reason(ref: ActorRef[Any]) -> ExitReason | None:
    """Why the actor behind `ref` stopped (or is stopping); None for a plain pykka actor."""
    box = _box(ref)
    return None if box is None else box.reason


def set_exit_reason(ref: ActorRef[Any], reason: ExitReason) -> None:
    """Record, before stopping it, why an actor is being stopped (e.g. `SHUTDOWN`)."""
    box = _box(ref)
    if box is not None:
        box.reason = reason


def _deliver_exit(watcher: Watcher, exit_message: Exit) -> None:
    if isinstance(watcher, ActorRef):
        with contextlib.suppress(ActorDeadError):
            watcher.tell(exit_message)
    else:
        with contextlib.suppress(Exception):
            watcher(exit_message)


def monitor(ref: ActorRef[Any], watcher: Watcher) -> int:
    """Ask to be told when the actor behind `ref` exits; returns a handle for `demonitor`.

    `watcher` is an `ActorRef` (sent an `Exit` with `tell`) or a callable (called with the `Exit`
    in the dying actor's thread; keep it short). If the actor is already gone the `Exit` is
    delivered at once, with its real reason. Only `brama.otp.Actor`s can be monitored.
    """
    box = _box(ref)
    if box is None:
        actor = ref._actor_weakref()
        kind = "a collected actor" if actor is None else type(actor).__name__
        raise TypeError(f"monitor: ref must point to a brama.otp.Actor, got {kind}")
    handle = next(_handles)
    with box.lock:
        done = box.exit
        if done is None:
            box.watchers[handle] = watcher
            return handle
    _deliver_exit(watcher, done)
    return handle


def demonitor(ref: ActorRef[Any], handle: int) -> None:
    """Stop monitoring; harmless if the actor is gone or the handle unknown."""
    box = _box(ref)
    if box is not None:
        with box.lock:
            box.watchers.pop(handle, None)


def call(ref: ActorRef[Any], message: Any, *, timeout: float | None = None) -> Any:
    """`ref.ask(message)` that never hangs on an actor that died with the message queued.

    pykka's `ask` checks that the actor is alive and then queues the message; if the actor
    finished stopping in between, nobody ever answers. Like `gen_server:call` (which monitors
    the callee), this waits in slices and raises `ActorDeadError` once the actor is gone and
    has answered everything it is going to answer (for a `brama.otp.Actor`: its thread ended).
    Raises `pykka.Timeout` after `timeout` seconds (None: wait as long as the actor lives).
    """
    future = ref.ask(message, block=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = _SLICE if deadline is None else min(_SLICE, max(deadline - time.monotonic(), 0.0))
        try:
            result = future.get(timeout=wait)
        except pykka.Timeout:
            if not ref.is_alive():
                box = _box(ref)
                if box is not None:
                    remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
                    box.done.wait(remaining)
                    grace = 0.0
                else:
                    grace = _SLICE
                try:
                    result = future.get(timeout=grace)
                except pykka.Timeout:
                    raise ActorDeadError(f"{ref} stopped before answering") from None
            elif deadline is not None and time.monotonic() >= deadline:
                raise
            else:
                continue
        if isinstance(result, ErrorReply):
            raise result.error
        return result


_SLICE = 0.05
