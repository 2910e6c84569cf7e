"""Attack: hostile `str` subclasses as identifiers, scopes, group names and event types, and
hostile objects as reasons, through every public function, the decorator and the guard.

The bugs these tests would have caught: an identifier whose `__repr__` raised took the system
down (it was repr'ed inside an actor); one whose `__hash__` raised made every function fail
with a bare RuntimeError. Identifiers, scopes and group names now become plain `str` at the
door, without calling any of their methods. So: Brama never calls a method of such an object
(a lying `__hash__` / `__eq__` cannot route a call to another connection), refusals are
TypeError / ValueError / LookupError, and nothing user-supplied (a `reason` included) runs
inside an actor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brama
from brama import Brama, CircuitOpenError, CircuitState, EventType
from brama.testing import FakeClock, add_failures, crash_connection, flush_events, set_state
from tests.helpers import drain

CLEAN = (TypeError, ValueError, LookupError)
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN

# -- hostile objects that record every call Brama makes on them ------------------------------

CALLS: list[tuple[str, str, str]] = []
"""(class, method, thread) of every method call on a hostile object."""
_lock = threading.Lock()


class Trap(RuntimeError):
    """Raised by a hostile method: never one of the clean refusals."""


def trap(method: str, result: Any = None, raises: bool = True) -> Any:
    def hostile(self: Any, *args: Any) -> Any:
        with _lock:
            CALLS.append((type(self).__name__, method, threading.current_thread().name))
        if raises:
            raise Trap(f"{type(self).__name__}.{method} was called")
        return result(self, *args) if callable(result) else result

    return hostile


STR_METHODS = ["__repr__", "__str__", "__hash__", "__eq__", "__ne__", "__len__", "__bool__",
               "__format__", "__iter__", "__getitem__", "__contains__", "__lt__", "__add__",
               "__mod__", "encode", "startswith", "lower", "strip"]


def hostile_str(name: str, methods: list[str]) -> type[str]:
    """A str subclass whose `methods` raise Trap (and record the call)."""
    namespace: dict[str, Any] = {m: trap(m) for m in methods if m != "__getattribute__"}
    if "__getattribute__" in methods:
        namespace["__getattribute__"] = trap("__getattribute__")
    return type(name, (str,), namespace)


RaisingRepr = hostile_str("RaisingRepr", ["__repr__"])
RaisingStr = hostile_str("RaisingStr", ["__str__", "__format__"])
RaisingHash = hostile_str("RaisingHash", ["__hash__"])
RaisingEq = hostile_str("RaisingEq", ["__eq__", "__ne__"])
RaisingLen = hostile_str("RaisingLen", ["__len__", "__bool__", "__iter__", "__getitem__"])
RaisingEverything = hostile_str("RaisingEverything", STR_METHODS)


class Lying(str):
    """Pretends to be "other": its hash, equality, repr and str all say so (and are
    recorded). Its characters say otherwise, and they are what Brama must go by."""

    __hash__ = trap("__hash__", lambda self: hash("other"), raises=False)
    __eq__ = trap("__eq__", True, raises=False)  # type: ignore[assignment]
    __ne__ = trap("__ne__", False, raises=False)  # type: ignore[assignment]
    __repr__ = trap("__repr__", "'other'", raises=False)
    __str__ = trap("__str__", "other", raises=False)
    __len__ = trap("__len__", 5, raises=False)


HOSTILE_STRS = [RaisingRepr, RaisingStr, RaisingHash, RaisingEq, RaisingLen,
                RaisingEverything, Lying]


@pytest.fixture(autouse=True)
def no_calls() -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()


def assert_untouched(what: str) -> None:
    assert not CALLS, f"{what}: Brama called methods of a user object: {CALLS[:5]}"


# -- the system under attack -----------------------------------------------------------------


@pytest.fixture
def system() -> Iterator[Brama]:
    with Brama(clock=FakeClock(1_000_000.0)) as system:
        system.register("other", max_attempts=1)  # what Lying pretends to be
        system.register("bystander", max_attempts=3)
        system.failure("bystander")
        yield system


def attempt(func: Callable[[], Any]) -> str:
    """"ok" or the name of a clean refusal; fails the test on anything else."""
    try:
        func()
    except CLEAN as exc:
        return type(exc).__name__
    except CircuitOpenError:
        return "CircuitOpenError"
    except BaseException as exc:
        pytest.fail(f"raised {type(exc).__name__}: {exc!r} (allowed: {CLEAN}, "
                    "CircuitOpenError for a call through the breaker)")
    return "ok"


def public_calls(system: Brama, h: Callable[[str], str]) -> dict[str, Callable[[], Any]]:
    """Every public function, with `h(text)` for each identifier, scope, group name and event
    type (the hostile class, or plain str for the control run)."""
    svc, scope, grp = h("svc"), h("sc"), h("grp")

    def decorated() -> None:
        @brama.circuit_breaker(h("deco"), scope=h("sc"), system=system)
        def call() -> str:
            return "ran"

        call()

    def decorated_async() -> None:
        @brama.circuit_breaker(h("adeco"), system=system)
        async def call() -> str:
            return "ran"

        asyncio.run(call())

    def guarded() -> None:
        with brama.guard(h("guarded"), scope=h("sc"), system=system):
            pass

    def permit() -> None:
        ticket = system.acquire(svc)
        if ticket is not None:
            ticket.success()

    return {
        "register": lambda: system.register(svc, max_attempts=2, type=h("db")),
        "register scoped": lambda: system.register(svc, scope=scope),
        "available": lambda: system.available(svc),
        "available scoped": lambda: system.available(svc, scope=scope),
        "acquire": permit,
        "success": lambda: system.success(svc),
        "success scoped": lambda: system.success(svc, scope=scope),
        "status": lambda: system.status(svc),
        "status scoped": lambda: system.status(svc, scope=scope),
        "connections": lambda: system.connections(scope=scope),
        "configure": lambda: system.configure(svc, half_open_max_calls=2),
        "failure": lambda: system.failure(svc, reason="x"),
        "open_circuit": lambda: system.open_circuit(svc, expires_in=5.0),
        "set_expiry": lambda: system.set_expiry(svc, 7.0),
        "reset_expiry": lambda: system.reset_expiry(svc),
        "disable_expiry": lambda: system.disable_expiry(svc),
        "close_circuit": lambda: system.close_circuit(svc),
        "reset_circuit": lambda: system.reset_circuit(svc, scope=scope),
        "register_group": lambda: system.register_group(grp, [svc, "bystander"]),
        "groups": system.groups,
        "group_available": lambda: system.group_available(grp),
        "group_status": lambda: system.group_status(grp),
        "group_success": lambda: system.group_success(grp),
        "group_failure": lambda: system.group_failure(grp, reason="x"),
        "unregister_group": lambda: system.unregister_group(grp),
        "subscribe": lambda: system.subscribe(connection=svc, scope=scope).close(),
        "subscribe events": lambda: system.subscribe(events=h("failure")).close(),
        "subscribe event list": lambda: system.subscribe(events=[h("success")]).close(),
        "set_state": lambda: set_state(svc, h("open"), system=system),
        "crash_connection": lambda: crash_connection(svc, system=system),
        "circuit_breaker": decorated,
        "circuit_breaker async": decorated_async,
        "guard": guarded,
        "unregister": lambda: system.unregister(svc),
        "unregister scoped": lambda: system.unregister(svc, scope=scope),
        "missing": lambda: system.status(h("missing"), scope=h("nowhere")),
        "missing group": lambda: system.group_status(h("missing")),
        "missing unregister_group": lambda: system.unregister_group(h("missing")),
    }


def run_all(system: Brama, h: Callable[[str], str]) -> dict[str, str]:
    """Every public call in order, twice (the second round meets what the first registered);
    returns each call's last outcome."""
    outcomes: dict[str, str] = {}
    for _ in range(2):
        for name, func in public_calls(system, h).items():
            outcomes[name] = attempt(func)
    return outcomes


