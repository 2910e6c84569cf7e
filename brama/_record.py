"""Immutable records that are cheap to copy with a few fields changed.

A state machine step makes a new state from the old one with two or three fields changed.
`dataclasses.replace` on a frozen 25-field dataclass costs several microseconds in CPython
(it goes through `__init__` and `object.__setattr__` per field); the report of a failure must
cost about as much as pybreaker's whole failure path. `record` generates, once per class, an
`evolve` that copies the slots with plain stores: the way `dataclasses` itself generates code.

Records are immutable by contract: their fields are declared `Final`, so mypy refuses any
assignment outside `__init__`; only `evolve` (generated, unchecked) writes them, on new objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["record"]

T = TypeVar("T")
_KEEP: Any = object()
"""The default of every `evolve` parameter: keep the field as it is."""


def record(cls: type[T]) -> type[T]:
    """Give a `__slots__` class `evolve(self, **changes)`, `__eq__`, `__hash__` and `__repr__`.

    `__init__` is the class's own (keyword arguments for every field). `evolve` returns a copy
    with the given fields changed (keyword-only parameters, one per field: an unknown name is a
    TypeError, as for any call).
    """
    fields: tuple[str, ...] = tuple(cls.__slots__)  # type: ignore[attr-defined]
    params = ", ".join(f"{name}=_KEEP" for name in fields)
    lines = [f"def evolve(self, *, {params}):", "    new = _new(_cls)"]
    lines += [f"    new.{name} = self.{name} if {name} is _KEEP else {name}" for name in fields]
    lines.append("    return new")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_KEEP": _KEEP}
    exec("\n".join(lines), namespace)
    evolve: Callable[..., Any] = namespace["evolve"]
    evolve.__doc__ = "A copy of this record with `changes` applied."

    def values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in fields)

    def __eq__(self: Any, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(values(self) == values(other))

    def __hash__(self: Any) -> int:
        return hash(values(self))

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in fields)
        return f"{type(self).__name__}({inner})"

    cls.evolve = evolve  # type: ignore[attr-defined]
    cls.__eq__ = __eq__  # type: ignore[method-assign]
    cls.__hash__ = __hash__  # type: ignore[method-assign]
    cls.__repr__ = __repr__  # type: ignore[method-assign]
    return cls
