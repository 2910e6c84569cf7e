"""Argument checks shared by the facade, the groups and the decorator.

Each raises TypeError for a wrong type and ValueError for a wrong value, with a message that
names the argument and what it accepts, before anything changes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_identifier", "check_scope", "in_scope"]


def check_identifier(identifier: Any, name: str = "identifier") -> str:
    """A connection identifier (or another argument `name` of the same kind): a non-empty str."""
    if not isinstance(identifier, str):
        raise TypeError(f"{name} must be a non-empty str, got {type(identifier).__name__}")
    if not identifier:
        raise ValueError(f"{name} must be a non-empty str, got ''")
    return identifier


def check_scope(scope: Any) -> str | None:
    """A scope: None or a non-empty str."""
    if scope is None:
        return None
    if not isinstance(scope, str):
        raise TypeError(f"scope must be None or a non-empty str, got {type(scope).__name__}")
    if not scope:
        raise ValueError("scope must be None or a non-empty str, got ''")
    return scope


def in_scope(scope: str | None) -> str:
    """The text naming a scope in messages: "" for none, else " in scope 'x'"."""
    return "" if scope is None else f" in scope {scope!r}"
