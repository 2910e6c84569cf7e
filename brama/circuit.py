"""The pure circuit-breaker state machine: (circuit, options, message, now) -> Step.

No threads, no clocks, no I/O: the connection actor feeds it messages with the current time
and carries out what comes back (events to publish, timers to arm, a reply to send). Timers
are never cancelled; each timer message carries the generation (or permit id) it was armed
for, and a stale one is ignored.

Decisions where the contract leaves room:

- `open_circuit` on an already open circuit re-opens it (new `opened_at`, deadline and
  backoff step) and emits `CIRCUIT_OPENED` but no `STATE_CHANGE`, as the state did not change.
- `close_circuit` / `reset_circuit` on a closed circuit reset the failure count, the backoff
  and `expiry_disabled`, and emit `CIRCUIT_CLOSED` / `CIRCUIT_RESET` without `STATE_CHANGE`.
  `reset_circuit` emits `CIRCUIT_RESET` instead of `CIRCUIT_CLOSED`; neither clears the metrics.
- `reset_expiry` moves an open circuit to half-open without an `EXPIRY` event (no deadline
  was reached); it always clears `expiry_disabled`.
- `expiry_disabled` survives a close by success threshold; only `close_circuit`,
  `reset_circuit`, `reset_expiry` and `set_expiry` clear it.
- In half-open, `failure_count` keeps the count that opened the circuit until it closes.
- Every opening advances the backoff step, manual ones included (even with `expires_in`).
- `set_expiry` also applies to the current half-open period's length (`status().expiry`).
  On an open circuit whose recomputed deadline (`opened_at + seconds`) has already passed,
  it expires at once (with `EXPIRY`), not on a timer tick.
- A per-connection `Configure` never changes the current opening, nor trims permits already
  granted; it applies to what comes next.
- Events that change state carry an extra `trigger` key ("failures", "half_open_failure",
  "manual", "expiry", "reset_expiry", "success_threshold") besides the documented keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeAlias

from brama.config import Options
from brama.types import CircuitState, ConnectionStatus, EventType

__all__ = [
    "Acquire",
    "Circuit",
    "CloseCircuit",
    "Configure",
    "DisableExpiry",
    "Emit",
    "ExpiryTick",
    "Failure",
    "Message",
    "Now",
    "OpenCircuit",
    "Options",
    "PermitTimeout",
    "ResetCircuit",
    "ResetExpiry",
    "SetExpiry",
    "Step",
    "Success",
    "TimerRequest",
    "expiry_for",
    "expiry_overrides",
    "new_circuit",
    "next_opening_expiry",
    "resume_timers",
    "step",
    "to_status",
]

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of `mapping`."""
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Now:
    """The current time as both clocks see it: wall (epoch seconds) and monotonic."""

    wall: float
    mono: float


@dataclass(frozen=True, slots=True)
class Circuit:
    """The whole, immutable state of one connection's circuit breaker."""

    state: CircuitState = CLOSED
    failure_count: int = 0
    opening_step: int = 0
    """n in the progressive formula: consecutive openings since the circuit last closed."""
    opened_at: float | None = None
    """Wall time of the current opening; kept through half-open, None when closed."""
    open_deadline: float | None = None
    """Monotonic deadline of the current opening; None unless open with expiry enabled."""
    current_expiry: float | None = None
    """Length of the current opening (open and half-open); None when closed."""
    expiry_disabled: bool = False
    generation: int = 0
    """Bumped on every state change and re-arming; ExpiryTick messages carry it."""
    half_open_successes: int = 0
    permits: tuple[tuple[int, float], ...] = ()
    """Outstanding half-open permits, oldest first: (permit id, monotonic deadline)."""
    next_permit_id: int = 0
    total_successes: int = 0
    total_failures: int = 0
    rejected_calls: int = 0
    last_failure_time: float | None = None
    last_success_time: float | None = None
    last_state_change: float | None = None
    registered_at: float | None = None
    last_activity: float = 0.0
    """Monotonic time of the last registration, outcome or state change (inactivity sweep)."""
    overrides: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """Per-connection options (validated by the caller), read-only."""


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Success:
    """A call through the breaker succeeded (returns the oldest half-open permit)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A call through the breaker failed (returns the oldest half-open permit)."""

    reason: Any = None


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


