"""Registration and configuration of a system's connections.

Every change here is checked against the options in force and applied while holding the
settings' lock (the configuration transaction), so that a global change and a per-connection
change racing each other cannot each be valid alone and together unresolvable: an impossible
combination is refused, never stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from brama import _messages as m
from brama._cell import Cell, Key, fast_policy, to_status
from brama._circuit import EMPTY, Now, new_circuit
from brama._circuit_state import PERMIT_RANGE
from brama._config import Settings, validate_options
from brama._expiry import expiry_overrides
from brama._options import CONNECTION_OPTIONS, GLOBAL_OPTIONS, START_ONLY_OPTIONS
from brama._runtime import Runtime
from brama._validation import check_identifier, check_scope, in_scope
from brama.errors import AlreadyRegisteredError, ConfigError
from brama.otp import safe_repr
from brama.types import ConnectionStatus, EventType

__all__ = ["Registrar"]


class Registrar:
    """Registers, unregisters and configures the connections of one system."""

    def __init__(self, table: dict[Key, Cell], settings: Settings,
                 runtime: Callable[[], Runtime], now: Callable[[], Now]) -> None:
        self.table = table
        self.settings = settings
        self.runtime = runtime
        self.now = now
        self.permit_ranges = itertools.count(0, PERMIT_RANGE)  # one range per registration

    def lookup(self, identifier: Any, scope: Any) -> Cell | None:
        """The cell of a registered connection, or None; TypeError / ValueError for arguments
        that are no identifier or scope (a `str` subclass is looked up as a plain `str`: its
        own __hash__ and __eq__ never run, so they cannot lead to another connection)."""
        if type(identifier) is str and (scope is None or type(scope) is str):
            cell = self.table.get(identifier if scope is None else (scope, identifier))
            if cell is not None:
                return cell
        scope, identifier = check_scope(scope), check_identifier(identifier)
        return self.table.get(identifier if scope is None else (scope, identifier))

    def register(self, identifier: Any, scope: Any, type_: Any, metadata: Any,
                 options: Mapping[str, Any]) -> ConnectionStatus:
        """Register a connection; AlreadyRegisteredError if it exists."""
        runtime = self.runtime()
        runtime.raise_if_down()
        identifier, scope = check_identifier(identifier), check_scope(scope)
        if not isinstance(type_, str):
            raise TypeError(f"type must be a str, got {safe_repr(type_)}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping or None, got {safe_repr(metadata)}")
        overrides = validate_options(options, allowed=CONNECTION_OPTIONS, source="register()")
        frozen = MappingProxyType(dict(metadata)) if metadata else EMPTY
        now = self.now()
        fresh = new_circuit(now, overrides, next(self.permit_ranges))
        if runtime.fleet is not None:  # the fleet's state (never reset by a newcomer)
            self.settings.resolve(overrides, source="register()")  # refused before joining
        state, slot = runtime.join(identifier, scope, fresh)
        with self.settings.lock:  # checked against, and stored under, one view of the globals
            resolved = self.settings.resolve(overrides, source="register()")
            cell = Cell(identifier, scope, type_, frozen, state)
            cell.fleet = slot
            cell.policy = fast_policy(resolved, state, now.mono)
            if self.table.setdefault(cell.key, cell) is not cell:
                raise AlreadyRegisteredError(
                    f"connection {identifier!r}{in_scope(scope)} is already registered")
        if slot is not None:
            runtime.resume(cell)
        data = {"type": type_, "metadata": frozen}
        runtime.emit(EventType.CONNECTION_REGISTERED, identifier, scope, data)
        runtime.emit(EventType.REGISTRATION, identifier, scope, data)
        return to_status(cell, cell.circuit, resolved, fresh=True)

    def unregister(self, identifier: Any, scope: Any) -> None:
        """Remove a connection, its actor and its timers; unknown connections are ignored."""
        key, scope = check_identifier(identifier), check_scope(scope)
        cell = self.table.pop(key if scope is None else (scope, key), None)
        if cell is not None:
            cell.live = False
            runtime = self.runtime()
            runtime.terminate([cell])
            runtime.emit(EventType.CONNECTION_UNREGISTERED, cell.identifier, scope, {})

    def configure_all(self, options: Mapping[str, Any]) -> None:
        """A global change, checked against every connection's own options first."""
        fixed = sorted(START_ONLY_OPTIONS.intersection(options))
        if fixed:
            raise ConfigError(f"{fixed[0]} cannot be changed at runtime; pass it when starting")
        checked = validate_options(options, allowed=GLOBAL_OPTIONS, source="configure()")
        with self.settings.lock:
            preview = self.settings.preview(**checked)
            cells = list(self.table.values())
            policies = [
                fast_policy(preview.resolve(cell.circuit.overrides,
                                            source=f"connection {cell.identifier!r}'s own options"))
                for cell in cells
            ]
            self.settings.configure(**checked)
            for cell, policy in zip(cells, policies, strict=True):  # what the hot path reads
                cell.policy = policy
        self.runtime().apply_globals(checked)

    def configure_one(self, cell: Cell, options: Mapping[str, Any]) -> None:
        """A change of one connection's own options."""
        checked = validate_options(options, allowed=CONNECTION_OPTIONS, source="configure()")
        with self.settings.lock:
            self.settings.resolve({**cell.circuit.overrides, **checked}, source="configure()")
            self.runtime().ask(cell, m.Configure(checked))

    def set_expiry(self, cell: Cell, seconds: float) -> None:
        """`set_expiry`: refused if the connection's max_expiry is below `seconds`."""
        with self.settings.lock:
            self.settings.resolve(expiry_overrides(cell.circuit.overrides, seconds),
                                  source="set_expiry()")
            self.runtime().ask(cell, m.SetExpiry(seconds))
