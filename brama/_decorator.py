"""`circuit_breaker`: run a function's calls through a connection's circuit breaker.

The success path costs no actor round trip: admission on a closed circuit is a read of the
connection's snapshot, and a success on a healthy closed circuit bumps a counter.

Decisions where the contract leaves room:

- `system=None` means the default system as it is *at call time*, so the decorated function
  keeps working after `brama.shutdown()` (and uses the test's system under the fixture).
- An exception that is not an `Exception` (KeyboardInterrupt, SystemExit, GeneratorExit,
  asyncio.CancelledError) is re-raised and not reported: cancelling a call says nothing about
  the dependency; its half-open permit comes back at once. The same for an exception that
  `ignore_exceptions` matches and for an "ignore" verdict.
- If `error_handler` raises, its exception propagates and nothing is reported; if it returns
  something other than a verdict, TypeError / ValueError is raised and nothing is reported.
  Either way the call's half-open permit comes back at once.
- Generator functions are refused: their outcome is only known when the iteration ends.
- `timeout=` needs an `async def` function (a thread cannot be interrupted); for a sync
  function, a slow call is what the slow-call policy is for.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from brama import _default
from brama._breaker import (
    HELD,
    Binding,
    Breaker,
    Ignore,
    check_callable,
    holds,
    timed_out_message,
)
from brama._circuit import CLOSED, NO_PERMIT, OPEN, REFUSED
from brama._system import Brama
from brama._validation import check_duration
from brama.errors import NotFoundError
from brama.otp import safe_repr
from brama.types import EventType

__all__ = ["TimedOut", "circuit_breaker", "within"]

P = ParamSpec("P")
R = TypeVar("R")
_SUCCESS = EventType.SUCCESS


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )


def _name_of(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "__main__"
    return f"{module}.{getattr(func, '__qualname__', type(func).__name__)}"


@overload
def circuit_breaker(identifier: Callable[P, R]) -> Callable[P, R]: ...


@overload
def circuit_breaker(
    identifier: str | None = None, *, scope: str | None = None,
    error_handler: Callable[[Any], Any] | None = None, ignore_exceptions: Any = (),
    fallback: Callable[..., Any] | None = None, timeout: Any = None,
    system: Brama | None = None, **options: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def circuit_breaker(
    identifier: Any = None,
    *,
    scope: str | None = None,
    error_handler: Callable[[Any], Any] | None = None,
    ignore_exceptions: Any = (),
    fallback: Callable[..., Any] | None = None,
    timeout: Any = None,
    system: Brama | None = None,
    **options: Any,
) -> Any:
    """Decorate a sync or `async def` function so its calls go through a circuit breaker.

    `identifier` names the connection (a bare `@circuit_breaker` uses `module.qualname`).
    Connection `options` (`max_attempts=3`, `expiry=30`, ...) register the connection with them
    on first use; another registration of it with different explicit options is a ConfigError
    naming each one.

    When the circuit refuses the call the function is not called: `fallback(*args, **kwargs)`
    is returned (awaited if awaitable), else `CircuitOpenError` is raised. An exception is
    reported as a failure with `reason=repr(exc)` and re-raised unchanged, unless
    `ignore_exceptions` (exception classes and predicates `(exc) -> bool`) matches it. A return
    value is a success, unless `error_handler(result)` says otherwise; it returns one of
    `"success"`, `"failure"`, `("failure", reason)` or `"ignore"` (neither, the permit comes
    back). `timeout` (seconds or a timedelta, async functions only) cancels a call that takes
    longer, reports it as a failure and raises `TimeoutError`.
    """
    if callable(identifier) and not isinstance(identifier, str):
        return circuit_breaker(_name_of(identifier))(identifier)
    name = identifier
    eager = None if name is None else Breaker(name, scope, system, options)  # checks them now
    check_callable(error_handler, "error_handler")
    check_callable(fallback, "fallback")
    ignore = Ignore(ignore_exceptions)
    limit = None if timeout is None else check_duration("timeout", timeout)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if not callable(func):
            raise TypeError(f"circuit_breaker decorates a function, got {safe_repr(func)}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"circuit_breaker cannot decorate the generator function {safe_repr(func)}: its "
                "outcome is only known when the iteration ends"
            )
        breaker = eager or Breaker(_name_of(func), scope, system, options)
        if _is_async(func):
            return cast(Callable[P, R],
                        _async_wrapper(func, breaker, error_handler, ignore, fallback, limit))
        if limit is not None:
            raise TypeError(
                f"timeout= needs an async def function, and {safe_repr(func)} is not one: a thread "
                "cannot be interrupted. For a sync function use the client's own timeout, "
                "or slow_call_duration to count slow calls"
            )
        return _sync_wrapper(func, breaker, error_handler, ignore, fallback)

    return decorate


def _sync_wrapper(
    func: Callable[P, R],
    breaker: Breaker,
    error_handler: Callable[[Any], Any] | None,
    ignore: Ignore,
    fallback: Callable[..., Any] | None,
) -> Callable[P, R]:
    held, default, fixed = HELD, _default, breaker.system
    ignoring = ignore if ignore.classes or ignore.predicates else None  # None: nothing to check

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        binding = breaker.binding
        if binding is None or not binding[1].live or (
            fixed is None and binding[0] is not default.system
        ):
            binding = breaker.bind()
        cell = binding[1]
        outer = held.get()
        if outer is not None and holds(outer, cell):
            return func(*args, **kwargs)  # inside a call on the same connection: its permit
        circuit = cell.circuit
        if circuit.state is not CLOSED or cell.policy is not None or error_handler is not None:
            return cast(R, _sync_call(binding, outer, func, args, kwargs, breaker, error_handler,
                                      ignore, fallback))
        token = held.set((cell, outer))  # the common case, inlined: closed, no rate policy
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            if ignoring is not None and ignoring(exc):
                breaker.release(binding[0], cell, NO_PERMIT)
            else:
                breaker.failure(binding[0], cell, NO_PERMIT, safe_repr(exc))
            raise
        finally:
            held.reset(token)
        circuit = cell.circuit  # Brama.succeeded's fast path, inlined
        if circuit.state is CLOSED and circuit.failure_count == 0 and (
            not (wanted := binding[2].wanted).all_topics and _SUCCESS not in wanted.topics
        ):
            next(cell.fast_successes)
            cell.last_fast_success = binding[3]()
            return result
        try:  # noqa: SIM105 - the hot path: a try block is free, suppress() is not
            binding[0].succeeded(cell, NO_PERMIT)
        except NotFoundError:  # unregistered during the call: the outcome is dropped
            pass
        return result

    return wrapper


def _sync_call(
    binding: Binding, outer: Any, func: Callable[..., Any], args: Any, kwargs: Any,
    breaker: Breaker, error_handler: Callable[[Any], Any] | None, ignore: Ignore,
    fallback: Callable[..., Any] | None,
) -> Any:
    """A call that is not the common case: not closed, a rate policy, or an error handler."""
    system, cell = binding[0], binding[1]
    state = cell.circuit.state
    if state is CLOSED:
        ticket = NO_PERMIT
    elif state is OPEN:  # refused on the snapshot, without the actor
        if fallback is None:
            raise system.reject(cell)
        system.reject(cell)
        return fallback(*args, **kwargs)
    else:
        ticket, system, cell = breaker.admit(system, cell)
        if ticket == REFUSED:
            if fallback is None:
                raise breaker.refusal(system, cell)
            return fallback(*args, **kwargs)
    policy = cell.policy  # a slow-call policy wants the call's duration
    clock = None if policy is None or policy.slow_after is None else system.clock.monotonic
    started = 0.0 if clock is None else clock()
    token = HELD.set((cell, outer))
    try:
        result = func(*args, **kwargs)
    except Exception as exc:
        breaker.raised(system, cell, ticket, exc, ignore,
                       None if clock is None else clock() - started)
        raise
    except BaseException:
        breaker.release(system, cell, ticket)
        raise
    finally:
        HELD.reset(token)
    duration = None if clock is None else clock() - started
    if error_handler is None:
        breaker.success(system, cell, ticket, duration)
    else:
        breaker.judged(system, cell, ticket, error_handler, result, duration)
    return result


class TimedOut(Exception):
    """Our own timeout fired (as opposed to a TimeoutError raised by the function)."""

    def __init__(self, error: TimeoutError) -> None:
        super().__init__(str(error))
        self.error = error


if sys.version_info >= (3, 11):

    async def within(limit: float, awaitable: Awaitable[Any]) -> Any:
        """Await `awaitable` for at most `limit` seconds; TimedOut if that was not enough."""
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                return await awaitable
        except TimeoutError as exc:
            if scope.expired():
                raise TimedOut(exc) from exc
            raise

else:  # pragma: no cover - Python 3.10

    async def within(limit: float, awaitable: Awaitable[Any]) -> Any:
        """Await `awaitable` for at most `limit` seconds; TimedOut if that was not enough."""
        try:
            return await asyncio.wait_for(awaitable, limit)
        except asyncio.TimeoutError as exc:
            raise TimedOut(TimeoutError(f"no answer within {limit:g} s")) from exc


# _async_wrapper is _sync_wrapper with `await`s and the timeout: the two are kept apart, and
# their bodies inline, because this is the hot path. A change to one must be made to the other.
def _async_wrapper(
    func: Callable[P, Any],
    breaker: Breaker,
    error_handler: Callable[[Any], Any] | None,
    ignore: Ignore,
    fallback: Callable[..., Any] | None,
    limit: float | None,
) -> Callable[P, Awaitable[Any]]:
    held, default, fixed = HELD, _default, breaker.system

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        binding = breaker.binding
        if binding is None or not binding[1].live or (
            fixed is None and binding[0] is not default.system
        ):
            binding = breaker.bind()
        system, cell, interest, wall = binding
        outer = held.get()
        if outer is not None and holds(outer, cell):  # under the outer call's permit...
            if limit is None:
                return await func(*args, **kwargs)
            try:  # ...but with its own timeout, which the outer call then reports
                return await within(limit, func(*args, **kwargs))
            except TimedOut:
                raise TimeoutError(timed_out_message(cell.identifier, limit)) from None
        state = cell.circuit.state
        if state is CLOSED:
            ticket = NO_PERMIT
        elif state is OPEN:
            if fallback is None:
                raise system.reject(cell)
            system.reject(cell)
            value = fallback(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value
        else:
            ticket, system, cell = breaker.admit(system, cell)
            if ticket == REFUSED:
                if fallback is None:
                    raise breaker.refusal(system, cell)
                value = fallback(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                return value
        policy = cell.policy
        clock = None if policy is None or policy.slow_after is None else system.clock.monotonic
        started = 0.0 if clock is None else clock()
        link = [cell, outer]  # ended below: tasks that copied this context are not inside
        token = held.set(link)  # the call any more once it is over
        try:
            if limit is None:
                result = await func(*args, **kwargs)
            else:
                result = await within(limit, func(*args, **kwargs))
        except TimedOut:
            assert limit is not None
            breaker.failure(system, cell, ticket, f"timeout: no answer within {limit:g} s",
                            None if clock is None else clock() - started)
            raise TimeoutError(timed_out_message(cell.identifier, limit)) from None
        except Exception as exc:
            breaker.raised(system, cell, ticket, exc, ignore,
                           None if clock is None else clock() - started)
            raise
        except BaseException:
            breaker.release(system, cell, ticket)
            raise
        finally:
            link[0] = None
            held.reset(token)
        if error_handler is None:
            circuit = cell.circuit
            if policy is None and circuit.state is CLOSED and circuit.failure_count == 0 and (
                not (wanted := interest.wanted).all_topics and _SUCCESS not in wanted.topics
            ):
                next(cell.fast_successes)
                cell.last_fast_success = wall()
                return result
            try:  # noqa: SIM105 - the hot path: a try block is free, suppress() is not
                system.succeeded(cell, ticket, None if clock is None else clock() - started)
            except NotFoundError:
                pass
        else:
            breaker.judged(system, cell, ticket, error_handler, result,
                           None if clock is None else clock() - started)
        return result

    return wrapper
