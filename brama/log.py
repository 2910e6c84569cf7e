"""Structured logging: structlog when the application configured it, stdlib logging otherwise.

Users who never configure structlog still see Brama's events through the `logging` module
(logger names under `brama`), rendered as `event key=value ...`.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger", "safe_repr", "safe_text"]

_FALLBACK_PROCESSORS: list[Any] = [
    structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
]


def get_logger(name: str) -> Any:
    """A structlog logger for `name`, routed to stdlib logging unless structlog is configured."""
    if structlog.is_configured():
        return structlog.get_logger(name)
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=_FALLBACK_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def safe_repr(value: Any) -> str:
    """`repr(value)`, or a placeholder if its `__repr__` raises: logging and reporting must
    never fail because of a user's object."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} (repr failed)>"


def safe_text(value: Any) -> str:
    """`str(value)`, or a placeholder if its `__str__` raises."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} (str failed)>"
