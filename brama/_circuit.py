"""The pure circuit-breaker state machine: (circuit, options, message, now) -> Step.

No threads, no clocks, no I/O: the connection actor feeds it messages with the current time
and carries out what comes back (events to publish, timers to arm or cancel, a reply). Events
are built only when `wants` says someone listens. Timer messages carry the generation (or
permit id) they were armed for, and a stale one is ignored.

**Permits belong to calls.** `Acquire` answers with a ticket: `REFUSED`, `NO_PERMIT` (admitted
while closed) or the id of a half-open permit. An outcome carries its call's ticket: only the
outcome of an outstanding permit returns it and counts as a trial result; an outcome of a call
admitted before the current half-open period counts in the totals only, and neither consumes a
permit nor closes or re-opens the circuit. `Release` returns a permit without an outcome (a
cancelled call, an ignored exception). The plain manual API sends `LEGACY`: the outcome then
returns the oldest permit and counts as a trial, as the contract documents.

Decisions where the contract leaves room:

- `open_circuit` on an already open circuit re-opens it (new `opened_at`, deadline and
  backoff step) and emits `CIRCUIT_OPENED` but no `STATE_CHANGE`, as the state did not change.
- `close_circuit` / `reset_circuit` on a closed circuit reset the failure count, the backoff
  and `expiry_disabled`, and emit `CIRCUIT_CLOSED` / `CIRCUIT_RESET` without `STATE_CHANGE`.
  Neither clears the metrics.
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
- A circuit opened from closed by a rule (`max_attempts`, `failure_rate`, `slow_call_rate`)
  gives the rule as the `reason` of `STATE_CHANGE` and `CIRCUIT_OPENED` and as `rule`, with
  the last failure's own reason as `last_failure_reason`. A half-open trial's failure gives
  that failure's reason.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from brama._circuit_state import CLOSED, EMPTY, HALF_OPEN, OPEN, Circuit, Step, new_circuit
from brama._expiry import expiry_overrides, next_opening_expiry
from brama._messages import (
    ALL_EVENTS,
    EXPIRY_TIMER,
    LEGACY,
    NO_PERMIT,
    REFUSED,
    Acquire,
    CloseCircuit,
    Configure,
    DisableExpiry,
    Emit,
    ExpiryTick,
    Failure,
    Message,
    Now,
    OpenCircuit,
    PermitTimeout,
    Release,
    ResetCircuit,
    ResetExpiry,
    SetExpiry,
    Success,
    TimerRequest,
    permit_timer,
)
from brama._options import Options
from brama._rates import exceeded, record_call, window_of
from brama.types import CircuitState, EventType

__all__ = [
    "ALL_EVENTS",
    "CLOSED",
    "EMPTY",
    "EXPIRY_TIMER",
    "HALF_OPEN",
    "LEGACY",
    "NO_PERMIT",
    "OPEN",
    "REFUSED",
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
    "PermitTimeout",
    "Release",
    "ResetCircuit",
    "ResetExpiry",
    "SetExpiry",
    "Step",
    "Success",
    "TimerRequest",
    "expiry_for",
    "new_circuit",
    "permit_timer",
    "resume_timers",
    "step",

]

def _cancel(key: Any) -> TimerRequest:
    return TimerRequest(key, 0.0, None)


_CANCEL_EXPIRY = _cancel(EXPIRY_TIMER)


def _delay(value: float) -> float:
    """A timer delay: negative or NaN becomes 0."""
    return value if value > 0 else 0.0


def expiry_for(circuit: Circuit, options: Options) -> float:
    """`status().expiry`: the current opening's length while open or half-open, else the next."""
    if circuit.state is not CLOSED and circuit.current_expiry is not None:
        return circuit.current_expiry
    return next_opening_expiry(circuit.opening_step, options)


# --- transitions ---------------------------------------------------------------------------


