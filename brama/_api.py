"""The module-level API: every `Brama` method as a function of the default system.

The default system (`brama._default`) starts lazily on first use; `shutdown()` stops it and a
later call starts a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from brama import _default
from brama._circuit import CLOSED
from brama._permit import Permit
from brama._system import Brama
from brama.otp import Subscription
from brama.types import ConnectionStatus, EventType

__all__ = [
    "acquire",
    "available",
    "close_circuit",
    "configure",
    "connections",
    "default",
    "disable_expiry",
    "failure",
    "group_available",
    "group_failure",
    "group_status",
    "group_success",
    "groups",
    "open_circuit",
    "register",
    "register_group",
    "reset_circuit",
    "reset_expiry",
    "set_expiry",
    "shutdown",
    "start",
    "status",
    "subscribe",
    "success",
    "unregister",
    "unregister_group",
    "unsubscribe",
]

def start(**options: Any) -> Brama:
    """Start the default system with `options`; BramaError if one is already running."""
    return _default.start(**options)


def default() -> Brama:
    """The default system, started (with default options) on first use."""
    return _default.get()


def shutdown() -> None:
    """Stop the default system; idempotent. A later call starts a fresh one."""
    _default.shutdown()


def register(identifier: str, *, scope: str | None = None, type: str = "general",
             metadata: Mapping[str, Any] | None = None, **options: Any) -> ConnectionStatus:
    """Register a connection with the default system (see `Brama.register`)."""
    return _default.get().register(identifier, scope=scope, type=type, metadata=metadata,
                                   **options)


def unregister(identifier: str, *, scope: str | None = None) -> None:
    """Unregister a connection (see `Brama.unregister`)."""
    _default.get().unregister(identifier, scope=scope)


def available(identifier: str, *, scope: str | None = None) -> bool:
    """May a call to this connection go ahead? (see `Brama.available`)."""
    # the closed-circuit read inlined: this check sits on every call; anything but a plain str
    # (a str subclass, whose __hash__ and __eq__ must not run) goes through the method
    if scope is None:
        if type(identifier) is str:
            cell = _default.cells.get(identifier)
            if cell is not None and cell.circuit.state is CLOSED:
                return True
    elif type(identifier) is str and type(scope) is str:
        cell = _default.cells.get((scope, identifier))
        if cell is not None and cell.circuit.state is CLOSED:
            return True
    return _default.get().available(identifier, scope=scope)


def acquire(identifier: str, *, scope: str | None = None) -> Permit | None:
    """Admit a call that owns its permit; None when refused (see `Brama.acquire`)."""
    return _default.get().acquire(identifier, scope=scope)


def success(identifier: str, *, scope: str | None = None, duration: Any = None) -> None:
    """Report a successful call (see `Brama.success`)."""
    _default.get().success(identifier, scope=scope, duration=duration)


def failure(identifier: str, *, scope: str | None = None, reason: Any = None,
            duration: Any = None) -> None:
    """Report a failed call (see `Brama.failure`)."""
    _default.get().failure(identifier, scope=scope, reason=reason, duration=duration)


def status(identifier: str, *, scope: str | None = None) -> ConnectionStatus:
    """The connection's status (see `Brama.status`)."""
    return _default.get().status(identifier, scope=scope)


def connections(*, scope: str | None = None) -> list[ConnectionStatus]:
    """Every registered connection (see `Brama.connections`)."""
    return _default.get().connections(scope=scope)


def configure(identifier: str | None = None, *, scope: str | None = None, **options: Any) -> None:
    """Configure globally or one connection (see `Brama.configure`)."""
    _default.get().configure(identifier, scope=scope, **options)


def open_circuit(identifier: str, *, scope: str | None = None, reason: Any = None,
                 expires_in: Any = None) -> None:
    """Force a circuit open (see `Brama.open_circuit`)."""
    _default.get().open_circuit(identifier, scope=scope, reason=reason, expires_in=expires_in)


def close_circuit(identifier: str, *, scope: str | None = None, reason: Any = None) -> None:
    """Force a circuit closed (see `Brama.close_circuit`)."""
    _default.get().close_circuit(identifier, scope=scope, reason=reason)


def reset_circuit(identifier: str, *, scope: str | None = None, reason: Any = None) -> None:
    """Reset a circuit (see `Brama.reset_circuit`)."""
    _default.get().reset_circuit(identifier, scope=scope, reason=reason)


def reset_expiry(identifier: str, *, scope: str | None = None) -> None:
    """Move an open circuit to half-open now (see `Brama.reset_expiry`)."""
    _default.get().reset_expiry(identifier, scope=scope)


def set_expiry(identifier: str, seconds: Any, *, scope: str | None = None) -> None:
    """Set a connection's expiry (see `Brama.set_expiry`)."""
    _default.get().set_expiry(identifier, seconds, scope=scope)


def disable_expiry(identifier: str, *, scope: str | None = None) -> None:
    """Keep a circuit open until a manual action (see `Brama.disable_expiry`)."""
    _default.get().disable_expiry(identifier, scope=scope)


def subscribe(*, events: Iterable[EventType | str] | EventType | str | None = None,
              connection: str | None = None, scope: str | None = None,
              filter: Callable[[Any], bool] | None = None, actor: Any = None,
              handler: Any = None, queue_size: int | None = None) -> Subscription:
    """Subscribe to events of the default system (see `Brama.subscribe`)."""
    return _default.get().subscribe(events=events, connection=connection, scope=scope,
                                    filter=filter, actor=actor, handler=handler,
                                    queue_size=queue_size)


def unsubscribe(subscription: Subscription) -> None:
    """Cancel a subscription (see `Brama.unsubscribe`)."""
    _default.get().unsubscribe(subscription)


def register_group(name: str, members: Iterable[str], *, scope: str | None = None) -> None:
    """Register a group of connections (see `Brama.register_group`)."""
    _default.get().register_group(name, members, scope=scope)


def groups() -> dict[str, tuple[str, ...]]:
    """Every registered group: name -> member identifiers (see `Brama.groups`)."""
    return _default.get().groups()


def unregister_group(name: str) -> None:
    """Forget a group (see `Brama.unregister_group`)."""
    _default.get().unregister_group(name)


def group_available(name: str) -> bool:
    """Is no member of the group open? A pure check (see `Brama.group_available`)."""
    return _default.get().group_available(name)


def group_status(name: str) -> dict[str, ConnectionStatus]:
    """The status of every member, keyed by identifier (see `Brama.group_status`)."""
    return _default.get().group_status(name)


def group_success(name: str) -> None:
    """Report a success to every member (see `Brama.group_success`)."""
    _default.get().group_success(name)


def group_failure(name: str, *, reason: Any = None) -> None:
    """Report a failure to every member (see `Brama.group_failure`)."""
    _default.get().group_failure(name, reason=reason)
