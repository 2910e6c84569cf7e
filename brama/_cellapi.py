"""The facade's entry points for a connection already looked up (mixed into `Brama`).

The decorator, the guard and `Permit` look a connection's `Cell` up once and then admit,
refuse and report through these, skipping the by-name lookup on every call; the by-name
functions of the facade end here too. `Brama` provides the attributes declared below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from brama import _messages as m
from brama._cell import Cell
from brama._circuit import CLOSED, OPEN, Circuit
from brama._options import Options
from brama._refusal import refuse
from brama.errors import CircuitOpenError
from brama.otp import Clock, Interest
from brama.types import EventType

if TYPE_CHECKING:
    from brama._runtime import Runtime

__all__ = ["CellMethods"]

_SUCCESS = EventType.SUCCESS
_REFUSED, _NO_PERMIT, _LEGACY = m.REFUSED, m.NO_PERMIT, m.LEGACY


class CellMethods:
    """Admission, refusals and reports for a cell already looked up."""

    _runtime: Runtime
    _interest: Interest
    _clock: Clock
    _wall: Callable[[], float]  # the state machine's clocks (with a backend, the fleet's)
    _mono: Callable[[], float]

    def _options_for(self, state: Circuit) -> Options:
        raise NotImplementedError

    def admitted(self, cell: Cell) -> int:
        """`admit` for a cell already looked up: the ticket is this registration's (a permit
        id of another registration of the same name would be another call's)."""
        state = cell.circuit.state
        if state is CLOSED:
            return _NO_PERMIT
        if state is OPEN:
            next(cell.fast_rejections)
            return _REFUSED
        return int(self._runtime.ask(cell, m.Acquire()))

    def refused(self, cell: Cell) -> CircuitOpenError:
        """The error for a call `cell` refused (its rejection already counted), built from its
        snapshot: also when it was unregistered since."""
        return refuse(cell, self._options_for, self._wall())

    def reject(self, cell: Cell) -> CircuitOpenError:
        """Count a call refused by an open `cell` and return its error (the decorator's path)."""
        next(cell.fast_rejections)
        return refuse(cell, self._options_for, self._wall())

    def succeeded(self, cell: Cell, ticket: int = _LEGACY, duration: Any = None) -> None:
        """`success` for a cell already looked up (the decorator's and guard's path).

        A success on a healthy closed circuit that nobody listens for is a counter bump. With
        a rate policy it stays one unless the call was slow, or a time window's second changed
        (the actor then moves the window on).
        """
        state = cell.circuit
        if state.state is CLOSED and state.failure_count == 0:
            wanted = self._interest.wanted
            if not wanted.all_topics and _SUCCESS not in wanted.topics:
                policy = cell.policy
                if policy is None:
                    next(cell.fast_successes)
                    cell.last_fast_success = self._wall()
                    return
                if policy.warm and (policy.slow_after is None or duration is None
                                    or duration < policy.slow_after) and (
                        not policy.time_window
                        or int(self._mono() // 1) == cell.window_second):
                    cell.fast_seen = next(cell.fast_successes)
                    cell.last_fast_success = self._wall()
                    return
        self._runtime.ask(cell, m.Success(ticket, duration))

    def failed(self, cell: Cell, reason: Any = None, ticket: int = _LEGACY,
               duration: Any = None) -> None:
        """`failure` for a cell already looked up (the decorator's and guard's path)."""
        self._runtime.ask(cell, m.Failure(reason, ticket, duration))

    def released(self, cell: Cell, ticket: int) -> None:
        """`release` for a cell already looked up (NotFoundError once it is unregistered)."""
        if ticket >= 0:
            self._runtime.ask(cell, m.Release(ticket))
