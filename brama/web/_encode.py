"""Statuses and events as JSON: timestamps stay numbers, enums become their strings.

User data (metadata, failure reasons, event data) may hold anything; whatever JSON cannot
carry is shown as its `repr` (bounded, never raising), so one odd value never breaks a page
or a stream. Non-finite floats become null: `JSON.parse` rejects NaN and Infinity.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from enum import Enum
from typing import Any

from brama.otp import safe_repr
from brama.types import ConnectionStatus, Event

__all__ = ["dumps", "event_dict", "jsonable", "status_dict"]

_MAX_DEPTH = 8
"""How deep nested user data is followed before the rest is shown as a repr."""


def jsonable(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON types (dict, list, str, int, float, bool, None)."""
    if value is None or (isinstance(value, (bool, int)) and not isinstance(value, Enum)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return jsonable(value.value, depth)
    if isinstance(value, str):
        return str.__str__(value)  # an exact str, without calling a subclass's methods
    if depth >= _MAX_DEPTH:
        return safe_repr(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item, depth + 1) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name), depth + 1)
                for field in dataclasses.fields(value)}
    return safe_repr(value)


def status_dict(status: ConnectionStatus) -> dict[str, Any]:
    """Every field of `status` (fields added later included), plus `available`."""
    fields = jsonable(status)
    fields["available"] = status.available
    return dict(fields)


def event_dict(event: Event) -> dict[str, Any]:
    """`event` with its type as a string and its data made JSON-safe."""
    return {
        "event": event.event.value,
        "timestamp": jsonable(event.timestamp),
        "connection": event.connection,
        "scope": event.scope,
        "data": jsonable(event.data),
    }


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of a value already made `jsonable`."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()
