"""Nested use of one connection: helpers that call each other through the same dependency.

Found: `with guard("db")` around a `@circuit_breaker("db")` function counted one failing call
twice; in half-open the inner call was refused by the outer call's permit and the outer guard
reported that CircuitOpenError as a failure, re-opening the circuit on every expiry. Now a
call on a connection made inside a call on the same connection (same thread, or same asyncio
task) runs under the outer call's permit: it takes no permit, reports nothing of its own and
is never refused; the outermost call's outcome is the one reported. Calls on other
connections nested inside count on their own.

Where "inside" ends (a choice, documented in docs/deploying.md): it follows `contextvars`,
and the call's lifetime. Tasks created inside a call (`create_task`, `gather`, `wait_for`)
and `asyncio.to_thread` copy the context, so they are inside it while it lasts (a task that
outlives the call makes calls of its own afterwards); a `threading.Thread` started inside a
call does not copy it, so its calls are calls of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from brama import Brama, CircuitOpenError, CircuitState, circuit_breaker, guard
from tests.helpers import WAIT

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def counts(system: Brama, name: str = "db") -> tuple[Any, ...]:
    s = system.status(name)
    return s.state, s.total_successes, s.total_failures, s.rejected_calls


def half_open(system: Brama, name: str = "db") -> None:
    system.register(name, half_open_max_calls=1, max_attempts=1, expiry=30)
    system.open_circuit(name)
    system.reset_expiry(name)


def sync_nesting(shape: str, system: Brama, name: str, inner_name: str,
                 body: Callable[[], Any]) -> Callable[[], Any]:
    """`body` run inside two breakers: outer on `name`, inner on `inner_name`."""
    outer_kind, inner_kind = shape.split("-in-")[::-1]

    def wrap(kind: str, connection: str, func: Callable[[], Any]) -> Callable[[], Any]:
        if kind == "decorator":
            return circuit_breaker(connection, system=system)(func)
        shared = guard(connection, system=system)

        def guarded() -> Any:
            with shared:
                return func()

        return guarded

    return wrap(outer_kind, name, wrap(inner_kind, inner_name, body))


def async_nesting(shape: str, system: Brama, name: str, inner_name: str,
                  body: Callable[[], Any]) -> Callable[[], Any]:
    outer_kind, inner_kind = shape.split("-in-")[::-1]

    def wrap(kind: str, connection: str, func: Callable[[], Any]) -> Callable[[], Any]:
        if kind == "decorator":

            @circuit_breaker(connection, system=system)
            async def decorated() -> Any:
                return await func()

            return decorated
        shared = guard(connection, system=system)

        async def guarded() -> Any:
            async with shared:
                return await func()

        return guarded

    return wrap(outer_kind, name, wrap(inner_kind, inner_name, body))


SHAPES = ["decorator-in-guard", "guard-in-decorator", "decorator-in-decorator",
          "guard-in-guard"]


def run_nested(mode: str, shape: str, system: Brama, body_fails: bool, name: str = "db",
               inner_name: str = "db") -> Any:
    error = ConnectionError("down")
    if mode == "sync":

        def body() -> str:
            if body_fails:
                raise error
            return "ok"

        call = sync_nesting(shape, system, name, inner_name, body)
        return call()

    async def async_body() -> str:
        await asyncio.sleep(0)
        if body_fails:
            raise error
        return "ok"

    return asyncio.run(async_nesting(shape, system, name, inner_name, async_body)())


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("shape", SHAPES)
def test_one_failing_call_counts_once(brama_system: Brama, mode: str, shape: str) -> None:
    brama_system.register("db", max_attempts=2)
    with pytest.raises(ConnectionError):
        run_nested(mode, shape, brama_system, body_fails=True)
    assert counts(brama_system) == (CLOSED, 0, 1, 0)
    assert run_nested(mode, shape, brama_system, body_fails=False) == "ok"
    assert counts(brama_system) == (CLOSED, 1, 1, 0)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("shape", SHAPES)
def test_in_half_open_the_inner_call_runs_under_the_outer_permit(
    brama_system: Brama, mode: str, shape: str
) -> None:
    half_open(brama_system)
    assert run_nested(mode, shape, brama_system, body_fails=False) == "ok"
    assert counts(brama_system) == (CLOSED, 1, 0, 0)  # never refused, closed by one trial
    brama_system.unregister("db")
    half_open(brama_system)
    with pytest.raises(ConnectionError):  # not CircuitOpenError
        run_nested(mode, shape, brama_system, body_fails=True)
    assert counts(brama_system) == (OPEN, 0, 1, 0)  # one trial failure, re-opened once


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("shape", SHAPES)
def test_different_connections_nested_each_count(
    brama_system: Brama, mode: str, shape: str
) -> None:
    brama_system.register("api", max_attempts=5)
    half_open(brama_system, "db")
    with pytest.raises(ConnectionError):
        run_nested(mode, shape, brama_system, body_fails=True, name="api", inner_name="db")
    assert counts(brama_system, "api") == (CLOSED, 0, 1, 0)
    assert counts(brama_system, "db") == (OPEN, 0, 1, 0)  # the inner took its own trial
    with pytest.raises(CircuitOpenError):  # db refuses; api counts the refusal as a failure
        run_nested(mode, shape, brama_system, body_fails=False, name="api", inner_name="db")
    assert counts(brama_system, "api") == (CLOSED, 0, 2, 0)
    assert counts(brama_system, "db") == (OPEN, 0, 1, 1)


def test_the_outermost_outcome_is_the_one_reported(brama_system: Brama) -> None:
    """An outer call that handles its inner call's failure succeeded, as far as the
    connection is concerned: one call, one success."""
    brama_system.register("db", max_attempts=1)

    @circuit_breaker("db", system=brama_system)
    def primary() -> str:
        raise ConnectionError("primary down")

    @circuit_breaker("db", system=brama_system)
    def with_retry() -> str:
        try:
            return primary()
        except ConnectionError:
            return "from the replica"

    assert with_retry() == "from the replica"
    assert counts(brama_system) == (CLOSED, 1, 0, 0)


def test_recursion_counts_once_and_the_next_call_is_a_call_again(brama_system: Brama) -> None:
    brama_system.register("db", max_attempts=3)

    @circuit_breaker("db", system=brama_system)
    def walk(depth: int) -> int:
        if depth == 0:
            raise ConnectionError("bottom")
        return walk(depth - 1)

    for expected in (1, 2):
        with pytest.raises(ConnectionError):
            walk(5)
        assert brama_system.status("db").total_failures == expected


def test_same_name_in_other_scopes_or_systems_is_another_connection(brama_system: Brama) -> None:
    brama_system.register("db", max_attempts=5)
    brama_system.register("db", scope="tenant", max_attempts=5)
    with Brama() as other:

        @circuit_breaker("db", system=other)
        def in_other_system() -> None:
            raise ConnectionError("down")

        @circuit_breaker("db", scope="tenant", system=brama_system)
        def in_scope() -> None:
            in_other_system()

        with pytest.raises(ConnectionError), guard("db", system=brama_system):
            in_scope()
        for status in (brama_system.status("db"), brama_system.status("db", scope="tenant"),
                       other.status("db")):
            assert status.total_failures == 1


# -- where "inside" ends --------------------------------------------------------------------


def test_tasks_spawned_inside_a_call_are_inside_it(brama_system: Brama) -> None:
    half_open(brama_system)

    @circuit_breaker("db", system=brama_system)
    async def query(n: int) -> int:
        await asyncio.sleep(0)
        return n

    @circuit_breaker("db", system=brama_system)
    def blocking_query(n: int) -> int:
        return n

    async def handler() -> list[int]:
        async with guard("db", system=brama_system):
            gathered = await asyncio.gather(query(1), query(2), asyncio.create_task(query(3)))
            waited = await asyncio.wait_for(query(4), WAIT)
            threaded = await asyncio.to_thread(blocking_query, 5)
            return [*gathered, waited, threaded]

    # five calls made from tasks and a worker thread inside the trial: none refused by the
    # trial's permit, none reported on its own; the trial's success closes the circuit
    assert asyncio.run(handler()) == [1, 2, 3, 4, 5]
    assert counts(brama_system) == (CLOSED, 1, 0, 0)


@pytest.mark.parametrize("kind", ["guard", "decorator"])
def test_a_task_that_outlives_the_call_is_inside_it_only_while_it_lasts(
    brama_system: Brama, kind: str
) -> None:
    """A background task spawned inside a call: its calls on the connection run under the
    call's permit while the call lasts; once the call ended they are calls of their own,
    counted, and refused by an open circuit."""
    brama_system.register("db", max_attempts=1)

    @circuit_breaker("db", system=brama_system)
    async def query() -> None:
        raise ConnectionError("down")

    async def main() -> list[str]:
        during, done_during, after = asyncio.Event(), asyncio.Event(), asyncio.Event()
        seen: list[str] = []

        async def background() -> None:
            for moment, done in ((during, done_during), (after, None)):
                await moment.wait()
                try:
                    await query()
                except (ConnectionError, CircuitOpenError) as exc:
                    seen.append(type(exc).__name__)
                if done is not None:
                    done.set()

        spawned: list[asyncio.Task[None]] = []

        async def call() -> None:
            spawned.append(asyncio.create_task(background()))
            during.set()
            await asyncio.wait_for(done_during.wait(), WAIT)

        if kind == "guard":
            async with guard("db", system=brama_system):
                await call()
        else:
            await circuit_breaker("db", system=brama_system)(call)()
        assert counts(brama_system) == (CLOSED, 1, 0, 0)  # the call; the task's was inside it
        after.set()
        await asyncio.wait_for(spawned[0], WAIT)
        return seen

    assert asyncio.run(main()) == ["ConnectionError", "ConnectionError"]
    assert counts(brama_system) == (OPEN, 1, 1, 0)  # counted once the call had ended


def test_a_thread_or_executor_started_inside_a_call_makes_calls_of_its_own(
    brama_system: Brama,
) -> None:
    half_open(brama_system)
    seen: list[Any] = []

    @circuit_breaker("db", system=brama_system)
    def query() -> str:
        return "ok"

    def in_thread() -> None:
        try:
            seen.append(query())
        except CircuitOpenError as exc:
            seen.append(type(exc).__name__)

    with guard("db", system=brama_system):
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join(WAIT)
    assert seen == ["CircuitOpenError"]  # a call of its own: the trial's permit is taken
    assert counts(brama_system) == (CLOSED, 1, 0, 1)

    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")

    async def executor() -> None:  # run_in_executor does not copy the context either
        async with guard("db", system=brama_system):
            await asyncio.get_running_loop().run_in_executor(None, in_thread)

    asyncio.run(executor())
    assert seen == ["CircuitOpenError"] * 2
    assert counts(brama_system) == (CLOSED, 2, 0, 2)


# -- the inner call keeps what is its own -----------------------------------------------------


def test_a_nested_call_keeps_its_own_timeout(brama_system: Brama) -> None:
    """Running under the outer permit does not drop the inner call's `timeout=`: it still
    raises TimeoutError, which the outer call then reports as its failure."""
    brama_system.register("db", max_attempts=5)

    @circuit_breaker("db", system=brama_system, timeout=0.05)
    async def query() -> None:
        await asyncio.Event().wait()

    async def decorated_in_guard() -> None:
        async with guard("db", system=brama_system):
            await asyncio.wait_for(query(), WAIT)  # WAIT bounds the test, 0.05 s must fire

    async def guard_in_guard() -> None:
        async with guard("db", system=brama_system), guard("db", system=brama_system,
                                                             timeout=0.05):
            await asyncio.wait_for(asyncio.Event().wait(), WAIT)

    for scenario in (decorated_in_guard, guard_in_guard):
        with pytest.raises(TimeoutError) as caught:
            asyncio.run(scenario())
        assert str(caught.value) == (
            "connection 'db': no answer within 0.05 s (the breaker's timeout)"), scenario
    assert counts(brama_system) == (CLOSED, 0, 2, 0)


def test_a_nested_fallback_is_not_needed_and_not_used(brama_system: Brama) -> None:
    """Never refused inside the outer call: the inner fallback does not run in half-open."""
    half_open(brama_system)

    @circuit_breaker("db", system=brama_system, fallback=lambda: "fallback")
    def query() -> str:
        return "live"

    with guard("db", system=brama_system):
        assert query() == "live"
    assert counts(brama_system) == (CLOSED, 1, 0, 0)


# -- guards around generators: exits out of order, or from another thread or task -----------


def rows(system: Brama, name: str, count: int) -> Iterator[int]:
    """A streaming query: the guard is held while the rows are consumed."""
    with guard(name, system=system):
        yield from range(count)


@pytest.mark.parametrize("second", ["api", "db"])
def test_interleaved_generators_leave_their_guards_out_of_order(
    brama_system: Brama, second: str
) -> None:
    """zip-like consumption: the first guard entered is left first. Found: RuntimeError
    "left without being entered in this context", and its permit held until the lease."""
    for name in {"db", second}:
        half_open(brama_system, name)
    first, other = rows(brama_system, "db", 1), rows(brama_system, second, 2)
    assert (next(first), next(other)) == (0, 0)
    assert list(first) == []  # ends first, while `other` is still inside its guard
    assert brama_system.status("db").state is CLOSED
    assert list(other) == [1]
    # with two connections each stream was a trial; on one, the second ran under the first
    assert counts(brama_system, second) == (CLOSED, 1, 0, 0)
    # nothing stale is left in this context: the next calls are calls of their own
    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")
    db_call = circuit_breaker("db", system=brama_system)(lambda: "not nested")
    assert db_call() == "not nested"  # a trial of its own, which closes the circuit
    assert counts(brama_system) == (CLOSED, 2, 0, 0)


def test_a_stream_ending_inside_a_decorated_call_leaves_nothing_stale(
    brama_system: Brama,
) -> None:
    brama_system.register("db", max_attempts=5)
    stream = rows(brama_system, "db", 1)
    next(stream)

    @circuit_breaker("api", system=brama_system)
    def finish_stream() -> None:
        assert list(stream) == []  # the db guard is left inside the api call

    finish_stream()

    @circuit_breaker("db", system=brama_system)
    def query() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        query()
    assert counts(brama_system) == (CLOSED, 1, 1, 0)  # the stream's success, the query's failure


def test_a_generator_closed_on_another_thread_returns_its_permit(brama_system: Brama) -> None:
    half_open(brama_system)
    stream = rows(brama_system, "db", 10)
    next(stream)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            stream.close()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=close)
    thread.start()
    thread.join(WAIT)
    assert errors == []
    assert counts(brama_system) == (HALF_OPEN, 0, 0, 0)  # GeneratorExit: released, not counted


def test_an_async_generator_closed_from_another_task_returns_its_permit(
    brama_system: Brama,
) -> None:
    half_open(brama_system)

    async def stream() -> AsyncIterator[int]:
        async with guard("db", system=brama_system):
            for n in range(10):
                yield n
                await asyncio.sleep(0)

    async def main() -> None:
        rows = stream()
        assert await rows.__anext__() == 0
        assert brama_system.status("db").half_open_permits_in_use == 1
        # closed the way the event loop's finalizer does it: in a task of another context
        await asyncio.wait_for(asyncio.create_task(rows.aclose(), context=contextvars.Context()),
                               WAIT)
        assert brama_system.status("db").half_open_permits_in_use == 0

    asyncio.run(main())
    assert counts(brama_system) == (HALF_OPEN, 0, 0, 0)


def test_a_guard_on_an_exit_stack(brama_system: Brama) -> None:
    brama_system.register("db", max_attempts=5)
    with contextlib.ExitStack() as stack:
        stack.enter_context(guard("db", system=brama_system))
        stack.enter_context(guard("db", system=brama_system))  # nested: under the first
    assert counts(brama_system) == (CLOSED, 1, 0, 0)
