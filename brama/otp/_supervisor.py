"""Supervisor: starts child actors, restarts the ones that die, and gives up past an intensity.

The OTP supervisor on pykka: child specs with permanent / transient / temporary restart,
the one_for_one, one_for_all and rest_for_one strategies, restart intensity (`max_restarts`
within `max_seconds`) past which the supervisor stops its children and exits abnormally, so
that its own supervisor (if any) decides what happens next. Dynamic children can be added and
terminated at any time (Elixir's DynamicSupervisor), and children can be dormant: recorded but
without a thread, started on the first `ensure_child` (Erlang's hibernation, taken one step
further: a hibernated child gives its thread back).

Children must be `brama.otp.Actor`s, which tell the supervisor how they ended.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pykka
from pykka import ActorDeadError, ActorRef

from brama.otp._actor import (
    HIBERNATED,
    NORMAL,
    SHUTDOWN,
    Actor,
    Exit,
    ExitReason,
    call,
    demonitor,
    exit_reason,
    monitor,
    set_exit_reason,
)
from brama.otp._clock import SYSTEM_CLOCK, Clock

__all__ = [
    "Address",
    "ChildAddress",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildSpec",
    "RestartIntensityExceeded",
    "StartContext",
    "StateSlot",
    "Supervisor",
]

log = logging.getLogger("brama.otp.supervisor")

RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
_RESTARTS: frozenset[str] = frozenset({"permanent", "transient", "temporary"})
_STRATEGIES: frozenset[str] = frozenset({"one_for_one", "one_for_all", "rest_for_one"})


class ChildNotFoundError(LookupError):
    """No child with that id is known to the supervisor."""


class RestartIntensityExceeded(Exception):  # named after the OTP condition
    """More than `max_restarts` restarts within `max_seconds`: the supervisor gave up."""


class StateSlot:
    """Where a child publishes the state a restarted successor should resume from."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def publish(self, value: Any) -> None:
        """Replace the published state (one reference assignment: readers never see half)."""
        self.value = value


