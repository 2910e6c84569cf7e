"""A connection's row in its system's table: the published snapshot, and the public status.

The connection actor replaces `Cell.circuit` (one reference assignment) after every step;
readers take the reference once and read a consistent, immutable state (fuse's ETS read, the
actor being the gen_server that writes). Counters that only grow are bumped by callers on the
hot path without the actor, atomically (`itertools.count`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from brama._circuit import OPEN, Circuit, expiry_for
from brama._options import Options
from brama.types import ConnectionStatus

__all__ = ["Cell", "Key", "count_value", "key_of", "to_status"]

Key = str | tuple[str, str]
"""A connection's key in the system's table: the identifier alone when it has no scope (the
common case, looked up on the hot path without building a tuple), else `(scope, identifier)`."""


def key_of(scope: str | None, identifier: str) -> Key:
    """The table key of `(scope, identifier)`; hot paths inline the same expression."""
    return identifier if scope is None else (scope, identifier)


def count_value(counter: itertools.count[int]) -> int:
    """Where an `itertools.count` stands (it exposes its position only through repr)."""
    return int(repr(counter)[6:-1])


class Cell:
    """One registration of a connection: identity, published circuit and fast counters.

    A cell stands for one registration: unregistering sets `live` to False, and registering
    the same name again makes a new cell, so nothing aimed at the old registration (a timer,
    a report in flight) can reach the new one.
    """

    __slots__ = (
        "circuit",
        "fast_rejections",
        "fast_successes",
        "identifier",
        "key",
        "last_fast_success",
        "live",
        "metadata",
        "scope",
        "type",
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

    def __repr__(self) -> str:
        where = "" if self.scope is None else f" in {self.scope!r}"
        return f"<Cell {self.identifier!r}{where} {self.circuit.state.value}>"

    def status(self, options: Options) -> ConnectionStatus:
        """The public status: the published state, merged with the hot path's counters."""
        return to_status(self, self.circuit, options)

    def status_later(self, options: Options, circuit: Circuit) -> Callable[[], ConnectionStatus]:
        """The status of `circuit` (a snapshot taken before), built when called."""
        return lambda: to_status(self, circuit, options)


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def to_status(cell: Cell, circuit: Circuit, options: Options, *,
              fresh: bool = False) -> ConnectionStatus:
    """The public snapshot of `circuit`, adding the counters kept outside the actor.

    `fresh`: the cell was just registered, its counters are still zero. The status is built
    without going through its `__init__` (a frozen dataclass sets each of its 28 fields with
    `object.__setattr__`, which made a registration twice as slow): every value here was
    already validated, and the metadata is already a read-only copy owned by the cell.
    """
    fast_successes = 0 if fresh else count_value(cell.fast_successes)
    fast_rejections = 0 if fresh else count_value(cell.fast_rejections)
    successes = circuit.total_successes + fast_successes
    failures = circuit.total_failures
    outcomes = successes + failures
    open_until = None
    if circuit.state is OPEN and circuit.open_deadline is not None:
        assert circuit.opened_at is not None and circuit.current_expiry is not None
        open_until = circuit.opened_at + circuit.current_expiry
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
        last_success_time=_latest(circuit.last_success_time, cell.last_fast_success),
        last_state_change=circuit.last_state_change,
        registered_at=circuit.registered_at,
        expiry_disabled=circuit.expiry_disabled,
        metadata=cell.metadata,
        total_successes=successes,
        total_failures=failures,
        rejected_calls=circuit.rejected_calls + fast_rejections,
        success_rate=successes / outcomes if outcomes else None,
        last_failure_reason=circuit.last_failure_reason,
        half_open_permits_in_use=len(circuit.permits),
        open_until=open_until,
        total_openings=circuit.total_openings,
    )
    return status


_new = object.__new__
