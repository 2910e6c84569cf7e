"""Brama: circuit breakers and connection health for external dependencies, as OTP-style actors.

Re-exports only, like pykka's: the contract is docs/api.md. The implementation lives in
private modules (`brama._system` holds `Brama`, `brama._api` the functions of the default
system); the public modules are `brama`, `brama.errors`, `brama.types`, `brama.testing` and
`brama.otp`.
"""

from brama._api import (
    acquire,
    available,
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
    groups,
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
from brama._decorator import circuit_breaker
from brama._guard import Guard, guard
from brama._permit import Permit
from brama._system import Brama
from brama.errors import (
    AlreadyRegisteredError,
    BramaError,
    CircuitOpenError,
    ConfigError,
    ConfigWarning,
    NotFoundError,
)
from brama.otp import Subscription
from brama.types import CircuitState, ConnectionStatus, Event, EventType

__version__ = "0.1.0"

__all__ = [
    "AlreadyRegisteredError",
    "Brama",
    "BramaError",
    "CircuitOpenError",
    "CircuitState",
    "ConfigError",
    "ConfigWarning",
    "ConnectionStatus",
    "Event",
    "EventType",
    "Guard",
    "NotFoundError",
    "Permit",
    "Subscription",
    "acquire",
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
    "groups",
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