@dataclass(frozen=True)
class StartContext:
    """What a child's start function is handed: who it is and the state to resume from."""

    child_id: Hashable
    restarts: int
    slot: StateSlot
    supervisor: Supervisor

    @property
    def last_state(self) -> Any:
        """The state the previous incarnation last published, or None on a first start."""
        return self.slot.value


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and when to restart it (OTP's child specification)."""

    id: Hashable
    start: Callable[[StartContext], ActorRef[Any]]
    restart: RestartType = "permanent"
    shutdown: float = 5.0

    def __post_init__(self) -> None:
        if not callable(self.start):
            raise TypeError(f"ChildSpec.start must be callable, got {self.start!r}")
        if self.restart not in _RESTARTS:
            raise ValueError(
                f"ChildSpec.restart must be one of {sorted(_RESTARTS)}, got {self.restart!r}"
            )
        if isinstance(self.shutdown, bool) or not isinstance(self.shutdown, (int, float)) or not (
            self.shutdown > 0
        ):
            raise ValueError(f"ChildSpec.shutdown must be a positive number, got {self.shutdown!r}")

    @classmethod
    def for_actor(
        cls,
        child_id: Hashable,
        actor_class: type[Actor],
        *args: Any,
        restart: RestartType = "permanent",
        shutdown: float = 5.0,
        **kwargs: Any,
    ) -> ChildSpec:
        """A spec that starts `actor_class(*args, **kwargs)`, ignoring the start context."""
        return cls(
            child_id,
            lambda _ctx: actor_class.start(*args, **kwargs),
            restart=restart,
            shutdown=shutdown,
        )


@dataclass(frozen=True)
class ChildInfo:
    """One row of `which_children()`."""

    id: Hashable
    ref: ActorRef[Any] | None
    restart: RestartType
    status: Literal["running", "dormant", "stopped"]
    restarts: int


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    slot: StateSlot = field(default_factory=StateSlot)
    ref: ActorRef[Any] | None = None
    monitor_handle: int = 0
    status: Literal["running", "dormant", "stopped"] = "dormant"
    restarts: int = 0
    dynamic: bool = False


# -- messages (handled in one match in SupervisorActor.on_receive) --


@dataclass(frozen=True)
class _StartInitial:
    specs: tuple[ChildSpec, ...]


@dataclass(frozen=True)
class _StartChild:
    spec: ChildSpec
    start: bool


@dataclass(frozen=True)
class _AddDormant:
    """Wake-up: take the specs queued by `add_dormant_child` into the children table."""


@dataclass(frozen=True)
class _TerminateChildren:
    child_ids: tuple[Hashable, ...]


@dataclass(frozen=True)
class _EnsureChild:
    child_id: Hashable


@dataclass(frozen=True)
class _WhichChildren:
    pass


@dataclass(frozen=True)
class _SetIntensity:
    max_restarts: int
    max_seconds: float


class SupervisorActor(Actor):
    """The supervisor's actor: the only writer of its children table."""

    def __init__(
        self,
        facade: Supervisor,
        strategy: Strategy,
        max_restarts: int,
        max_seconds: float,
        clock: Clock,
    ) -> None:
        super().__init__()
        self.facade = facade
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.clock = clock
        self.children = facade._children
        self.by_urn: dict[str, Hashable] = {}
        self.restart_log: deque[float] = deque()
        self.given_up = False

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _AddDormant):
            self.facade._dormant_scheduled = False  # before draining: a later add wakes us again
        self._take_dormant()
        match message:
            case Exit(ref=ref, reason=reason):
                self._child_exited(ref, reason)
            case _EnsureChild(child_id=child_id):
                return self._ensure(child_id)
            case _AddDormant():
                pass  # taken above, like before every message
            case _StartChild(spec=spec, start=start):
                if spec.id in self.children:
                    raise ValueError(f"start_child: a child with id {spec.id!r} already exists")
                child = _Child(spec, dynamic=True)
                self.children[spec.id] = child
                if start:
                    try:
                        self._start(child)
                    except BaseException:
                        del self.children[spec.id]
                        raise
                return child.ref
            case _TerminateChildren(child_ids=child_ids):
                for child_id in child_ids:
                    gone = self.children.pop(child_id, None)
                    if gone is not None:
                        self._stop_child(gone)
            case _StartInitial(specs=specs):
                for spec in specs:
                    if spec.id in self.children:
                        raise ValueError(f"Supervisor: duplicate child id {spec.id!r}")
                    child = _Child(spec)
                    self.children[spec.id] = child
                    self._start(child)
            case _SetIntensity(max_restarts=max_restarts, max_seconds=max_seconds):
                self.max_restarts = max_restarts
                self.max_seconds = max_seconds
            case _WhichChildren():
                return [
                    ChildInfo(c.spec.id, c.ref, c.spec.restart, c.status, c.restarts)
                    for c in self.children.values()
                ]
            case _:
                return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        for child in reversed(list(self.children.values())):
            self._stop_child(child)

    def on_failure(self, *exc_info: Any) -> None:
        # pykka calls on_failure, not on_stop, when a handler fails: stop the children here too,
        # or they would outlive their supervisor (and be started twice by its restart).
        self.on_stop()

    def _take_dormant(self) -> None:
        pending = self.facade._dormant
        children = self.children
        while pending:
            spec = pending.popleft()
            if spec.id not in children:
                children[spec.id] = _Child(spec, dynamic=True)

    # -- starting and stopping --

    def _start(self, child: _Child) -> None:
        ctx = StartContext(child.spec.id, child.restarts, child.slot, self.facade)
        ref = child.spec.start(ctx)
        if not isinstance(ref, ActorRef):
            raise TypeError(
                f"child {child.spec.id!r}: start must return a pykka.ActorRef, got {ref!r}"
            )
        try:
            handle = monitor(ref, self.actor_ref)
        except TypeError:  # not a brama.otp.Actor: it cannot be supervised, so do not leak it
            ref.stop(block=False)
            raise
        child.ref = ref
        child.status = "running"
        self.by_urn[ref.actor_urn] = child.spec.id
        child.monitor_handle = handle

    def _stop_child(self, child: _Child) -> None:
        ref = child.ref
        child.status = "stopped" if child.status == "running" else child.status
        if ref is None:
            return
        demonitor(ref, child.monitor_handle)
        self.by_urn.pop(ref.actor_urn, None)
        child.ref = None
        if not ref.is_alive():
            return
        set_exit_reason(ref, SHUTDOWN)
        try:
            ref.stop(block=True, timeout=child.spec.shutdown)
        except pykka.Timeout:
            log.warning("child %r did not stop within %.1fs", child.spec.id, child.spec.shutdown)
        except ActorDeadError:
            pass
        except Exception as exc:  # e.g. a BaseException in its on_stop, contained and re-raised
            log.error("child %r failed while stopping: %r", child.spec.id, exc)

    # -- deaths and restarts --

    def _find(self, ref: ActorRef[Any]) -> _Child | None:
        child_id = self.by_urn.pop(ref.actor_urn, None)
        child = None if child_id is None else self.children.get(child_id)
        if child is None or child.ref is None or child.ref.actor_urn != ref.actor_urn:
            return None
        return child

    def _child_exited(self, ref: ActorRef[Any], reason: ExitReason) -> None:
        child = self._find(ref)
        if child is None or self.given_up:
            return  # stale: already restarted through ensure_child, or terminated
        self._handle_death(child, reason)

    def _handle_death(self, child: _Child, reason: ExitReason) -> None:
        child.ref = None
        if reason == HIBERNATED:
            child.status = "dormant"
            return
        abnormal = isinstance(reason, BaseException)
        if abnormal:
            log.error("child %r died: %r", child.spec.id, reason)
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and not abnormal):
            child.status = "stopped"
            if restart == "temporary":
                self.children.pop(child.spec.id, None)
            return
        child.status = "stopped"
        self._restart_for(child, reason)

    def _note_restart(self, child: _Child, reason: ExitReason) -> bool:
        now = self.clock.monotonic()
        self.restart_log.append(now)
        while self.restart_log and self.restart_log[0] < now - self.max_seconds:
            self.restart_log.popleft()
        if len(self.restart_log) > self.max_restarts:
            self._give_up(child, reason)
            return False
        return True

    def _restart_for(self, failed: _Child, reason: ExitReason) -> None:
        ordered = list(self.children.values())
        if self.strategy == "one_for_one":
            group = [failed]
        elif self.strategy == "one_for_all":
            group = [c for c in ordered if c is failed or c.status == "running"]
        else:
            index = ordered.index(failed)
            group = [failed] + [c for c in ordered[index + 1 :] if c.status == "running"]
        while True:
            if not self._note_restart(failed, reason):
                return
            for other in reversed(group):
                self._stop_child(other)  # the failed child only has a ref on a retry
            for other in group:  # OTP: temporary children are never restarted, not even here
                if other is not failed and other.spec.restart == "temporary":
                    self.children.pop(other.spec.id, None)
            group = [c for c in group if c is failed or c.spec.restart != "temporary"]
            try:
                for member in group:
                    member.restarts += 1
                    self._start(member)
                return
            except Exception as exc:  # a start that fails counts as one more crash
                log.error("restart of %r failed: %r", failed.spec.id, exc)
                reason = exc

    def _give_up(self, child: _Child, reason: ExitReason) -> None:
        self.given_up = True
        error = RestartIntensityExceeded(
            f"supervisor {self.facade.name!r}: more than {self.max_restarts} restarts within "
            f"{self.max_seconds}s (last: child {child.spec.id!r}, {reason!r}); stopping"
        )
        log.error("%s", error)
        self.facade._failure = error
        for other in reversed(list(self.children.values())):
            self._stop_child(other)
        self.set_exit_reason(error)
        self._stop()

    def _ensure(self, child_id: Hashable) -> ActorRef[Any]:
        child = self.children.get(child_id)
        if child is None:
            raise ChildNotFoundError(f"no child {child_id!r} in supervisor {self.facade.name!r}")
        if child.ref is not None and child.ref.is_alive():
            return child.ref
        if child.ref is not None:
            # Dead, and its Exit is still on its way: handle the death now, with its reason.
            reason: ExitReason = exit_reason(child.ref) or NORMAL
            demonitor(child.ref, child.monitor_handle)
            self.by_urn.pop(child.ref.actor_urn, None)
            self._handle_death(child, reason)
            if self.given_up:
                raise self.facade._failure or RestartIntensityExceeded(str(child_id))
            if child.ref is not None:
                return child.ref
        if child_id not in self.children:
            raise ChildNotFoundError(f"child {child_id!r} of {self.facade.name!r} is gone")
        self._start(child)
        assert child.ref is not None
        return child.ref