@dataclass(frozen=True, slots=True)
class Emit:
    """An event to publish; the actor adds timestamp, connection and scope."""

    event: EventType
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _freeze(self.data))


@dataclass(frozen=True, slots=True)
class TimerRequest:
    """Deliver `message` back to the circuit after `delay` seconds (monotonic)."""

    delay: float
    message: ExpiryTick | PermitTimeout


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one message: the new circuit, events, timers, and the caller's reply."""

    circuit: Circuit
    events: tuple[Emit, ...] = ()
    timers: tuple[TimerRequest, ...] = ()
    reply: Any = None


# --- expiry arithmetic ---------------------------------------------------------------------


def next_opening_expiry(step: int, options: Options) -> float:
    """The length of opening number `step` (0 = first since the last close), per strategy.

    fixed: `expiry`; progressive: `min(max_expiry, initial_expiry * backoff_factor ** step)`.
    """
    if options.expiry_strategy != "progressive":
        return options.expiry
    try:
        length = options.initial_expiry * options.backoff_factor ** max(step, 0)
    except OverflowError:
        return options.max_expiry
    return min(options.max_expiry, length)


def expiry_for(circuit: Circuit, options: Options) -> float:
    """`status().expiry`: the current opening's length while open or half-open, else the next."""
    if circuit.state is not CLOSED and circuit.current_expiry is not None:
        return circuit.current_expiry
    return next_opening_expiry(circuit.opening_step, options)


def expiry_overrides(overrides: Mapping[str, Any], seconds: float) -> Mapping[str, Any]:
    """The overrides after `set_expiry(seconds)`: expiry and initial_expiry both set to it.

    The facade resolves these before sending SetExpiry, so a value above an explicit
    max_expiry is rejected with ConfigError instead of breaking the connection.
    """
    return _freeze({**overrides, "expiry": float(seconds), "initial_expiry": float(seconds)})


def _delay(value: float) -> float:
    """A timer delay: negative or NaN becomes 0."""
    return value if value > 0 else 0.0


# --- transitions ---------------------------------------------------------------------------


def _state_change(
    previous: CircuitState, new: CircuitState, reason: Any, failure_count: int, trigger: str
) -> Emit:
    """The STATE_CHANGE event every transition emits."""
    return Emit(
        EventType.STATE_CHANGE,
        {
            "previous_state": previous,
            "new_state": new,
            "reason": reason,
            "failure_count": failure_count,
            "trigger": trigger,
        },
    )


def _open(
    c: Circuit,
    options: Options,
    now: Now,
    *,
    reason: Any,
    trigger: str,
    expires_in: float | None = None,
) -> Step:
    """Open (or re-open) the circuit at the current backoff step, arming its expiry tick."""
    previous = c.state
    expiry = next_opening_expiry(c.opening_step, options) if expires_in is None else expires_in
    expiry = _delay(float(expiry))
    generation = c.generation + 1
    deadline = None if c.expiry_disabled else now.mono + expiry
    changed = previous is not OPEN
    opened = replace(
        c,
        state=OPEN,
        opening_step=c.opening_step + 1,
        opened_at=now.wall,
        open_deadline=deadline,
        current_expiry=expiry,
        generation=generation,
        half_open_successes=0,
        permits=(),
        last_state_change=now.wall if changed else c.last_state_change,
        last_activity=now.mono,
    )
    events: list[Emit] = []
    if changed:
        events.append(_state_change(previous, OPEN, reason, c.failure_count, trigger))
    events.append(
        Emit(
            EventType.CIRCUIT_OPENED,
            {
                "reason": reason,
                "failure_count": c.failure_count,
                "expiry": expiry,
                "expiry_disabled": c.expiry_disabled,
                "previous_state": previous,
                "trigger": trigger,
            },
        )
    )
    timers = () if deadline is None else (TimerRequest(expiry, ExpiryTick(generation)),)
    return Step(opened, tuple(events), timers)


