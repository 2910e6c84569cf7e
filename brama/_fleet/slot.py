"""A registration's place in the fleet (`Slot`, kept in its cell) and what a fleet step hands
back to the connection actor (`Outcome`)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from brama._cell import NO_EXTRA, FleetCounts
from brama._circuit import Circuit, Emit, Now, TimerRequest
from brama._fleet.keys import FleetKey
from brama._fleet.store import Counters
from brama.types import CircuitState, EventType

__all__ = ["ADOPTED", "NO_OWNERS", "Batch", "Outcome", "Slot", "adopted_events", "outcome_counts",
           "tagged"]

NO_OWNERS: Final[Mapping[int, str]] = MappingProxyType({})
Batch = tuple[float, tuple[Emit, ...]]
"""Events to publish together: (their timestamp, the events)."""
_STATES: Final = {state.value: state for state in CircuitState}
ADOPTED: Final = "adopted_fleet_state"
"""The reason of the events a resync publishes for transitions it did not hear (see
`adopted_events`)."""


class Outcome(NamedTuple):
    """What the connection actor carries out after a fleet step, notice or resync."""

    circuit: Circuit
    """The new snapshot of the cell."""
    now: Now
    reply: Any = None
    timers: tuple[TimerRequest, ...] | None = ()
    """Timers to arm or cancel; None: re-arm every timer from `circuit` (it was adopted)."""
    batches: tuple[Batch, ...] = ()
    """(time, events) to publish on the local bus, in this order."""


class Slot:
    """A registration's place in the fleet, kept in its cell (a restarted, woken or forked
    actor resumes it). Written by the cell's actor; `flush` also runs on the flusher."""

    __slots__ = ("counts", "dirty", "extra", "flushed", "held", "key", "lock", "offline",
                 "owners", "read_at", "seen", "version")

    def __init__(self, key: FleetKey) -> None:
        self.key = key
        self.version = 0
        """The fleet version the cell's circuit is (0: never joined)."""
        self.seen = 0
        """The version up to which the fleet's events were published locally."""
        self.owners: Mapping[int, str] = NO_OWNERS
        self.dirty = False
        """True once the circuit was stepped without the backend (until `resync`)."""
        self.held: list[tuple[int, float, float, tuple[Emit, ...]]] = []
        """Own events waiting for earlier notices: (version, time, held at, events)."""
        self.offline = Counters()
        """Outcomes stepped locally while dirty (added to the counters on `resync`)."""
        self.counts = Counters()
        """The connection's counters hash as last read."""
        self.flushed = (0, 0)
        """This cell's fast successes and rejections already added to the counters hash."""
        self.extra: FleetCounts = NO_EXTRA
        """What the status adds: `counts` less what this cell flushed (read atomically)."""
        self.lock = threading.Lock()
        self.read_at = -math.inf

    def set_counts(self, counts: Counters, flushed: tuple[int, int]) -> None:
        """The fleet's counts as just read, with what this cell flushed into them (after a
        FLUSHALL the fleet may hold less than that: the status then shows the local counts)."""
        self.counts, self.flushed = counts, flushed
        self.extra = FleetCounts(max(counts.successes - flushed[0], 0), counts.failures,
                                 max(counts.rejections - flushed[1], 0), counts.last_success)

    def forked(self, successes: int, rejections: int) -> Slot:
        """The slot of the same registration in a forked child, whose fast counters stand at
        `successes` / `rejections`: what they hold is the parent's to flush."""
        new = Slot(self.key)
        new.version, new.seen, new.owners, new.dirty = (self.version, self.seen, self.owners,
                                                        self.dirty)
        new.offline = self.offline
        new.set_counts(self.counts, (successes, rejections))
        return new


def tagged(events: Iterable[Emit], origin: str) -> tuple[Emit, ...]:
    """`events` with `data["origin"]`; a relayed state is a `CircuitState` again."""
    tagged = []
    for event in events:
        data = dict(event.data)
        for name in ("previous_state", "new_state"):
            value = data.get(name)
            if isinstance(value, str) and value in _STATES:
                data[name] = _STATES[value]
        data["origin"] = origin
        tagged.append(Emit(event.event, data))
    return tuple(tagged)


def outcome_counts(before: Circuit, after: Circuit) -> Counters:
    """The outcomes and rejections a step from `before` to `after` counted."""
    return Counters(after.total_successes - before.total_successes,
                    after.total_failures - before.total_failures,
                    after.rejected_calls - before.rejected_calls)


def adopted_events(before: Circuit, after: Circuit, origin: str) -> tuple[Emit, ...]:
    """The events of a resync that moved the cell from `before` to the fleet's `after` state:
    transitions made elsewhere while this process was not listening are not replayed (pub/sub
    keeps nothing), so subscribers get one `STATE_CHANGE` from the state they last saw to the
    current one, and the matching `CIRCUIT_*` event (reason `ADOPTED`, trigger "resync",
    `origin` this process: it is the one that noticed). None when the state is the same."""
    previous, new = before.state, after.state
    if previous is new:
        return ()
    common = {"reason": ADOPTED, "failure_count": after.failure_count, "trigger": "resync",
              "origin": origin}
    change = Emit(EventType.STATE_CHANGE, {"previous_state": previous, "new_state": new,
                                           **common})
    if new is CircuitState.OPEN:
        specific = Emit(EventType.CIRCUIT_OPENED, {
            **common, "expiry": after.current_expiry, "expiry_disabled": after.expiry_disabled,
            "previous_state": previous})
    elif new is CircuitState.HALF_OPEN:
        specific = Emit(EventType.CIRCUIT_HALF_OPENED, {**common, "expiry": after.current_expiry})
    else:
        specific = Emit(EventType.CIRCUIT_CLOSED, {**common, "previous_state": previous})
    return change, specific
