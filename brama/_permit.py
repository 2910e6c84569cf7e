"""`Permit`: the manual API's way to own a call's admission, as the decorator and guard do.

`Brama.acquire` admits a call and returns a permit (None when refused); exactly one of
`success()`, `failure()` or `release()` ends it. In half-open the permit holds one of the
`half_open_max_calls` trial permits, and only its own outcome returns it and counts as a trial
result; `release()` returns it without counting anything (the call was cancelled, or its
outcome says nothing about the dependency).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Permit"]


class Reporter(Protocol):
    """What a permit reports its call's outcome to: a `Brama` system."""

    def success(self, identifier: str, *, scope: str | None = ..., ticket: int | None = ...,
                duration: Any = ...) -> None: ...

    def failure(self, identifier: str, *, scope: str | None = ..., reason: Any = ...,
                ticket: int | None = ..., duration: Any = ...) -> None: ...

    def release(self, identifier: str, ticket: int, *, scope: str | None = ...) -> None: ...


class Permit:
    """A call's admission through a circuit breaker; end it with exactly one report."""

    __slots__ = ("_done", "_system", "identifier", "scope", "ticket")

    def __init__(self, system: Reporter, identifier: str, scope: str | None, ticket: int) -> None:
        self._system = system
        self.identifier = identifier
        self.scope = scope
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

    def _end(self) -> None:
        if self._done:
            raise RuntimeError(f"{self!r} was already reported or released")
        self._done = True

    def success(self, *, duration: Any = None) -> None:
        """Report that the call succeeded (taking `duration` seconds, if given)."""
        self._end()
        self._system.success(self.identifier, scope=self.scope, ticket=self.ticket,
                             duration=duration)

    def failure(self, reason: Any = None, *, duration: Any = None) -> None:
        """Report that the call failed, with `reason`."""
        self._end()
        self._system.failure(self.identifier, scope=self.scope, reason=reason,
                             ticket=self.ticket, duration=duration)

    def release(self) -> None:
        """End the call without an outcome: its trial permit (if any) comes back at once."""
        self._end()
        self._system.release(self.identifier, self.ticket, scope=self.scope)