def _half_open(c: Circuit, now: Now, *, reason: Any, trigger: str) -> tuple[Circuit, Emit]:
    """Move an open circuit to half-open (no permits out yet); return it and its STATE_CHANGE."""
    return (
        replace(
            c,
            state=HALF_OPEN,
            open_deadline=None,
            generation=c.generation + 1,
            half_open_successes=0,
            permits=(),
            last_state_change=now.wall,
            last_activity=now.mono,
        ),
        _state_change(OPEN, HALF_OPEN, reason, c.failure_count, trigger),
    )


def _half_opened_event(c: Circuit, reason: Any, trigger: str) -> Emit:
    """The CIRCUIT_HALF_OPENED event for a circuit that just went half-open."""
    return Emit(
        EventType.CIRCUIT_HALF_OPENED,
        {
            "reason": reason,
            "failure_count": c.failure_count,
            "expiry": c.current_expiry,
            "trigger": trigger,
        },
    )


def _close(
    c: Circuit,
    now: Now,
    *,
    reason: Any,
    event: EventType,
    trigger: str,
    clear_disabled: bool,
) -> tuple[Circuit, tuple[Emit, ...]]:
    """Close the circuit: failure count 0, backoff at its first step, no permits."""
    previous = c.state
    changed = previous is not CLOSED
    closed = replace(
        c,
        state=CLOSED,
        failure_count=0,
        opening_step=0,
        opened_at=None,
        open_deadline=None,
        current_expiry=None,
        expiry_disabled=False if clear_disabled else c.expiry_disabled,
        generation=c.generation + 1 if changed else c.generation,
        half_open_successes=0,
        permits=(),
        last_state_change=now.wall if changed else c.last_state_change,
        last_activity=now.mono,
    )
    events: list[Emit] = []
    if changed:
        events.append(_state_change(previous, CLOSED, reason, 0, trigger))
    events.append(
        Emit(
            event,
            {"reason": reason, "failure_count": 0, "previous_state": previous, "trigger": trigger},
        )
    )
    return closed, tuple(events)


def _outcome_event(kind: EventType, failure_count: int, reason: Any) -> Emit:
    """The SUCCESS / FAILURE event: failure count after the outcome, and the reason."""
    return Emit(kind, {"failure_count": failure_count, "reason": reason})


def _on_success(c: Circuit, options: Options, now: Now) -> Step:
    """A reported success: resets failures when closed, counts towards closing in half-open."""
    c = replace(
        c,
        total_successes=c.total_successes + 1,
        last_success_time=now.wall,
        last_activity=now.mono,
    )
    if c.state is CLOSED:
        c = replace(c, failure_count=0)
        return Step(c, (_outcome_event(EventType.SUCCESS, 0, None),))
    if c.state is OPEN:
        return Step(c, (_outcome_event(EventType.SUCCESS, c.failure_count, None),))
    c = replace(c, permits=c.permits[1:], half_open_successes=c.half_open_successes + 1)
    if c.half_open_successes < options.success_threshold:
        return Step(c, (_outcome_event(EventType.SUCCESS, c.failure_count, None),))
    reason = "success_threshold_reached"
    closed, events = _close(
        c,
        now,
        reason=reason,
        event=EventType.CIRCUIT_CLOSED,
        trigger="success_threshold",
        clear_disabled=False,
    )
    return Step(closed, (_outcome_event(EventType.SUCCESS, 0, None), *events))


