"""`circuit_breaker` and `guard`: run a call through a connection's circuit breaker.

Both register the connection with the default options if it is absent (on first use, and
again if it was unregistered or swept since), refuse the call when `available` says no, and
report the outcome. The success path costs no actor round trip: `available` reads the
connection's snapshot and `success` on a healthy closed circuit bumps a counter.

Decisions where the contract leaves room:

- `system=None` means the default system as it is *at call time* (`brama.default()`), so the
  decorated function keeps working after `brama.shutdown()`.
- An exception that is not an `Exception` (KeyboardInterrupt, SystemExit, GeneratorExit,
  asyncio.CancelledError) is re-raised and not reported: cancelling a call says nothing about
  the dependency. Neither is an exception in `ignore_exceptions`.
- If `error_handler` raises, its exception propagates and nothing is reported; if it returns
  something other than the accepted verdicts, TypeError / ValueError is raised and nothing is
  reported. A plain `"failure"` verdict is reported with `reason=None`.
- An outcome that is not reported (ignored, cancelled, bad verdict) in half-open keeps its
  trial permit until it times out after `status().expiry` seconds, as the contract allows.
- An outcome whose connection was unregistered during the call is dropped silently. If
  reporting a failure fails otherwise (the system was stopped meanwhile), the failure is
  logged and the caller's exception is re-raised all the same.
- Generator functions are refused at decoration time: their outcome is only known when the
  iteration ends, long after the call returned.
- A `Guard` reports to the system it was last entered with, so one guard object may be shared.
- Async wrappers call the same synchronous facade: in half-open, `available` and every
  failure report wait for the connection's actor (tens of microseconds), blocking the event
  loop that long, like the synchronous failure report the design asks for.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from brama import api as _api
from brama.errors import AlreadyRegisteredError, CircuitOpenError, NotFoundError
from brama.log import get_logger, safe_repr
from brama.otp._exit import ContainedBaseException
from brama.system import Brama
from brama.types import CircuitState
from brama.validation import check_identifier, check_scope

__all__ = ["Guard", "circuit_breaker", "guard"]

P = ParamSpec("P")
R = TypeVar("R")

_log = "brama.decorator"
_VERDICTS = "'success', 'failure', ('failure', reason) or 'ignore'"


def _check_system(system: Any) -> Brama | None:
    if system is not None and not isinstance(system, Brama):
        raise TypeError(
            f"system must be a brama.Brama or None (the default system), got {system!r}"
        )
    return system


def _check_callable(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")
    return value


def _check_ignore(value: Any) -> tuple[type[BaseException], ...]:
    def is_exception_class(item: Any) -> bool:
        return isinstance(item, type) and issubclass(item, BaseException)

    if is_exception_class(value):
        return (value,)
    if isinstance(value, (tuple, list)) and all(is_exception_class(item) for item in value):
        return tuple(value)
    raise TypeError(
        "ignore_exceptions must be an exception class or a tuple of exception classes, "
        f"got {value!r}"
    )


def _judge(error_handler: Callable[[Any], Any], result: Any) -> Any:
    """Run the user's error_handler; a BaseException it raises (SystemExit, ...) comes out as
    a ContainedBaseException, so inside a pykka actor it cannot make pykka stop every actor."""
    try:
        return error_handler(result)
    except Exception:
        raise
    except BaseException as exc:
        raise ContainedBaseException(exc) from exc


class _Breaker:
    """What `circuit_breaker` and `guard` share: the connection, admission and reporting."""

    __slots__ = ("identifier", "scope", "system")

    def __init__(self, identifier: Any, scope: Any, system: Any) -> None:
        self.identifier = check_identifier(identifier)
        self.scope = check_scope(scope)
        self.system = _check_system(system)

    def resolve(self) -> Brama:
        """The system to use for this call: the given one, else the current default."""
        system = self.system
        return _api.default() if system is None else system

    def refused(self, system: Brama) -> CircuitOpenError | None:
        """Slow path once `available` said no: None if the call may go ahead after all
        (the connection was absent and is registered now), else the error to refuse with
        (its status captured now, built only if read)."""
        identifier, scope = self.identifier, self.scope
        for _attempt in range(3):
            error = system._refusal(identifier, scope)
            if error is None:  # not registered (yet, or any more)
                with contextlib.suppress(AlreadyRegisteredError):  # registered meanwhile
                    system.register(identifier, scope=scope)
                if system.available(identifier, scope=scope):
                    return None
                continue
            if error.state is CircuitState.CLOSED and system.available(identifier, scope=scope):
                return None  # closed meanwhile (a success elsewhere)
            return error
        return system._refusal(identifier, scope) or CircuitOpenError(
            system.status(identifier, scope=scope)
        )

    def report_success(self, system: Brama) -> None:
        """Report a success; dropped if the connection was unregistered during the call."""
        try:  # noqa: SIM105 - a try block is free, contextlib.suppress is not
            system.success(self.identifier, scope=self.scope)
        except NotFoundError:
            pass

    def report_failure(self, system: Brama, reason: Any) -> None:
        """Report a failure; dropped if the connection was unregistered during the call."""
        with contextlib.suppress(NotFoundError):
            system.failure(self.identifier, scope=self.scope, reason=reason)

    def report_exception(self, system: Brama, exc: BaseException) -> None:
        """Report `exc` as a failure; never raises, so the caller can re-raise `exc`."""
        try:
            self.report_failure(system, safe_repr(exc))
        except Exception:  # the caller's exception matters more
            get_logger(_log).warning(
                "failure_report_failed",
                connection=self.identifier,
                scope=self.scope,
                exc_info=True,
            )

    def classify(self, system: Brama, verdict: Any) -> None:
        """Report a return value as `error_handler` classified it."""
        if isinstance(verdict, str):
            if verdict == "success":
                self.report_success(system)
                return
            if verdict == "failure":
                self.report_failure(system, None)
                return
            if verdict == "ignore":
                return
        elif isinstance(verdict, tuple):
            if len(verdict) == 2 and isinstance(verdict[0], str) and verdict[0] == "failure":
                self.report_failure(system, verdict[1])
                return
        else:
            if inspect.iscoroutine(verdict):
                verdict.close()
            raise TypeError(
                f"error_handler must return {_VERDICTS} (from a plain, not async, function), "
                f"got {verdict!r}"
            )
        raise ValueError(f"error_handler must return {_VERDICTS}, got {verdict!r}")


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )


def circuit_breaker(
    identifier: str,
    *,
    scope: str | None = None,
    error_handler: Callable[[Any], Any] | None = None,
    ignore_exceptions: type[BaseException] | tuple[type[BaseException], ...] = (),
    fallback: Callable[..., Any] | None = None,
    system: Brama | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or `async def` function so its calls go through a circuit breaker.

    When the connection is not available the function is not called: `fallback(*args,
    **kwargs)` is returned (awaited if it is awaitable, for async functions), else
    CircuitOpenError is raised. Exceptions (except `ignore_exceptions`) are reported as
    failures with `reason=repr(exc)` and re-raised unchanged; return values are successes
    unless `error_handler(result)` says otherwise.
    """
    breaker = _Breaker(identifier, scope, system)
    _check_callable(error_handler, "error_handler")
    _check_callable(fallback, "fallback")
    ignore = _check_ignore(ignore_exceptions)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if not callable(func):
            raise TypeError(f"circuit_breaker decorates a function, got {func!r}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"circuit_breaker cannot decorate the generator function {func!r}: its "
                "outcome is only known when the iteration ends"
            )
        if _is_async(func):
            return cast(Callable[P, R], _async_wrapper(func, breaker, error_handler, ignore,
                                                       fallback))
        return _sync_wrapper(func, breaker, error_handler, ignore, fallback)

    return decorate


