"""One logging path for the OTP layer and for Brama: structlog key/value events.

When the application configured structlog, events go through its processors, so a JSON setup
gets one JSON object per event and renders `exc_info` with its own exception processor. When
it did not, events go to stdlib `logging` under the logger's name as `event key=value ...`,
and `exc_info` is handed to `logging`, which appends the traceback the usual way.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["get_logger", "safe_repr", "safe_text"]

_RENDER = structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True)


def _to_stdlib(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor of the fallback chain: `event k=v` as the message, and `exc_info`
    passed through so that `logging` renders the traceback itself."""
    exc_info = event_dict.pop("exc_info", None)
    message = _RENDER(logger, method_name, event_dict)
    return (message,), ({"exc_info": exc_info} if exc_info else {})


def get_logger(name: str) -> Any:
    """A structlog logger for `name`, routed to stdlib `logging` unless structlog is configured.

    Checked at each call, so configuring structlog after Brama was imported still takes effect.
    """
    if structlog.is_configured():
        return structlog.get_logger(name)
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[_to_stdlib],
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
