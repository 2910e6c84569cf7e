"""What `circuit_breaker` and `guard` share: binding to a connection, admission, reporting.

A `Breaker` binds to a connection on first use, registering it (with the options given to the
decorator or guard) if it is absent, and again if it was unregistered or swept since. Each call
owns its admission ticket: only its own outcome returns its half-open permit, and a call that
ends by cancellation (or with an ignored exception or an "ignore" verdict) releases it at once.
A call on a connection made inside a call on the same connection (same thread or asyncio task,
tracked with `contextvars`) runs under the outer call's permit: it takes no permit, reports
nothing, and is never refused, so one failing call counts once.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from brama import _default
from brama._cell import Cell
from brama._circuit import REFUSED
from brama._config import validate_options
from brama._options import CONNECTION_OPTIONS
from brama._system import Brama
from brama._validation import check_identifier, check_scope
from brama.errors import AlreadyRegisteredError, CircuitOpenError, ConfigError, NotFoundError
from brama.otp import ContainedBaseException, get_logger, safe_repr

__all__ = ["HELD", "Binding", "Breaker", "check_callable", "holds", "judge", "timed_out_message"]

_log = "brama.decorator"
VERDICTS = "'success', 'failure', ('failure', reason) or 'ignore'"

HELD: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "brama_held_connections", default=None
)
"""The connections whose calls the current thread or task is inside: a chain of links, each
`[cell, outer]` (a decorated coroutine's call), `[cell, outer, entry]` (a guard's entry) or
`(cell, outer)` (a decorated sync call). A call that ends sets its list link's cell to None:
a task or thread that copied the context during the call is inside it only while it lasts,
and a guard left out of order holds nothing any more. A sync call's link is a tuple (the hot
path: no list to allocate, no store at the end): the only copies of its context are the
ones made explicitly, or tasks created from sync code, which stay inside it."""


def holds(chain: Any, cell: Cell) -> bool:
    """True when `cell` is in the chain of held connections."""
    while chain is not None:
        if chain[0] is cell:
            return True
        chain = chain[1]
    return False


def timed_out_message(identifier: str, limit: float) -> str:
    """The message of the TimeoutError that a breaker's own `timeout` raises."""
    return f"connection {identifier!r}: no answer within {limit:g} s (the breaker's timeout)"


