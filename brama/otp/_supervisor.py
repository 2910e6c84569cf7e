"""Supervisor: starts child actors, restarts the ones that die, and gives up past an intensity.

OTP's supervisor on pykka: child specs with permanent / transient / temporary restart; the
one_for_one, one_for_all, rest_for_one and simple_one_for_one strategies; restart intensity
(`max_restarts` within `max_seconds`), past which the supervisor stops its children and exits
with reason `SHUTDOWN` (the cause attached), so that its own supervisor decides what happens
next. `start` of a supervisor, and `start_child`, fail with `StartError` when a child fails to
start. `terminate_child` keeps the spec (`restart_child` / `delete_child` act on it); unknown
ids raise `ChildNotFoundError`.

Beyond OTP, for many mostly idle children:

- children can be *dormant*: recorded without a thread, started by the first `ensure_child`
  (a hibernated child becomes dormant again). Under simple_one_for_one, a dormant child is
  not recorded at all: `ensure_child(id)` starts one from the template with that id, so a
  hundred thousand idle children cost the supervisor nothing.
- the supervisor owns its children's timers (`send_after`): a timer reaches whichever
  incarnation of the child runs when it fires (waking a dormant one), survives restarts of
  the child, and is cancelled when the child is terminated or deleted.

Children must be `brama.otp.Actor`s, which tell the supervisor how they ended.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import pykka
from pykka import ActorRef

from brama.otp._actor import call, stop_and_wait
from brama.otp._address import ChildAddress
from brama.otp._childspec import (
    STRATEGIES,
    ChildInfo,
    ChildSpec,
    RestartIntensityExceeded,
    RestartType,
    StartContext,
    StateSlot,
    Strategy,
)
from brama.otp._clock import SYSTEM_CLOCK, Clock
from brama.otp._exit import NotHandledError
from brama.otp._supervisor_actor import (
    ChildRecord,
    DeleteChild,
    EnsureChild,
    RestartChild,
    SetIntensity,
    StartChild,
    StartInitial,
    SupervisorActor,
    TerminateChildren,
    WhichChildren,
)
from brama.otp._timers import TimerRef, TimerService

__all__ = ["Supervisor"]


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


class _ChildTimer:
    """A timer's destination: the child's current incarnation, through the supervisor."""

    __slots__ = ("child_id", "key", "supervisor", "timer")

    def __init__(self, supervisor: Supervisor, child_id: Hashable, key: Hashable) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        self.key = key
        self.timer: TimerRef | None = None

    def __repr__(self) -> str:
        return f"<timer {self.key!r} of child {self.child_id!r} of {self.supervisor.name!r}>"

    def tell(self, message: Any) -> None:
        self.supervisor._fired(self)
        ChildAddress(self.supervisor, self.child_id).tell(message)

    def ask(self, message: Any) -> Any:
        self.supervisor._fired(self)
        return ChildAddress(self.supervisor, self.child_id).ask(message)


class Supervisor:
    """Starts and watches child actors; see the module docstring for the OTP semantics.

    `timers` is the `TimerService` behind `send_after` (None: the supervisor keeps no timers).
    Under `simple_one_for_one`, `children` is exactly one spec: the template of every child.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "supervisor",
        timers: TimerService | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(
                f"Supervisor: strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}"
            )
        _check_intensity(max_restarts, max_seconds)
        specs = tuple(children)
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"Supervisor: children must be ChildSpec, got {spec!r}")
        template: ChildSpec | None = None
        if strategy == "simple_one_for_one":
            if len(specs) != 1:
                raise ValueError(
                    "Supervisor: simple_one_for_one takes exactly one child spec (the "
                    f"template of every child), got {len(specs)}"
                )
            template, specs = specs[0], ()
        if timers is not None and not isinstance(timers, TimerService):
            raise TypeError(f"Supervisor: timers must be a TimerService or None, got {timers!r}")
        self.name = name
        self.strategy: Strategy = strategy
        self._template = template
        self._children: dict[Hashable, ChildRecord] = {}  # written only by the actor
        self._failure: RestartIntensityExceeded | None = None
        self._stop_lock = threading.Lock()
        self._timer_service = timers
        self._timers_lock = threading.Lock()
        self._timers: dict[Hashable, dict[Hashable, TimerRef]] = {}
        self.ref: ActorRef[SupervisorActor] = SupervisorActor.start(
            self, self._children, strategy, max_restarts, float(max_seconds), clock,
            self._gave_up,
        )
        try:
            call(self.ref, StartInitial(specs))
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

    # -- the facade's reads (no round trip) --

    @property
    def alive(self) -> bool:
        """False once the supervisor stopped, by `stop()` or by giving up."""
        return self.ref.is_alive()

    @property
    def failure(self) -> RestartIntensityExceeded | None:
        """Why the supervisor gave up, if it did."""
        return self._failure

    @property
    def template(self) -> ChildSpec | None:
        """The spec every child is started from, under simple_one_for_one."""
        return self._template

    def whereis_child(self, child_id: Hashable) -> ActorRef[Any] | None:
        """The child's current ref, read without asking the supervisor (may be dead or None)."""
        child = self._children.get(child_id)
        return None if child is None else child.ref

    def slot(self, child_id: Hashable) -> StateSlot | None:
        """The state slot of a recorded child, read directly."""
        child = self._children.get(child_id)
        return None if child is None else child.slot

    def count_children(self) -> int:
        """How many children are recorded (running, dormant or stopped)."""
        return len(self._children)

    def address(self, child_id: Hashable) -> ChildAddress:
        """A destination for `tell`/`ask` that always reaches the child's current incarnation."""
        return ChildAddress(self, child_id)

    # -- calls to the supervisor actor --

    def start_child(self, spec: ChildSpec, *, start: bool = True) -> ActorRef[Any] | None:
        """Add a child and start it (or record it dormant with `start=False`); returns its ref.

        `StartError` if it fails to start (nothing is recorded then); ValueError for an id
        that exists. Not under simple_one_for_one (use `ensure_child`).
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child: spec must be a ChildSpec, got {spec!r}")
        return call(self.ref, StartChild(spec, start))  # type: ignore[no-any-return]

    def ensure_child(self, child_id: Hashable, *, timeout: float | None = None) -> ActorRef[Any]:
        """The running child's ref, starting it if it is not running (dormant, hibernated,
        terminated, or dead with its `Exit` still on the way). Under simple_one_for_one an
        unrecorded id is started from the template. `ChildNotFoundError` for unknown ids."""
        return call(self.ref, EnsureChild(child_id), timeout=timeout)  # type: ignore[no-any-return]

    def terminate_child(self, child_id: Hashable) -> None:
        """Stop a child (waiting up to its `shutdown`) and cancel its timers; the spec is kept
        (`restart_child`, `delete_child`) unless the child is temporary or the strategy is
        simple_one_for_one. `ChildNotFoundError` for an unknown id."""
        call(self.ref, TerminateChildren((child_id,), strict=True))

    def terminate_children(self, child_ids: Iterable[Hashable]) -> None:
        """`terminate_child` for many children in one round trip; unknown ids are skipped, and
        their timers cancelled all the same (a dormant simple_one_for_one child is unrecorded)."""
        call(self.ref, TerminateChildren(tuple(child_ids), strict=False))

    def restart_child(self, child_id: Hashable) -> ActorRef[Any]:
        """Start a terminated child again from its spec; `ChildRunningError` if it runs."""
        return call(self.ref, RestartChild(child_id))  # type: ignore[no-any-return]

    def delete_child(self, child_id: Hashable) -> None:
        """Forget a child that is not running; `ChildRunningError` if it runs."""
        call(self.ref, DeleteChild(child_id))

    def which_children(self) -> list[ChildInfo]:
        """Every recorded child with its ref, restart type, status and restart count."""
        return call(self.ref, WhichChildren())  # type: ignore[no-any-return]

    def set_intensity(self, max_restarts: int, max_seconds: float) -> None:
        """Change the restart intensity from now on (restarts already logged still count)."""
        _check_intensity(max_restarts, max_seconds)
        call(self.ref, SetIntensity(max_restarts, float(max_seconds)))

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop every child in reverse start order, then the supervisor; idempotent."""
        with self._stop_lock:
            if self.ref.is_alive() and not stop_and_wait(self.ref, timeout):
                raise pykka.Timeout(f"supervisor {self.name!r} did not stop in {timeout} s")
        self.cancel_all_timers()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return f"<Supervisor {self.name!r} {self.strategy} {state}>"

    # -- timers owned for the children --

    def send_after(
        self, child_id: Hashable, key: Hashable, delay: float, message: Any
    ) -> TimerRef:
        """Deliver `message` to child `child_id` after `delay` seconds, as timer `key`.

        Arming a key again replaces (cancels) the child's previous timer of that key. The
        message reaches the incarnation running when it fires, waking a dormant child.
        """
        service = self._timer_service
        if service is None:
            raise RuntimeError(f"supervisor {self.name!r} was started without timers=")
        target = _ChildTimer(self, child_id, key)
        with self._timers_lock:
            if not self.ref.is_alive():
                raise NotHandledError(f"supervisor {self.name!r} is not running")
            timer = service.send_after(delay, target, message)
            target.timer = timer
            old = self._timers.setdefault(child_id, {}).pop(key, None)
            self._timers[child_id][key] = timer
        if old is not None:
            old.cancel()
        return timer

    def cancel_timer(self, child_id: Hashable, key: Hashable) -> bool:
        """Cancel a child's timer `key`; True if it was pending."""
        with self._timers_lock:
            timers = self._timers.get(child_id)
            timer = None if timers is None else timers.pop(key, None)
            if timers is not None and not timers:
                del self._timers[child_id]
        return timer is not None and timer.cancel()

    def cancel_timers(self, child_id: Hashable) -> int:
        """Cancel every timer of a child; returns how many were pending."""
        with self._timers_lock:
            timers = self._timers.pop(child_id, {})
        return sum(timer.cancel() for timer in timers.values())

    def cancel_all_timers(self) -> None:
        """Cancel every timer of every child (the supervisor is going away)."""
        with self._timers_lock:
            everything, self._timers = self._timers, {}
        for timers in everything.values():
            for timer in timers.values():
                timer.cancel()

    def pending_timers(self, child_id: Hashable | None = None) -> int:
        """How many timers are pending for `child_id` (None: for all children)."""
        with self._timers_lock:
            if child_id is not None:
                return len(self._timers.get(child_id, ()))
            return sum(len(timers) for timers in self._timers.values())

    def _fired(self, target: _ChildTimer) -> None:
        with self._timers_lock:
            timers = self._timers.get(target.child_id)
            if timers is not None and timers.get(target.key) is target.timer:
                del timers[target.key]
                if not timers:
                    del self._timers[target.child_id]

    def _gave_up(self, error: RestartIntensityExceeded) -> None:
        self._failure = error

