"""The OTP actor on pykka: exit reasons, monitors, OTP crash semantics and direct dispatch.

`Actor` is a pykka `ThreadingActor` whose own loop behaves the way a `gen_server` does:

- `start()` returns once `on_start` has run, and raises `StartError` if it failed
  (`proc_lib`'s `init_ack`);
- an exception escaping a handler kills the actor, also when the message was a call (the
  caller gets the exception, the actor's monitors an `Exit` with it as the reason); a handler
  answers an expected refusal with `ErrorReply` instead;
- a `BaseException` (SystemExit, KeyboardInterrupt) only kills that actor, where pykka would
  stop every actor in the process;
- whoever monitors an actor is told how it ended (`Exit`, Erlang's `'DOWN'` message).

**Direct dispatch.** A thread hand-off costs tens of microseconds in CPython, so a `call` to
an actor that is idle (nothing queued, nothing running) runs the handler on the caller's
thread, under the actor's lock. The actor still handles one message at a time, messages from
one sender keep their order (a call never overtakes anything queued), and only the actor's
handler changes its state; only the thread that executes the handler differs. `tell`s and
timer messages always go through the inbox.

This module is the one place that overrides pykka internals (`_create_actor_inbox`,
`_actor_loop`, `_stop`, `_handle_failure`, `Envelope`, `ActorRef._actor_weakref`,
`ActorRegistry._actor_refs(_lock)`); `tests/otp/test_pykka_adapter.py` checks that each still
exists, so a pykka upgrade fails loudly.
"""

from __future__ import annotations

import contextlib
import threading
import time
from types import TracebackType
from typing import Any, ClassVar, Final, cast

import pykka
from pykka import ActorDeadError, ActorRef
from pykka import messages as pykka_messages
from pykka._envelope import Envelope

from brama.otp._exit import (
    HIBERNATED,
    NORMAL,
    SHUTDOWN,
    ContainedBaseException,
    Core,
    ErrorReply,
    Exit,
    ExitReason,
    Inbox,
    NotHandledError,
    SelfCallError,
    StartError,
    core_of,
    deliver_exit,
)
from brama.otp._log import get_logger, safe_repr

__all__ = ["Actor", "call", "kill"]

_log = "brama.otp.actor"
_WAKE: Final = object()
"""Put in an inbox to wake an actor thread that was stopped by a handler run elsewhere."""
_PYKKA_MESSAGES = (
    pykka_messages._ActorStop,
    pykka_messages.ProxyCall,
    pykka_messages.ProxyGetAttr,
    pykka_messages.ProxySetAttr,
)


