"""`Permit`: the manual API's way to own a call's admission, as the decorator and guard do.

`Brama.acquire` admits a call and returns a permit (None when refused); exactly one of
`success()`, `failure()` or `release()` ends it. In half-open the permit holds one of the
`half_open_max_calls` trial permits, and only its own outcome returns it and counts as a trial
result; `release()` returns it without counting anything (the call was cancelled, or its
outcome says nothing about the dependency).

A permit belongs to the registration that granted it: once that connection is unregistered
its outcome raises NotFoundError, even if the same name was registered again (the new
registration's permits are other calls').
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from brama._validation import check_duration, in_scope
from brama.errors import NotFoundError

if TYPE_CHECKING:
    from brama._cell import Cell

__all__ = ["Permit", "Reporter"]


class Reporter(Protocol):
    """What a permit reports its call's outcome to: a `Brama` system (a protocol, so that
    this module needs nothing of the facade)."""

    def succeeded(self, cell: Cell, ticket: int = ..., duration: Any = ...) -> None: ...

    def failed(self, cell: Cell, reason: Any = ..., ticket: int = ...,
               duration: Any = ...) -> None: ...

    def released(self, cell: Cell, ticket: int) -> None: ...


class Permit:
    """A call's admission through a circuit breaker; end it with exactly one report."""

    __slots__ = ("_cell", "_done", "_system", "identifier", "scope", "ticket")

    def __init__(self, system: Reporter, cell: Cell, ticket: int) -> None:
        self._system = system
        self._cell = cell
        self.identifier = cell.identifier
        self.scope = cell.scope
        self.ticket = ticket
        """The admission ticket: a trial permit's id in half-open, -1 when admitted closed."""
        self._done = False

    def __repr__(self) -> str:
        state = "ended" if self._done else "open"
        return f"<Permit {self.identifier!r} ticket={self.ticket} {state}>"

    @property
    def trial(self) -> bool:
        """True when this call is a half-open trial (it holds one of the trial permits)."""
        return self.ticket >= 0

    def _end(self) -> Cell:
        if self._done:
            raise RuntimeError(f"{self!r} was already reported or released")
        self._done = True
        cell = self._cell
        if not cell.live:
            raise NotFoundError(
                f"connection {self.identifier!r}{in_scope(self.scope)} was unregistered since "
                "this permit was granted"
            )
        return cell

    def success(self, *, duration: Any = None) -> None:
        """Report that the call succeeded (taking `duration` seconds, if given)."""
        if duration is not None:
            duration = check_duration("duration", duration, allow_zero=True,
                                      where="Permit.success()")
        self._system.succeeded(self._end(), self.ticket, duration)

    def failure(self, reason: Any = None, *, duration: Any = None) -> None:
        """Report that the call failed, with `reason`."""
        if duration is not None:
            duration = check_duration("duration", duration, allow_zero=True,
                                      where="Permit.failure()")
        self._system.failed(self._end(), reason, self.ticket, duration)

    def release(self) -> None:
        """End the call without an outcome: its trial permit (if any) comes back at once."""
        self._system.released(self._end(), self.ticket)