def snapshot(system: Brama) -> dict[tuple[str | None, str], tuple[Any, ...]]:
    return {(s.scope, s.identifier): (s.state, s.failure_count, s.total_failures,
                                      s.total_successes, s.max_attempts)
            for s in system.connections()}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", HOSTILE_STRS, ids=lambda k: k.__name__)
def test_hostile_str_subclasses_are_plain_strings_to_brama(system: Brama,
                                                           kind: type[str]) -> None:
    """Each public function, the decorator, the guard and the testing helpers, given a
    hostile str subclass for every identifier, scope, group name and event type, behave
    exactly as with the plain strings of the same characters: same outcomes, same end
    state; Brama calls none of the object's methods (so a lying hash or equality cannot
    route a call to another connection), and the other connections are untouched."""
    with Brama(clock=FakeClock(1_000_000.0)) as control:
        control.register("other", max_attempts=1)
        control.register("bystander", max_attempts=3)
        control.failure("bystander")
        expected = run_all(control, str)
        expected_state = snapshot(control)
    with system.subscribe() as sub:
        outcomes = run_all(system, kind)
        flush_events(system=system)
        events = drain(sub)
    assert_untouched(kind.__name__)
    assert outcomes == expected
    assert snapshot(system) == expected_state
    assert all(type(e.connection) is str and type(e.scope) in (str, type(None))
               for e in events)
    assert system.status("other").total_failures == 0  # Lying never reached it
    assert system.status("bystander").failure_count == 1
    system.failure("bystander")
    system.failure("bystander")
    assert system.status("bystander").state is OPEN


