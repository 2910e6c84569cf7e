"""What a supervisor is given and answers with: child specs, start contexts, child rows, errors."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pykka import ActorRef

if TYPE_CHECKING:
    from brama.otp._actor import Actor

__all__ = [
    "ChildInfo",
    "ChildNotFoundError",
    "ChildRunningError",
    "ChildSpec",
    "RestartIntensityExceeded",
    "RestartType",
    "StartContext",
    "StateSlot",
    "Strategy",
]

RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
RESTARTS: frozenset[str] = frozenset({"permanent", "transient", "temporary"})
STRATEGIES: frozenset[str] = frozenset(
    {"one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"}
)


class ChildNotFoundError(LookupError):
    """No child with that id is known to the supervisor (OTP's `{error, not_found}`)."""


class ChildRunningError(RuntimeError):
    """`restart_child` / `delete_child` of a child that is running (OTP's `{error, running}`)."""


class RestartIntensityExceeded(Exception):  # named after the OTP condition
    """More than `max_restarts` restarts within `max_seconds`: the supervisor gave up.

    The supervisor then exits with reason `SHUTDOWN`, as in OTP, with this as the `Exit`'s
    `cause` and as `Supervisor.failure`.
    """


class StateSlot:
    """Where a child publishes the state a restarted successor should resume from."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def publish(self, value: Any) -> None:
        """Replace the published state (one reference assignment: readers never see half)."""
        self.value = value


class SupervisorView(Protocol):
    """What the code a `Supervisor` runs or hands out (its actor, its children's start
    functions, `ChildAddress`) sees of it; declared here so that none of those modules
    imports the `Supervisor` module, which imports them."""

    name: str

    @property
    def template(self) -> ChildSpec | None: ...

    @property
    def failure(self) -> RestartIntensityExceeded | None: ...

    def whereis_child(self, child_id: Hashable) -> ActorRef[Any] | None: ...

    def ensure_child(
        self, child_id: Hashable, *, timeout: float | None = None
    ) -> ActorRef[Any]: ...

    def cancel_timers(self, child_id: Hashable) -> int: ...

    def cancel_all_timers(self) -> None: ...


@dataclass(frozen=True)
class StartContext:
    """What a child's start function is handed: who it is and the state to resume from."""

    child_id: Hashable
    restarts: int
    slot: StateSlot
    supervisor: SupervisorView

    @property
    def last_state(self) -> Any:
        """The state the previous incarnation last published, or None on a first start."""
        return self.slot.value


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and when to restart it (OTP's child specification).

    `shutdown` is how long the supervisor waits for the child to stop. A thread cannot be
    killed: a child still running after it is logged by name and abandoned.
    """

    id: Hashable
    start: Callable[[StartContext], ActorRef[Any]]
    restart: RestartType = "permanent"
    shutdown: float = 5.0

    def __post_init__(self) -> None:
        if not callable(self.start):
            raise TypeError(f"ChildSpec.start must be callable, got {self.start!r}")
        if self.restart not in RESTARTS:
            raise ValueError(
                f"ChildSpec.restart must be one of {sorted(RESTARTS)}, got {self.restart!r}"
            )
        if isinstance(self.shutdown, bool) or not isinstance(self.shutdown, (int, float)) or not (
            0 < self.shutdown < float("inf")
        ):
            raise ValueError(
                f"ChildSpec.shutdown must be a finite number of seconds > 0, got {self.shutdown!r}"
            )

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
    """One row of `which_children()`.

    `status` is "running", "dormant" (recorded, no thread: never started, or hibernated) or
    "stopped" (terminated, or ended and not to be restarted).
    """

    id: Hashable
    ref: ActorRef[Any] | None
    restart: RestartType
    status: Literal["running", "dormant", "stopped"]
    restarts: int
