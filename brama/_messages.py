"""The vocabulary of the circuit state machine: times, tickets, messages and results.

Messages are small immutable records (frozen dataclasses; the outcome messages built on every
report are named tuples), handled by `brama._circuit.step` in one `match`; results are named
tuples, cheap to build on every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeAlias

from brama.types import EventType

__all__ = [
    "ALL_EVENTS",
    "EXPIRY_TIMER",
    "LEGACY",
    "NO_PERMIT",
    "REFUSED",
    "Acquire",
    "CloseCircuit",
    "Configure",
    "DisableExpiry",
    "Emit",
    "ExpiryTick",
    "Failure",
    "Message",
    "Now",
    "OpenCircuit",
    "PermitTimeout",
    "Release",
    "ResetCircuit",
    "ResetExpiry",
    "SetExpiry",
    "Success",
    "TimerRequest",
    "permit_timer",
]

REFUSED: Final = -2
"""Ticket of a call that was not admitted."""
NO_PERMIT: Final = -1
"""Ticket of a call admitted while the circuit was closed: it holds no permit."""
LEGACY: Final = -3
"""Ticket of an outcome reported without one (the plain `success` / `failure`)."""
EXPIRY_TIMER: Final = "expiry"
"""Key of the one expiry timer of a connection."""


def permit_timer(permit_id: int) -> tuple[str, int]:
    """Key of the timeout timer of half-open permit `permit_id`."""
    return ("permit", permit_id)


class _AllEvents(frozenset[EventType]):
    """Wants every event type (the default of `step`, and what a catch-all subscriber wants)."""

    def __contains__(self, item: object) -> bool:
        return True


ALL_EVENTS: Final[frozenset[EventType]] = _AllEvents()


class Now(NamedTuple):
    """The current time as both clocks see it: wall (epoch seconds) and monotonic."""

    wall: float
    mono: float


# --- messages ------------------------------------------------------------------------------


class Success(NamedTuple):
    """A call through the breaker succeeded; `permit` is its ticket (see the module doc).

    The three outcome messages are named tuples rather than dataclasses: they are built on
    every report, and a tuple costs a fraction of a frozen dataclass's `__init__`.
    """

    permit: int = LEGACY
    duration: float | None = None


class Failure(NamedTuple):
    """A call through the breaker failed; `permit` is its ticket (see the module doc)."""

    reason: Any = None
    permit: int = LEGACY
    duration: float | None = None


class Release(NamedTuple):
    """A call ended without an outcome (cancelled, ignored): its permit comes back."""

    permit: int


@dataclass(frozen=True, slots=True)
class Acquire:
    """Ask whether a call may go through; in half-open this takes a trial permit."""


@dataclass(frozen=True, slots=True)
class OpenCircuit:
    """Force the circuit open; `expires_in` overrides this opening's length."""

    reason: Any = None
    expires_in: float | None = None


@dataclass(frozen=True, slots=True)
class CloseCircuit:
    """Force the circuit closed, with failure count and backoff reset."""

    reason: Any = None


@dataclass(frozen=True, slots=True)
class ResetCircuit:
    """Like CloseCircuit, but announced as a reset (CIRCUIT_RESET)."""

    reason: Any = None


@dataclass(frozen=True, slots=True)
class ResetExpiry:
    """An open circuit goes to half-open now; clears `expiry_disabled`."""


@dataclass(frozen=True, slots=True)
class SetExpiry:
    """This connection's expiry from now on; an open deadline is recomputed from opened_at."""

    seconds: float


@dataclass(frozen=True, slots=True)
class DisableExpiry:
    """Keep the circuit open until a manual action."""


@dataclass(frozen=True, slots=True)
class Configure:
    """Merge validated per-connection options into the circuit's overrides."""

    overrides: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExpiryTick:
    """Timer message: the opening of `generation` has reached its deadline."""

    generation: int


@dataclass(frozen=True, slots=True)
class PermitTimeout:
    """Timer message: half-open permit `permit_id` was never reported; take it back."""

    permit_id: int


Message: TypeAlias = (
    Success
    | Failure
    | Release
    | Acquire
    | OpenCircuit
    | CloseCircuit
    | ResetCircuit
    | ResetExpiry
    | SetExpiry
    | DisableExpiry
    | Configure
    | ExpiryTick
    | PermitTimeout
)


# --- results -------------------------------------------------------------------------------


class Emit(NamedTuple):
    """An event to publish; the actor adds timestamp, connection and scope."""

    event: EventType
    data: Mapping[str, Any]


class TimerRequest(NamedTuple):
    """Arm timer `key` (replacing any timer of that key) to deliver `message` after `delay`
    seconds; with `message` None, cancel timer `key`."""

    key: Any
    delay: float
    message: ExpiryTick | PermitTimeout | None
