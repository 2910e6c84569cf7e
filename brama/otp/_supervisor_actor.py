"""The supervisor's actor: the only writer of its children table, and the restart logic.

`Supervisor` (the facade) sends it the messages below; children's deaths reach it as `Exit`
messages from their monitors. Expected refusals (unknown id, a child that fails to start) are
answered with `ErrorReply`, so they reach the caller without crashing the supervisor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

from pykka import ActorRef

from brama.otp._actor import Actor, stop_and_wait
from brama.otp._childspec import (
    ChildInfo,
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    RestartIntensityExceeded,
    StartContext,
    StateSlot,
    Strategy,
    SupervisorView,
)
from brama.otp._clock import Clock
from brama.otp._exit import (
    HIBERNATED,
    NORMAL,
    SHUTDOWN,
    ContainedBaseException,
    ErrorReply,
    Exit,
    ExitReason,
    StartError,
    demonitor,
    exit_reason,
    monitor,
    set_exit_reason,
)
from brama.otp._log import get_logger, safe_repr

__all__: list[str] = []  # private to the supervisor

_log = "brama.otp.supervisor"


@dataclass(slots=True)
class ChildRecord:
    """One row of the children table."""

    id: Hashable
    spec: ChildSpec
    slot: StateSlot = field(default_factory=StateSlot)
    ref: ActorRef[Any] | None = None
    monitor_handle: int = 0
    status: Literal["running", "dormant", "stopped"] = "dormant"
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class StartInitial:
    specs: tuple[ChildSpec, ...]


@dataclass(frozen=True, slots=True)
class StartChild:
    spec: ChildSpec
    start: bool


@dataclass(frozen=True, slots=True)
class EnsureChild:
    child_id: Hashable


@dataclass(frozen=True, slots=True)
class TerminateChildren:
    child_ids: tuple[Hashable, ...]
    strict: bool


@dataclass(frozen=True, slots=True)
class RestartChild:
    child_id: Hashable


@dataclass(frozen=True, slots=True)
class DeleteChild:
    child_id: Hashable


@dataclass(frozen=True, slots=True)
class WhichChildren:
    pass


@dataclass(frozen=True, slots=True)
class SetIntensity:
    max_restarts: int
    max_seconds: float


class SupervisorActor(Actor):
    """Starts, stops and restarts the children of one `Supervisor`."""

    def __init__(
        self,
        facade: SupervisorView,
        children: dict[Hashable, ChildRecord],
        strategy: Strategy,
        max_restarts: int,
        max_seconds: float,
        clock: Clock,
        on_give_up: Callable[[RestartIntensityExceeded], None],
    ) -> None:
        super().__init__()
        self.facade = facade
        self.strategy = strategy
        self.template = facade.template
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.clock = clock
        self.children = children  # the facade reads it directly; only this actor writes it
        self.on_give_up = on_give_up
        self.by_urn: dict[str, Hashable] = {}
        self.restart_log: deque[float] = deque()
        self.given_up = False

    def on_receive(self, message: Any) -> Any:
        match message:
            case Exit(ref=ref, reason=reason):
                child = self._find(ref)
                if child is not None and not self.given_up:
                    self._handle_death(child, reason)
                return None
            case EnsureChild(child_id=child_id):
                return self._ensure(child_id)
            case TerminateChildren(child_ids=child_ids, strict=strict):
                return self._terminate(child_ids, strict)
            case StartChild(spec=spec, start=start):
                return self._start_child(spec, start)
            case RestartChild(child_id=child_id):
                return self._restart_child(child_id)
            case DeleteChild(child_id=child_id):
                return self._delete_child(child_id)
            case StartInitial(specs=specs):
                return self._start_initial(specs)
            case WhichChildren():
                return [
                    ChildInfo(c.id, c.ref, c.spec.restart, c.status, c.restarts)
                    for c in self.children.values()
                ]
            case SetIntensity(max_restarts=max_restarts, max_seconds=max_seconds):
                self.max_restarts = max_restarts
                self.max_seconds = max_seconds
                return None
            case _:
                return super().on_receive(message)

    def on_stop(self) -> None:
        self._stop_all()

    def on_failure(self, *exc_info: Any) -> None:
        self._stop_all()  # children must not outlive (or be started twice by) a dead supervisor

    # -- requests --

    def _start_initial(self, specs: tuple[ChildSpec, ...]) -> Any:
        seen: set[Hashable] = set()
        for spec in specs:
            if spec.id in seen:
                return ErrorReply(ValueError(f"Supervisor: duplicate child id {spec.id!r}"))
            seen.add(spec.id)
        for spec in specs:
            child = ChildRecord(spec.id, spec)
            self.children[spec.id] = child
            try:
                self._start(child)
            except (StartError, ChildNotFoundError) as exc:
                self._stop_all()
                self.children.clear()
                return ErrorReply(exc)
        return None

    def _start_child(self, spec: ChildSpec, start: bool) -> Any:
        if self.template is not None:
            return ErrorReply(
                TypeError("start_child: a simple_one_for_one supervisor starts children "
                          "from its template; use ensure_child(child_id)")
            )
        if spec.id in self.children:
            return ErrorReply(ValueError(f"start_child: a child with id {spec.id!r} exists"))
        child = ChildRecord(spec.id, spec)
        self.children[spec.id] = child
        if start:
            try:
                self._start(child)
            except (StartError, ChildNotFoundError) as exc:
                del self.children[spec.id]
                return ErrorReply(exc)
        return child.ref

    def _ensure(self, child_id: Hashable) -> Any:
        child = self.children.get(child_id)
        if child is not None and child.ref is not None:
            if child.ref.is_alive():
                return child.ref
            # Dead, and its Exit is still on its way: handle the death now, with its reason.
            dead = child.ref
            self.by_urn.pop(dead.actor_urn, None)
            self._handle_death(child, exit_reason(dead) or NORMAL)
            if self.given_up:
                return ErrorReply(self.facade.failure or RestartIntensityExceeded(str(child_id)))
            if child.ref is not None:
                return child.ref
            child = self.children.get(child_id)
        if child is None:
            if self.template is None:
                return ErrorReply(self._not_found(child_id))
            child = ChildRecord(child_id, self.template)
            self.children[child_id] = child
        try:
            self._start(child)
        except (StartError, ChildNotFoundError) as exc:
            if self.template is not None:
                self.children.pop(child_id, None)
            return ErrorReply(exc)
        return child.ref

    def _terminate(self, child_ids: tuple[Hashable, ...], strict: bool) -> Any:
        if strict:
            missing = [cid for cid in child_ids if cid not in self.children]
            if missing:
                return ErrorReply(self._not_found(missing[0]))
        for child_id in child_ids:
            child = self.children.get(child_id)
            if child is not None:
                self._stop_child(child)
                child.status = "stopped"
                if self.template is not None or child.spec.restart == "temporary":
                    del self.children[child_id]
            self.facade.cancel_timers(child_id)
        return None

    def _restart_child(self, child_id: Hashable) -> Any:
        child = self.children.get(child_id)
        if child is None:
            return ErrorReply(self._not_found(child_id))
        if child.ref is not None and child.ref.is_alive():
            return ErrorReply(ChildRunningError(f"restart_child: child {child_id!r} is running"))
        try:
            self._start(child)
        except (StartError, ChildNotFoundError) as exc:
            return ErrorReply(exc)
        return child.ref

    def _delete_child(self, child_id: Hashable) -> Any:
        child = self.children.get(child_id)
        if child is None:
            return ErrorReply(self._not_found(child_id))
        if child.ref is not None and child.ref.is_alive():
            return ErrorReply(ChildRunningError(f"delete_child: child {child_id!r} is running"))
        del self.children[child_id]
        self.facade.cancel_timers(child_id)
        return None

    def _not_found(self, child_id: Hashable) -> ChildNotFoundError:
        return ChildNotFoundError(f"no child {child_id!r} in supervisor {self.facade.name!r}")

    # -- starting and stopping --

    def _start(self, child: ChildRecord) -> None:
        """Start `child`; raises StartError (or the start function's ChildNotFoundError)."""
        ctx = StartContext(child.id, child.restarts, child.slot, self.facade)
        try:
            ref = child.spec.start(ctx)
        except ChildNotFoundError:
            raise
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else ContainedBaseException(exc)
            raise StartError(
                f"supervisor {self.facade.name!r}: failed to start child {child.id!r}: "
                f"{safe_repr(error)}"
            ) from error
        if not isinstance(ref, ActorRef):
            raise StartError(
                f"supervisor {self.facade.name!r}: child {child.id!r}: start must return a "
                f"pykka.ActorRef, got {safe_repr(ref)}"
            )
        try:
            handle = monitor(ref, self.actor_ref)
        except TypeError as exc:  # not a brama.otp.Actor: it cannot be supervised, don't leak it
            ref.stop(block=False)
            raise StartError(
                f"supervisor {self.facade.name!r}: child {child.id!r} is not a brama.otp.Actor"
            ) from exc
        child.ref = ref
        child.status = "running"
        child.monitor_handle = handle
        self.by_urn[ref.actor_urn] = child.id

    def _stop_child(self, child: ChildRecord) -> None:
        ref = child.ref
        if child.status == "running":
            child.status = "stopped"
        if ref is None:
            return
        demonitor(ref, child.monitor_handle)
        self.by_urn.pop(ref.actor_urn, None)
        child.ref = None
        if not ref.is_alive():
            return
        set_exit_reason(ref, SHUTDOWN)
        try:
            if not stop_and_wait(ref, child.spec.shutdown):  # a thread cannot be killed:
                get_logger(_log).warning(  # it is abandoned, and said so
                    "child_shutdown_timeout", supervisor=self.facade.name,
                    child=safe_repr(child.id), shutdown=child.spec.shutdown,
                )
        except Exception as exc:  # e.g. a BaseException in its on_stop, contained
            get_logger(_log).error(
                "child_stop_failed", supervisor=self.facade.name, child=safe_repr(child.id),
                error=safe_repr(exc),
            )

    def _stop_all(self) -> None:
        for child in reversed(list(self.children.values())):
            self._stop_child(child)
        self.facade.cancel_all_timers()

    # -- deaths and restarts --

    def _find(self, ref: ActorRef[Any]) -> ChildRecord | None:
        child_id = self.by_urn.pop(ref.actor_urn, None)
        child = None if child_id is None else self.children.get(child_id)
        if child is None or child.ref is None or child.ref.actor_urn != ref.actor_urn:
            return None
        return child

    def _handle_death(self, child: ChildRecord, reason: ExitReason) -> None:
        if child.ref is not None:
            demonitor(child.ref, child.monitor_handle)
        child.ref = None
        if reason == HIBERNATED:
            child.status = "dormant"
            if self.template is not None:  # dormant simple_one_for_one children are unrecorded
                del self.children[child.id]
            return
        abnormal = isinstance(reason, BaseException)
        if abnormal:
            get_logger(_log).error(
                "child_died", supervisor=self.facade.name, child=safe_repr(child.id),
                reason=safe_repr(reason),
            )
        restart = child.spec.restart
        child.status = "stopped"
        if restart == "temporary" or (restart == "transient" and not abnormal):
            if restart == "temporary" or self.template is not None:
                del self.children[child.id]
            return
        self._restart_for(child, reason)

    def _restart_for(self, failed: ChildRecord, reason: ExitReason) -> None:
        ordered = list(self.children.values())
        if self.strategy == "one_for_all":
            group = ordered
        elif self.strategy == "rest_for_one":
            group = ordered[ordered.index(failed):]
        else:
            group = [failed]
        # OTP restarts every non-temporary child of the set (running or not); a dormant
        # child has no process to restart and stays dormant.
        to_start = [
            c for c in group
            if c is failed or (c.spec.restart != "temporary" and c.status != "dormant")
        ]
        while True:
            if not self._note_restart(failed, reason):
                return
            for other in reversed(group):
                self._stop_child(other)
            for other in group:  # temporary children are never restarted, not even here
                if other is not failed and other.spec.restart == "temporary":
                    self.children.pop(other.id, None)
            try:
                for member in to_start:
                    member.restarts += 1
                    try:
                        self._start(member)
                    except ChildNotFoundError:  # gone meanwhile (OTP's `ignore`): not a crash
                        if self.template is not None:
                            self.children.pop(member.id, None)
                return
            except StartError as exc:  # counts as one more crash
                get_logger(_log).error(
                    "child_restart_failed", supervisor=self.facade.name,
                    child=safe_repr(failed.id), error=safe_repr(exc),
                )
                reason = exc

    def _note_restart(self, child: ChildRecord, reason: ExitReason) -> bool:
        now = self.clock.monotonic()
        self.restart_log.append(now)
        while self.restart_log and self.restart_log[0] < now - self.max_seconds:
            self.restart_log.popleft()
        if len(self.restart_log) > self.max_restarts:
            self._give_up(child, reason)
            return False
        return True

    def _give_up(self, child: ChildRecord, reason: ExitReason) -> None:
        self.given_up = True
        error = RestartIntensityExceeded(
            f"supervisor {self.facade.name!r}: more than {self.max_restarts} restarts within "
            f"{self.max_seconds}s (last: child {child.id!r}, {safe_repr(reason)}); stopping"
        )
        get_logger(_log).error(
            "supervisor_gave_up", supervisor=self.facade.name, max_restarts=self.max_restarts,
            max_seconds=self.max_seconds, child=safe_repr(child.id), reason=safe_repr(reason),
        )
        self.on_give_up(error)
        self._stop_all()
        self.set_exit_reason(SHUTDOWN, error)
        self._stop()
