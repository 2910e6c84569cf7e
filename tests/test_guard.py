"""`guard`: the circuit breaker as a context manager, `with` and `async with`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import brama
from brama import Brama, CircuitOpenError, CircuitState, EventType, Guard, NotFoundError, guard


@pytest.fixture
def default_system() -> Iterator[None]:
    brama.shutdown()
    yield
    brama.shutdown()


def test_with_success_registers_and_counts(brama_system: Brama) -> None:
    with pytest.raises(NotFoundError):
        brama_system.status("db")
    with guard("db", system=brama_system) as entered:
        assert isinstance(entered, Guard)
        assert brama_system.status("db").state is CircuitState.CLOSED
    status = brama_system.status("db")
    assert status.total_successes == 1
    assert status.max_attempts == 10


def test_with_exception_is_reported_and_propagated(brama_system: Brama) -> None:
    error = ConnectionError("refused")
    with brama_system.subscribe(events=[EventType.FAILURE]) as sub:
        with pytest.raises(ConnectionError) as info, guard("db", system=brama_system):
            raise error
        event = sub.get(timeout=10)
    assert info.value is error
    assert event.data["reason"] == repr(error)
    status = brama_system.status("db")
    assert status.total_failures == 1
    assert status.failure_count == 1


def test_open_raises_on_entry_and_skips_the_block(brama_system: Brama) -> None:
    brama_system.register("db", scope="eu")
    brama_system.open_circuit("db", scope="eu")
    ran = []
    with pytest.raises(CircuitOpenError) as info, guard("db", scope="eu", system=brama_system):
        ran.append(1)
    assert ran == []
    assert info.value.status.state is CircuitState.OPEN
    assert info.value.status.scope == "eu"
    status = brama_system.status("db", scope="eu")
    assert status.rejected_calls == 1
    assert status.total_failures == 0  # the refusal is not reported as a failure


def test_failures_through_the_guard_open_the_circuit(brama_system: Brama) -> None:
    brama_system.register("db", max_attempts=2)
    for _ in range(2):
        with pytest.raises(OSError), guard("db", system=brama_system):
            raise OSError
    assert brama_system.status("db").state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError), guard("db", system=brama_system):
        pass


def test_base_exceptions_are_not_reported(brama_system: Brama) -> None:
    for exc_type in (KeyboardInterrupt, SystemExit):
        with pytest.raises(exc_type), guard("db", system=brama_system):
            raise exc_type()
    status = brama_system.status("db")
    assert status.total_failures == 0
    assert status.total_successes == 0


def test_one_guard_object_can_be_reused(brama_system: Brama) -> None:
    shared = guard("db", system=brama_system)
    for _ in range(3):
        with shared:
            pass
    with pytest.raises(ValueError), shared:
        raise ValueError
    status = brama_system.status("db")
    assert (status.total_successes, status.total_failures) == (3, 1)


def test_half_open_entry_takes_a_permit_and_a_nested_entry_runs_under_it(
    brama_system: Brama,
) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db")
    brama_system.reset_expiry("db")
    with guard("db", system=brama_system):
        assert brama_system.status("db").half_open_permits_in_use == 1
        # a second call from elsewhere finds the only permit taken...
        assert not brama_system.available("db")
        # ...while a nested entry of this call runs under its permit, refused nothing
        with guard("db", system=brama_system):
            pass
    status = brama_system.status("db")
    assert status.state is CircuitState.CLOSED
    assert status.rejected_calls == 1
    assert status.total_successes == 1


def test_reregisters_after_unregister(brama_system: Brama) -> None:
    with guard("db", system=brama_system):
        pass
    brama_system.unregister("db")
    with guard("db", system=brama_system):
        pass
    assert brama_system.status("db").total_successes == 1


def test_async_with(brama_system: Brama) -> None:
    brama_system.register("db", max_attempts=1)

    async def main() -> None:
        async with guard("db", system=brama_system):
            await asyncio.sleep(0)
        assert brama_system.status("db").total_successes == 1
        with pytest.raises(TimeoutError):
            async with guard("db", system=brama_system):
                raise TimeoutError("slow")
        assert brama_system.status("db").state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            async with guard("db", system=brama_system):
                raise AssertionError("must not run")

    asyncio.run(main())
    status = brama_system.status("db")
    assert (status.total_successes, status.total_failures, status.rejected_calls) == (1, 1, 1)


def test_async_cancellation_is_not_reported(brama_system: Brama) -> None:
    async def worker() -> None:
        async with guard("db", system=brama_system):
            await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.ensure_future(worker())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    status = brama_system.status("db")
    assert (status.total_successes, status.total_failures) == (0, 0)


@pytest.mark.parametrize(
    ("identifier", "scope", "system", "error", "name"),
    [
        (1, None, None, TypeError, "identifier"),
        ("", None, None, ValueError, "identifier"),
        ("db", "", None, ValueError, "scope"),
        ("db", None, "nope", TypeError, "system"),
    ],
)
def test_bad_arguments(identifier: object, scope: object, system: object,
                       error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        guard(identifier, scope=scope, system=system)  # type: ignore[arg-type]


@pytest.mark.usefixtures("default_system")
def test_default_system() -> None:
    with brama.guard("svc"):
        pass
    assert brama.status("svc").total_successes == 1
    brama.shutdown()
    with brama.guard("svc"):
        pass
    assert brama.status("svc").total_successes == 1
