"""Argument checks shared by the facade, the groups, the decorator and the testing helpers.

Each raises TypeError for a wrong type and ValueError (ConfigError for durations) for a wrong
value, with a message that names the argument, the value and what is accepted, before anything
changes. Identifiers and scopes become plain `str` at the door: a `str` subclass is copied to a
plain `str` without calling any of its methods, so its `__hash__`, `__eq__` or `__repr__`
never run inside Brama.
"""

from __future__ import annotations

import math
from typing import Any

from brama._options import duration, shown
from brama.errors import ConfigError

__all__ = ["check_duration", "check_identifier", "check_scope", "in_scope", "plain_str"]

_to_str = str.__str__  # on a subclass instance: an exact str copy, no user method called


def plain_str(value: str) -> str:
    """`value` as an exact `str` (itself if it already is one)."""
    return value if type(value) is str else str(_to_str(value))


def check_identifier(identifier: Any, name: str = "identifier") -> str:
    """A connection identifier (or another argument `name` of the same kind): a non-empty str."""
    if not isinstance(identifier, str):
        raise TypeError(f"{name} must be a non-empty str, got {type(identifier).__name__}")
    plain = plain_str(identifier)
    if not plain:
        raise ValueError(f"{name} must be a non-empty str, got ''")
    return plain


def check_scope(scope: Any) -> str | None:
    """A scope: None or a non-empty str."""
    if scope is None:
        return None
    if not isinstance(scope, str):
        raise TypeError(f"scope must be None or a non-empty str, got {type(scope).__name__}")
    plain = plain_str(scope)
    if not plain:
        raise ValueError("scope must be None or a non-empty str, got ''")
    return plain


def check_duration(name: str, value: Any, *, allow_zero: bool = False, where: str = "") -> float:
    """A duration argument (`expires_in`, `set_expiry`'s `seconds`, `timeout`): a finite number
    of seconds > 0 (>= 0 with `allow_zero`) or a timedelta; ConfigError naming it (and the
    function `where` it was given, e.g. "set_expiry()") otherwise."""
    seconds = duration(value)
    op = ">=" if allow_zero else ">"
    if (
        seconds is None
        or not math.isfinite(seconds)
        or seconds < 0
        or (seconds == 0 and not allow_zero)
    ):
        given = f" (argument of {where})" if where else ""
        raise ConfigError(
            f"{name}={shown(value)}{given} must be a finite number of seconds {op} 0, "
            "or a timedelta"
        )
    return seconds


def in_scope(scope: str | None) -> str:
    """The text naming a scope in messages: "" for none, else " in scope 'x'"."""
    return "" if scope is None else f" in scope {scope!r}"