@pytest.mark.parametrize("size", [1_000_000, 10_000_000])
def test_huge_identifiers_work_like_any_other(system: Brama, size: int) -> None:
    """A 10 MB identifier and scope: registered, used, reported, listed, refused and
    unregistered like any other, and the messages stay usable."""
    name, scope = "x" * size, "s" * size
    system.register(name, scope=scope, max_attempts=1)
    system.failure(name, scope=scope, reason="r" * size)
    assert system.status(name, scope=scope).state is OPEN
    assert system.available(name, scope=scope) is False
    error = system.refusal(name, scope)
    assert error is not None and len(str(error)) > size
    system.unregister(name, scope=scope)
    assert system.status("bystander").failure_count == 1


# -- reasons: stored and handed on, never looked at inside Brama ------------------------------


class HostileReason:
    """A reason whose every dunder Brama could reach raises (and is recorded)."""

    __repr__ = trap("__repr__")
    __str__ = trap("__str__")
    __format__ = trap("__format__")
    __eq__ = trap("__eq__")
    __hash__ = trap("__hash__")
    __bool__ = trap("__bool__")
    __len__ = trap("__len__")


class ExitingReason:
    """A reason whose str() / repr() raise SystemExit: run inside an actor, that crashes it."""

    def __str__(self) -> str:
        CALLS.append(("ExitingReason", "__str__", threading.current_thread().name))
        raise SystemExit("__str__ of a reason")

    __repr__ = __str__


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reason_kind", [HostileReason, ExitingReason, RaisingEverything])
def test_a_hostile_reason_is_never_looked_at(system: Brama, reason_kind: type[Any],
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Every call that takes a `reason`, each one changing the state (so the transition is
    logged and its events are built) with a subscriber listening: the calls return
    normally, the reason reaches the status and the events as the very object given, and
    Brama calls none of its methods (in an actor or anywhere else)."""
    caplog.set_level(logging.DEBUG)
    reason = reason_kind("why") if reason_kind is RaisingEverything else reason_kind()
    system.register("svc", max_attempts=1)
    system.register_group("grp", ["svc"])
    with system.subscribe() as sub:
        system.failure("svc", reason=reason)  # closed -> open
        assert system.status("svc").last_failure_reason is reason
        system.close_circuit("svc", reason=reason)
        system.open_circuit("svc", reason=reason)
        system.reset_circuit("svc", reason=reason)
        system.group_failure("grp", reason=reason)
        system.reset_expiry("svc")
        permit = system.acquire("svc")
        assert permit is not None
        permit.failure(reason)  # half-open -> open
        flush_events(system=system)
        events = drain(sub)
    assert_untouched(reason_kind.__name__)
    given = [e.data["reason"] for e in events
             if "reason" in e.data and type(e.data["reason"]) is not str]  # not Brama's own
    assert len(given) >= 7 and all(r is reason for r in given)
    status = system.status("svc")
    assert status.state is OPEN and status.last_failure_reason is reason
    assert status.total_failures == 3
    error = system.refusal("svc")
    assert error is not None
    if reason_kind is not ExitingReason:  # (a SystemExit from the caller's own object, on
        text = str(error)  # the caller's thread, is the caller's): read, the message holds
        assert "svc" in text  # a placeholder for the reason
    assert system.status("bystander").failure_count == 1


class UnprintableError(Exception):
    """An exception class whose repr() raises, as some in the wild do."""

    def __repr__(self) -> str:
        raise RuntimeError("repr of an exception")


@pytest.mark.timeout(30)
def test_an_exception_whose_repr_raises_still_propagates_and_counts(system: Brama) -> None:
    """The decorator (sync and async) and the guard report `repr(exc)` as the reason: when
    that repr raises, the caller still gets its own exception, unchanged, and the failure
    is still counted."""

    @brama.circuit_breaker("deco", system=system, max_attempts=5)
    def sync_call() -> None:
        raise UnprintableError("sync")

    @brama.circuit_breaker("deco", system=system, max_attempts=5)
    async def async_call() -> None:
        raise UnprintableError("async")

    def guarded() -> None:
        with brama.guard("deco", system=system, max_attempts=5):
            raise UnprintableError("guard")

    def run_async() -> None:  # not asyncio.run: on its way out it reprs the main task,
        loop = asyncio.new_event_loop()  # and with it the exception (a CPython quirk)
        try:
            loop.run_until_complete(async_call())
        finally:
            loop.close()

    for func in (sync_call, run_async, guarded):
        with pytest.raises(UnprintableError):
            func()
    status = system.status("deco")
    assert status.total_failures == 3
    assert isinstance(status.last_failure_reason, str)
    assert state_names(system) >= {"deco", "bystander"}


def state_names(system: Brama) -> set[str]:
    return {s.identifier for s in system.connections()}


def test_hostile_state_and_event_names_are_refused_cleanly(system: Brama) -> None:
    """`subscribe(events=...)` and `set_state(state)` with a hostile str whose characters
    name no event type / state: ValueError (ConfigError), and no method of it is called."""
    for kind in HOSTILE_STRS:
        bogus = kind("no-such-thing")
        with pytest.raises(ValueError):
            system.subscribe(events=bogus)
        with pytest.raises(ValueError):
            system.subscribe(events=[EventType.FAILURE, bogus])
        with pytest.raises(ValueError):
            set_state("bystander", bogus, system=system)  # type: ignore[arg-type]
    assert_untouched("event types and states")
    assert system.status("bystander").state is CLOSED


class Unprintable:
    """A value whose repr() and str() raise: what an error message must not be built from."""

    __repr__ = trap("__repr__")
    __str__ = trap("__str__")


class UnprintableFloat(float):
    """A number whose repr() raises."""

    __repr__ = trap("__repr__")


def test_bad_values_whose_repr_raises_are_refused_cleanly(system: Brama) -> None:
    """Option values and arguments that are refused name themselves in the error: one
    whose repr() raises makes a placeholder, not a Trap instead of the ConfigError /
    TypeError / ValueError; a choice option given as a str subclass is matched by its
    characters without calling its methods."""
    system.register("svc")
    system.open_circuit("svc")
    bad: dict[str, Callable[[], Any]] = {
        "register option": lambda: system.register("new", expiry=Unprintable()),
        "configure option": lambda: system.configure(expiry=UnprintableFloat("nan")),
        "configure one option": lambda: system.configure("svc", max_attempts=Unprintable()),
        "start option": lambda: Brama(clock=FakeClock(0.0), max_seconds=Unprintable()),
        "choice option": lambda: system.configure(expiry_strategy=RaisingEverything("no")),
        "expires_in": lambda: system.open_circuit("svc", expires_in=Unprintable()),
        "set_expiry": lambda: system.set_expiry("svc", UnprintableFloat(-1.0)),
        "duration": lambda: system.success("svc", duration=Unprintable()),
        "timeout": lambda: brama.circuit_breaker("x", timeout=Unprintable()),
        "decorator option": lambda: brama.circuit_breaker("x", expiry=Unprintable()),
        "guard option": lambda: brama.guard("x", max_attempts=Unprintable()),
        "decorating": lambda: brama.circuit_breaker("x")(Unprintable()),
        "queue_size": lambda: system.subscribe(queue_size=Unprintable()),
        "unsubscribe": lambda: system.unsubscribe(Unprintable()),  # type: ignore[arg-type]
        "testing count": lambda: add_failures("svc", Unprintable(),  # type: ignore[arg-type]
                                              system=system),
    }
    outcomes = {name: attempt(func) for name, func in bad.items()}
    assert "ok" not in outcomes.values(), outcomes
    system.configure(expiry_strategy=RaisingEverything("progressive"))
    CALLS.clear()  # the traps above fired inside safe_repr, which is allowed to try
    system.configure(expiry_strategy=RaisingEverything("fixed"))
    assert_untouched("a choice option")
    assert system.status("svc").expiry_strategy == "fixed"


@pytest.mark.parametrize("kind", HOSTILE_STRS, ids=lambda k: k.__name__)
def test_module_functions_take_hostile_strs_as_plain_strings(brama_system: Brama,
                                                             kind: type[str]) -> None:
    """The module-level functions have a fast path of their own (the closed-circuit read of
    `available`): it must not hash a str subclass either, or a lying hash finds "other"."""
    brama_system.register("svc", max_attempts=1)
    brama_system.register("other", max_attempts=1)
    brama_system.open_circuit("svc")  # "svc" refuses; "other" (closed) would let it through
    CALLS.clear()
    assert brama.available(kind("svc")) is False
    assert brama.available("svc", scope=None) is False
    brama.failure(kind("svc"), reason="x")
    assert_untouched(kind.__name__)
    assert brama_system.status("svc").total_failures == 1
    assert brama_system.status("other").total_failures == 0
