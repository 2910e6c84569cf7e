"""A connection's row in its system's table: the published snapshot, and the public status.

The connection actor replaces `Cell.circuit` (one reference assignment) after every step;
readers take the reference once and read a consistent, immutable state (fuse's ETS read, the
actor being the gen_server that writes). Counters that only grow are bumped by callers on the
hot path without the actor, atomically (`itertools.count`).

With a fleet backend, `Cell.fleet` holds the registration's place in the fleet (its version,
and `extra`: what the rest of the fleet counted beyond this circuit and these counters).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, NamedTuple

from brama._circuit import CLOSED, OPEN, Circuit, expiry_for
from brama._options import Options
from brama._rates import window_of
from brama._window import Rates
from brama.types import ConnectionStatus

__all__ = [
    "NO_EXTRA",
    "Cell",
    "FastPolicy",
    "FleetCounts",
    "Key",
    "count_value",
    "fast_policy",
    "key_of",
    "to_status",
]

Key = str | tuple[str, str]
"""A connection's key in the system's table: the identifier alone when it has no scope (the
common case, looked up on the hot path without building a tuple), else `(scope, identifier)`."""


def key_of(scope: str | None, identifier: str) -> Key:
    """The table key of `(scope, identifier)`; hot paths inline the same expression."""
    return identifier if scope is None else (scope, identifier)


def count_value(counter: itertools.count[int]) -> int:
    """Where an `itertools.count` stands (it exposes its position only through repr)."""
    return int(repr(counter)[6:-1])


class FleetCounts(NamedTuple):
    """Counts of the rest of the fleet that neither a cell's circuit nor its fast counters hold
    (other processes' flushed counts), and the latest success among them."""

    successes: int = 0
    failures: int = 0
    rejections: int = 0
    last_success: float | None = None


NO_EXTRA = FleetCounts()


class FastPolicy(NamedTuple):
    """The rate policies as the hot path sees them."""

    slow_after: float | None
    """A call at least this slow (seconds) is reported through the actor."""
    time_window: bool
    """Successes in a new second go through the actor (it moves the time window on)."""
    warm: bool
    """The window holds minimum_calls: from then on a fast success can only lower the rates.
    Until then every success goes through the actor, which judges the rates on each."""


def fast_policy(options: Options, circuit: Circuit | None = None, now: float = 0.0,
                seen_fast: int = 0) -> FastPolicy | None:
    """The hot path's view of `options`' rate policies for `circuit` (None: no policy)."""
    if not options.windowed:
        return None
    warm = False
    if circuit is not None:
        window = window_of(circuit, options, now)
        if window is not None and circuit.state is CLOSED:
            pending = max(seen_fast - circuit.folded, 0)
            warm = window.rates(options.minimum_calls, now, pending).calls >= options.minimum_calls
    return FastPolicy(options.slow_call_duration, options.window_type == "time", warm)


class Cell:
    """One registration of a connection: identity, published circuit and fast counters.

    A cell stands for one registration: unregistering sets `live` to False, and registering
    the same name again makes a new cell, so nothing aimed at the old registration (a timer,
    a report in flight) can reach the new one.
    """

    __slots__ = (
        "circuit",
        "fast_rejections",
        "fast_seen",
        "fast_successes",
        "fleet",
        "identifier",
        "key",
        "last_fast_success",
        "live",
        "metadata",
        "policy",
        "scope",
        "type",
        "window_second",
    )

    def __init__(
        self,
        identifier: str,
        scope: str | None,
        type_: str,
        metadata: Mapping[str, Any],
        circuit: Circuit,
    ) -> None:
        self.identifier = identifier
        self.scope = scope
        self.key: Key = key_of(scope, identifier)
        self.type = type_
        self.metadata = metadata
        self.circuit = circuit
        self.fast_successes = itertools.count()
        self.fast_rejections = itertools.count()
        self.last_fast_success: float | None = None
        self.live = True
        self.policy: FastPolicy | None = None
        """What the hot path must know of the rate policies (None: none is on)."""
        self.fast_seen = -1
        """The last value the hot path took from `fast_successes` (for the window)."""
        self.window_second = 0
        """The second a time window's current bucket is in (successes in another one go
        through the actor, which moves the window on)."""
        self.fleet: Any = None
        """The registration's fleet slot (`brama._fleet.slot.Slot`), None without a backend:
        its `extra` (a `FleetCounts`) is added to the status."""

    def __repr__(self) -> str:
        where = "" if self.scope is None else f" in {self.scope!r}"
        return f"<Cell {self.identifier!r}{where} {self.circuit.state.value}>"

    def successor(self) -> Cell:
        """The same registration in a new cell (after a fork: what held this one, such as a
        decorator's binding to the parent's bus, sees it is no longer live and looks again).

        Outstanding half-open permits are not carried over: they belong to the parent's calls,
        which never report in the child (a call in flight on the forking thread itself reports
        there with a ticket of no current permit, counted in the totals only)."""
        circuit = self.circuit
        if circuit.permits:
            circuit = circuit.evolve(permits=())
        new = Cell(self.identifier, self.scope, self.type, self.metadata, circuit)
        new.fast_successes = itertools.count(count_value(self.fast_successes))
        new.fast_rejections = itertools.count(count_value(self.fast_rejections))
        new.last_fast_success = self.last_fast_success
        new.policy, new.fast_seen, new.window_second = (
            self.policy, self.fast_seen, self.window_second
        )
        if self.fleet is not None:  # the parent flushes what it counted before the fork
            new.fleet = self.fleet.forked(count_value(new.fast_successes),
                                          count_value(new.fast_rejections))
        self.live = False
        return new

    def status(self, options: Options, now: float | None = None) -> ConnectionStatus:
        """The public status: the published state, merged with the hot path's counters
        (`now`, on the monotonic clock, ages a time window)."""
        return to_status(self, self.circuit, options, now=now)


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def to_status(cell: Cell, circuit: Circuit, options: Options, *, fresh: bool = False,
              now: float | None = None) -> ConnectionStatus:
    """The public snapshot of `circuit`, adding the counters kept outside the actor.

    `fresh`: the cell was just registered, its counters are still zero. `now` (monotonic) ages
    a time window; without it the window is read as of the circuit's last activity.

    The status is built without its `__init__` (a frozen dataclass sets each of its fields
    with `object.__setattr__`, which made a registration twice as slow): every value here was
    already validated, and the metadata is already a read-only copy owned by the cell.
    """
    fast_successes = 0 if fresh else count_value(cell.fast_successes)
    fast_rejections = 0 if fresh else count_value(cell.fast_rejections)
    extra = NO_EXTRA if cell.fleet is None else cell.fleet.extra
    successes = circuit.total_successes + fast_successes + extra.successes
    failures = circuit.total_failures + extra.failures
    outcomes = successes + failures
    open_until = None
    if circuit.state is OPEN and circuit.open_deadline is not None:
        assert circuit.opened_at is not None and circuit.current_expiry is not None
        open_until = circuit.opened_at + circuit.current_expiry
    at = circuit.last_activity if now is None else now
    window = window_of(circuit, options, at) if circuit.state is CLOSED else circuit.window
    if window is None:
        rates = _NO_RATES
    else:
        pending = max(cell.fast_seen + 1 - circuit.folded, 0) if circuit.state is CLOSED else 0
        rates = window.rates(options.minimum_calls, at, pending)
    status = _new(ConnectionStatus)
    vars(status).update(
        identifier=cell.identifier,
        scope=cell.scope,
        type=cell.type,
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
        last_success_time=_latest(_latest(circuit.last_success_time, cell.last_fast_success),
                                  extra.last_success),
        last_state_change=circuit.last_state_change,
        registered_at=circuit.registered_at,
        expiry_disabled=circuit.expiry_disabled,
        metadata=cell.metadata,
        total_successes=successes,
        total_failures=failures,
        rejected_calls=circuit.rejected_calls + fast_rejections + extra.rejections,
        success_rate=successes / outcomes if outcomes else None,
        last_failure_reason=circuit.last_failure_reason,
        half_open_permits_in_use=len(circuit.permits),
        open_until=open_until,
        total_openings=circuit.total_openings,
        failure_rate=rates.failure_rate,
        slow_call_rate=rates.slow_call_rate if options.slow_call_duration is not None else None,
        calls_in_window=rates.calls,
    )
    return status


_new = object.__new__
_NO_RATES = Rates(0, 0, 0, None, None)
