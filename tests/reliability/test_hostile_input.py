"""Hostile input: wrong types, empty and huge strings, NaN, infinities, negative numbers,
booleans for integers, unknown option names and None, fed to every public function.

Each call either works or raises TypeError / ValueError / LookupError (the contract's
ConfigError, NotFoundError and AlreadyRegisteredError count); never anything else. A refused
call leaves the state as it was (every connection's status and the groups) and emits no event.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pykka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brama
from brama import Brama, CircuitOpenError, CircuitState, EventType
from brama.testing import FakeClock, flush_events
from tests.helpers import Recorder, drain
from tests.hypothesis_profiles import scaled

ALLOWED = (TypeError, ValueError, LookupError)

# -- hostile values ----------------------------------------------------------------------------


class BadText:
    """A value whose str() and repr() raise (as some exception classes in the wild do)."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ of a hostile reason")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ of a hostile reason")


class Opaque:
    """A plain object, neither a number nor a string nor callable."""

    __slots__ = ()


NASTY_CONSTANTS = [
    None, True, False, 0, -1, 1, 2**63, -(2**63), 10**400, -(10**400),
    math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e308, -1e308,
    "", " ", "\x00", "é" * 1000, "x" * 100_000, "closed", "open", "half_open",
    b"", b"svc", bytearray(b"x"), 1j, Decimal("1.5"), Decimal("NaN"), Fraction(1, 3),
    [], [1], {}, {"a": 1}, (), ("failure",), frozenset(), set(), Ellipsis, NotImplemented,
    Opaque(), object, type, int, CircuitState.OPEN, EventType.FAILURE,
]
hostile = st.one_of(
    st.sampled_from(NASTY_CONSTANTS),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=8),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.tuples(st.integers(), st.text(max_size=3)),
)

KNOWN = ["svc", "open-svc", "half", "ghost"]  # ghost is never registered
OPTION_NAMES = [
    "max_attempts", "expiry", "expiry_strategy", "initial_expiry", "max_expiry",
    "backoff_factor", "half_open_max_calls", "success_threshold", "hibernate_after",
    "cleanup_interval", "inactive_threshold", "max_restarts", "max_seconds", "clock",
]
SIGNATURE_NAMES = {"identifier", "scope", "type", "metadata", "name", "self"}
VALID_OPTION_VALUES: dict[str, Any] = {
    "max_attempts": st.integers(1, 5),
    "expiry": st.sampled_from([1.0, 2, 30.0]),
    "expiry_strategy": st.sampled_from(["fixed", "progressive"]),
    "initial_expiry": st.sampled_from([1.0, 5.0]),
    "max_expiry": st.sampled_from([50.0, 600.0]),
    "backoff_factor": st.sampled_from([1.0, 2.0]),
    "half_open_max_calls": st.integers(1, 3),
    "success_threshold": st.integers(1, 3),
    "hibernate_after": st.sampled_from([5.0, 60.0]),
}