def _state_change(previous: CircuitState, new: CircuitState, reason: Any, failure_count: int,
                  trigger: str, rule: str | None = None, last_failure_reason: Any = None) -> Emit:
    """The STATE_CHANGE event every transition emits; an automatic trip names its rule (also
    as the reason) and keeps the last failure's own reason beside it."""
    data = {"previous_state": previous, "new_state": new, "reason": reason,
            "failure_count": failure_count, "trigger": trigger}
    if rule is not None:
        data["rule"] = rule
        data["last_failure_reason"] = last_failure_reason
    return Emit(EventType.STATE_CHANGE, data)


def _open(c: Circuit, options: Options, now: Now, wants: frozenset[EventType], *,
          reason: Any, trigger: str, expires_in: float | None = None,
          rule: str | None = None) -> Step:
    """Open (or re-open) the circuit at the current backoff step, arming its expiry tick."""
    previous = c.state
    expiry = next_opening_expiry(c.opening_step, options) if expires_in is None else expires_in
    expiry = _delay(float(expiry))
    generation = c.generation + 1
    deadline = None if c.expiry_disabled else now.mono + expiry
    changed = previous is not OPEN
    cancels = tuple(_cancel(permit_timer(pid)) for pid, _ in c.permits)
    opened = c.evolve(
        state=OPEN, opening_step=c.opening_step + 1, opened_at=now.wall, open_deadline=deadline,
        current_expiry=expiry, generation=generation, half_open_successes=0, permits=(),
        total_openings=c.total_openings + 1,
        last_state_change=now.wall if changed else c.last_state_change, last_activity=now.mono,
    )
    events: list[Emit] = []
    if changed and EventType.STATE_CHANGE in wants:
        events.append(_state_change(previous, OPEN, reason, c.failure_count, trigger, rule,
                                    c.last_failure_reason))
    if EventType.CIRCUIT_OPENED in wants:
        opened_data = {
            "reason": reason, "failure_count": c.failure_count, "expiry": expiry,
            "expiry_disabled": c.expiry_disabled, "previous_state": previous, "trigger": trigger,
        }
        if rule is not None:
            opened_data["rule"] = rule
            opened_data["last_failure_reason"] = c.last_failure_reason
        events.append(Emit(EventType.CIRCUIT_OPENED, opened_data))
    expiry_timer = (
        _CANCEL_EXPIRY if deadline is None
        else TimerRequest(EXPIRY_TIMER, expiry, ExpiryTick(generation))
    )
    return Step(opened, tuple(events), (*cancels, expiry_timer))


def _half_open(c: Circuit, now: Now, wants: frozenset[EventType], *, reason: Any,
               trigger: str) -> tuple[Circuit, list[Emit]]:
    """Move an open circuit to half-open (no permits out yet), with its two events."""
    half = c.evolve(
        state=HALF_OPEN, open_deadline=None, generation=c.generation + 1,
        half_open_successes=0, permits=(), last_state_change=now.wall, last_activity=now.mono,
    )
    events = []
    if EventType.STATE_CHANGE in wants:
        events.append(_state_change(OPEN, HALF_OPEN, reason, c.failure_count, trigger))
    if EventType.CIRCUIT_HALF_OPENED in wants:
        events.append(Emit(EventType.CIRCUIT_HALF_OPENED, {
            "reason": reason, "failure_count": c.failure_count, "expiry": c.current_expiry,
            "trigger": trigger,
        }))
    return half, events


def _close(c: Circuit, now: Now, wants: frozenset[EventType], *, reason: Any, event: EventType,
           trigger: str, clear_disabled: bool) -> Step:
    """Close the circuit: failure count 0, backoff at its first step, no permits."""
    previous = c.state
    changed = previous is not CLOSED
    cancels = tuple(_cancel(permit_timer(pid)) for pid, _ in c.permits)
    closed = c.evolve(
        state=CLOSED, failure_count=0, opening_step=0, opened_at=None, open_deadline=None,
        current_expiry=None,
        expiry_disabled=False if clear_disabled else c.expiry_disabled,
        generation=c.generation + 1 if changed else c.generation,
        half_open_successes=0, permits=(), window=None,
        last_state_change=now.wall if changed else c.last_state_change, last_activity=now.mono,
    )
    events: list[Emit] = []
    if changed and EventType.STATE_CHANGE in wants:
        events.append(_state_change(previous, CLOSED, reason, 0, trigger))
    if event in wants:
        events.append(Emit(event, {
            "reason": reason, "failure_count": 0, "previous_state": previous, "trigger": trigger,
        }))
    return Step(closed, tuple(events), (*cancels, _CANCEL_EXPIRY))