class Actor(pykka.ThreadingActor):
    """A pykka `ThreadingActor` with OTP semantics; see the module docstring.

    Subclasses implement `on_receive` (one `match` on frozen-dataclass messages) and, if they
    need them, `on_start`, `on_stop` and `on_failure`. Threads are daemon threads so a
    forgotten actor never keeps the interpreter alive.
    """

    use_daemon_thread: ClassVar[bool] = True
    _otp_core: Core

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._otp_core.actor = self

    def _create_actor_inbox(self) -> Inbox:  # type: ignore[override]  # pykka: staticmethod
        self._otp_core = Core()
        return Inbox(self._otp_core)  # its ref finds the core through it: see `core_of`

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> ActorRef[Any]:
        """Start the actor and wait until its `on_start` ran; `StartError` if it failed."""
        ref = super().start(*args, **kwargs)
        core = cast(Inbox, ref.actor_inbox).core
        core.started.wait()
        if core.start_error is not None:
            core.done.wait()
            raise StartError(
                f"{cls.__name__} failed to start: {safe_repr(core.start_error)}"
            ) from core.start_error
        return ref

    # -- the loop (pykka's `_actor_loop`, replaced) --

    def _actor_loop(self) -> None:
        core = self._otp_core
        core.thread = threading.current_thread()
        try:
            if self._otp_setup():
                self._otp_loop()
        finally:
            self._otp_teardown()

    def _otp_setup(self) -> bool:
        core = self._otp_core
        core.run.acquire()  # no direct call before on_start is done
        core.owner = threading.get_ident()
        try:
            self.on_start()
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else ContainedBaseException(exc)
            core.start_error = error
            core.reason = error
            get_logger(_log).error(
                "actor_start_failed", actor=str(self.actor_ref), error=safe_repr(error)
            )
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_stopped.set()
            return False
        finally:
            core.owner = 0
            core.run.release()
            core.started.set()
        return True

    def _otp_loop(self) -> None:
        core = self._otp_core
        inbox = self.actor_inbox
        stopped = self.actor_stopped
        while not stopped.is_set():
            envelope = inbox.get()
            with core.run:
                core.owner = threading.get_ident()
                try:
                    self._otp_handle(envelope.message, envelope.reply_to)
                finally:
                    core.owner = 0
            with core.mutex:
                core.pending -= 1

    def _otp_handle(self, message: Any, reply_to: pykka.Future[Any] | None) -> None:
        """Handle one queued message; a crash kills the actor, also for a call."""
        if message is _WAKE:
            return
        if self.actor_stopped.is_set():  # stopped by a handler that ran on another thread
            if reply_to is not None:
                _answer_unhandled(self, message, reply_to)
            return
        try:
            result = self._otp_dispatch(message)
        except BaseException as exc:
            error = self._otp_crash(exc)
            if reply_to is not None:
                reply_to.set_exception((type(error), error, error.__traceback__))
            return
        if reply_to is not None:
            if isinstance(result, ErrorReply):
                refusal = result.error
                reply_to.set_exception((type(refusal), refusal, refusal.__traceback__))
            else:
                reply_to.set(result)

    def _otp_dispatch(self, message: Any) -> Any:
        if isinstance(message, _PYKKA_MESSAGES):
            return self._handle_receive(message)
        if type(message) is _Kill:
            raise message.reason
        return self.on_receive(message)

    def _otp_crash(self, exc: BaseException) -> Exception:
        """Record a crash, run `on_failure`, and stop; returns the exception to report."""
        error = exc if isinstance(exc, Exception) else ContainedBaseException(exc)
        core = self._otp_core
        if core.reason == NORMAL:
            core.reason = error
        get_logger(_log).error("actor_crashed", actor=str(self.actor_ref), exc_info=error)
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        try:
            self.on_failure(type(error), error, error.__traceback__)
        except BaseException as failure:
            get_logger(_log).error(
                "actor_on_failure_raised", actor=str(self.actor_ref), exc_info=failure
            )
        self._otp_wake()
        return error

    def _otp_wake(self) -> None:
        """Wake the actor's own thread if it waits on an empty inbox after a stop elsewhere."""
        core = self._otp_core
        if core.thread is not threading.current_thread():
            self.actor_inbox.put(Envelope(_WAKE))

    def _otp_teardown(self) -> None:
        core = self._otp_core
        inbox = self.actor_inbox
        while not inbox.empty():
            envelope = inbox.get()
            if envelope.reply_to is not None and envelope.message is not _WAKE:
                _answer_unhandled(self, envelope.message, envelope.reply_to)
        core.actor = None
        core.done.set()
        with core.lock:
            exit_message = Exit(self.actor_ref, core.reason, core.cause)
            core.exit = exit_message
            watchers = list(core.watchers.values())
            core.watchers.clear()
        for watcher in watchers:
            deliver_exit(watcher, exit_message)

    # -- pykka hooks --

    def _stop(self) -> None:
        super()._stop()
        self._otp_wake()

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """pykka calls this when `on_stop` raises: that too is a crash."""
        core = self._otp_core
        if exception_value is not None and core.reason in (NORMAL, SHUTDOWN, HIBERNATED):
            core.reason = exception_value
        get_logger(_log).error(
            "actor_on_stop_raised", actor=str(self.actor_ref), exc_info=exception_value
        )
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()

    # -- life cycle --

    def set_exit_reason(self, reason: ExitReason, cause: BaseException | None = None) -> None:
        """Record why this actor is about to stop (used by supervisors and `hibernate`)."""
        self._otp_core.reason = reason
        self._otp_core.cause = cause

    def hibernate(self) -> None:
        """Stop this actor's thread now, without handling the rest of its inbox.

        Monitors receive `Exit(reason=HIBERNATED)`; a supervisor keeps the child and starts it
        again when it is next needed. Messages still queued are answered with
        `NotHandledError`, so an `Address` resends them to the successor. Call it from inside
        a message handler.
        """
        self._otp_core.reason = HIBERNATED
        self._stop()


class _Kill:
    """Sent by `kill`: the actor raises `reason` as if its handler had."""

    __slots__ = ("reason",)

    def __init__(self, reason: BaseException) -> None:
        self.reason = reason


