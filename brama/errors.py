"""The exception hierarchy of Brama: every error it raises on purpose derives from BramaError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brama.types import ConnectionStatus

__all__ = [
    "AlreadyRegisteredError",
    "BramaError",
    "CircuitOpenError",
    "ConfigError",
    "NotFoundError",
]


class BramaError(Exception):
    """Base class of every error Brama raises, so callers can catch them all at once."""


class NotFoundError(BramaError, LookupError):
    """The connection or group is not registered."""


class AlreadyRegisteredError(BramaError, ValueError):
    """`register` was called for a `(scope, identifier)` that already exists."""


class ConfigError(BramaError, ValueError):
    """An option is unknown, of the wrong type or out of range; the message names it."""


class CircuitOpenError(BramaError):
    """A guarded call was rejected because the circuit is open (or out of half-open permits).

    `.status` holds the `ConnectionStatus` seen when the call was refused.
    """

    status: ConnectionStatus

    def __init__(self, status: ConnectionStatus, message: str | None = None) -> None:
        if message is None:
            where = f" in scope {status.scope!r}" if status.scope is not None else ""
            message = (
                f"circuit of connection {status.identifier!r}{where} is "
                f"{getattr(status.state, 'value', status.state)}: call rejected"
            )
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with both constructor arguments (the default would lose `status`)."""
        return (type(self), (self.status, str(self)))