class Address:
    """A destination that finds its actor at send time and resends if the actor died first.

    Subclasses say how to find (or start) the current actor in `_ref`. A message is resent
    only when the actor died before handling it, so it is handled at most once; an
    `ActorDeadError` raised by the actor's own handler propagates unchanged.
    """

    __slots__ = ()
    attempts = 10

    def _ref(self) -> ActorRef[Any]:
        raise NotImplementedError

    def tell(self, message: Any) -> None:
        """Queue `message` for the current actor, starting it first if needed."""
        for _ in range(self.attempts):
            ref = self._ref()
            try:
                ref.tell(message)
                return
            except ActorDeadError:
                continue
        raise ActorDeadError(f"{self} keeps dying; message not delivered")

    def ask(self, message: Any, *, timeout: float | None = None) -> Any:
        """Ask the current actor and wait; if it dies before answering, ask its successor."""
        for _ in range(self.attempts):
            ref = self._ref()
            try:
                return call(ref, message, timeout=timeout)
            except ActorDeadError:
                if ref.is_alive():
                    raise
        raise ActorDeadError(f"{self} keeps dying; message not delivered")


class ChildAddress(Address):
    """Sends to a supervised child by id, waking or restarting it as needed.

    The address outlives any one incarnation of the child, so it is what timers and callers
    should hold (like sending to a registered name rather than a pid).
    """

    __slots__ = ("child_id", "supervisor")

    def __init__(self, supervisor: Supervisor, child_id: Hashable) -> None:
        self.supervisor = supervisor
        self.child_id = child_id

    def __str__(self) -> str:
        return f"child {self.child_id!r} of {self.supervisor.name!r}"

    def _ref(self) -> ActorRef[Any]:
        ref = self.supervisor.whereis_child(self.child_id)
        if ref is not None and ref.is_alive():
            return ref
        return self.supervisor.ensure_child(self.child_id)