def check_callable(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {safe_repr(value)}")
    return value


def _check_system(system: Any) -> Brama | None:
    if system is not None and not isinstance(system, Brama):
        raise TypeError(
            f"system must be a brama.Brama or None (the default system), got {safe_repr(system)}"
        )
    return system


class Ignore:
    """`ignore_exceptions`: exception classes and predicates `(exc) -> bool`, mixed."""

    __slots__ = ("classes", "predicates")

    def __init__(self, value: Any) -> None:
        items = value if isinstance(value, (tuple, list)) else (value,)
        classes: list[type[BaseException]] = []
        predicates: list[Callable[[BaseException], bool]] = []
        for item in items:
            if isinstance(item, type) and issubclass(item, BaseException):
                classes.append(item)
            elif callable(item) and not isinstance(item, type):
                predicates.append(item)
            else:
                raise TypeError(
                    "ignore_exceptions must be an exception class, a predicate "
                    "(exc) -> bool, or a tuple of them; got "
                    f"{safe_repr(item)} in {safe_repr(value)}"
                )
        self.classes = tuple(classes)
        self.predicates = tuple(predicates)

    def __call__(self, exc: BaseException) -> bool:
        if isinstance(exc, self.classes):
            return True
        for predicate in self.predicates:
            try:
                if predicate(exc):
                    return True
            except BaseException as error:  # user code: never let it replace the real error
                get_logger(_log).error("ignore_predicate_raised", predicate=safe_repr(predicate),
                                       error=safe_repr(error))
        return False


def judge(error_handler: Callable[[Any], Any], result: Any) -> Any:
    """Run the user's error_handler; a BaseException it raises (SystemExit, ...) comes out as
    a ContainedBaseException, so inside a pykka actor it cannot make pykka stop every actor."""
    try:
        return error_handler(result)
    except Exception:
        raise
    except BaseException as exc:
        raise ContainedBaseException(exc) from exc


class Binding(NamedTuple):
    """A breaker bound to a registration: its system and cell, and what the hot path reads."""

    system: Brama
    cell: Cell
    interest: Any
    wall: Callable[[], float]


class Breaker:
    """A decorated function's or a guard's connection; see the module docstring."""

    __slots__ = ("binding", "identifier", "options", "scope", "system")

    def __init__(self, identifier: Any, scope: Any, system: Any, options: dict[str, Any]) -> None:
        self.identifier = check_identifier(identifier)
        self.scope = check_scope(scope)
        self.system = _check_system(system)
        self.options = validate_options(options, allowed=CONNECTION_OPTIONS,
                                        source="the decorator or guard")
        self.binding: Binding | None = None

    def bound(self) -> Binding:
        """The system and cell to use now: the cached ones while still valid."""
        binding = self.binding
        if binding is not None and binding[1].live and (
            self.system is not None or binding[0] is _default.system
        ):
            return binding
        return self.bind()

    def bind(self) -> Binding:
        """Find (or register) the connection in the current system and check its options.

        The binding also holds what the hot path reads of the system (its bus's interest,
        its wall clock); a fork replaces every cell, so a binding never outlives them."""
        system = _default.get() if self.system is None else self.system
        for _attempt in range(5):
            cell = system.lookup(self.identifier, self.scope)
            if cell is None:
                with contextlib.suppress(AlreadyRegisteredError):  # registered meanwhile: fine
                    system.register(self.identifier, scope=self.scope, **self.options)
                continue
            if self.options:
                self._check_options(cell)
            binding = Binding(system, cell, system.runtime.bus.interest,
                              system.runtime.stamp)
            self.binding = binding
            return binding
        raise NotFoundError(f"connection {self.identifier!r} keeps being unregistered")

    def _check_options(self, cell: Cell) -> None:
        """ConfigError when the registration's explicit options differ from the ones given."""
        explicit = cell.circuit.overrides
        differing = [
            f"{name}={explicit[name]!r} where {value!r} is asked" if name in explicit
            else f"{name} is not set (the system's value applies) where {value!r} is asked"
            for name, value in self.options.items()
            if explicit.get(name, _MISSING) != value
        ]
        if differing:
            raise ConfigError(
                f"connection {self.identifier!r} is already registered with other options: "
                + "; ".join(differing)
                + ". Give the same options everywhere, or configure() the connection"
            )

    def admit(self, system: Brama, cell: Cell) -> tuple[int, Brama, Cell]:
        """Admission on the slow path (not closed): the ticket, and the binding it used."""
        for _attempt in range(5):
            try:  # this registration's ticket: a permit id of a newer one is another call's
                return system.admitted(cell), system, cell
            except NotFoundError:  # unregistered under us: register it again
                system, cell = self.bind()[:2]
        return REFUSED, system, cell

    def refusal(self, system: Brama, cell: Cell) -> CircuitOpenError:
        """The error for a refused call (its message and status built when read); from the
        cell that refused it if the connection was unregistered since."""
        return system.refusal(cell.identifier, cell.scope) or system.refused(cell)

    def success(self, system: Brama, cell: Cell, ticket: int,
                duration: float | None = None) -> None:
        """Report a success; dropped if the connection was unregistered during the call."""
        try:  # noqa: SIM105 - a try block is free, contextlib.suppress is not
            system.succeeded(cell, ticket, duration)
        except NotFoundError:
            pass

    def failure(self, system: Brama, cell: Cell, ticket: int, reason: Any,
                duration: float | None = None) -> None:
        """Report a failure; never raises, so the caller can re-raise its own exception."""
        try:
            system.failed(cell, reason, ticket, duration)
        except NotFoundError:
            pass
        except Exception:  # the caller's exception matters more
            get_logger(_log).warning("failure_report_failed", connection=cell.identifier,
                                     scope=cell.scope, exc_info=True)

    def raised(self, system: Brama, cell: Cell, ticket: int, exc: Exception, ignore: Ignore,
               duration: float | None = None) -> None:
        """The call raised `exc`: its permit back if `ignore` says so, else a failure with the
        exception's repr as the reason; never raises."""
        if ignore(exc):
            self.release(system, cell, ticket)
        else:
            self.failure(system, cell, ticket, safe_repr(exc), duration)

    def release(self, system: Brama, cell: Cell, ticket: int) -> None:
        """Give a permit back without an outcome; never raises."""
        if ticket < 0:
            return
        try:
            system.released(cell, ticket)  # its registration's permit, not the name's
        except NotFoundError:
            pass  # unregistered during the call: its permits went with it
        except Exception:
            get_logger(_log).warning("permit_release_failed", connection=cell.identifier,
                                     scope=cell.scope, exc_info=True)

    def judged(self, system: Brama, cell: Cell, ticket: int,
               error_handler: Callable[[Any], Any], result: Any,
               duration: float | None = None) -> None:
        """Report a return value as `error_handler` classifies it. If the handler raises, its
        exception propagates and nothing is reported: the permit comes back at once."""
        try:
            verdict = judge(error_handler, result)
        except BaseException:
            self.release(system, cell, ticket)
            raise
        self.classify(system, cell, ticket, verdict, duration)

    def classify(self, system: Brama, cell: Cell, ticket: int, verdict: Any,
                 duration: float | None = None) -> None:
        """Report a return value as `error_handler` classified it; a verdict that is none of
        the accepted ones reports nothing (the permit comes back) and raises."""
        if isinstance(verdict, str):
            if verdict == "success":
                self.success(system, cell, ticket, duration)
                return
            if verdict == "failure":
                self.failure(system, cell, ticket, None, duration)
                return
            if verdict == "ignore":
                self.release(system, cell, ticket)
                return
        elif (isinstance(verdict, tuple) and len(verdict) == 2
              and isinstance(verdict[0], str) and verdict[0] == "failure"):
            self.failure(system, cell, ticket, verdict[1], duration)
            return
        self.release(system, cell, ticket)
        expected = f"error_handler must return {VERDICTS}"
        if isinstance(verdict, (str, tuple)):
            raise ValueError(f"{expected}, got {safe_repr(verdict)}")
        if inspect.iscoroutine(verdict):
            verdict.close()
            raise TypeError(f"{expected}: it must be a plain, not async, function")
        if isinstance(verdict, bool):
            raise TypeError(
                f"{expected}, got {verdict!r}: a bool is ambiguous (is True a success, or "
                "'yes, it failed'?)"
            )
        raise TypeError(f"{expected}, got {safe_repr(verdict)}")


_MISSING = object()
