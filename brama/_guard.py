"""`guard`: the circuit breaker as a context manager, for `with` and `async with`.

Entering admits the call (or raises `CircuitOpenError`); leaving reports a success, or a
failure (`reason=repr(exc)`) for an `Exception`, which is never suppressed. Each entry owns
its admission: the state of an entry lives in the entering thread's or task's context, so one
guard object can be shared by threads and tasks, and nested entries leave in reverse order.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import Any, NamedTuple

from brama._breaker import HELD, Breaker, Ignore, holds
from brama._cell import Cell
from brama._circuit import CLOSED, NO_PERMIT, REFUSED
from brama._system import Brama
from brama._validation import check_duration
from brama.otp import safe_repr

__all__ = ["Guard", "guard"]


class _Entry(NamedTuple):
    """One entry of a guard, pushed on the context's chain of held connections."""

    cell: Cell
    outer: Any
    guard: Guard
    system: Brama | None  # None: re-entrant, under an outer call's permit
    ticket: int
    deadline: Any
    started: float | None  # on the system's monotonic clock, when a slow-call policy is on


class Guard:
    """The context manager `guard` returns; see the module docstring."""

    __slots__ = ("_breaker", "_ignore", "_limit")

    def __init__(self, identifier: str, *, scope: str | None = None,
                 ignore_exceptions: Any = (), timeout: Any = None,
                 system: Brama | None = None, **options: Any) -> None:
        self._breaker = Breaker(identifier, scope, system, options)
        self._ignore = Ignore(ignore_exceptions)
        self._limit = None if timeout is None else check_duration("timeout", timeout)

    def __repr__(self) -> str:
        breaker = self._breaker
        where = "" if breaker.scope is None else f", scope={breaker.scope!r}"
        return f"<brama.Guard {breaker.identifier!r}{where}>"

    def _admit(self, deadline: Any) -> None:
        breaker = self._breaker
        system, cell = breaker.bound()[:2]
        outer = HELD.get()
        if outer is not None and holds(outer, cell):
            HELD.set(_Entry(cell, outer, self, None, NO_PERMIT, deadline, None))
            return
        if cell.circuit.state is CLOSED:
            ticket = NO_PERMIT
        else:
            ticket, system, cell = breaker.admit(system, cell)
            if ticket == REFUSED:
                raise breaker.refusal(system, cell)
        policy = cell.policy
        started = (None if policy is None or policy.slow_after is None
                   else system.clock.monotonic())
        HELD.set(_Entry(cell, outer, self, system, ticket, deadline, started))

    def _leave(self) -> _Entry:
        entry = HELD.get()
        if not isinstance(entry, _Entry) or entry.guard is not self:
            raise RuntimeError(f"{self!r} was left without being entered in this context")
        HELD.set(entry.outer)
        return entry

    def _report(self, entry: _Entry, exc: BaseException | None) -> None:
        system, cell, ticket = entry.system, entry.cell, entry.ticket
        if system is None:
            return  # re-entrant: the outer call reports
        duration = None if entry.started is None else system.clock.monotonic() - entry.started
        breaker = self._breaker
        if exc is None:
            breaker.success(system, cell, ticket, duration)
        elif isinstance(exc, Exception) and not self._ignore(exc):
            breaker.failure(system, cell, ticket, safe_repr(exc), duration)
        else:
            breaker.release(system, cell, ticket)

    def __enter__(self) -> Guard:
        if self._limit is not None:
            raise TypeError(
                "guard(timeout=...) works with `async with` only: a thread cannot be "
                "interrupted. For sync code use the client's own timeout, or "
                "slow_call_duration to count slow calls"
            )
        self._admit(None)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._report(self._leave(), exc)

    async def __aenter__(self) -> Guard:
        deadline = None
        if self._limit is not None:
            deadline = _Deadline(self._limit)
            await deadline.__aenter__()
        try:
            self._admit(deadline)
        except BaseException:
            if deadline is not None:
                await deadline.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        entry = self._leave()
        deadline = entry.deadline
        if deadline is not None:
            try:
                await deadline.__aexit__(exc_type, exc, tb)
            except TimeoutError:
                if not deadline.expired():
                    raise
                if entry.system is not None:
                    self._breaker.failure(entry.system, entry.cell, entry.ticket,
                                          f"timeout: no answer within {self._limit:g} s",
                                          self._limit)
                raise
        self._report(entry, exc)


if sys.version_info >= (3, 11):
    _Deadline: Any = asyncio.timeout
else:  # pragma: no cover - Python 3.10

    class _Deadline:
        """`asyncio.timeout` for Python 3.10: cancel the task at the deadline."""

        def __init__(self, limit: float) -> None:
            self.limit = limit
            self.fired = False
            self.handle: Any = None

        def expired(self) -> bool:
            return self.fired

        async def __aenter__(self) -> Any:
            task = asyncio.current_task()
            assert task is not None

            def fire() -> None:
                self.fired = True
                task.cancel()

            self.handle = asyncio.get_running_loop().call_later(self.limit, fire)
            return self

        async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            self.handle.cancel()
            if self.fired and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError(f"no answer within {self.limit:g} s") from exc


def guard(identifier: str, *, scope: str | None = None, ignore_exceptions: Any = (),
          timeout: Any = None, system: Brama | None = None, **options: Any) -> Guard:
    """A context manager (`with` and `async with`) that runs its block through a breaker.

    Raises CircuitOpenError on entry when the connection is not available; registers the
    connection (with `options`) if it is absent. `ignore_exceptions` takes exception classes
    and predicates; `timeout` (async with only) cancels a block that takes longer, reports it
    as a failure and raises TimeoutError.
    """
    return Guard(identifier, scope=scope, ignore_exceptions=ignore_exceptions,
                 timeout=timeout, system=system, **options)