def _on_failure(c: Circuit, options: Options, now: Now, reason: Any) -> Step:
    """A reported failure: counts towards opening when closed, re-opens from half-open."""
    if c.state is OPEN:
        c = replace(
            c,
            total_failures=c.total_failures + 1,
            last_failure_time=now.wall,
            last_activity=now.mono,
        )
        return Step(c, (_outcome_event(EventType.FAILURE, c.failure_count, reason),))
    c = replace(  # one replace: this runs on every reported failure
        c,
        total_failures=c.total_failures + 1,
        last_failure_time=now.wall,
        last_activity=now.mono,
        failure_count=c.failure_count + 1,
        permits=c.permits[1:],
    )
    failure = _outcome_event(EventType.FAILURE, c.failure_count, reason)
    if c.state is CLOSED and c.failure_count < options.max_attempts:
        return Step(c, (failure,))
    trigger = "failures" if c.state is CLOSED else "half_open_failure"
    opened = _open(c, options, now, reason=reason, trigger=trigger)
    return replace(opened, events=(failure, *opened.events))


def _on_acquire(c: Circuit, options: Options, now: Now) -> Step:
    """Admission: always in closed, never in open, up to half_open_max_calls permits otherwise."""
    if c.state is CLOSED:
        return Step(c, reply=True)
    if c.state is HALF_OPEN and len(c.permits) < options.half_open_max_calls:
        lease = expiry_for(c, options)
        permit_id = c.next_permit_id
        granted = replace(
            c,
            permits=(*c.permits, (permit_id, now.mono + lease)),
            next_permit_id=permit_id + 1,
        )
        return Step(granted, timers=(TimerRequest(lease, PermitTimeout(permit_id)),), reply=True)
    return Step(replace(c, rejected_calls=c.rejected_calls + 1), reply=False)


def _on_expiry_tick(c: Circuit, now: Now, generation: int) -> Step:
    """The open deadline was reached: go half-open, unless the tick is stale."""
    if c.state is not OPEN or generation != c.generation or c.open_deadline is None:
        return Step(c)
    expired = Emit(
        EventType.EXPIRY,
        {"opened_at": c.opened_at, "expired_at": now.wall, "expiry": c.current_expiry},
    )
    half, change = _half_open(c, now, reason="expired", trigger="expiry")
    return Step(half, (expired, change, _half_opened_event(half, "expired", "expiry")))


def _on_set_expiry(c: Circuit, now: Now, seconds: float) -> Step:
    """Set this connection's expiry; an open deadline is recomputed from opened_at."""
    seconds = _delay(float(seconds))
    c = replace(c, overrides=expiry_overrides(c.overrides, seconds), expiry_disabled=False)
    if c.state is HALF_OPEN:
        return Step(replace(c, current_expiry=seconds))
    if c.state is not OPEN:
        return Step(c)
    opened_at = now.wall if c.opened_at is None else c.opened_at
    remaining = _delay(opened_at + seconds - now.wall)
    generation = c.generation + 1
    c = replace(
        c,
        current_expiry=seconds,
        open_deadline=now.mono + remaining,
        generation=generation,
    )
    if remaining <= 0:  # the new deadline is already behind us: expire now, not on a tick
        return _on_expiry_tick(c, now, generation)
    return Step(c, timers=(TimerRequest(remaining, ExpiryTick(generation)),))


