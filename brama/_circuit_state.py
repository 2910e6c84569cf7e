"""The whole, immutable state of one connection's circuit breaker (`Circuit`), and what one
step of the state machine in `brama._circuit` makes of it (`Step`).

`brama._circuit` re-exports every name here: import them from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from brama._messages import Emit, Now, TimerRequest
from brama._record import record
from brama._window import Window
from brama.types import CircuitState

__all__ = ["CLOSED", "EMPTY", "HALF_OPEN", "OPEN", "Circuit", "Step", "new_circuit"]

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN

EMPTY: Mapping[str, Any] = MappingProxyType({})


@record
class Circuit:
    """The whole, immutable state of one connection's circuit breaker."""

    __slots__ = (
        "current_expiry",
        "expiry_disabled",
        "failure_count",
        "folded",
        "generation",
        "half_open_successes",
        "last_activity",
        "last_failure_reason",
        "last_failure_time",
        "last_state_change",
        "last_success_time",
        "next_permit_id",
        "open_deadline",
        "opened_at",
        "opening_step",
        "overrides",
        "permits",
        "registered_at",
        "rejected_calls",
        "state",
        "total_failures",
        "total_openings",
        "total_successes",
        "window",
    )

    def __init__(
        self,
        *,
        state: CircuitState = CLOSED,
        failure_count: int = 0,
        opening_step: int = 0,
        opened_at: float | None = None,
        open_deadline: float | None = None,
        current_expiry: float | None = None,
        expiry_disabled: bool = False,
        generation: int = 0,
        half_open_successes: int = 0,
        permits: tuple[tuple[int, float], ...] = (),
        next_permit_id: int = 0,
        total_successes: int = 0,
        total_failures: int = 0,
        rejected_calls: int = 0,
        total_openings: int = 0,
        last_failure_time: float | None = None,
        last_failure_reason: Any = None,
        last_success_time: float | None = None,
        last_state_change: float | None = None,
        registered_at: float | None = None,
        last_activity: float = 0.0,
        overrides: Mapping[str, Any] = EMPTY,
        window: Window | None = None,
        folded: int = 0,
    ) -> None:
        self.state: Final = state
        self.failure_count: Final = failure_count
        self.opening_step: Final = opening_step
        """n in the progressive formula: consecutive openings since the circuit last closed."""
        self.opened_at: Final = opened_at
        """Wall time of the current opening; kept through half-open, None when closed."""
        self.open_deadline: Final = open_deadline
        """Monotonic deadline of the current opening; None unless open with expiry enabled."""
        self.current_expiry: Final = current_expiry
        """Length of the current opening (open and half-open); None when closed."""
        self.expiry_disabled: Final = expiry_disabled
        self.generation: Final = generation
        """Bumped on every state change and re-arming; ExpiryTick messages carry it."""
        self.half_open_successes: Final = half_open_successes
        self.permits: Final = permits
        """Outstanding half-open permits, oldest first: (permit id, monotonic deadline)."""
        self.next_permit_id: Final = next_permit_id
        self.total_successes: Final = total_successes
        self.total_failures: Final = total_failures
        self.rejected_calls: Final = rejected_calls
        self.total_openings: Final = total_openings
        self.last_failure_time: Final = last_failure_time
        self.last_failure_reason: Final = last_failure_reason
        self.last_success_time: Final = last_success_time
        self.last_state_change: Final = last_state_change
        self.registered_at: Final = registered_at
        self.last_activity: Final = last_activity
        """Monotonic time of the last registration, outcome or state change (inactivity)."""
        self.overrides: Final = overrides
        """Per-connection options (validated by the caller), read-only."""
        self.window: Final = window
        """Recent calls for the rate policies (None: no policy, or none since closing)."""
        self.folded: Final = folded
        """How many of the hot path's successes are already in the window."""

    if TYPE_CHECKING:

        def evolve(self, **changes: Any) -> Circuit: ...


class Step(NamedTuple):
    """The outcome of one message: the new circuit, events, timers, and the caller's reply."""

    circuit: Circuit
    events: tuple[Emit, ...] = ()
    timers: tuple[TimerRequest, ...] = ()
    reply: Any = None


def new_circuit(now: Now, overrides: Mapping[str, Any] = EMPTY, first_permit: int = 0) -> Circuit:
    """A fresh, closed circuit registered now, with its per-connection options; its half-open
    permit ids start at `first_permit` (a registration's own range, see `PERMIT_RANGE`)."""
    return _FRESH.evolve(registered_at=now.wall, last_activity=now.mono,
                         overrides=MappingProxyType(dict(overrides)) if overrides else EMPTY,
                         next_permit_id=first_permit)


PERMIT_RANGE: Final = 1 << 20
"""Permit ids a registration draws from before the next registration's range: each
registration of a system starts its ids where the last one's range ended, so a ticket of a
discarded registration of the same name names no permit of the new one."""


_FRESH = Circuit()