def _sync_wrapper(
    func: Callable[P, R],
    breaker: _Breaker,
    error_handler: Callable[[Any], Any] | None,
    ignore: tuple[type[BaseException], ...],
    fallback: Callable[..., Any] | None,
) -> Callable[P, R]:
    identifier, scope, fixed = breaker.identifier, breaker.scope, breaker.system
    default = _api.default

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        system = default() if fixed is None else fixed
        if not system.available(identifier, scope=scope):
            refusal = breaker.refused(system)
            if refusal is not None:
                if fallback is None:
                    raise refusal
                return cast(R, fallback(*args, **kwargs))
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, ignore):
                breaker.report_exception(system, exc)
            raise
        if error_handler is None:
            try:  # noqa: SIM105 - the hot path: a try block is free, suppress() is not
                system.success(identifier, scope=scope)
            except NotFoundError:
                pass
        else:
            breaker.classify(system, _judge(error_handler, result))
        return result

    return wrapper


# _async_wrapper is _sync_wrapper with `await`s: the two are kept apart, and their bodies
# inline, because this is the hot path (a shared helper call costs ~10% of a guarded call).
# A change to one must be made to the other.
def _async_wrapper(
    func: Callable[P, Any],
    breaker: _Breaker,
    error_handler: Callable[[Any], Any] | None,
    ignore: tuple[type[BaseException], ...],
    fallback: Callable[..., Any] | None,
) -> Callable[P, Awaitable[Any]]:
    identifier, scope, fixed = breaker.identifier, breaker.scope, breaker.system
    default = _api.default

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        system = default() if fixed is None else fixed
        if not system.available(identifier, scope=scope):
            refusal = breaker.refused(system)
            if refusal is not None:
                if fallback is None:
                    raise refusal
                value = fallback(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                return value
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, ignore):
                breaker.report_exception(system, exc)
            raise
        if error_handler is None:
            try:  # noqa: SIM105 - the hot path: a try block is free, suppress() is not
                system.success(identifier, scope=scope)
            except NotFoundError:
                pass
        else:
            breaker.classify(system, _judge(error_handler, result))
        return result

    return wrapper


class Guard:
    """The context manager `guard` returns: `with` and `async with` a circuit breaker.

    Entering raises CircuitOpenError when the connection is not available; leaving reports
    a success, or a failure (`reason=repr(exc)`) for an `Exception`, which is not suppressed.
    """

    __slots__ = ("_breaker", "_entered")

    def __init__(self, identifier: str, *, scope: str | None = None,
                 system: Brama | None = None) -> None:
        self._breaker = _Breaker(identifier, scope, system)
        self._entered: Brama | None = None

    def __enter__(self) -> Guard:
        breaker = self._breaker
        system = breaker.resolve()
        if not system.available(breaker.identifier, scope=breaker.scope):
            refusal = breaker.refused(system)
            if refusal is not None:
                raise refusal
        self._entered = system
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        breaker = self._breaker
        system = self._entered
        if system is None:
            system = breaker.resolve()
        if exc is None:
            breaker.report_success(system)
        elif isinstance(exc, Exception):
            breaker.report_exception(system, exc)

    async def __aenter__(self) -> Guard:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        breaker = self._breaker
        where = "" if breaker.scope is None else f", scope={breaker.scope!r}"
        return f"<brama.Guard {breaker.identifier!r}{where}>"


def guard(identifier: str, *, scope: str | None = None, system: Brama | None = None) -> Guard:
    """A context manager (`with` and `async with`) that runs its block through a breaker.

    Raises CircuitOpenError on entry when the connection is not available; registers the
    connection with the default options if it is absent.
    """
    return Guard(identifier, scope=scope, system=system)
