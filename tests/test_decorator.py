"""The `circuit_breaker` decorator, sync and async, on a fresh system per test."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import brama
from brama import (
    Brama,
    CircuitOpenError,
    CircuitState,
    EventType,
    NotFoundError,
    circuit_breaker,
)
from brama.testing import FakeClock


def frames(exc: BaseException) -> list[str]:
    """The function names in `exc`'s traceback, outermost first."""
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


def failure_reasons(system: Brama, identifier: str, action: Any, count: int = 1) -> list[Any]:
    """Run `action()` and return the `reason` of the next `count` FAILURE events."""
    with system.subscribe(events=[EventType.FAILURE], connection=identifier) as sub:
        action()
        return [sub.get(timeout=10).data["reason"] for _ in range(count)]


@pytest.fixture
def default_system() -> Iterator[None]:
    brama.shutdown()
    yield
    brama.shutdown()


# --- sync: outcomes ------------------------------------------------------------------------


def test_success_is_counted_and_the_value_returned(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system)
    def query(x: int, *, y: int = 1) -> int:
        return x + y

    assert query(1, y=2) == 3
    assert query(5) == 6
    status = brama_system.status("db")
    assert status.total_successes == 2
    assert status.total_failures == 0
    assert status.state is CircuitState.CLOSED


def test_registers_on_first_use_with_defaults(brama_system: Brama) -> None:
    @circuit_breaker("lazy", scope="tenant", system=brama_system)
    def call() -> str:
        return "ok"

    with pytest.raises(NotFoundError):
        brama_system.status("lazy", scope="tenant")
    assert call() == "ok"
    status = brama_system.status("lazy", scope="tenant")
    assert status.type == "general"
    assert status.max_attempts == 10
    assert status.expiry == 60.0
    assert status.total_successes == 1
    with pytest.raises(NotFoundError):
        brama_system.status("lazy")  # the unscoped one is another connection


def test_an_existing_registration_is_used(brama_system: Brama) -> None:
    brama_system.register("db", max_attempts=2, type="postgres")

    @circuit_breaker("db", system=brama_system)
    def fail() -> None:
        raise OSError("down")

    for _ in range(2):
        with pytest.raises(OSError):
            fail()
    status = brama_system.status("db")
    assert status.type == "postgres"
    assert status.state is CircuitState.OPEN


def test_failure_is_reported_with_repr_and_the_same_exception_reraised(
    brama_system: Brama,
) -> None:
    raised: list[Exception] = []

    @circuit_breaker("db", system=brama_system)
    def failing_query() -> None:
        exc = ConnectionError("refused")
        raised.append(exc)
        raise exc

    caught: list[BaseException] = []

    def action() -> None:
        with pytest.raises(ConnectionError) as info:
            failing_query()
        caught.append(info.value)

    reasons = failure_reasons(brama_system, "db", action)
    assert caught[0] is raised[0]
    assert reasons == [repr(raised[0])] == ["ConnectionError('refused')"]
    assert "failing_query" in frames(caught[0])
    assert frames(caught[0])[-1] == "failing_query"  # raised there, traceback intact
    status = brama_system.status("db")
    assert status.total_failures == 1
    assert status.failure_count == 1


def test_failures_open_the_circuit_and_then_the_function_is_not_called(
    brama_system: Brama,
) -> None:
    brama_system.register("db", max_attempts=2)
    calls: list[int] = []

    @circuit_breaker("db", system=brama_system)
    def call() -> None:
        calls.append(1)
        raise TimeoutError

    for _ in range(2):
        with pytest.raises(TimeoutError):
            call()
    with pytest.raises(CircuitOpenError) as info:
        call()
    assert len(calls) == 2
    assert info.value.status.state is CircuitState.OPEN
    assert info.value.status.identifier == "db"
    assert brama_system.status("db").rejected_calls == 1


def test_ignore_exceptions_are_reraised_and_not_counted(brama_system: Brama) -> None:
    class NotFound(KeyError):
        pass

    @circuit_breaker("db", system=brama_system, ignore_exceptions=KeyError)
    def single(exc: Exception) -> None:
        raise exc

    @circuit_breaker("db", system=brama_system, ignore_exceptions=(ValueError, LookupError))
    def several(exc: Exception) -> None:
        raise exc

    with pytest.raises(NotFound):
        single(NotFound("x"))  # a subclass is ignored too
    with pytest.raises(ValueError):
        several(ValueError("v"))
    with pytest.raises(IndexError):
        several(IndexError("i"))
    status = brama_system.status("db")
    assert status.total_failures == 0
    assert status.failure_count == 0
    with pytest.raises(RuntimeError):
        single(RuntimeError("counted"))
    assert brama_system.status("db").total_failures == 1


