"""The errors of the fleet backend: one exception a caller catches for every Redis fault.

A fleet-wide breaker must never break the call it guards because Redis is slow, gone,
flushed or refusing: every store operation either answers within its timeout or raises
`BackendUnavailable`, and the connection actor falls back to its local circuit. The
subclasses say why, for logs and tests; catching the base is always enough.
"""

from __future__ import annotations

from typing import Any

from brama.errors import BramaError
from brama.otp import safe_text

__all__ = [
    "BackendUnavailable",
    "ContentionError",
    "FleetDataError",
    "RedisMissingError",
    "describe",
]


def describe(error: BaseException | None) -> str:
    """`Type: message` of an error, for messages and logs (redis-py's reprs hide the text)."""
    if error is None:
        return "no error"
    return f"{type(error).__name__}: {safe_text(error)}"


class BackendUnavailable(BramaError):
    """The fleet backend did not answer in time, refused the operation, or is known to be
    down (then raised at once, without touching the network, until a probe succeeds)."""


class FleetDataError(BackendUnavailable):
    """What Redis holds or published under Brama's names cannot be decoded (a newer format,
    or foreign data): the operation is refused, the backend itself may be healthy."""


class ContentionError(BackendUnavailable):
    """A compare-and-set transition lost to other writers more times than allowed; the fleet
    state moved on meanwhile, and the caller should treat the backend as unavailable for this
    one transition (step locally) rather than keep a guarded call waiting.

    `version` and `state` are the freshest fleet state the last attempt returned: adopt them.
    """

    def __init__(self, message: str, version: int = 0, state: Any = None) -> None:
        super().__init__(message)
        self.version = version
        self.state = state


class RedisMissingError(BramaError, ImportError):
    """The fleet backend needs redis-py, which is the optional extra `brama[redis]`."""