def _check_intensity(max_restarts: Any, max_seconds: Any) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"Supervisor: max_restarts must be an int >= 0, got {max_restarts!r}")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not (0 < max_seconds < float("inf"))
    ):
        raise ValueError(
            f"Supervisor: max_seconds must be a finite number > 0, got {max_seconds!r}"
        )


class Supervisor:
    """Starts and watches child actors; see the module docstring for the OTP semantics."""

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "supervisor",
    ) -> None:
        if strategy not in _STRATEGIES:
            raise ValueError(
                f"Supervisor: strategy must be one of {sorted(_STRATEGIES)}, got {strategy!r}"
            )
        _check_intensity(max_restarts, max_seconds)
        for spec in children:
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"Supervisor: children must be ChildSpec, got {spec!r}")
        self.name = name
        self._children: dict[Hashable, _Child] = {}
        self._dormant: deque[ChildSpec] = deque()  # queued by add_dormant_child
        self._dormant_scheduled = False
        self._failure: RestartIntensityExceeded | None = None
        self._stop_lock = threading.Lock()
        self.ref: ActorRef[SupervisorActor] = SupervisorActor.start(
            self, strategy, max_restarts, float(max_seconds), clock
        )
        try:
            call(self.ref, _StartInitial(tuple(children)))
        except BaseException:
            self.stop()
            raise

    @classmethod
    def child_spec(
        cls,
        child_id: Hashable,
        children: Sequence[ChildSpec] = (),
        *,
        restart: RestartType = "permanent",
        shutdown: float = 30.0,
        **options: Any,
    ) -> ChildSpec:
        """A spec that runs a nested supervisor as a child: how escalation reaches a parent."""

        options.setdefault("name", str(child_id))

        def start(_ctx: StartContext) -> ActorRef[Any]:
            return cls(children, **options).ref

        return ChildSpec(child_id, start, restart=restart, shutdown=shutdown)

    @property
    def alive(self) -> bool:
        """False once the supervisor stopped, by `stop()` or by giving up."""
        return self.ref.is_alive()

    @property
    def failure(self) -> RestartIntensityExceeded | None:
        """Why the supervisor gave up, if it did."""
        return self._failure

    def start_child(self, spec: ChildSpec, *, start: bool = True) -> ActorRef[Any] | None:
        """Add a dynamic child and start it (or leave it dormant); returns its ref."""
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child: spec must be a ChildSpec, got {spec!r}")
        return call(self.ref, _StartChild(spec, start))  # type: ignore[no-any-return]

    def add_dormant_child(self, spec: ChildSpec) -> None:
        """Record a dynamic child without starting it and without waiting.

        Cheap enough for tens of thousands of children a second: the spec joins a queue that
        the supervisor takes in before its next message (one wake-up per batch, not one
        message per child), so a later `ensure_child` from any thread finds it. Nothing runs
        until the first `ensure_child`. An id that already exists is left as it is.
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"add_dormant_child: spec must be a ChildSpec, got {spec!r}")
        if not self.ref.is_alive():
            raise ActorDeadError(f"supervisor {self.name!r} is not running")
        self._dormant.append(spec)
        if not self._dormant_scheduled:
            self._dormant_scheduled = True
            self.ref.tell(_AddDormant())

    def set_intensity(self, max_restarts: int, max_seconds: float) -> None:
        """Change the restart intensity from now on (restarts already logged still count)."""
        _check_intensity(max_restarts, max_seconds)
        call(self.ref, _SetIntensity(max_restarts, float(max_seconds)))

    def terminate_child(self, child_id: Hashable) -> None:
        """Stop a child (waiting up to its shutdown time) and forget it; unknown ids are ignored."""
        call(self.ref, _TerminateChildren((child_id,)))

    def terminate_children(self, child_ids: Iterable[Hashable]) -> None:
        """`terminate_child` for many children in one round trip (e.g. a cleanup sweep)."""
        call(self.ref, _TerminateChildren(tuple(child_ids)))

    def ensure_child(self, child_id: Hashable, *, timeout: float | None = None) -> ActorRef[Any]:
        """The running child's ref, starting it if dormant or restarting it if it just died."""
        return call(self.ref, _EnsureChild(child_id), timeout=timeout)  # type: ignore[no-any-return]

    def whereis_child(self, child_id: Hashable) -> ActorRef[Any] | None:
        """The child's current ref, read without asking the supervisor (may be dead or None)."""
        child = self._children.get(child_id)
        return None if child is None else child.ref

    def slot(self, child_id: Hashable) -> StateSlot | None:
        """The state slot of a child, read directly."""
        child = self._children.get(child_id)
        return None if child is None else child.slot

    def address(self, child_id: Hashable) -> ChildAddress:
        """A destination for `tell`/`ask` that always reaches the child's current incarnation."""
        return ChildAddress(self, child_id)

    def which_children(self) -> list[ChildInfo]:
        """Every child with its ref, restart type, status and restart count."""
        return call(self.ref, _WhichChildren())  # type: ignore[no-any-return]

    def count_children(self) -> int:
        """How many children are recorded (running, dormant or stopped)."""
        return len(self._children)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop every child in reverse start order, then the supervisor; idempotent."""
        with self._stop_lock:
            if not self.ref.is_alive():
                return
            with contextlib.suppress(ActorDeadError):
                self.ref.stop(block=True, timeout=timeout)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