def _take_permit(c: Circuit, permit: int) -> tuple[tuple[tuple[int, float], ...], Any] | None:
    """The permits left once `permit` is returned, and the timer key to cancel; None when the
    outcome holds no outstanding permit of this half-open period."""
    permits = c.permits
    if permit == LEGACY:
        if not permits:
            return permits, None
        return permits[1:], permit_timer(permits[0][0])
    for index, (pid, _) in enumerate(permits):
        if pid == permit:
            return permits[:index] + permits[index + 1:], permit_timer(pid)
    return None


_FAILURE: Final = EventType.FAILURE


def _outcome(kind: EventType, failure_count: int, reason: Any,
             wants: frozenset[EventType]) -> tuple[Emit, ...]:
    """The SUCCESS / FAILURE event (failure count after the outcome, and the reason)."""
    if kind in wants:
        return (Emit(kind, {"failure_count": failure_count, "reason": reason}),)
    return ()


def _trip(c: Circuit, options: Options, now: Now, wants: frozenset[EventType],
          outcome: tuple[Emit, ...], broken: tuple[str, EventType, float, float]) -> Step:
    """Open a closed circuit because a rate rule is broken."""
    rule, event, rate, threshold = broken
    exceeded: tuple[Emit, ...] = ()
    if event in wants:
        calls = c.window.rates(options.minimum_calls, now.mono).calls if c.window else 0
        exceeded = (Emit(event, {"rate": rate, "threshold": threshold, "calls": calls}),)
    opened = _open(c, options, now, wants, reason=rule, trigger=rule, rule=rule)
    return Step(opened.circuit, (*outcome, *exceeded, *opened.events), opened.timers)


def _on_success(c: Circuit, options: Options, now: Now, permit: int, duration: float | None,
                wants: frozenset[EventType], seen_fast: int) -> Step:
    """A success resets failures when closed and counts towards closing in half-open."""
    if c.state is CLOSED:
        window, folded = record_call(c, options, now, False, duration, seen_fast)
        c = c.evolve(total_successes=c.total_successes + 1, last_success_time=now.wall,
                     last_activity=now.mono, failure_count=0, window=window, folded=folded)
        outcome = _outcome(EventType.SUCCESS, 0, None, wants)
        broken = exceeded(window, options, now)
        return Step(c, outcome) if broken is None else _trip(c, options, now, wants, outcome,
                                                             broken)
    taken = _take_permit(c, permit) if c.state is HALF_OPEN else None
    if taken is None:  # open, or a call that holds no permit of this half-open period
        c = c.evolve(total_successes=c.total_successes + 1, last_success_time=now.wall,
                     last_activity=now.mono)
        return Step(c, _outcome(EventType.SUCCESS, c.failure_count, None, wants))
    permits, timer = taken
    c = c.evolve(total_successes=c.total_successes + 1, last_success_time=now.wall,
                 last_activity=now.mono, permits=permits,
                 half_open_successes=c.half_open_successes + 1)
    cancel = () if timer is None else (_cancel(timer),)
    if c.half_open_successes < options.success_threshold:
        return Step(c, _outcome(EventType.SUCCESS, c.failure_count, None, wants), cancel)
    closed = _close(c, now, wants, reason="success_threshold_reached",
                    event=EventType.CIRCUIT_CLOSED, trigger="success_threshold",
                    clear_disabled=False)
    return Step(closed.circuit, (*_outcome(EventType.SUCCESS, 0, None, wants), *closed.events),
                (*cancel, *closed.timers))


