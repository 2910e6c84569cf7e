"""The module-level API: every `Brama` method as a function of the default system.

The default system starts lazily on first use (`default()`), like an OTP application that is
started on demand; `shutdown()` stops it and a later call starts a new one.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pykka import ActorRef

from brama.decorator import circuit_breaker, guard
from brama.errors import BramaError
from brama.otp._eventbus import Subscription
from brama.system import Brama
from brama.types import CircuitState, ConnectionStatus, Event, EventType

__all__ = [
    "available",
    "circuit_breaker",
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
    "guard",
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

_CLOSED = CircuitState.CLOSED
_lock = threading.Lock()
_default: Brama | None = None


def start(**options: Any) -> Brama:
    """Start the default system with `options`; BramaError if one is already running."""
    global _default
    with _lock:
        if _default is not None and _default.running:
            raise BramaError("the default Brama system is already running; shutdown() it first")
        _default = Brama(**options)
        return _default


def default() -> Brama:
    """The default system, started (with default options) on first use."""
    global _default
    system = _default
    if system is not None and not system._stopped:
        return system
    with _lock:
        if _default is None or not _default.running:
            _default = Brama()
        return _default


def shutdown() -> None:
    """Stop the default system; idempotent. A later call starts a fresh one."""
    global _default
    with _lock:
        system, _default = _default, None
    if system is not None:
        system.stop()


atexit.register(shutdown)


def register(identifier: str, *, scope: str | None = None, type: str = "general",
             metadata: Mapping[str, Any] | None = None, **options: Any) -> ConnectionStatus:
    """Register a connection with the default system (see `Brama.register`)."""
    return default().register(identifier, scope=scope, type=type, metadata=metadata, **options)


def unregister(identifier: str, *, scope: str | None = None) -> None:
    """Unregister a connection (see `Brama.unregister`)."""
    default().unregister(identifier, scope=scope)


def available(identifier: str, *, scope: str | None = None) -> bool:
    """May a call to this connection go ahead? (see `Brama.available`)."""
    system = _default
    if system is not None:  # the closed-circuit read inlined: this check sits on every call
        cell = system._cells.get(identifier if scope is None else (scope, identifier))
        if cell is not None and cell.circuit.state is _CLOSED:
            return True
    return default().available(identifier, scope=scope)


def success(identifier: str, *, scope: str | None = None) -> None:
    """Report a successful call (see `Brama.success`)."""
    default().success(identifier, scope=scope)


def failure(identifier: str, *, scope: str | None = None, reason: Any = None) -> None:
    """Report a failed call (see `Brama.failure`)."""
    default().failure(identifier, scope=scope, reason=reason)


def status(identifier: str, *, scope: str | None = None) -> ConnectionStatus:
    """The connection's status (see `Brama.status`)."""
    return default().status(identifier, scope=scope)


def connections(*, scope: str | None = None) -> list[ConnectionStatus]:
    """Every registered connection (see `Brama.connections`)."""
    return default().connections(scope=scope)


def configure(identifier: str | None = None, *, scope: str | None = None, **options: Any) -> None:
    """Configure globally or one connection (see `Brama.configure`)."""
    default().configure(identifier, scope=scope, **options)


def open_circuit(identifier: str, *, scope: str | None = None, reason: Any = None,
                 expires_in: float | None = None) -> None:
    """Force a circuit open (see `Brama.open_circuit`)."""
    default().open_circuit(identifier, scope=scope, reason=reason, expires_in=expires_in)


def close_circuit(identifier: str, *, scope: str | None = None, reason: Any = None) -> None:
    """Force a circuit closed (see `Brama.close_circuit`)."""
    default().close_circuit(identifier, scope=scope, reason=reason)


def reset_circuit(identifier: str, *, scope: str | None = None, reason: Any = None) -> None:
    """Reset a circuit (see `Brama.reset_circuit`)."""
    default().reset_circuit(identifier, scope=scope, reason=reason)


def reset_expiry(identifier: str, *, scope: str | None = None) -> None:
    """Move an open circuit to half-open now (see `Brama.reset_expiry`)."""
    default().reset_expiry(identifier, scope=scope)


def set_expiry(identifier: str, seconds: float, *, scope: str | None = None) -> None:
    """Set a connection's expiry (see `Brama.set_expiry`)."""
    default().set_expiry(identifier, seconds, scope=scope)


def disable_expiry(identifier: str, *, scope: str | None = None) -> None:
    """Keep a circuit open until a manual action (see `Brama.disable_expiry`)."""
    default().disable_expiry(identifier, scope=scope)


def subscribe(
    *,
    events: Iterable[EventType | str] | EventType | str | None = None,
    connection: str | None = None,
    scope: str | None = None,
    filter: Callable[[Event], bool] | None = None,
    actor: ActorRef[Any] | None = None,
    handler: Callable[[Event], None] | Any | None = None,
) -> Subscription:
    """Subscribe to events of the default system (see `Brama.subscribe`)."""
    return default().subscribe(events=events, connection=connection, scope=scope,
                               filter=filter, actor=actor, handler=handler)


def unsubscribe(subscription: Subscription) -> None:
    """Cancel a subscription (see `Brama.unsubscribe`)."""
    default().unsubscribe(subscription)


def register_group(name: str, members: Iterable[str], *, scope: str | None = None) -> None:
    """Register a group of connections (see `Brama.register_group`)."""
    default().register_group(name, members, scope=scope)


def unregister_group(name: str) -> None:
    """Forget a group (see `Brama.unregister_group`)."""
    default().unregister_group(name)


def group_available(name: str) -> bool:
    """Is no member of the group open? A pure check (see `Brama.group_available`)."""
    return default().group_available(name)


def group_status(name: str) -> dict[str, ConnectionStatus]:
    """The status of every member, keyed by identifier (see `Brama.group_status`)."""
    return default().group_status(name)


def group_success(name: str) -> None:
    """Report a success to every member (see `Brama.group_success`)."""
    default().group_success(name)


def group_failure(name: str, *, reason: Any = None) -> None:
    """Report a failure to every member (see `Brama.group_failure`)."""
    default().group_failure(name, reason=reason)
