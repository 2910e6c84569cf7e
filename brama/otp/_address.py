"""Addresses: destinations that find their actor at send time, like a registered name.

A message sent through an address is resent to the actor's successor only when the actor
stopped before handling it (`NotHandledError`), so it is handled at most once; what the
handler itself raised (the actor then crashed) reaches the caller unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pykka import ActorDeadError, ActorRef

from brama.otp._actor import call
from brama.otp._childspec import SupervisorView
from brama.otp._exit import NotHandledError

__all__ = ["Address", "ChildAddress"]


class Address:
    """A destination that finds its actor at send time and resends if the actor died first.

    Subclasses say how to find (or start) the current actor in `resolve`.
    """

    __slots__ = ()
    attempts = 10

    def resolve(self) -> ActorRef[Any]:
        """The actor to send to now, started or restarted if needed."""
        raise NotImplementedError

    def tell(self, message: Any) -> None:
        """Queue `message` for the current actor, starting it first if needed."""
        for _ in range(self.attempts):
            ref = self.resolve()
            try:
                ref.tell(message)
                return
            except ActorDeadError:
                continue
        raise NotHandledError(f"{self} keeps dying; message not delivered")

    def ask(self, message: Any, *, timeout: float | None = None) -> Any:
        """Call the current actor; if it stopped before handling the message, its successor."""
        for _ in range(self.attempts):
            ref = self.resolve()
            try:
                return call(ref, message, timeout=timeout)
            except NotHandledError:
                continue
        raise NotHandledError(f"{self} keeps dying; message not delivered")


class ChildAddress(Address):
    """Sends to a supervised child by id, waking or restarting it as needed.

    The address outlives any one incarnation of the child, so it is what timers and callers
    should hold (like sending to a registered name rather than a pid).
    """

    __slots__ = ("child_id", "supervisor")

    def __init__(self, supervisor: SupervisorView, child_id: Hashable) -> None:
        self.supervisor = supervisor
        self.child_id = child_id

    def __str__(self) -> str:
        return f"child {self.child_id!r} of {self.supervisor.name!r}"

    def resolve(self) -> ActorRef[Any]:
        ref = self.supervisor.whereis_child(self.child_id)
        if ref is not None and ref.is_alive():
            return ref
        return self.supervisor.ensure_child(self.child_id)