def _on_failure(c: Circuit, options: Options, now: Now, reason: Any, permit: int,
                duration: float | None, wants: frozenset[EventType], seen_fast: int) -> Step:
    """A failure counts towards opening when closed, and re-opens from half-open."""
    state = c.state
    taken = _take_permit(c, permit) if state is HALF_OPEN else None
    if state is OPEN or (state is HALF_OPEN and taken is None):
        c = c.evolve(total_failures=c.total_failures + 1, last_failure_time=now.wall,
                     last_failure_reason=reason, last_activity=now.mono)
        return Step(c, _outcome(EventType.FAILURE, c.failure_count, reason, wants))
    if state is not CLOSED:
        window, folded = c.window, c.folded
    elif options.windowed:
        window, folded = record_call(c, options, now, True, duration, seen_fast)
    else:
        window, folded = None, seen_fast
    c = c.evolve(
        total_failures=c.total_failures + 1, last_failure_time=now.wall,
        last_failure_reason=reason, last_activity=now.mono, failure_count=c.failure_count + 1,
        permits=c.permits if taken is None else taken[0], window=window, folded=folded,
    )
    failure = (_outcome(_FAILURE, c.failure_count, reason, wants) if _FAILURE in wants
               else ())
    if state is CLOSED and c.failure_count < options.max_attempts:
        broken = None if window is None else exceeded(window, options, now)
        return Step(c, failure) if broken is None else _trip(c, options, now, wants, failure,
                                                             broken)
    if state is CLOSED:
        opened = _open(c, options, now, wants, reason="max_attempts", trigger="failures",
                       rule="max_attempts")
    else:
        opened = _open(c, options, now, wants, reason=reason, trigger="half_open_failure")
    cancel = () if taken is None or taken[1] is None else (_cancel(taken[1]),)
    return Step(opened.circuit, (*failure, *opened.events), (*cancel, *opened.timers))


def _on_acquire(c: Circuit, options: Options, now: Now) -> Step:
    """Admission: always in closed, never in open, up to half_open_max_calls permits otherwise."""
    if c.state is CLOSED:
        return Step(c, reply=NO_PERMIT)
    if c.state is HALF_OPEN and len(c.permits) < options.half_open_max_calls:
        lease = expiry_for(c, options)
        permit_id = c.next_permit_id
        granted = c.evolve(permits=(*c.permits, (permit_id, now.mono + lease)),
                           next_permit_id=permit_id + 1)
        timer = TimerRequest(permit_timer(permit_id), lease, PermitTimeout(permit_id))
        return Step(granted, timers=(timer,), reply=permit_id)
    return Step(c.evolve(rejected_calls=c.rejected_calls + 1), reply=REFUSED)


def _on_release(c: Circuit, permit: int) -> Step:
    """A call that ends without an outcome gives its permit back, counting nothing."""
    taken = _take_permit(c, permit) if c.state is HALF_OPEN and permit >= 0 else None
    if taken is None:
        return Step(c)
    permits, timer = taken
    return Step(c.evolve(permits=permits), timers=(_cancel(timer),))


def _on_expiry_tick(c: Circuit, now: Now, generation: int, wants: frozenset[EventType]) -> Step:
    """The open deadline was reached: go half-open, unless the tick is stale."""
    if c.state is not OPEN or generation != c.generation or c.open_deadline is None:
        return Step(c)
    events: list[Emit] = []
    if EventType.EXPIRY in wants:
        events.append(Emit(EventType.EXPIRY, {
            "opened_at": c.opened_at, "expired_at": now.wall, "expiry": c.current_expiry,
        }))
    half, changes = _half_open(c, now, wants, reason="expired", trigger="expiry")
    return Step(half, (*events, *changes), (_CANCEL_EXPIRY,))  # a no-op once it has fired


def _on_set_expiry(c: Circuit, now: Now, seconds: float, wants: frozenset[EventType]) -> Step:
    """Set this connection's expiry; an open deadline is recomputed from opened_at."""
    seconds = _delay(float(seconds))
    c = c.evolve(overrides=expiry_overrides(c.overrides, seconds), expiry_disabled=False)
    if c.state is HALF_OPEN:
        return Step(c.evolve(current_expiry=seconds))
    if c.state is not OPEN:
        return Step(c)
    opened_at = now.wall if c.opened_at is None else c.opened_at
    remaining = _delay(opened_at + seconds - now.wall)
    generation = c.generation + 1
    c = c.evolve(current_expiry=seconds, open_deadline=now.mono + remaining, generation=generation)
    if remaining <= 0:  # the new deadline is already behind us: expire now, not on a tick
        return _on_expiry_tick(c, now, generation, wants)
    return Step(c, timers=(TimerRequest(EXPIRY_TIMER, remaining, ExpiryTick(generation)),))


