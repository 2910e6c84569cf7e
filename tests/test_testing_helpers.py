"""`brama.testing`: set_state, add_failures / simulate_failures, simulate_recovery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import brama
import brama.testing
from brama import Brama, CircuitState, ConfigError, EventType, NotFoundError
from brama.testing import (
    FakeClock,
    add_failures,
    set_state,
    simulate_failures,
    simulate_recovery,
)


@pytest.fixture
def default_system() -> Iterator[None]:
    brama.shutdown()
    yield
    brama.shutdown()


def test_exports() -> None:
    assert set(brama.testing.__all__) >= {
        "FakeClock", "add_failures", "crash_connection", "set_state",
        "simulate_failures", "simulate_recovery",
    }
    assert simulate_failures is add_failures


# --- set_state -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("open", CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.OPEN),
        ("half_open", CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.HALF_OPEN),
    ],
)
def test_set_state_from_closed(brama_system: Brama, state: Any,
                               expected: CircuitState) -> None:
    brama_system.register("db", scope="eu")
    set_state("db", state, scope="eu", system=brama_system)
    assert brama_system.status("db", scope="eu").state is expected


@pytest.mark.parametrize("state", ["closed", CircuitState.CLOSED])
def test_set_state_closed_clears_failures(brama_system: Brama, state: Any) -> None:
    brama_system.register("db", scope="eu")
    brama_system.failure("db", scope="eu")
    set_state("db", state, scope="eu", system=brama_system)
    status = brama_system.status("db", scope="eu")
    assert status.state is CircuitState.CLOSED
    assert status.failure_count == 0
    brama_system.open_circuit("db", scope="eu")
    set_state("db", state, scope="eu", system=brama_system)
    assert brama_system.status("db", scope="eu").state is CircuitState.CLOSED


def test_set_state_open_when_open_keeps_the_opening(
    brama_system: Brama, brama_clock: FakeClock
) -> None:
    brama_system.register("db", expiry=10.0)
    set_state("db", "open", system=brama_system)
    opened_at = brama_system.status("db").opened_at
    brama_clock.advance(4.0)
    set_state("db", "open", system=brama_system)
    assert brama_system.status("db").opened_at == opened_at
    brama_clock.advance(6.0)  # the original deadline still holds
    assert brama_system.status("db").state is CircuitState.HALF_OPEN


def test_set_state_half_open_from_open_and_the_trial_permit(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db", expires_in=100.0)
    set_state("db", "half_open", system=brama_system)
    assert brama_system.status("db").state is CircuitState.HALF_OPEN
    set_state("db", "half_open", system=brama_system)  # already half-open: unchanged
    assert brama_system.available("db") is True
    assert brama_system.available("db") is False


def test_set_state_emits_the_usual_events(brama_system: Brama) -> None:
    brama_system.register("db")
    with brama_system.subscribe(events=[EventType.CIRCUIT_OPENED],
                                connection="db") as sub:
        set_state("db", "open", system=brama_system)
        assert sub.get(timeout=10).event is EventType.CIRCUIT_OPENED


@pytest.mark.parametrize("state", ["opened", "OPEN", "", 1, None])
def test_set_state_rejects_bad_states(brama_system: Brama, state: Any) -> None:
    brama_system.register("db")
    with pytest.raises(ConfigError, match=r"state.*'closed'.*'open'.*'half_open'"):
        set_state("db", state, system=brama_system)
    assert issubclass(ConfigError, ValueError)
    assert brama_system.status("db").state is CircuitState.CLOSED


def test_set_state_unknown_connection(brama_system: Brama) -> None:
    with pytest.raises(NotFoundError):
        set_state("nope", "open", system=brama_system)
    brama_system.register("db")
    with pytest.raises(NotFoundError):
        set_state("db", "open", scope="eu", system=brama_system)


def test_system_must_be_a_brama() -> None:
    with pytest.raises(TypeError, match="system"):
        set_state("db", "open", system="default")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="system"):
        add_failures("db", 1, system=object())  # type: ignore[arg-type]


# --- add_failures / simulate_failures -----------------------------------------------------


def test_add_failures_counts_and_opens(brama_system: Brama) -> None:
    brama_system.register("db", scope="eu", max_attempts=5)
    add_failures("db", 3, scope="eu", system=brama_system)
    status = brama_system.status("db", scope="eu")
    assert (status.failure_count, status.total_failures) == (3, 3)
    assert status.state is CircuitState.CLOSED
    simulate_failures("db", 2, scope="eu", system=brama_system)
    status = brama_system.status("db", scope="eu")
    assert status.state is CircuitState.OPEN
    assert status.total_failures == 5


def test_add_failures_zero_is_a_no_op(brama_system: Brama) -> None:
    brama_system.register("db")
    add_failures("db", 0, system=brama_system)
    assert brama_system.status("db").total_failures == 0


def test_add_failures_reports_a_reason(brama_system: Brama) -> None:
    brama_system.register("db")
    with brama_system.subscribe(events=[EventType.FAILURE]) as sub:
        add_failures("db", 1, system=brama_system)
        event = sub.get(timeout=10)
    assert event.data["reason"] == "brama.testing.add_failures"


@pytest.mark.parametrize(
    ("count", "error"),
    [(True, TypeError), (1.5, TypeError), ("3", TypeError), (None, TypeError),
     (-1, ValueError)],
)
def test_add_failures_validates_count(brama_system: Brama, count: Any,
                                      error: type[Exception]) -> None:
    brama_system.register("db")
    with pytest.raises(error, match="count"):
        add_failures("db", count, system=brama_system)
    with pytest.raises(error, match="count"):
        simulate_failures("db", count, system=brama_system)
    assert brama_system.status("db").total_failures == 0


def test_add_failures_unknown_connection(brama_system: Brama) -> None:
    with pytest.raises(NotFoundError):
        add_failures("nope", 0, system=brama_system)


# --- simulate_recovery ---------------------------------------------------------------------


def test_simulate_recovery_from_open(brama_system: Brama) -> None:
    brama_system.register("db", scope="eu", success_threshold=3, max_attempts=1)
    add_failures("db", 1, scope="eu", system=brama_system)
    assert brama_system.status("db", scope="eu").state is CircuitState.OPEN
    with brama_system.subscribe(events=[EventType.STATE_CHANGE]) as sub:
        simulate_recovery("db", scope="eu", system=brama_system)
        changes = [sub.get(timeout=10).data["new_state"] for _ in range(2)]
    assert changes == [CircuitState.HALF_OPEN, CircuitState.CLOSED]
    status = brama_system.status("db", scope="eu")
    assert status.state is CircuitState.CLOSED
    assert status.failure_count == 0
    assert status.total_successes == 3


def test_simulate_recovery_from_disabled_expiry(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.open_circuit("db")
    brama_system.disable_expiry("db")
    simulate_recovery("db", system=brama_system)
    assert brama_system.status("db").state is CircuitState.CLOSED


def test_simulate_recovery_from_half_open(brama_system: Brama) -> None:
    brama_system.register("db", success_threshold=2)
    set_state("db", "half_open", system=brama_system)
    simulate_recovery("db", system=brama_system)
    status = brama_system.status("db")
    assert status.state is CircuitState.CLOSED
    assert status.total_successes == 2


def test_simulate_recovery_from_closed_clears_failures(brama_system: Brama) -> None:
    brama_system.register("db")
    add_failures("db", 4, system=brama_system)
    simulate_recovery("db", system=brama_system)
    status = brama_system.status("db")
    assert status.state is CircuitState.CLOSED
    assert status.failure_count == 0
    assert status.total_successes == 1


def test_simulate_recovery_unknown_connection(brama_system: Brama) -> None:
    with pytest.raises(NotFoundError):
        simulate_recovery("nope", system=brama_system)


# --- the default system --------------------------------------------------------------------


@pytest.mark.usefixtures("default_system")
def test_helpers_on_the_default_system() -> None:
    brama.register("svc", max_attempts=2)
    add_failures("svc", 2)
    assert brama.status("svc").state is CircuitState.OPEN
    simulate_recovery("svc")
    assert brama.status("svc").state is CircuitState.CLOSED
    set_state("svc", "half_open")
    assert brama.status("svc").state is CircuitState.HALF_OPEN
    set_state("svc", "closed")
    assert brama.status("svc").state is CircuitState.CLOSED
