"""`Brama`: one system of supervised connection actors, and the facade of the public API.

The facade validates, looks up and delegates: reads come from the published snapshots, changes
go to the connection's actor through the `Runtime`. The hot paths (`available`, `success`,
`admit` on a healthy closed circuit) touch no actor. docs/api.md is the contract."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from brama import _fork
from brama import _messages as m
from brama._cell import Cell, Key
from brama._cellapi import CellMethods
from brama._circuit import CLOSED, Circuit
from brama._config import Settings
from brama._groups import GroupMethods, Groups
from brama._options import Options
from brama._permit import Permit
from brama._refusal import refuse
from brama._registrar import Registrar
from brama._runtime import Runtime
from brama._subscribe import EventMethods
from brama._validation import check_duration, check_scope, in_scope, plain_str
from brama.errors import BramaError, CircuitOpenError, NotFoundError
from brama.otp import SYSTEM_CLOCK, Clock
from brama.types import ConnectionStatus, EventType

__all__ = ["Brama"]

_SUCCESS = EventType.SUCCESS
_REFUSED, _LEGACY = m.REFUSED, m.LEGACY


class Brama(CellMethods, EventMethods, GroupMethods):
    """An independent Brama system: its own supervision tree, connections, timers and event
    bus. Stop it with `stop()` or use it as a context manager."""

    def __init__(self, **options: Any) -> None:
        self._settings = Settings(options)
        clock = self._settings.get("clock")
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._table: dict[Key, Cell] = {}
        self._stopped = False
        self._lock = threading.Lock()
        self._use(Runtime(self._settings, self._clock, self._table))
        self._groups = Groups(self._table, self._check_running, self._status_of,
                              self.success, self.failure)
        self._registrar = Registrar(self._table, self._settings, lambda: self._runtime,
                                    lambda: self._runtime.context.now())
        _fork.track(self)

    def _use(self, runtime: Runtime) -> None:
        """Run on `runtime`; the state machine's time is its `state_clock` (with a backend,
        the fleet's clock), which the hot paths read too."""
        self._runtime = runtime
        self._interest = runtime.bus.interest
        self._wall = runtime.stamp
        self._mono = runtime.state_clock.monotonic

    def resume_after_fork(self) -> None:
        """In a forked child: new threads and actors over the same state (see `_fork`)."""
        self._settings.after_fork_in_child()
        self._lock = threading.Lock()
        # The inherited runtime's actors are dead here, but brama.otp restarted its timer
        # service's thread: stop it, or it fires the parent's timers (one more thread per
        # fork generation, and a FakeClock keeps driving it).
        self._runtime.timers.stop()
        if not self._stopped:
            for key, cell in list(self._table.items()):
                self._table[key] = cell.successor()
            self._use(Runtime(self._settings, self._clock, self._table))

    # -- lookups and checks --

    def lookup(self, identifier: str, scope: str | None = None) -> Cell | None:
        """The cell of a registered connection, or None (validating the arguments)."""
        self._check_running()
        return self._registrar.lookup(identifier, scope)

    def _cell(self, identifier: str, scope: str | None) -> Cell:
        if (cell := self.lookup(identifier, scope)) is None:  # the arguments are valid now
            raise NotFoundError(f"connection {plain_str(identifier)!r}"
                                f"{in_scope(check_scope(scope))} is not registered")
        return cell

    def _check_running(self) -> None:
        if self._stopped:
            raise BramaError("this Brama system is stopped; start a new one (or brama.shutdown())")

    def _options_for(self, state: Circuit) -> Options:
        return self._settings.resolve(state.overrides)

    def _status_of(self, cell: Cell) -> ConnectionStatus:
        return cell.status(self._settings.resolve(cell.circuit.overrides), self._mono())

    # -- lifecycle --

    def stop(self) -> None:
        """Stop every actor and thread of this system; idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            cells = list(self._table.values())
            self._table.clear()
        self._runtime.stop(cells)

    @property
    def running(self) -> bool:
        """True until `stop()`."""
        return not self._stopped

    @property
    def clock(self) -> Clock:
        """The clock this system reads (a `FakeClock` in tests)."""
        return self._clock

    @property
    def cells(self) -> Mapping[Key, Cell]:
        """The registered connections' cells by key (read-only; for integrations' fast paths).
        Emptied when the system stops."""
        return self._table

    @property
    def runtime(self) -> Runtime:
        """The actors and threads behind this system (for `brama.testing` and integrations)."""
        return self._runtime

    def __enter__(self) -> Brama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Brama {'stopped' if self._stopped else 'running'}, {len(self._table)} cells>"

    # -- connections --

    def register(self, identifier: str, *, scope: str | None = None, type: str = "general",
                 metadata: Mapping[str, Any] | None = None, **options: Any) -> ConnectionStatus:
        """Register a connection; AlreadyRegisteredError if it exists."""
        self._check_running()
        return self._registrar.register(identifier, scope, type, metadata, options)

    def unregister(self, identifier: str, *, scope: str | None = None) -> None:
        """Remove a connection, its actor and its timers; unknown connections are ignored."""
        self._registrar.unregister(identifier, scope)

    def available(self, identifier: str, *, scope: str | None = None) -> bool:
        """True when a call may go ahead; counts a rejection when it may not."""
        if scope is None:  # the common case inlined, for a plain str only (see brama.available)
            if type(identifier) is str:
                cell = self._table.get(identifier)
                if cell is not None and cell.circuit.state is CLOSED:
                    return True
        elif type(identifier) is str and type(scope) is str:
            cell = self._table.get((scope, identifier))
            if cell is not None and cell.circuit.state is CLOSED:
                return True
        return self.admit(identifier, scope=scope) != _REFUSED

    def admit(self, identifier: str, *, scope: str | None = None) -> int:
        """Admit a call: a ticket for its outcome (>= 0: a half-open trial permit; -1: admitted
        while closed), or -2 when refused. See `acquire`; `admitted` is the decorator's and the
        guard's path, for a cell already looked up."""
        cell = (self._table.get(identifier if scope is None else (scope, identifier))
                if type(identifier) is str and (scope is None or type(scope) is str) else None)
        if cell is None and (cell := self.lookup(identifier, scope)) is None:
            return _REFUSED
        return self.admitted(cell)

    def acquire(self, identifier: str, *, scope: str | None = None) -> Permit | None:
        """Admit a call that owns its half-open permit; None when refused (see `Permit`)."""
        cell = self._cell(identifier, scope)
        ticket = self.admitted(cell)
        return None if ticket == _REFUSED else Permit(self, cell, ticket)

    def refusal(self, identifier: str, scope: str | None = None) -> CircuitOpenError | None:
        """The error for a call refused now (built lazily), or None if it is not registered."""
        cell = self.lookup(identifier, scope)
        return None if cell is None else refuse(cell, self._options_for, self._wall())

    def success(self, identifier: str, *, scope: str | None = None, ticket: int | None = None,
                duration: Any = None) -> None:
        """Report a successful call (`ticket`: from `admit`, for a call that owns its permit)."""
        cell = (self._table.get(identifier if scope is None else (scope, identifier))
                if type(identifier) is str and (scope is None or type(scope) is str) else None)
        if duration is not None:
            duration = check_duration("duration", duration, allow_zero=True, where="success()")
        self.succeeded(cell or self._cell(identifier, scope), _LEGACY if ticket is None else ticket,
                       duration)

    def failure(self, identifier: str, *, scope: str | None = None, reason: Any = None,
                ticket: int | None = None, duration: Any = None) -> None:
        """Report a failed call; returns once the circuit has taken it into account."""
        cell = self._cell(identifier, scope)
        if duration is not None:
            duration = check_duration("duration", duration, allow_zero=True, where="failure()")
        self.failed(cell, reason, _LEGACY if ticket is None else ticket, duration)

    def release(self, identifier: str, ticket: int, *, scope: str | None = None) -> None:
        """End a call admitted with `ticket` without an outcome: its trial permit comes back."""
        if ticket >= 0:
            self.released(self._cell(identifier, scope), ticket)

    def status(self, identifier: str, *, scope: str | None = None) -> ConnectionStatus:
        """The connection's current status, read from its snapshot."""
        return self._status_of(self._cell(identifier, scope))

    def connections(self, *, scope: str | None = None) -> list[ConnectionStatus]:
        """Every registered connection, or those of `scope`."""
        scope = check_scope(scope)
        self._check_running()
        return [self._status_of(cell) for cell in list(self._table.values())
                if scope is None or cell.scope == scope]

    def configure(self, identifier: str | None = None, *, scope: str | None = None,
                  **options: Any) -> None:
        """Change options globally (identifier None) or for one connection, atomically."""
        if identifier is None:
            check_scope(scope)
            self._registrar.configure_all(options)
        else:
            self._registrar.configure_one(self._cell(identifier, scope), options)

    # -- circuit control --

    def open_circuit(self, identifier: str, *, scope: str | None = None, reason: Any = None,
                     expires_in: Any = None) -> None:
        """Force the circuit open; `expires_in` overrides this opening's expiry."""
        cell = self._cell(identifier, scope)
        seconds = None if expires_in is None else check_duration("expires_in", expires_in,
                                                                 where="open_circuit()")
        self._runtime.ask(cell, m.OpenCircuit(reason, seconds))

    def close_circuit(self, identifier: str, *, scope: str | None = None,
                      reason: Any = None) -> None:
        """Force the circuit closed."""
        self._runtime.ask(self._cell(identifier, scope), m.CloseCircuit(reason))

    def reset_circuit(self, identifier: str, *, scope: str | None = None,
                      reason: Any = None) -> None:
        """Close the circuit, clear the failure count and the backoff."""
        self._runtime.ask(self._cell(identifier, scope), m.ResetCircuit(reason))

    def reset_expiry(self, identifier: str, *, scope: str | None = None) -> None:
        """An open circuit goes to half-open now."""
        self._runtime.ask(self._cell(identifier, scope), m.ResetExpiry())

    def set_expiry(self, identifier: str, seconds: Any, *, scope: str | None = None) -> None:
        """The expiry of this connection from now on (an open circuit's deadline moves too)."""
        cell = self._cell(identifier, scope)
        self._registrar.set_expiry(cell, check_duration("seconds", seconds, where="set_expiry()"))

    def disable_expiry(self, identifier: str, *, scope: str | None = None) -> None:
        """Keep the circuit open until a manual action."""
        self._runtime.ask(self._cell(identifier, scope), m.DisableExpiry())
