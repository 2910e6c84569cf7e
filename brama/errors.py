"""The exception hierarchy of Brama: every error it raises on purpose derives from BramaError.

A leaf module: it imports nothing of Brama, so every other module may import it.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = [
    "AlreadyRegisteredError",
    "BramaError",
    "CircuitOpenError",
    "ConfigError",
    "ConfigWarning",
    "NotFoundError",
]


class BramaError(Exception):
    """Base class of every error Brama raises, so callers can catch them all at once."""


class NotFoundError(BramaError, LookupError):
    """The connection or group is not registered."""


class AlreadyRegisteredError(BramaError, ValueError):
    """`register` was called for a `(scope, identifier)` that already exists."""


class ConfigError(BramaError, ValueError):
    """An option is unknown, of the wrong type or out of range; the message names it, the
    value, where it came from and what is accepted."""


class ConfigWarning(UserWarning):
    """Something in the configuration is ignored, e.g. an unknown `BRAMA_*` variable."""


class Refusal(Protocol):
    """What a refused call captured, turned into a message and a status only when read."""

    @property
    def state(self) -> Any:
        """The state that refused the call."""
        ...

    def message(self) -> str:
        """The error message."""
        ...

    def status(self) -> Any:
        """The connection's `ConnectionStatus`."""
        ...


class CircuitOpenError(BramaError):
    """A guarded call was rejected because the circuit is open (or out of half-open permits).

    The message names the state, when calls will be let through again and the last failure
    reason; `.status` holds the `ConnectionStatus`. A refusal raised by Brama builds both only
    when they are first read, so that refusing a call stays cheap.
    """

    _refusal: Refusal | None = None
    _message: str | None = None
    _status: Any = None

    def __init__(self, status: Any, message: str | None = None) -> None:
        super().__init__()
        self._refusal = None
        self._status = status
        self._message = message

    @classmethod
    def refused(cls, refusal: Refusal) -> CircuitOpenError:
        """An error whose message and status come from `refusal`, built when first read."""
        error = cls.__new__(cls)
        error._refusal = refusal  # the other fields keep their class defaults (None)
        return error

    @property
    def state(self) -> Any:
        """The circuit's state when the call was refused."""
        refusal = self._refusal
        return refusal.state if refusal is not None else self.status.state

    @property
    def status(self) -> Any:
        """The connection's status when the call was refused (`brama.ConnectionStatus`)."""
        if self._status is None and self._refusal is not None:
            self._status = self._refusal.status()
        return self._status

    def __str__(self) -> str:
        if self._message is None:
            if self._refusal is not None:
                self._message = self._refusal.message()
            else:
                status = self.status
                where = "" if status.scope is None else f" in scope {status.scope!r}"
                self._message = (
                    f"circuit of connection {status.identifier!r}{where} is "
                    f"{getattr(status.state, 'value', status.state)}: call rejected"
                )
        return self._message

    @property
    def args(self) -> tuple[Any, ...]:  # type: ignore[override]
        return (str(self),)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the status and the message (a refusal object is not sent along)."""
        return (type(self), (self.status, str(self)))
