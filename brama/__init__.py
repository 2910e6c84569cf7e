"""Brama: circuit breakers and connection health for external dependencies, as OTP-style actors.

Re-exports only; see `brama.system.Brama` for the system and `brama.api` for the functions
of the default system.
"""

from brama.api import (
    available,
    circuit_breaker,
    close_circuit,
    configure,
    connections,
    default,
    disable_expiry,
    failure,
    group_available,
    group_failure,
    group_status,
    group_success,
    guard,
    open_circuit,
    register,
    register_group,
    reset_circuit,
    reset_expiry,
    set_expiry,
    shutdown,
    start,
    status,
    subscribe,
    success,
    unregister,
    unregister_group,
    unsubscribe,
)
from brama.errors import (
    AlreadyRegisteredError,
    BramaError,
    CircuitOpenError,
    ConfigError,
    NotFoundError,
)
from brama.otp._eventbus import Subscription
from brama.system import Brama
from brama.types import CircuitState, ConnectionStatus, Event, EventType

__version__ = "0.1.0"

__all__ = [
    "AlreadyRegisteredError",
    "Brama",
    "BramaError",
    "CircuitOpenError",
    "CircuitState",
    "ConfigError",
    "ConnectionStatus",
    "Event",
    "EventType",
    "NotFoundError",
    "Subscription",
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
