"""The arguments of `subscribe`, checked and turned into what the event bus takes.

The connection and scope selection runs in the bus as a trusted `match` (cheap, Brama's own
code); the user's `filter` runs where only its own subscription waits for it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pykka import ActorRef

from brama._validation import check_identifier, check_scope
from brama.errors import ConfigError
from brama.otp import Subscription, safe_repr
from brama.types import Event, EventType

if TYPE_CHECKING:
    from brama._runtime import Runtime

__all__ = ["EventMethods", "subscription_args"]


def _topics(events: Any) -> frozenset[EventType] | None:
    if events is None:
        return None
    if isinstance(events, (str, EventType)):
        return frozenset({EventType.coerce(events)})
    try:
        items = list(events)
    except TypeError:
        raise ConfigError(
            f"events must be an event type, an iterable of event types, or None; "
            f"got {safe_repr(events)}"
        ) from None
    return frozenset(EventType.coerce(item) for item in items)


def _match(connection: str | None, scope: str | None) -> Callable[[Event], bool] | None:
    if connection is None and scope is None:
        return None

    def match(event: Event) -> bool:
        return (connection is None or event.connection == connection) and (
            scope is None or event.scope == scope
        )

    return match


def _is_async(handler: Any) -> bool:
    """True for an `async def` handler: a coroutine function, an object whose `handle_event`
    or `__call__` is `async def`."""
    method = getattr(handler, "handle_event", None)
    function = method if callable(method) else handler
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )


def _check_loop(handler: Any) -> None:
    """An async handler is awaited on the loop it was subscribed from: there must be one."""
    if not _is_async(handler):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise TypeError(
            f"handler {safe_repr(handler)} is async: it is awaited on the event loop it was "
            "subscribed from, and this thread has no running event loop. Subscribe it from a "
            "coroutine running on that loop (e.g. inside asyncio.run()), subscribe a plain "
            "function instead, or subscribe without a handler and read the subscription with "
            "`await subscription.aget()` or `async for`"
        ) from None


def subscription_args(
    events: Any, connection: Any, scope: Any, filter: Any, actor: Any, handler: Any,
    queue_size: Any,
) -> tuple[Any, dict[str, Any]]:
    """Validate `subscribe`'s arguments; returns the bus target and its keyword arguments."""
    topics = _topics(events)
    if connection is not None:
        connection = check_identifier(connection, "connection")
    scope = check_scope(scope)
    if filter is not None and not callable(filter):
        raise TypeError(f"filter must be callable or None, got {safe_repr(filter)}")
    if actor is not None and handler is not None:
        raise ValueError("subscribe: give either actor or handler, not both")
    if actor is not None and not isinstance(actor, ActorRef):
        raise TypeError(f"actor must be a pykka.ActorRef, got {safe_repr(actor)}")
    if handler is not None and not (
        callable(handler) or callable(getattr(handler, "handle_event", None))
    ):
        raise TypeError(
            "handler must be callable or have a handle_event(event) method, "
            f"got {safe_repr(handler)}"
        )
    if handler is not None:
        _check_loop(handler)
    if queue_size is not None and (
        isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1
    ):
        raise ValueError(
            f"queue_size must be a whole number >= 1 or None, got {safe_repr(queue_size)}"
        )
    how: dict[str, Any] = {"topics": topics, "filter": filter, "match": _match(connection, scope)}
    if queue_size is not None:
        how["queue_size"] = queue_size
    return (actor if actor is not None else handler), how


class EventMethods:
    """The facade's event functions (mixed into `Brama`, which provides `runtime` and
    `_check_running`)."""

    @property
    def runtime(self) -> Runtime:
        raise NotImplementedError

    def _check_running(self) -> None:
        raise NotImplementedError

    def subscribe(self, *, events: Iterable[EventType | str] | EventType | str | None = None,
                  connection: str | None = None, scope: str | None = None,
                  filter: Callable[[Any], bool] | None = None, actor: Any = None,
                  handler: Any = None, queue_size: int | None = None) -> Subscription:
        """Subscribe to events; see docs/api.md for the delivery modes."""
        self._check_running()
        target, how = subscription_args(events, connection, scope, filter, actor, handler,
                                        queue_size)
        return self.runtime.subscribe(target, **how)  # type: ignore[no-any-return]

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop a subscription; idempotent."""
        if not isinstance(subscription, Subscription):
            raise TypeError(f"unsubscribe: expected a Subscription, got {safe_repr(subscription)}")
        subscription.close()