def kill(ref: ActorRef[Any], reason: BaseException | None = None) -> None:
    """Make the actor behind `ref` crash with `reason` (Erlang's `exit(Pid, Reason)`), once it
    has handled what is queued before; its monitors and supervisor see an abnormal exit.
    Harmless if it is already dead."""
    error = reason if reason is not None else RuntimeError(f"{ref} was killed")
    if not isinstance(error, BaseException):
        raise TypeError(f"kill: reason must be an exception, got {error!r}")
    with contextlib.suppress(ActorDeadError):
        ref.tell(_Kill(error))


def stop_and_wait(ref: ActorRef[Any], timeout: float | None) -> bool:
    """Stop the actor behind `ref` and wait until its thread has ended: True, or False after
    `timeout` seconds. Unlike pykka's `stop(block=True)` this does not wait for an answer to
    the stop request, which an actor that dies on its own meanwhile never gives (it drained
    its inbox before the request was queued)."""
    core = core_of(ref)
    if core is None:  # a plain pykka actor
        try:
            ref.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            return False
        return True
    with contextlib.suppress(ActorDeadError):
        ref.stop(block=False)
    return core.done.wait(timeout)


def _answer_unhandled(actor: Actor, message: Any, reply_to: pykka.Future[Any]) -> None:
    if isinstance(message, pykka_messages._ActorStop):
        reply_to.set(None)
        return
    error = NotHandledError(f"{actor.actor_ref} stopped before handling the message")
    reply_to.set_exception((NotHandledError, error, None))


_NOT_IDLE: Final = object()


def _call_direct(core: Core, ref: ActorRef[Any], message: Any) -> Any:
    """Run `message`'s handler on this thread if the actor is idle; `_NOT_IDLE` otherwise.

    Idle means: its lock is free and nothing is queued or running (`pending` counts every
    message put in the inbox until its handler has finished). Holding the lock keeps the
    actor's own thread from starting a handler, so one message runs at a time; a message
    queued meanwhile by another sender simply runs after this one.
    """
    me = threading.get_ident()
    if core.owner == me:
        raise SelfCallError(f"{ref} called itself from its own handler: it would never answer")
    run = core.run
    if not run.acquire(False):
        return _NOT_IDLE
    try:
        actor = core.actor
        if core.pending or actor is None:
            return _NOT_IDLE
        if actor.actor_stopped.is_set():
            raise NotHandledError(f"{ref} stopped before handling the message")
        core.owner = me
        try:
            result = actor._otp_dispatch(message)
        except BaseException as exc:
            raise actor._otp_crash(exc) from None
        finally:
            core.owner = 0
    finally:
        run.release()
    if isinstance(result, ErrorReply):
        raise result.error
    return result


def call(ref: ActorRef[Any], message: Any, *, timeout: float | None = None) -> Any:
    """Send `message` and wait for the answer, like `gen_server:call`.

    For a `brama.otp.Actor` that is idle the handler runs on this thread (direct dispatch);
    otherwise the message is queued and this waits. Raises what the handler raised (the actor
    then crashed) or the error of an `ErrorReply`; `NotHandledError` (an `ActorDeadError`) if
    the actor stopped before handling the message, never hanging on a dead actor (pykka's
    `ask` can); `SelfCallError` if a handler calls its own actor; `pykka.Timeout` after
    `timeout` seconds (None: as long as the actor lives).
    """
    inbox = ref.actor_inbox  # `core_of(ref)`, inlined on this hot path
    core = inbox.core if isinstance(inbox, Inbox) else None
    if core is not None:
        if ref.actor_stopped.is_set():
            raise NotHandledError(f"{ref} is not running")
        result = _call_direct(core, ref, message)
        if result is not _NOT_IDLE:
            return result
    future = ref.ask(message, block=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = _SLICE if deadline is None else min(_SLICE, max(deadline - time.monotonic(), 0.0))
        try:
            result = future.get(timeout=wait)
        except pykka.Timeout:
            if not ref.is_alive():
                done = core_of(ref)
                if done is not None:
                    remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
                    done.done.wait(remaining)
                    grace = 0.0
                else:
                    grace = _SLICE
                try:
                    result = future.get(timeout=grace)
                except pykka.Timeout:
                    raise NotHandledError(f"{ref} stopped before answering") from None
            elif deadline is not None and time.monotonic() >= deadline:
                raise
            else:
                continue
        except ActorDeadError as exc:
            if isinstance(exc, NotHandledError) or core is None:
                raise
            raise NotHandledError(str(exc)) from None  # dead before the message was queued
        if isinstance(result, ErrorReply):  # a plain pykka actor answering with one
            raise result.error
        return result


_SLICE = 0.05