def step(circuit: Circuit, options: Options, message: Message, now: Now,
         wants: frozenset[EventType] = ALL_EVENTS, seen_fast: int = 0) -> Step:
    """Handle one message: the new circuit, the events wanted, timers to arm, and a reply.

    `seen_fast` is how many successes the hot path has counted without the actor so far (for
    the rate policies' window); `wants`, which event types someone listens to.
    """
    c = circuit
    if seen_fast > c.folded:  # successes the hot path counted since the last step
        if c.state is CLOSED and options.windowed:  # they are calls of the window: fold them
            window = window_of(c, options, now.mono)
            assert window is not None
            c = c.evolve(window=window.add_successes(seen_fast - c.folded, now.mono),
                         folded=seen_fast)
        else:
            c = c.evolve(folded=seen_fast)
    match message:
        case Failure(reason=reason, permit=permit, duration=duration):
            return _on_failure(c, options, now, reason, permit, duration, wants, seen_fast)
        case Success(permit=permit, duration=duration):
            return _on_success(c, options, now, permit, duration, wants, seen_fast)
        case Acquire():
            return _on_acquire(c, options, now)
        case Release(permit=permit):
            return _on_release(c, permit)
        case ExpiryTick(generation=generation):
            return _on_expiry_tick(c, now, generation, wants)
        case PermitTimeout(permit_id=permit_id):
            permits = tuple(p for p in c.permits if p[0] != permit_id)
            if len(permits) == len(c.permits):
                return Step(c)
            # Its timer has normally fired already; cancelling keeps the timers exact when
            # the message came another way (a no-op for a timer that fired).
            return Step(c.evolve(permits=permits), timers=(_cancel(permit_timer(permit_id)),))
        case OpenCircuit(reason=reason, expires_in=expires_in):
            return _open(c, options, now, wants, reason=reason, trigger="manual",
                         expires_in=expires_in)
        case CloseCircuit(reason=reason):
            return _close(c, now, wants, reason=reason, event=EventType.CIRCUIT_CLOSED,
                          trigger="manual", clear_disabled=True)
        case ResetCircuit(reason=reason):
            return _close(c, now, wants, reason=reason, event=EventType.CIRCUIT_RESET,
                          trigger="manual", clear_disabled=True)
        case ResetExpiry():
            c = c.evolve(expiry_disabled=False)
            if c.state is not OPEN:
                return Step(c)
            half, events = _half_open(c, now, wants, reason="expiry_reset",
                                      trigger="reset_expiry")
            return Step(half, tuple(events), (_CANCEL_EXPIRY,))
        case SetExpiry(seconds=seconds):
            return _on_set_expiry(c, now, seconds, wants)
        case DisableExpiry():
            if c.state is OPEN:
                return Step(c.evolve(open_deadline=None, generation=c.generation + 1,
                                     expiry_disabled=True), timers=(_CANCEL_EXPIRY,))
            return Step(c.evolve(expiry_disabled=True))
        case Configure(overrides=overrides):
            return Step(c.evolve(overrides=MappingProxyType({**c.overrides, **overrides})))
    raise TypeError(f"unknown circuit message: {message!r}")


def resume_timers(circuit: Circuit, now: Now) -> tuple[TimerRequest, ...]:
    """The timers to arm for `circuit` when nothing holds them (a fresh connections
    supervisor, a forked child): its deadlines are monotonic."""
    timers: list[TimerRequest] = []
    if circuit.state is OPEN and circuit.open_deadline is not None:
        timers.append(TimerRequest(EXPIRY_TIMER, _delay(circuit.open_deadline - now.mono),
                                   ExpiryTick(circuit.generation)))
    timers.extend(
        TimerRequest(permit_timer(pid), _delay(deadline - now.mono), PermitTimeout(pid))
        for pid, deadline in circuit.permits
    )
    return tuple(timers)

