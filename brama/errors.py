"""The exception hierarchy of Brama: every error it raises on purpose derives from BramaError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brama.validation import in_scope

if TYPE_CHECKING:
    from collections.abc import Callable

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

    `.status` holds the `ConnectionStatus` seen when the call was refused. The decorator and
    guard capture that snapshot at refusal and build the status object only when `.status`
    is first read, which keeps a rejection cheap.
    """

    def __init__(self, status: ConnectionStatus, message: str | None = None) -> None:
        if message is None:
            message = _refusal_message(status.identifier, status.scope, status.state)
        super().__init__(message)
        self.state = status.state
        self._status: ConnectionStatus | None = status
        self._build: Callable[[], ConnectionStatus] | None = None

    @classmethod
    def deferred(
        cls,
        identifier: str,
        scope: str | None,
        state: Any,
        build: Callable[[], ConnectionStatus],
    ) -> CircuitOpenError:
        """An error whose status is built by `build` (from a snapshot taken at refusal)."""
        error = cls.__new__(cls)
        BramaError.__init__(error, _refusal_message(identifier, scope, state))
        error.state = state
        error._status = None
        error._build = build
        return error

    @property
    def status(self) -> ConnectionStatus:
        """The connection's status when the call was refused."""
        if self._status is None:
            assert self._build is not None
            self._status = self._build()
            self._build = None
        return self._status

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with both constructor arguments (the default would lose `status`)."""
        return (type(self), (self.status, str(self)))


def _refusal_message(identifier: str, scope: str | None, state: Any) -> str:
    state = getattr(state, "value", state)  # an enum's own __format__ is slow
    return f"circuit of connection {identifier!r}{in_scope(scope)} is {state}: call rejected"
