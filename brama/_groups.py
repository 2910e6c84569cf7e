"""Groups: named sets of connections of one scope, checked and reported to as one.

`Groups` holds the groups of one `brama.Brama`, which delegates to it (the public methods
come from `GroupMethods`, a mixin of `Brama`). A group stores the
keys of its members, not their cells, so a member that is unregistered and registered again is
the new connection. Decisions where the contract leaves room:

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

from collections.abc import Callable, Iterable
from typing import Any

from brama._cell import Cell, Key, key_of
from brama._validation import check_scope, in_scope, plain_str
from brama.errors import AlreadyRegisteredError, NotFoundError
from brama.otp import safe_repr
from brama.types import CircuitState, ConnectionStatus

Member = tuple[str | None, str]
"""A group member: `(scope, identifier)`."""

__all__ = ["GroupMethods", "Groups"]

_OPEN = CircuitState.OPEN


def _check_name(name: Any) -> str:
    """Validate a group name: a non-empty str."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a non-empty str (a group name), got {type(name).__name__}")
    plain = plain_str(name)  # before anything else: no method of a str subclass runs
    if not plain:
        raise ValueError("name must be a non-empty str (a group name), got ''")
    return plain


def _check_members(members: Any) -> tuple[str, ...]:
    """Validate `members`: a non-empty iterable of distinct, non-empty str identifiers."""
    if isinstance(members, (str, bytes)):
        shown = repr(plain_str(members)) if isinstance(members, str) else safe_repr(members)
        raise TypeError(
            f"members must be an iterable of identifiers (str), not a single "
            f"{type(members).__name__}: {shown}; wrap it in a list"
        )
    try:
        items = list(members)
    except TypeError:
        raise TypeError(
            f"members must be an iterable of identifiers (str), got {type(members).__name__}"
        ) from None
    if not items:
        raise ValueError("members must name at least one connection, got an empty iterable")
    plain: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"members must hold identifiers (non-empty str), got {safe_repr(item)} "
                f"of type {type(item).__name__}"
            )
        identifier = plain_str(item)
        if not identifier:
            raise ValueError("members must hold identifiers (non-empty str), got ''")
        if identifier in seen:
            raise ValueError(f"members must be distinct, got {identifier!r} twice")
        seen.add(identifier)
        plain.append(identifier)
    return tuple(plain)


class Groups:
    """The groups of one system; see the module docstring for the semantics."""

    def __init__(
        self,
        table: dict[Key, Cell],
        check_running: Callable[[], None],
        status_of: Callable[[Cell], ConnectionStatus],
        success: Callable[..., None],
        failure: Callable[..., None],
    ) -> None:
        self._table = table
        self._groups: dict[str, tuple[Member, ...]] = {}
        self._check_running = check_running
        self._status_of = status_of
        self._success = success
        self._failure = failure

    def all(self) -> dict[str, tuple[str, ...]]:
        """Every group: name -> the identifiers of its members, in order."""
        self._check_running()
        return {name: tuple(i for _, i in members) for name, members in self._groups.items()}

    def _members(self, name: str) -> tuple[Member, ...]:
        """The members of group `name`; NotFoundError if there is no such group."""
        self._check_running()
        keys = self._groups.get(name) if type(name) is str else None
        if keys is None:
            name = _check_name(name)
            keys = self._groups.get(name)
            if keys is None:
                raise NotFoundError(f"group {name!r} is not registered")
        return keys

    def register(self, name: str, members: Iterable[str], scope: str | None) -> None:
        """Register group `name` of the registered connections `members` (all in `scope`)."""
        self._check_running()
        name = _check_name(name)
        scope = check_scope(scope)
        identifiers = _check_members(members)
        table = self._table
        members_ = tuple((scope, identifier) for identifier in identifiers)
        for identifier in identifiers:
            if table.get(key_of(scope, identifier)) is None:
                raise NotFoundError(
                    f"members: connection {identifier!r}{in_scope(scope)} is not registered"
                )
        if self._groups.setdefault(name, members_) is not members_:
            raise AlreadyRegisteredError(f"group {name!r} is already registered")

    def unregister(self, name: str) -> None:
        """Forget group `name` (its connections stay); NotFoundError if there is no such group."""
        name = _check_name(name)
        if self._groups.pop(name, None) is None:
            raise NotFoundError(f"group {name!r} is not registered")

    def available(self, name: str) -> bool:
        """True when no member is open (or unregistered); a pure read that takes no permits."""
        table = self._table
        for scope, identifier in self._members(name):
            cell = table.get(key_of(scope, identifier))
            if cell is None or cell.circuit.state is _OPEN:
                return False
        return True

    def status(self, name: str) -> dict[str, ConnectionStatus]:
        """The status of every (still registered) member, keyed by identifier."""
        table = self._table
        result: dict[str, ConnectionStatus] = {}
        for scope, identifier in self._members(name):
            cell = table.get(key_of(scope, identifier))
            if cell is not None:
                result[identifier] = self._status_of(cell)
        return result

    def success(self, name: str) -> None:
        """Report a success to every (still registered) member."""
        for scope, identifier in self._members(name):
            try:
                self._success(identifier, scope=scope)
            except NotFoundError:
                continue

    def failure(self, name: str, reason: Any) -> None:
        """Report a failure with `reason` to every (still registered) member."""
        for scope, identifier in self._members(name):
            try:
                self._failure(identifier, scope=scope, reason=reason)
            except NotFoundError:
                continue


class GroupMethods:
    """The facade's group functions (mixed into `Brama`, which sets `_groups` and provides
    `_check_running`)."""

    _groups: Groups

    def _check_running(self) -> None:
        raise NotImplementedError

    def register_group(self, name: str, members: Iterable[str], *,
                       scope: str | None = None) -> None:
        """Register a group of registered connections of one scope."""
        self._groups.register(name, members, scope)

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Every registered group: name -> the identifiers of its members."""
        self._check_running()
        return self._groups.all()

    def unregister_group(self, name: str) -> None:
        """Forget a group (its connections stay)."""
        self._groups.unregister(name)

    def group_available(self, name: str) -> bool:
        """True when no member is open; a pure read that takes no permits."""
        return self._groups.available(name)

    def group_status(self, name: str) -> dict[str, ConnectionStatus]:
        """The status of every member, keyed by identifier."""
        return self._groups.status(name)

    def group_success(self, name: str) -> None:
        """Report a success to every member."""
        self._groups.success(name)

    def group_failure(self, name: str, *, reason: Any = None) -> None:
        """Report a failure to every member."""
        self._groups.failure(name, reason)