def either(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of `choices`, each equally likely (st.one_of would flatten nested one_ofs and
    weigh each of hostile's many branches like a whole choice)."""
    return st.integers(0, len(choices) - 1).flatmap(lambda i: choices[i])


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value or a hostile one, half and half."""
    return either(valid, hostile)


identifiers = maybe(st.sampled_from(KNOWN))
scopes = maybe(st.sampled_from([None, None, "s"]))
# reason is Any: every value is a valid reason. (A reason whose str() raises has its own
# test below, so that it does not hide whatever else these random calls would find.)
reasons = either(st.sampled_from([None, "timeout", 503]), hostile)
durations = maybe(st.sampled_from([0.5, 1, 30.0]))
option_names = either(
    st.sampled_from(OPTION_NAMES),
    st.text(max_size=12).filter(lambda n: n not in SIGNATURE_NAMES),
)


@st.composite
def option_dicts(draw: Any, global_: bool) -> dict[str, Any]:
    """Keyword options: known and unknown names, valid and hostile values."""
    result = {}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(option_names)
        if name in VALID_OPTION_VALUES and draw(st.booleans()):
            result[name] = draw(VALID_OPTION_VALUES[name])
        else:
            result[name] = draw(hostile)
    if not global_:
        result.pop("clock", None)  # per-connection: an unknown name, covered by the rest
    return result


event_kinds = either(
    st.none(),
    st.sampled_from(list(EventType)),
    st.sampled_from([e.value for e in EventType]),
    st.lists(either(st.sampled_from(list(EventType)), hostile), max_size=3),
    hostile,
)
handlers_and_filters = either(
    st.none(),
    hostile,
    st.sampled_from([len, str, int, lambda event: None, lambda: None, lambda event: 1 / 0]),
)
members = either(
    st.lists(st.sampled_from(KNOWN), max_size=4),
    st.lists(identifiers, max_size=3),
    hostile,
)
groups = maybe(st.sampled_from(["grp", "no-such-group"]))

# -- the harness ---------------------------------------------------------------------------------


class Harness:
    """One system (or the module API on the default system) and its checks."""

    def __init__(self, api: Any, system: Brama) -> None:
        self.api = api
        self.system = system
        self.events = system.subscribe()  # every event, in a mailbox
        self.actor = Recorder.start()

    def close(self) -> None:
        self.events.close()
        self.actor.stop()

    def restore(self) -> None:
        """Bring the baseline back: svc closed, open-svc open, half half-open, group grp."""
        system = self.system
        listed = {(s.scope, s.identifier) for s in system.connections()}
        for scope, name in [(None, "svc"), (None, "open-svc"), (None, "half"), ("s", "svc")]:
            if (scope, name) not in listed:
                system.register(name, scope=scope, max_attempts=2, expiry=30.0,
                                initial_expiry=30.0, max_expiry=600.0)
        system.reset_circuit("svc")
        if system.status("open-svc").state is not CircuitState.OPEN:
            system.open_circuit("open-svc")
        if system.status("half").state is not CircuitState.HALF_OPEN:
            system.reset_circuit("half")
            system.open_circuit("half")
            system.reset_expiry("half")
        for group in list(system.groups()):
            system.unregister_group(group)
        system.register_group("grp", ["svc", "open-svc"])
        system.unregister("ghost")
        flush_events(system=system)
        drain(self.events)

    def snapshot(self) -> Any:
        """Everything a refused call must leave untouched (groups: name -> member keys)."""
        return self.system.connections(), self.system.groups()

    def check(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `func`; a refusal must be a documented error and change nothing."""
        result, problem = self.outcome(func, *args, **kwargs)
        if problem is not None:
            pytest.fail(problem)
        return result

    def outcome(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """(result, None) if the call worked or was refused cleanly (result None), else
        (None, a description of what went wrong)."""
        self.restore()
        before = self.snapshot()
        try:
            result = func(*args, **kwargs)
        except ALLOWED:
            flush_events(system=self.system)
            if drain(self.events):
                return None, "a refused call emitted events"
            if self.snapshot() != before:
                return None, "a refused call changed the state"
            return None, None
        except BaseException as exc:
            return None, (
                f"{getattr(func, '__name__', func)} raised {type(exc).__name__}: {exc!r} "
                "(allowed: TypeError, ValueError, LookupError)"
            )
        return result, None


@pytest.fixture(scope="module")
def system_harness() -> Iterator[Harness]:
    system = Brama(clock=FakeClock(1_000_000.0))
    harness = Harness(system, system)
    yield harness
    harness.close()
    system.stop()


@pytest.fixture(scope="module")
def module_harness() -> Iterator[Harness]:
    brama.shutdown()
    system = brama.start(clock=FakeClock(1_000_000.0))
    harness = Harness(brama, system)
    yield harness
    harness.close()
    brama.shutdown()


@pytest.fixture(params=["system", "module"])
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.getfixturevalue(f"{request.param}_harness")  # type: ignore[no-any-return]


SETTINGS = settings(
    max_examples=scaled(150),
    derandomize=True,  # the same examples every run: a failure here is never a fluke
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)

# -- one test per public function ---------------------------------------------------------------

CONNECTION_CALLS: dict[str, Callable[[Any, st.DataObject], tuple[Callable[..., Any], tuple,
                                                                   dict]]] = {}


def connection_call(func: Any) -> Any:
    CONNECTION_CALLS[func.__name__.removeprefix("call_")] = func
    return func


@connection_call
def call_register(api: Any, data: st.DataObject) -> Any:
    kwargs = dict(
        scope=data.draw(scopes, "scope"),
        type=data.draw(maybe(st.just("db")), "type"),
        metadata=data.draw(maybe(st.sampled_from([None, {"team": "core"}, {}])), "metadata"),
    )
    kwargs.update(data.draw(option_dicts(False), "options"))
    return api.register, (data.draw(maybe(st.sampled_from([*KNOWN, "new"])), "identifier"),), kwargs


@connection_call
def call_unregister(api: Any, data: st.DataObject) -> Any:
    return api.unregister, (data.draw(identifiers),), {"scope": data.draw(scopes)}


@connection_call
def call_available(api: Any, data: st.DataObject) -> Any:
    return api.available, (data.draw(identifiers),), {"scope": data.draw(scopes)}


@connection_call
def call_success(api: Any, data: st.DataObject) -> Any:
    return api.success, (data.draw(identifiers),), {"scope": data.draw(scopes)}


@connection_call
def call_failure(api: Any, data: st.DataObject) -> Any:
    return api.failure, (data.draw(identifiers),), {
        "scope": data.draw(scopes), "reason": data.draw(reasons, "reason")}


@connection_call
def call_status(api: Any, data: st.DataObject) -> Any:
    return api.status, (data.draw(identifiers),), {"scope": data.draw(scopes)}


@connection_call
def call_connections(api: Any, data: st.DataObject) -> Any:
    return api.connections, (), {"scope": data.draw(scopes)}


@connection_call
def call_configure_connection(api: Any, data: st.DataObject) -> Any:
    kwargs = {"scope": data.draw(scopes), **data.draw(option_dicts(False), "options")}
    return api.configure, (data.draw(identifiers),), kwargs


@connection_call
def call_configure_global(api: Any, data: st.DataObject) -> Any:
    options = data.draw(option_dicts(True), "options")
    options.pop("max_restarts", None)  # keep the supervisors as they are for later examples
    return api.configure, (), options


@connection_call
def call_open_circuit(api: Any, data: st.DataObject) -> Any:
    return api.open_circuit, (data.draw(identifiers),), {
        "scope": data.draw(scopes), "reason": data.draw(reasons, "reason"),
        "expires_in": data.draw(either(st.none(), durations), "expires_in")}


@connection_call
def call_close_circuit(api: Any, data: st.DataObject) -> Any:
    return api.close_circuit, (data.draw(identifiers),), {
        "scope": data.draw(scopes), "reason": data.draw(reasons, "reason")}


@connection_call
def call_reset_circuit(api: Any, data: st.DataObject) -> Any:
    return api.reset_circuit, (data.draw(identifiers),), {
        "scope": data.draw(scopes), "reason": data.draw(reasons, "reason")}


@connection_call
def call_reset_expiry(api: Any, data: st.DataObject) -> Any:
    return api.reset_expiry, (data.draw(identifiers),), {"scope": data.draw(scopes)}


@connection_call
def call_set_expiry(api: Any, data: st.DataObject) -> Any:
    return api.set_expiry, (data.draw(identifiers), data.draw(durations, "seconds")), {
        "scope": data.draw(scopes)}


@connection_call
def call_disable_expiry(api: Any, data: st.DataObject) -> Any:
    return api.disable_expiry, (data.draw(identifiers),), {"scope": data.draw(scopes)}


@connection_call
def call_register_group(api: Any, data: st.DataObject) -> Any:
    return api.register_group, (
        data.draw(maybe(st.sampled_from(["grp", "grp2"])), "name"),
        data.draw(members, "members"),
    ), {"scope": data.draw(scopes)}


@connection_call
def call_unregister_group(api: Any, data: st.DataObject) -> Any:
    return api.unregister_group, (data.draw(groups, "name"),), {}


@connection_call
def call_group_available(api: Any, data: st.DataObject) -> Any:
    return api.group_available, (data.draw(groups, "name"),), {}


@connection_call
def call_group_status(api: Any, data: st.DataObject) -> Any:
    return api.group_status, (data.draw(groups, "name"),), {}


@connection_call
def call_group_success(api: Any, data: st.DataObject) -> Any:
    return api.group_success, (data.draw(groups, "name"),), {}


@connection_call
def call_group_failure(api: Any, data: st.DataObject) -> Any:
    return api.group_failure, (data.draw(groups, "name"),), {"reason": data.draw(reasons)}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(CONNECTION_CALLS))
def test_public_function_refuses_hostile_input_cleanly(harness: Harness, name: str) -> None:
    build = CONNECTION_CALLS[name]

    @SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        func, args, kwargs = build(harness.api, data)
        harness.check(func, *args, **kwargs)

    run()


@pytest.mark.timeout(120)
def test_subscribe_refuses_hostile_input_cleanly(harness: Harness) -> None:
    """A subscription that is accepted is not a state change; a refused one leaves nothing
    behind either (no handler actor started)."""

    @SETTINGS
    @given(
        events=event_kinds,
        connection=either(st.none(), identifiers),
        scope=scopes,
        filter=handlers_and_filters,
        target=st.sampled_from(["none", "actor", "handler", "hostile-actor"]),
        handler=handlers_and_filters,
        actor=hostile,
    )
    def run(events: Any, connection: Any, scope: Any, filter: Any, target: str,
            handler: Any, actor: Any) -> None:
        kwargs: dict[str, Any] = dict(events=events, connection=connection, scope=scope,
                                      filter=filter)
        if target == "actor":
            kwargs["actor"] = harness.actor
        elif target == "handler":
            kwargs["handler"] = handler
        elif target == "hostile-actor":
            kwargs["actor"] = actor
            kwargs["handler"] = handler
        harness.restore()  # wakes what the baseline needs before counting threads
        threads = threading.active_count()
        sub = harness.check(harness.api.subscribe, **kwargs)
        if sub is not None:
            sub.close()
        else:  # a refused handler subscription started no handler actor
            assert threading.active_count() <= threads

    run()


@pytest.mark.timeout(60)
def test_unsubscribe_refuses_hostile_input_cleanly(harness: Harness) -> None:
    @SETTINGS
    @given(value=hostile)
    def run(value: Any) -> None:
        harness.check(harness.api.unsubscribe, value)

    run()
    sub = harness.api.subscribe()
    harness.api.unsubscribe(sub)
    harness.api.unsubscribe(sub)  # idempotent


# -- decorator and guard ---------------------------------------------------------------------

verdicts = either(
    st.sampled_from(["success", "failure", "ignore", ("failure", "slow"), "bogus", "",
                     ("failure",), ("failure", 1, 2), ("success", 1), ["failure", "x"],
                     b"success", None, 1, True]),
    hostile,
)
error_handlers = either(
    st.none(),
    hostile,  # not callable (or a builtin that is): refused at decoration, or a bad verdict
    verdicts.map(lambda verdict: lambda result: verdict),
)


@pytest.mark.timeout(120)
def test_circuit_breaker_refuses_hostile_input_cleanly(harness: Harness) -> None:
    """Bad arguments are refused when decorating (nothing registered, nothing emitted); a
    decorated call works, is refused with CircuitOpenError, or, for an error_handler verdict
    that is not one of the accepted ones, raises TypeError / ValueError and reports nothing."""
    system = harness.system
    default_system = None if harness.api is brama else system

    @SETTINGS
    @given(
        identifier=identifiers,
        scope=scopes,
        error_handler=error_handlers,
        ignore=either(st.just(()), st.just(KeyError), hostile),
        fallback=either(st.none(), hostile, st.just(lambda: "fallback")),
        system_arg=either(st.just(default_system), st.just(default_system), hostile),
        func=either(st.just(lambda: "result"), st.just(lambda: "result"), hostile),
    )
    def run(identifier: Any, scope: Any, error_handler: Any, ignore: Any, fallback: Any,
            system_arg: Any, func: Any) -> None:
        decorate = harness.check(
            brama.circuit_breaker, identifier, scope=scope, error_handler=error_handler,
            ignore_exceptions=ignore, fallback=fallback, system=system_arg,
        )
        if decorate is None:
            return
        wrapped = harness.check(decorate, func)
        if wrapped is None:
            return
        before = _totals(system, identifier, scope)
        was_closed = _state(system, identifier, scope) is CircuitState.CLOSED
        own_error = _raises_alone(func)
        try:
            wrapped()
        except CircuitOpenError:
            pass
        except (TypeError, ValueError) as exc:
            flush_events(system=system)
            reported = [e for e in drain(harness.events)
                        if e.event in (EventType.SUCCESS, EventType.FAILURE)]
            if own_error is type(exc) and (reported or was_closed):
                # the function itself raised (a builtin such as `type` called without
                # arguments): a failure like any other, reported once with that reason
                assert [(e.event, e.data["reason"]) for e in reported] == [
                    (EventType.FAILURE, repr(exc))
                ]
                assert _totals(system, identifier, scope) == (before[0], before[1] + 1)
            else:
                # a bad verdict (or a fallback raising): nothing may be reported
                assert reported == []
                assert _totals(system, identifier, scope) == before
        except BaseException as exc:
            pytest.fail(f"decorated call raised {type(exc).__name__}: {exc!r}")

    run()


def _raises_alone(func: Any) -> type[BaseException] | None:
    """The exception class `func()` raises on its own (None if it returns): the hostile values
    that are callable are builtins without side effects (`type`, `int`, `object`)."""
    try:
        func()
    except Exception as exc:
        return type(exc)
    return None


def _state(system: Brama, identifier: str, scope: str | None) -> CircuitState | None:
    for status in system.connections():
        if (status.identifier, status.scope) == (identifier, scope):
            return status.state
    return None


def _totals(system: Brama, identifier: str, scope: str | None) -> tuple[int, int]:
    for status in system.connections():
        if (status.identifier, status.scope) == (identifier, scope):
            return status.total_successes, status.total_failures
    return 0, 0


@pytest.mark.timeout(120)
def test_guard_refuses_hostile_input_cleanly(harness: Harness) -> None:
    default_system = None if harness.api is brama else harness.system

    @SETTINGS
    @given(identifier=identifiers, scope=scopes,
           system_arg=either(st.just(default_system), hostile))
    def run(identifier: Any, scope: Any, system_arg: Any) -> None:
        guard = harness.check(brama.guard, identifier, scope=scope, system=system_arg)
        if guard is None:
            return
        try:
            with guard:
                pass
        except CircuitOpenError:
            pass

    run()


def test_the_harness_catches_a_state_change_on_refusal(system_harness: Harness) -> None:
    """The check itself can fail: a call that changes state and then raises is caught."""

    def sneaky() -> None:
        system_harness.system.failure("svc")
        raise ValueError("refused, supposedly")

    with pytest.raises(pytest.fail.Exception, match=r"emitted events|changed the state"):
        system_harness.check(sneaky)

    def wrong_error() -> None:
        raise RuntimeError("not a documented error")

    with pytest.raises(pytest.fail.Exception, match="RuntimeError"):
        system_harness.check(wrong_error)
    with pytest.raises(queue.Empty):
        system_harness.events.get(timeout=0)
    assert isinstance(system_harness.actor, pykka.ActorRef)


# -- targeted cases: the same checks on values that random generation only sometimes hits ----

NUMERIC_OPTIONS = [
    "max_attempts", "expiry", "initial_expiry", "max_expiry", "backoff_factor",
    "half_open_max_calls", "success_threshold", "hibernate_after",
]
GLOBAL_ONLY_NUMERIC = ["cleanup_interval", "inactive_threshold", "max_seconds"]
INT_OPTIONS = {"max_attempts", "half_open_max_calls", "success_threshold"}
EXTREMES = [10**400, -(10**400), math.nan, math.inf, -math.inf, True, "5", None]
EXTREME_IDS = ["10**400", "-10**400", "nan", "inf", "-inf", "True", "'5'", "None"]
@pytest.mark.parametrize(
    "where",
    ["start", "register", "configure_connection", "configure_global", "set_expiry",
     "open_circuit"],
)
def test_out_of_range_numbers_are_refused_with_a_documented_error(
    system_harness: Harness, where: str
) -> None:
    """Huge ints (float() overflows), NaN, infinities, booleans, strings and None for a
    number: a ConfigError / TypeError / ValueError, never OverflowError, and no change."""
    system = system_harness.system
    options = {
        "start": NUMERIC_OPTIONS + GLOBAL_ONLY_NUMERIC,
        "register": NUMERIC_OPTIONS,
        "configure_connection": NUMERIC_OPTIONS,
        "configure_global": NUMERIC_OPTIONS + GLOBAL_ONLY_NUMERIC,
        "set_expiry": ["seconds"],
        "open_circuit": ["expires_in"],
    }[where]
    problems = []
    for option in options:
        for value, label in zip(EXTREMES, EXTREME_IDS, strict=True):
            if option == "inactive_threshold" and value is None:
                continue  # None is valid: never sweep
            if option == "expires_in" and value is None:
                continue  # None is valid: the strategy's expiry
            if option in INT_OPTIONS and value == 10**400:
                continue  # a huge int is a valid count
            accepted = object()
            result, problem = system_harness.outcome(
                _number_call(system, where, option, value, accepted)
            )
            if result is accepted:
                problem = "accepted"
            if problem is not None:
                problems.append(f"{where}({option}={label}): {problem}")
    assert not problems, "\n".join(problems)


def _number_call(
    system: Brama, where: str, option: str, value: Any, accepted: object
) -> Callable[[], Any]:
    """A call that passes `value` as `option` through `where`; returns `accepted` if taken."""

    def call() -> Any:
        if where == "start":
            Brama(clock=FakeClock(0.0), **{option: value}).stop()
        elif where == "register":
            system.register("new", **{option: value})
        elif where == "configure_connection":
            system.configure("svc", **{option: value})
        elif where == "configure_global":
            system.configure(**{option: value})
        elif where == "set_expiry":
            system.set_expiry("open-svc", value)
        else:
            system.open_circuit("svc", expires_in=value)
        return accepted

    call.__name__ = where
    return call


@pytest.mark.parametrize(
    "call, expected",
    [
        ("failure", CircuitState.OPEN),
        ("open_circuit", CircuitState.OPEN),
        ("close_circuit", CircuitState.CLOSED),
        ("reset_circuit", CircuitState.CLOSED),
        ("group_failure", CircuitState.OPEN),
    ],
)
def test_a_reason_whose_str_raises_is_still_a_reason(
    system_harness: Harness, call: str, expected: CircuitState
) -> None:
    """`reason` is Any: an object whose str() / repr() raise (some exception classes do) is
    recorded like any other, and the call that changes the state with it returns normally."""
    system = system_harness.system
    system_harness.restore()
    target = "open-svc" if call in ("close_circuit", "reset_circuit") else "svc"
    reason = BadText()
    if call in ("failure", "group_failure"):
        system.failure("svc", reason="first")  # max_attempts=2: the next one opens

    def func() -> None:
        if call == "failure":
            system.failure("svc", reason=reason)
        elif call == "group_failure":
            system.group_failure("grp", reason=reason)
        else:
            getattr(system, call)(target, reason=reason)

    try:
        func()
    except BaseException as exc:
        pytest.fail(f"{call}(reason=<str() raises>) raised {exc!r}")
    assert system.status(target).state is expected
