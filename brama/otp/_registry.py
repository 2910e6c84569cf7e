"""A name registry for actors with unique keys, like Elixir's `Registry`.

One actor owns the name table and performs every write, so "is this name taken?" is decided by a
single serialized writer. Lookups read the table directly and never wait on that actor. Names of
`brama.otp.Actor`s disappear when the actor exits (the registry monitors them); names of plain
pykka actors become invisible once the actor is dead and are replaced on the next `register`.

Like an Elixir `Registry`, whose ETS table dies with its process, the table is emptied when
the registry's actor stops or crashes: run it under a supervisor before the actors that
register in it, with a strategy that restarts them too (rest_for_one), and they register again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from pykka import ActorDeadError, ActorRef

from brama.otp._actor import Actor, call
from brama.otp._childspec import ChildSpec, RestartType, StartContext
from brama.otp._exit import ErrorReply, Exit, NotHandledError, demonitor, monitor

__all__ = ["NameTakenError", "Registry", "Via"]


class NameTakenError(ValueError):
    """Raised by `Registry.register` when the name belongs to a live actor."""

    def __init__(self, name: Hashable, owner: ActorRef[Any]) -> None:
        super().__init__(f"name {name!r} is already registered to {owner}")
        self.name = name
        self.owner = owner


@dataclass(frozen=True)
class _Entry:
    ref: ActorRef[Any]
    value: Any


@dataclass(frozen=True)
class _Register:
    name: Hashable
    ref: ActorRef[Any]
    value: Any


@dataclass(frozen=True)
class _Unregister:
    name: Hashable


class _RegistryActor(Actor):
    """The single writer of the name table; also told `Exit` by every actor it monitors."""

    def __init__(self, table: dict[Hashable, _Entry], label: str) -> None:
        super().__init__()
        self._table = table
        self._label = label
        self._owned: dict[str, set[Hashable]] = {}  # actor urn -> its names
        self._monitors: dict[str, tuple[ActorRef[Any], int]] = {}  # actor urn -> (ref, handle)

    def on_start(self) -> None:
        threading.current_thread().name = self._label

    def on_stop(self) -> None:
        self._forget_all()

    def on_failure(self, *exc_info: Any) -> None:
        self._forget_all()

    def _forget_all(self) -> None:
        for ref, handle in self._monitors.values():
            demonitor(ref, handle)
        self._monitors.clear()
        self._owned.clear()
        self._table.clear()

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Register(name=name, ref=ref, value=value):
                return self._register(name, ref, value)
            case _Unregister(name=name):
                entry = self._table.pop(name, None)
                if entry is not None:
                    self._disown(name, entry.ref)
            case Exit(ref=ref):
                self._monitors.pop(ref.actor_urn, None)
                for name in self._owned.pop(ref.actor_urn, ()):
                    entry = self._table.get(name)
                    if entry is not None and entry.ref.actor_urn == ref.actor_urn:
                        del self._table[name]
            case _:
                return super().on_receive(message)
        return None

    def _register(self, name: Hashable, ref: ActorRef[Any], value: Any) -> Any:
        current = self._table.get(name)
        if current is not None:
            if current.ref.is_alive():
                return ErrorReply(NameTakenError(name, current.ref))
            self._disown(name, current.ref)
        if not ref.is_alive():
            return ErrorReply(ActorDeadError(f"cannot register {name!r}: {ref} is not alive"))
        urn = ref.actor_urn
        if urn not in self._monitors and issubclass(ref.actor_class, Actor):
            self._monitors[urn] = (ref, monitor(ref, self.actor_ref))
        self._owned.setdefault(urn, set()).add(name)
        self._table[name] = _Entry(ref, value)  # one atomic store: readers see old or new
        return None

    def _disown(self, name: Hashable, ref: ActorRef[Any]) -> None:
        urn = ref.actor_urn
        names = self._owned.get(urn)
        if names is None:
            return
        names.discard(name)
        if not names:
            del self._owned[urn]
            watched = self._monitors.pop(urn, None)
            if watched is not None:
                demonitor(*watched)


def _check_name(name: object) -> Hashable:
    try:
        hash(name)
    except TypeError:
        raise TypeError(f"name must be hashable, got {type(name).__name__}") from None
    return name


class Via:
    """A destination that resolves a registered name each time a message is sent."""

    __slots__ = ("_name", "_registry")

    def __init__(self, registry: Registry, name: Hashable) -> None:
        self._registry = registry
        self._name = name

    def __repr__(self) -> str:
        return f"Via({self._name!r})"

    def resolve(self) -> ActorRef[Any]:
        """The actor currently registered under the name; `ActorDeadError` if there is none."""
        ref = self._registry.whereis(self._name)
        if ref is None:
            raise ActorDeadError(f"no live actor is registered as {self._name!r}")
        return ref

    def tell(self, message: Any) -> None:
        """Send `message` to the actor registered under the name now."""
        self.resolve().tell(message)

    def ask(self, message: Any, timeout: float | None = None) -> Any:
        """Ask the actor registered under the name now; never hangs if it dies meanwhile."""
        return call(self.resolve(), message, timeout=timeout)


class Registry:
    """Unique names for actors: one actor writes the table, lookups read it without waiting.

    `Registry()` starts its actor at once; `Registry(start=False)` leaves that to a supervisor
    given `child_spec()`, which starts a fresh actor (with an empty table) at each restart.
    """

    def __init__(self, *, name: str = "registry", start: bool = True) -> None:
        self._table: dict[Hashable, _Entry] = {}
        self._label = name
        self._ref: ActorRef[Any] | None = None
        if start:
            self._start_actor()

    def __repr__(self) -> str:
        return f"<Registry {self._label!r} {self._ref}>"

    def _start_actor(self, _ctx: StartContext | None = None) -> ActorRef[Any]:
        self._table.clear()
        self._ref = _RegistryActor.start(self._table, self._label)
        return self._ref

    def child_spec(
        self, child_id: Hashable = "registry", *, restart: RestartType = "permanent"
    ) -> ChildSpec:
        """A spec under which a supervisor starts (and restarts) this registry's actor."""
        return ChildSpec(child_id, self._start_actor, restart=restart)

    @property
    def actor_ref(self) -> ActorRef[Any]:
        """The registry's current actor, for supervising or monitoring it."""
        if self._ref is None:
            raise NotHandledError(f"registry {self._label!r} was never started")
        return self._ref

    def register(self, name: Hashable, ref: ActorRef[Any], value: Any = None) -> None:
        """Register `ref` (with an optional `value`) under `name`.

        Raises `NameTakenError` if a live actor holds the name (a dead holder's name is free),
        and `pykka.ActorDeadError` if `ref` is already dead or the registry is stopped.
        """
        _check_name(name)
        if not isinstance(ref, ActorRef):
            raise TypeError(f"ref must be a pykka.ActorRef, got {type(ref).__name__}")
        call(self.actor_ref, _Register(name, ref, value))

    def unregister(self, name: Hashable) -> None:
        """Remove `name` from the registry; unknown names are ignored."""
        _check_name(name)
        with contextlib.suppress(ActorDeadError):
            call(self.actor_ref, _Unregister(name))

    def whereis(self, name: Hashable) -> ActorRef[Any] | None:
        """The live actor registered under `name`, or None."""
        entry = self._table.get(_check_name(name))
        if entry is None or not entry.ref.is_alive():
            return None
        return entry.ref

    def lookup(self, name: Hashable) -> tuple[ActorRef[Any], Any] | None:
        """The live actor registered under `name` and its value, or None."""
        entry = self._table.get(_check_name(name))
        if entry is None or not entry.ref.is_alive():
            return None
        return entry.ref, entry.value

    def names(self) -> list[Hashable]:
        """The names currently held by live actors."""
        return [name for name, entry in self._table.copy().items() if entry.ref.is_alive()]

    def via(self, name: Hashable) -> Via:
        """A destination with `tell` and `ask` that sends to whoever holds `name` at send time."""
        return Via(self, _check_name(name))

    def size(self) -> int:
        """How many names the table holds, including names of actors that died and whose
        `Exit` the registry has not handled yet."""
        return len(self._table)

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        return self.whereis(_check_name(name)) is not None

    def stop(self) -> None:
        """Stop the registry actor and forget every name; harmless if already stopped."""
        if self._ref is not None:
            self._ref.stop()
        self._table.clear()