def test_open_circuit_raises_circuit_open_error_without_calling(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db")
    calls: list[int] = []

    @circuit_breaker("db", system=brama_system)
    def call() -> int:
        calls.append(1)
        return 1

    with pytest.raises(CircuitOpenError) as info:
        call()
    assert calls == []
    assert isinstance(info.value, brama.BramaError)
    assert info.value.status.state is CircuitState.OPEN
    assert brama_system.status("db").rejected_calls == 1


def test_fallback_is_called_with_the_arguments_when_open(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db")
    seen: list[tuple[Any, ...]] = []

    def fallback(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return "cached"

    @circuit_breaker("db", system=brama_system, fallback=fallback)
    def call(a: int, b: int = 0) -> str:
        raise AssertionError("must not be called")

    assert call(1, b=2) == "cached"
    assert seen == [((1,), {"b": 2})]
    status = brama_system.status("db")
    assert status.rejected_calls == 1
    assert status.total_failures == 0


def test_fallback_is_not_used_when_closed(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system, fallback=lambda: "fallback")
    def call() -> str:
        return "real"

    assert call() == "real"


def test_recovers_after_expiry(brama_system: Brama, brama_clock: FakeClock) -> None:
    brama_system.register("db", max_attempts=1, expiry=5.0)

    @circuit_breaker("db", system=brama_system)
    def call(ok: bool) -> str:
        if not ok:
            raise OSError
        return "ok"

    with pytest.raises(OSError):
        call(False)
    with pytest.raises(CircuitOpenError):
        call(True)
    brama_clock.advance(5.0)
    assert brama_system.status("db").state is CircuitState.HALF_OPEN
    assert call(True) == "ok"
    assert brama_system.status("db").state is CircuitState.CLOSED


# --- error_handler -------------------------------------------------------------------------


def test_error_handler_success_and_ignore(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system,
                     error_handler=lambda r: "ignore" if r is None else "success")
    def call(value: Any) -> Any:
        return value

    assert call(1) == 1
    assert call(None) is None
    status = brama_system.status("db")
    assert status.total_successes == 1
    assert status.total_failures == 0


def test_error_handler_failure_forms(brama_system: Brama) -> None:
    def classify(result: dict[str, Any]) -> Any:
        if result["code"] == 500:
            return ("failure", f"http {result['code']}")
        if result["code"] == 503:
            return "failure"
        return "success"

    @circuit_breaker("api", system=brama_system, error_handler=classify)
    def request(code: int) -> dict[str, Any]:
        return {"code": code}

    responses: list[Any] = []
    reasons = failure_reasons(
        brama_system, "api",
        lambda: responses.extend([request(500), request(503), request(200)]),
        count=2,
    )
    assert responses == [{"code": 500}, {"code": 503}, {"code": 200}]  # values are returned
    assert reasons == ["http 500", None]
    status = brama_system.status("api")
    assert status.total_failures == 2
    assert status.total_successes == 1
    assert status.failure_count == 0


def test_error_handler_failures_open_the_circuit(brama_system: Brama) -> None:
    brama_system.register("api", max_attempts=2)

    @circuit_breaker("api", system=brama_system, error_handler=lambda r: "failure")
    def request() -> int:
        return 500

    assert request() == 500
    assert request() == 500
    with pytest.raises(CircuitOpenError):
        request()


def test_error_handler_exception_propagates_and_the_breaker_stays_usable(
    brama_system: Brama,
) -> None:
    class HandlerBug(Exception):
        pass

    def classify(result: int) -> str:
        if result < 0:
            raise HandlerBug(result)
        return "success"

    @circuit_breaker("db", system=brama_system, error_handler=classify)
    def call(value: int) -> int:
        return value

    with pytest.raises(HandlerBug):
        call(-1)
    status = brama_system.status("db")
    assert status.total_successes == 0
    assert status.total_failures == 0
    assert status.state is CircuitState.CLOSED
    assert call(3) == 3
    assert brama_system.status("db").total_successes == 1


@pytest.mark.parametrize(
    ("verdict", "error"),
    [
        ("succes", ValueError),
        (("failure",), ValueError),
        (("failure", "r", "extra"), ValueError),
        (("ignore", "r"), ValueError),
        (None, TypeError),
        (True, TypeError),
        (["failure", "r"], TypeError),
    ],
)
def test_error_handler_garbage_is_a_clear_error(
    brama_system: Brama, verdict: Any, error: type[Exception]
) -> None:
    @circuit_breaker("db", system=brama_system, error_handler=lambda r: verdict)
    def call() -> int:
        return 1

    with pytest.raises(error, match=r"error_handler must return 'success', 'failure'.*'ignore'"):
        call()
    status = brama_system.status("db")
    assert status.total_successes == status.total_failures == 0
    assert status.state is CircuitState.CLOSED


def test_error_handler_garbage_in_half_open_gives_the_permit_back_at_once(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("db", expiry=10.0)
    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")

    @circuit_breaker("db", system=brama_system, error_handler=lambda r: r)
    def call(verdict: Any) -> Any:
        return verdict

    with pytest.raises(ValueError, match="error_handler"):
        call("bogus")
    assert brama_system.status("db").half_open_permits_in_use == 0
    assert call("success") == "success"  # no need to wait for the lease to end
    assert brama_system.status("db").state is CircuitState.CLOSED


def test_async_error_handler_is_refused_without_a_never_awaited_warning(
    brama_system: Brama, recwarn: pytest.WarningsRecorder
) -> None:
    async def classify(result: Any) -> str:
        return "success"

    @circuit_breaker("db", system=brama_system, error_handler=classify)
    def call() -> int:
        return 1

    with pytest.raises(TypeError, match="not async"):
        call()
    import gc

    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


# --- shape of the wrapper ------------------------------------------------------------------


def test_wraps_keeps_name_doc_and_signature(brama_system: Brama) -> None:
    def fetch(url: str, *, timeout: float = 1.0) -> bytes:
        """Fetch a URL."""
        return b""

    wrapped = circuit_breaker("http", system=brama_system)(fetch)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch a URL."
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert not inspect.iscoroutinefunction(wrapped)


def test_methods_can_be_decorated(brama_system: Brama) -> None:
    class Client:
        def __init__(self) -> None:
            self.base = 10

        @circuit_breaker("client", system=brama_system)
        def get(self, x: int) -> int:
            return self.base + x

    assert Client().get(1) == 11
    assert brama_system.status("client").total_successes == 1


def test_generator_functions_are_refused(brama_system: Brama) -> None:
    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> Any:
        yield 1

    for func in (gen, agen):
        with pytest.raises(TypeError, match="generator"):
            circuit_breaker("db", system=brama_system)(func)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"identifier": 1}, TypeError, "identifier"),
        ({"identifier": ""}, ValueError, "identifier"),
        ({"scope": ""}, ValueError, "scope"),
        ({"scope": 3}, TypeError, "scope"),
        ({"error_handler": "success"}, TypeError, "error_handler"),
        ({"fallback": 42}, TypeError, "fallback"),
        ({"ignore_exceptions": ValueError("x")}, TypeError, "ignore_exceptions"),
        ({"ignore_exceptions": (ValueError, int)}, TypeError, "ignore_exceptions"),
        ({"ignore_exceptions": None}, TypeError, "ignore_exceptions"),
        ({"system": "default"}, TypeError, "system"),
    ],
)
def test_bad_arguments_are_rejected_at_decoration_time(
    brama_system: Brama, kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    arguments: dict[str, Any] = {"identifier": "db", "system": brama_system, **kwargs}
    identifier = arguments.pop("identifier")
    with pytest.raises(error, match=name):
        circuit_breaker(identifier, **arguments)
    assert brama_system.connections() == []


def test_decorating_a_non_callable_is_a_type_error(brama_system: Brama) -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        circuit_breaker("db", system=brama_system)(42)  # type: ignore[arg-type]


# --- half-open -----------------------------------------------------------------------------


def test_half_open_lets_exactly_half_open_max_calls_through(brama_system: Brama) -> None:
    brama_system.register("db", half_open_max_calls=2, success_threshold=2)
    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")
    inside = threading.Barrier(3)  # the two trials and this test
    leave = threading.Event()
    outcomes: list[str] = []

    @circuit_breaker("db", system=brama_system)
    def call() -> None:
        inside.wait(5)
        leave.wait(5)

    def caller() -> None:
        try:
            call()
            outcomes.append("ran")
        except CircuitOpenError:
            outcomes.append("rejected")

    trials = [threading.Thread(target=caller) for _ in range(2)]
    for thread in trials:
        thread.start()
    inside.wait(5)  # both trials hold a permit now
    for _ in range(3):
        caller()
    leave.set()
    for thread in trials:
        thread.join(5)
    assert sorted(outcomes) == ["ran", "ran", "rejected", "rejected", "rejected"]
    status = brama_system.status("db")
    assert status.state is CircuitState.CLOSED
    assert status.rejected_calls == 3


def test_a_failing_trial_call_reopens(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")

    @circuit_breaker("db", system=brama_system)
    def call() -> None:
        raise OSError("still down")

    with pytest.raises(OSError):
        call()
    assert brama_system.status("db").state is CircuitState.OPEN


# --- registration lifecycle ---------------------------------------------------------------


def test_works_again_after_the_connection_is_unregistered(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system)
    def call() -> str:
        return "ok"

    assert call() == "ok"
    brama_system.unregister("db")
    with pytest.raises(NotFoundError):
        brama_system.status("db")
    assert call() == "ok"
    assert brama_system.status("db").total_successes == 1  # a new connection


def test_unregistered_during_the_call_drops_the_outcome(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system)
    def call(fail: bool) -> str:
        brama_system.unregister("db")
        if fail:
            raise OSError("gone")
        return "ok"

    assert call(False) == "ok"
    with pytest.raises(OSError, match="gone"):
        call(True)
    with pytest.raises(NotFoundError):
        brama_system.status("db")


def test_the_callers_exception_wins_over_a_stopped_system(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system)
    def call() -> None:
        brama_system.stop()
        raise OSError("original")

    with pytest.raises(OSError, match="original"):
        call()


# --- non-Exception exceptions --------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_are_not_failures(brama_system: Brama,
                                          exc_type: type[BaseException]) -> None:
    @circuit_breaker("db", system=brama_system)
    def call() -> None:
        raise exc_type()

    with pytest.raises(exc_type):
        call()
    status = brama_system.status("db")
    assert status.total_failures == 0
    assert status.total_successes == 0


# --- async ---------------------------------------------------------------------------------


def test_async_wrapper_is_a_coroutine_function_with_the_same_shape(brama_system: Brama) -> None:
    async def fetch(url: str) -> str:
        """Fetch asynchronously."""
        return url

    wrapped = circuit_breaker("http", system=brama_system)(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch asynchronously."
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert asyncio.run(wrapped("u")) == "u"
    assert brama_system.status("http").total_successes == 1


def test_async_callable_objects_and_partials_are_async(brama_system: Brama) -> None:
    class Fetcher:
        async def __call__(self, x: int) -> int:
            return x * 2

    async def add(a: int, b: int) -> int:
        return a + b

    wrapped_obj = circuit_breaker("a", system=brama_system)(Fetcher())
    wrapped_partial = circuit_breaker("b", system=brama_system)(functools.partial(add, 1))
    assert inspect.iscoroutinefunction(wrapped_obj)
    assert inspect.iscoroutinefunction(wrapped_partial)
    assert asyncio.run(wrapped_obj(2)) == 4
    assert asyncio.run(wrapped_partial(2)) == 3
    assert brama_system.status("a").total_successes == 1
    assert brama_system.status("b").total_successes == 1


def test_async_failure_is_reported_and_reraised_unchanged(brama_system: Brama) -> None:
    raised: list[Exception] = []

    @circuit_breaker("db", system=brama_system)
    async def async_failing() -> None:
        await asyncio.sleep(0)
        exc = ConnectionResetError("reset")
        raised.append(exc)
        raise exc

    caught: list[BaseException] = []

    def action() -> None:
        with pytest.raises(ConnectionResetError) as info:
            asyncio.run(async_failing())
        caught.append(info.value)

    reasons = failure_reasons(brama_system, "db", action)
    assert caught[0] is raised[0]
    assert reasons == [repr(raised[0])]
    assert frames(caught[0])[-1] == "async_failing"
    assert brama_system.status("db").total_failures == 1


def test_async_ignore_exceptions(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system, ignore_exceptions=(KeyError,))
    async def call() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        asyncio.run(call())
    assert brama_system.status("db").total_failures == 0


def test_async_open_raises_without_calling(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db", reason="maintenance")
    calls: list[int] = []

    @circuit_breaker("db", system=brama_system)
    async def call() -> int:
        calls.append(1)
        return 1

    with pytest.raises(CircuitOpenError) as info:
        asyncio.run(call())
    assert calls == []
    assert info.value.status.state is CircuitState.OPEN


def test_async_fallbacks_sync_and_async(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db")

    async def async_fallback(x: int, *, y: int) -> tuple[str, int, int]:
        await asyncio.sleep(0)
        return ("async", x, y)

    def sync_fallback(x: int, *, y: int) -> tuple[str, int, int]:
        return ("sync", x, y)

    @circuit_breaker("db", system=brama_system, fallback=async_fallback)
    async def first(x: int, *, y: int) -> tuple[str, int, int]:
        raise AssertionError("must not be called")

    @circuit_breaker("db", system=brama_system, fallback=sync_fallback)
    async def second(x: int, *, y: int) -> tuple[str, int, int]:
        raise AssertionError("must not be called")

    assert asyncio.run(first(1, y=2)) == ("async", 1, 2)
    assert asyncio.run(second(3, y=4)) == ("sync", 3, 4)
    assert brama_system.status("db").rejected_calls == 2


def test_async_error_handler(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system,
                     error_handler=lambda r: ("failure", "empty") if not r else "success")
    async def call(value: list[int]) -> list[int]:
        return value

    reasons = failure_reasons(brama_system, "db", lambda: asyncio.run(call([])))
    assert reasons == ["empty"]
    assert asyncio.run(call([1])) == [1]
    status = brama_system.status("db")
    assert (status.total_failures, status.total_successes) == (1, 1)


def test_async_half_open_lets_exactly_half_open_max_calls_through(brama_system: Brama) -> None:
    brama_system.register("db", half_open_max_calls=2, success_threshold=2)
    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")
    entered: list[int] = []

    @circuit_breaker("db", system=brama_system)
    async def call(i: int, gate: asyncio.Event) -> int:
        entered.append(i)
        await gate.wait()
        return i

    async def main() -> list[Any]:
        gate = asyncio.Event()
        tasks = [asyncio.ensure_future(call(i, gate)) for i in range(3)]
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert entered == [0, 1]
    assert results[:2] == [0, 1]
    assert isinstance(results[2], CircuitOpenError)
    status = brama_system.status("db")
    assert status.state is CircuitState.CLOSED
    assert status.rejected_calls == 1


def test_cancellation_is_not_a_failure(brama_system: Brama) -> None:
    started = []

    @circuit_breaker("db", system=brama_system)
    async def slow() -> None:
        started.append(1)
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert started == [1]
    status = brama_system.status("db")
    assert status.total_failures == 0
    assert status.total_successes == 0


def test_async_keyboard_interrupt_is_not_a_failure(brama_system: Brama) -> None:
    @circuit_breaker("db", system=brama_system)
    async def call() -> None:
        raise KeyboardInterrupt

    coro = call()
    with pytest.raises(KeyboardInterrupt):
        coro.send(None)
    assert brama_system.status("db").total_failures == 0


# --- the default system --------------------------------------------------------------------


@pytest.mark.usefixtures("default_system")
def test_default_system_is_resolved_at_call_time() -> None:
    @brama.circuit_breaker("svc")
    def call() -> str:
        return "ok"

    assert call() == "ok"
    first = brama.default()
    assert brama.status("svc").total_successes == 1
    brama.shutdown()
    assert not first.running
    assert call() == "ok"  # a new default system, registered again
    assert brama.default() is not first
    assert brama.status("svc").total_successes == 1
    brama.open_circuit("svc")
    with pytest.raises(CircuitOpenError):
        call()


def test_concurrent_first_calls_register_once(brama_system: Brama) -> None:
    import threading

    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    @circuit_breaker("race", system=brama_system)
    def call() -> int:
        return 1

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(50):
                call()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(brama_system.connections()) == 1
    assert brama_system.status("race").total_successes == 400
