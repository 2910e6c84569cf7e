"""Value types shared by the whole library: circuit states, event types, statuses and events.

All of them are immutable so that snapshots can be handed to any thread without copying.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from types import MappingProxyType
from typing import Any, TypeVar

from brama.errors import ConfigError

__all__ = ["CircuitState", "ConnectionStatus", "Event", "EventType"]


E = TypeVar("E", bound=Enum)


def _member(cls: type[E], value: object, what: str) -> E:
    """The member of `cls` for `value` (a member or its string value), else ConfigError naming
    `what` and the accepted values; no method of a str subclass runs (a plain copy is read)."""
    if type(value) is cls:
        return value
    if isinstance(value, str):
        member = cls._value2member_map_.get(str.__str__(value))
        if member is not None:
            return member  # type: ignore[return-value]
    accepted = ", ".join(repr(m.value) for m in cls)
    raise ConfigError(f"{what} must be one of {accepted}, got {_shown(value)}")


class CircuitState(str, Enum):
    """The three states of a circuit breaker; str-valued, so `CircuitState.OPEN == "open"`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def coerce(cls, value: CircuitState | str) -> CircuitState:
        """Return the member for `value` (a member or its string value), else raise ConfigError."""
        return _member(cls, value, "state")


class EventType(str, Enum):
    """The kinds of event the bus publishes; str-valued, and the string is accepted everywhere."""

    STATE_CHANGE = "state_change"
    REGISTRATION = "registration"
    FAILURE = "failure"
    SUCCESS = "success"
    EXPIRY = "expiry"
    CLEANUP = "cleanup"
    CIRCUIT_OPENED = "circuit_opened"
    CIRCUIT_CLOSED = "circuit_closed"
    CIRCUIT_RESET = "circuit_reset"
    CONNECTION_REGISTERED = "connection_registered"
    CONNECTION_UNREGISTERED = "connection_unregistered"
    CIRCUIT_HALF_OPENED = "circuit_half_opened"
    CONNECTION_REMOVED = "connection_removed"
    FAILURE_RATE_EXCEEDED = "failure_rate_exceeded"
    SLOW_CALL_RATE_EXCEEDED = "slow_call_rate_exceeded"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BACKEND_RESTORED = "backend_restored"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def coerce(cls, value: EventType | str) -> EventType:
        """Return the member for `value` (a member or its string value), else raise ConfigError."""
        return _member(cls, value, "event type")


def _shown(value: Any) -> str:
    """`value` in an error message: the repr of its characters if it is a str, else its type
    (no method of the caller's object runs)."""
    if isinstance(value, str):
        return repr(str.__str__(value))
    return f"an object of type {type(value).__name__}"


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of `value` (an empty one for None), so callers cannot mutate it later."""
    return MappingProxyType(dict(value) if value is not None else {})


@dataclass(frozen=True)
class ConnectionStatus:
    """A point-in-time snapshot of one connection: its circuit, its settings and its metrics.

    Times are wall-clock epoch seconds; `expiry` is the length of the current opening while
    open or half-open, else of the next one. The last four fields are for diagnosis: why the
    circuit opened, how many trials are out, when it opens for trials, how often it opened.
    """

    identifier: str
    scope: str | None
    type: str
    state: CircuitState
    failure_count: int
    max_attempts: int
    expiry: float
    expiry_strategy: str
    initial_expiry: float
    max_expiry: float
    backoff_factor: float
    half_open_max_calls: int
    success_threshold: int
    opened_at: float | None
    last_failure_time: float | None
    last_success_time: float | None
    last_state_change: float | None
    registered_at: float | None
    expiry_disabled: bool
    metadata: Mapping[str, Any]
    total_successes: int
    total_failures: int
    rejected_calls: int
    success_rate: float | None
    last_failure_reason: Any = None
    """The reason of the last reported failure (`repr(exc)` for the decorator and guard)."""
    half_open_permits_in_use: int = 0
    """Trial calls admitted in half-open and not yet reported, released or timed out."""
    open_until: float | None = None
    """Wall time when an open circuit lets a trial call through (None: closed, half-open, or
    its expiry is disabled)."""
    total_openings: int = 0
    """How many times the circuit opened (manual openings included)."""
    failure_rate: float | None = None
    """Failed calls / calls in the window; None without a rate policy or below minimum_calls."""
    slow_call_rate: float | None = None
    """Slow calls / calls in the window; None without slow_call_duration or below
    minimum_calls."""
    calls_in_window: int = 0
    """The calls the window holds now (0 without a rate policy)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle support (a read-only mapping proxy cannot be pickled as is)."""
        return (_rebuild, (type(self), _plain_fields(self)))

    @property
    def available(self) -> bool:
        """True unless the circuit is open (half-open calls may still find every permit taken)."""
        return self.state is not CircuitState.OPEN


@dataclass(frozen=True, slots=True)
class Event:
    """One notification from the event bus; `timestamp` is wall-clock epoch seconds."""

    event: EventType
    timestamp: float
    connection: str
    scope: str | None
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "event", EventType.coerce(self.event))
        object.__setattr__(self, "data", _frozen_mapping(self.data))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle support (a read-only mapping proxy cannot be pickled as is)."""
        return (_rebuild, (type(self), _plain_fields(self)))


def _plain_fields(instance: Any) -> dict[str, Any]:
    """The fields of a dataclass instance, with mapping proxies turned into dicts."""
    return {
        f.name: dict(value) if isinstance(value, MappingProxyType) else value
        for f in fields(instance)
        for value in (getattr(instance, f.name),)
    }


def _rebuild(cls: type[Any], values: dict[str, Any]) -> Any:
    """Unpickle a frozen dataclass from its field values."""
    return cls(**values)