def step(circuit: Circuit, options: Options, message: Message, now: Now) -> Step:
    """Handle one message: return the new circuit, the events to emit and the timers to arm."""
    c = circuit
    match message:
        case Success():
            return _on_success(c, options, now)
        case Failure(reason=reason):
            return _on_failure(c, options, now, reason)
        case Acquire():
            return _on_acquire(c, options, now)
        case ExpiryTick(generation=generation):
            return _on_expiry_tick(c, now, generation)
        case PermitTimeout(permit_id=permit_id):
            permits = tuple(p for p in c.permits if p[0] != permit_id)
            return Step(c if len(permits) == len(c.permits) else replace(c, permits=permits))
        case OpenCircuit(reason=reason, expires_in=expires_in):
            return _open(c, options, now, reason=reason, trigger="manual", expires_in=expires_in)
        case CloseCircuit(reason=reason):
            closed, events = _close(
                c,
                now,
                reason=reason,
                event=EventType.CIRCUIT_CLOSED,
                trigger="manual",
                clear_disabled=True,
            )
            return Step(closed, events)
        case ResetCircuit(reason=reason):
            closed, events = _close(
                c,
                now,
                reason=reason,
                event=EventType.CIRCUIT_RESET,
                trigger="manual",
                clear_disabled=True,
            )
            return Step(closed, events)
        case ResetExpiry():
            c = replace(c, expiry_disabled=False)
            if c.state is not OPEN:
                return Step(c)
            half, change = _half_open(c, now, reason="expiry_reset", trigger="reset_expiry")
            return Step(half, (change, _half_opened_event(half, "expiry_reset", "reset_expiry")))
        case SetExpiry(seconds=seconds):
            return _on_set_expiry(c, now, seconds)
        case DisableExpiry():
            if c.state is OPEN:
                c = replace(c, open_deadline=None, generation=c.generation + 1)
            return Step(replace(c, expiry_disabled=True))
        case Configure(overrides=overrides):
            return Step(replace(c, overrides=_freeze({**c.overrides, **overrides})))
    raise TypeError(f"unknown circuit message: {message!r}")


# --- construction, restart and snapshots --------------------------------------------------


def new_circuit(now: Now, overrides: Mapping[str, Any] = _EMPTY) -> Circuit:
    """A fresh, closed circuit registered now, with its per-connection options."""
    return Circuit(registered_at=now.wall, last_activity=now.mono, overrides=_freeze(overrides))


def resume_timers(circuit: Circuit, now: Now) -> tuple[TimerRequest, ...]:
    """The timers a restarted actor must re-arm for `circuit` (its deadlines are monotonic)."""
    timers: list[TimerRequest] = []
    if circuit.state is OPEN and circuit.open_deadline is not None:
        timers.append(
            TimerRequest(_delay(circuit.open_deadline - now.mono), ExpiryTick(circuit.generation))
        )
    timers.extend(
        TimerRequest(_delay(deadline - now.mono), PermitTimeout(permit_id))
        for permit_id, deadline in circuit.permits
    )
    return tuple(timers)


def _latest(a: float | None, b: float | None) -> float | None:
    """The later of two optional timestamps."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def to_status(
    circuit: Circuit,
    options: Options,
    *,
    identifier: str,
    scope: str | None,
    type: str,
    metadata: Mapping[str, Any] | None,
    extra_successes: int = 0,
    extra_rejections: int = 0,
    last_fast_success: float | None = None,
) -> ConnectionStatus:
    """The public snapshot of a circuit, adding counters kept outside the actor (fast path)."""
    successes = circuit.total_successes + extra_successes
    failures = circuit.total_failures
    outcomes = successes + failures
    rate = successes / outcomes if outcomes else None
    return ConnectionStatus(
        identifier=identifier,
        scope=scope,
        type=type,
        state=circuit.state,
        failure_count=circuit.failure_count,
        max_attempts=options.max_attempts,
        expiry=expiry_for(circuit, options),
        expiry_strategy=options.expiry_strategy,
        initial_expiry=options.initial_expiry,
        max_expiry=options.max_expiry,
        backoff_factor=options.backoff_factor,
        half_open_max_calls=options.half_open_max_calls,
        success_threshold=options.success_threshold,
        opened_at=circuit.opened_at,
        last_failure_time=circuit.last_failure_time,
        last_success_time=_latest(circuit.last_success_time, last_fast_success),
        last_state_change=circuit.last_state_change,
        registered_at=circuit.registered_at,
        expiry_disabled=circuit.expiry_disabled,
        metadata=metadata if metadata is not None else _EMPTY,
        total_successes=successes,
        total_failures=failures,
        rejected_calls=circuit.rejected_calls + extra_rejections,
        success_rate=rate,
    )
