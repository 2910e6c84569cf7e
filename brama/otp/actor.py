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
    "Exit",
    "ExitReason",
    "call",
    "demonitor",
    "monitor",
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


class Actor(pykka.ThreadingActor):
    """A pykka `ThreadingActor` that can be monitored, supervised and hibernated.

    Subclasses implement `on_receive` as usual. Threads are daemon threads so a forgotten actor
    never keeps the interpreter alive.
    """

    use_daemon_thread: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._otp_lock = threading.Lock()
        self._otp_watchers: dict[int, Watcher] = {}
        self._otp_exit: Exit | None = None
        self._otp_reason: ExitReason = NORMAL
        self._otp_done = threading.Event()  # set once every queued ask has been answered

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
        if exception_value is not None and self._otp_reason == NORMAL:
            self._otp_reason = exception_value
        super()._handle_failure(exception_type, exception_value, traceback)

    def _actor_loop(self) -> None:
        try:
            super()._actor_loop()
        except BaseException as exc:
            if self._otp_reason == NORMAL:
                self._otp_reason = exc
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_stopped.set()
            self._actor_loop_teardown()
        finally:
            self._otp_done.set()
            self._otp_notify_exit()

    def _otp_notify_exit(self) -> None:
        with self._otp_lock:
            exit_message = Exit(self.actor_ref, self._otp_reason)
            self._otp_exit = exit_message
            watchers = list(self._otp_watchers.values())
            self._otp_watchers.clear()
        for watcher in watchers:
            _deliver_exit(watcher, exit_message)

    def set_exit_reason(self, reason: ExitReason) -> None:
        """Record why this actor is about to stop (used by supervisors and `hibernate`)."""
        self._otp_reason = reason

    def hibernate(self) -> None:
        """Stop this actor's thread now, without handling the rest of its inbox.

        Monitors receive `Exit(reason=HIBERNATED)`; a supervisor keeps the child's record and
        starts it again on the next `ensure_child`. Messages still queued are dropped: callers
        waiting with `call` see `ActorDeadError` and retry through the supervisor. Call it from
        inside a message handler.
        """
        self._otp_reason = HIBERNATED
        self._stop()


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
    delivered at once. Only actors derived from `brama.otp.Actor` can be monitored.
    """
    actor = ref._actor_weakref()
    if actor is None:
        handle = next(_handles)
        _deliver_exit(watcher, Exit(ref, NORMAL))
        return handle
    if not isinstance(actor, Actor):
        raise TypeError(
            f"monitor: ref must point to a brama.otp.Actor, got {type(actor).__name__}"
        )
    with actor._otp_lock:
        done = actor._otp_exit
        handle = next(_handles)
        if done is None:
            actor._otp_watchers[handle] = watcher
            return handle
    _deliver_exit(watcher, done)
    return handle


def demonitor(ref: ActorRef[Any], handle: int) -> None:
    """Stop monitoring; harmless if the actor is gone or the handle unknown."""
    actor = ref._actor_weakref()
    if isinstance(actor, Actor):
        with actor._otp_lock:
            actor._otp_watchers.pop(handle, None)


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
            return future.get(timeout=wait)
        except pykka.Timeout:
            if not ref.is_alive():
                actor = ref._actor_weakref()
                if isinstance(actor, Actor):
                    remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
                    actor._otp_done.wait(remaining)
                    grace = 0.0
                else:
                    grace = _SLICE
                try:
                    return future.get(timeout=grace)
                except pykka.Timeout:
                    raise ActorDeadError(f"{ref} stopped before answering") from None
            if deadline is not None and time.monotonic() >= deadline:
                raise


_SLICE = 0.05
