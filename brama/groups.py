"""Groups: named sets of connections of one scope, checked and reported to as one.

`GroupsMixin` holds the group methods of `brama.Brama`. A group stores the keys of its
members, not their cells, so a member that is unregistered and registered again is the new
connection. Decisions where the contract leaves room:

- Every group function raises `NotFoundError` for an unknown group name, `unregister_group`
  included (unlike `unregister` of a connection, which ignores unknown ones).
- A member unregistered after the group was registered counts as *not available*
  (`group_available` is False, as `available` is False for an unknown connection), is
  missing from `group_status`, and is skipped by `group_success` / `group_failure`.
- `group_available` is a pure read of the members' snapshots: it takes no half-open permit
  and counts no rejection; a half-open member counts as available (it is not open).
- `group_success` / `group_failure` report to the members one after the other, in the order
  they were given; each report behaves exactly like `success` / `failure` on that member.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from brama.connection import Cell, Key, key_of
from brama.errors import AlreadyRegisteredError, NotFoundError
from brama.types import CircuitState, ConnectionStatus
from brama.validation import check_scope, in_scope

Member = tuple[str | None, str]
"""A group member: `(scope, identifier)`."""

if TYPE_CHECKING:
    from brama.circuit import Circuit
    from brama.config import Options

__all__ = ["GroupsMixin"]

_OPEN = CircuitState.OPEN


def _check_name(name: Any) -> str:
    """Validate a group name: a non-empty str."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a non-empty str (a group name), got {type(name).__name__}")
    if not name:
        raise ValueError("name must be a non-empty str (a group name), got ''")
    return name


def _check_members(members: Any) -> tuple[str, ...]:
    """Validate `members`: a non-empty iterable of distinct, non-empty str identifiers."""
    if isinstance(members, (str, bytes)):
        raise TypeError(
            f"members must be an iterable of identifiers (str), not a single "
            f"{type(members).__name__}: {members!r}; wrap it in a list"
        )
    try:
        items = list(members)
    except TypeError:
        raise TypeError(
            f"members must be an iterable of identifiers (str), got {type(members).__name__}"
        ) from None
    if not items:
        raise ValueError("members must name at least one connection, got an empty iterable")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"members must hold identifiers (non-empty str), got {item!r} "
                f"of type {type(item).__name__}"
            )
        if not item:
            raise ValueError("members must hold identifiers (non-empty str), got ''")
        if item in seen:
            raise ValueError(f"members must be distinct, got {item!r} twice")
        seen.add(item)
    return tuple(items)


class GroupsMixin:
    """The group methods of `brama.Brama`; see the module docstring for the semantics."""

    if TYPE_CHECKING:
        _cells: dict[Key, Cell]
        _groups: dict[str, tuple[Member, ...]]

        def _check_running(self) -> None: ...

        def _options_for(self, state: Circuit) -> Options: ...

        def success(self, identifier: str, *, scope: str | None = None) -> None: ...

        def failure(
            self, identifier: str, *, scope: str | None = None, reason: Any = None
        ) -> None: ...

    def _group(self, name: str) -> tuple[Member, ...]:
        """The members of group `name`; NotFoundError if there is no such group."""
        self._check_running()
        keys = self._groups.get(name)
        if keys is None:
            _check_name(name)
            raise NotFoundError(f"group {name!r} is not registered")
        return keys

    def register_group(
        self, name: str, members: Iterable[str], *, scope: str | None = None
    ) -> None:
        """Register group `name` of the registered connections `members` (all in `scope`).

        Raises AlreadyRegisteredError for an existing name, NotFoundError for a member that is
        not registered, TypeError / ValueError for a malformed argument; nothing changes then.
        """
        self._check_running()
        _check_name(name)
        check_scope(scope)
        identifiers = _check_members(members)
        cells = self._cells
        members_ = tuple((scope, identifier) for identifier in identifiers)
        for identifier in identifiers:
            if cells.get(key_of(scope, identifier)) is None:
                raise NotFoundError(
                    f"members: connection {identifier!r}{in_scope(scope)} is not registered"
                )
        if self._groups.setdefault(name, members_) is not members_:
            raise AlreadyRegisteredError(f"group {name!r} is already registered")

    def unregister_group(self, name: str) -> None:
        """Forget group `name` (its connections stay); NotFoundError if there is no such group."""
        _check_name(name)
        if self._groups.pop(name, None) is None:
            raise NotFoundError(f"group {name!r} is not registered")

    def group_available(self, name: str) -> bool:
        """True when no member is open (or unregistered); a pure read that takes no permits."""
        cells = self._cells
        for scope, identifier in self._group(name):
            cell = cells.get(key_of(scope, identifier))
            if cell is None or cell.circuit.state is _OPEN:
                return False
        return True

    def group_status(self, name: str) -> dict[str, ConnectionStatus]:
        """The status of every (still registered) member, keyed by identifier."""
        cells = self._cells
        result: dict[str, ConnectionStatus] = {}
        for scope, identifier in self._group(name):
            cell = cells.get(key_of(scope, identifier))
            if cell is not None:
                result[identifier] = cell.status(self._options_for(cell.circuit))
        return result

    def group_success(self, name: str) -> None:
        """Report a success to every (still registered) member."""
        for scope, identifier in self._group(name):
            try:
                self.success(identifier, scope=scope)
            except NotFoundError:
                continue

    def group_failure(self, name: str, *, reason: Any = None) -> None:
        """Report a failure with `reason` to every (still registered) member."""
        for scope, identifier in self._group(name):
            try:
                self.failure(identifier, scope=scope, reason=reason)
            except NotFoundError:
                continue
