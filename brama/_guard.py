"""`guard`: the circuit breaker as a context manager, for `with` and `async with`.

Entering admits the call (or raises `CircuitOpenError`); leaving reports a success, or a
failure (`reason=repr(exc)`) for an `Exception`, which is never suppressed. Each entry owns
its admission: the state of an entry lives in the entering thread's or task's context, so one
guard object can be shared by threads and tasks.

Entries are usually left in reverse order, in the context that entered them. Around a
generator they need not be: two streams consumed in turn (`zip`) leave their guards in the
order they end, and a generator (or async generator) may be closed on another thread, or by
the event loop in a task of its own. So leaving finds its entry by the frame of its `with`
statement (in this context's chain first, then among the guard's open entries), and an entry
left out of order stays linked in its context's chain, marked left, holding nothing.
"""

from __future__ import annotations

import asyncio
import sys
from types import FrameType, TracebackType
from typing import Any, NamedTuple

from brama._breaker import HELD, Breaker, Ignore, holds, timed_out_message
from brama._cell import Cell
from brama._circuit import CLOSED, NO_PERMIT, REFUSED
from brama._system import Brama
from brama._validation import check_duration

__all__ = ["Guard", "guard"]


class _Entry(NamedTuple):
    """One entry of a guard; its link `[cell, outer, entry]` is on the context's chain of held
    connections while it lasts."""

    cell: Cell
    guard: Guard
    system: Brama | None  # None: re-entrant, under an outer call's permit
    ticket: int
    deadline: Any
    started: float | None  # on the system's monotonic clock, when a slow-call policy is on
    where: FrameType  # the frame of the `with` statement (kept alive only while entered)


class Guard:
    """The context manager `guard` returns; see the module docstring."""

    __slots__ = ("_breaker", "_ignore", "_limit", "_open")

    def __init__(self, identifier: str, *, scope: str | None = None,
                 ignore_exceptions: Any = (), timeout: Any = None,
                 system: Brama | None = None, **options: Any) -> None:
        self._breaker = Breaker(identifier, scope, system, options)
        self._ignore = Ignore(ignore_exceptions)
        self._limit = None if timeout is None else check_duration("timeout", timeout)
        self._open: dict[int, list[Any]] = {}
        """The links of the entries not left yet, in any context, by id."""

    def __repr__(self) -> str:
        breaker = self._breaker
        where = "" if breaker.scope is None else f", scope={breaker.scope!r}"
        return f"<brama.Guard {breaker.identifier!r}{where}>"

    def _admit(self, deadline: Any, where: FrameType) -> None:
        breaker = self._breaker
        system, cell = breaker.bound()[:2]
        outer = HELD.get()
        if outer is not None and holds(outer, cell):
            self._push(outer, _Entry(cell, self, None, NO_PERMIT, deadline, None, where))
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
        self._push(outer, _Entry(cell, self, system, ticket, deadline, started, where))

    def _push(self, outer: Any, entry: _Entry) -> None:
        link = [entry.cell, outer, entry]
        self._open[id(link)] = link
        HELD.set(link)

    def _leave(self, where: FrameType) -> _Entry:
        current = HELD.get()
        if (current is not None and len(current) == 3 and current[0] is not None
                and current[2].guard is self and current[2].where is where):
            link = current  # the common case: the last entry of this context
            outer = link[1]
            while outer is not None and outer[0] is None:
                outer = outer[1]  # links of calls that ended out of order: unlink them now
            HELD.set(outer)
        else:
            link = self._find(current, where)
        link[0] = None
        self._open.pop(id(link), None)
        entry: _Entry = link[2]
        return entry

    def _find(self, chain: Any, where: FrameType) -> list[Any]:
        """The link of the entry being left when it is not the last one of this context: by
        the frame of its `with` statement, in this context's chain, then in any context (a
        generator closed elsewhere); else the last one of this guard here (an `ExitStack`
        leaves from another frame than the one that entered)."""
        mine: list[list[Any]] = []
        while chain is not None:
            if len(chain) == 3 and chain[0] is not None and chain[2].guard is self:
                mine.append(chain)
            chain = chain[1]
        links: list[list[Any]] = [*mine, *list(self._open.values())]
        for link in links:
            if link[2].where is where and link[0] is not None:
                return link
        if mine:
            return mine[0]
        raise RuntimeError(f"{self!r} was left without being entered")

    def _report(self, entry: _Entry, exc: BaseException | None) -> None:
        system, cell, ticket = entry.system, entry.cell, entry.ticket
        if system is None:
            return  # re-entrant: the outer call reports
        duration = None if entry.started is None else system.clock.monotonic() - entry.started
        breaker = self._breaker
        if exc is None:
            breaker.success(system, cell, ticket, duration)
        elif isinstance(exc, Exception):
            breaker.raised(system, cell, ticket, exc, self._ignore, duration)
        else:
            breaker.release(system, cell, ticket)

    def __enter__(self) -> Guard:
        if self._limit is not None:
            raise TypeError(
                "guard(timeout=...) works with `async with` only: a thread cannot be "
                "interrupted. For sync code use the client's own timeout, or "
                "slow_call_duration to count slow calls"
            )
        self._admit(None, sys._getframe(1))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._report(self._leave(sys._getframe(1)), exc)

    async def __aenter__(self) -> Guard:
        deadline = None
        if self._limit is not None:
            deadline = _Deadline(self._limit)
            await deadline.__aenter__()
        try:
            self._admit(deadline, sys._getframe(1))
        except BaseException:
            if deadline is not None:
                await deadline.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        entry = self._leave(sys._getframe(1))
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
                assert self._limit is not None
                raise TimeoutError(
                    timed_out_message(entry.cell.identifier, self._limit)) from None
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
