"""Tests of the shared value types and the error hierarchy."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from brama.errors import (
    AlreadyRegisteredError,
    BramaError,
    CircuitOpenError,
    ConfigError,
    NotFoundError,
)
from brama.types import CircuitState, ConnectionStatus, Event, EventType

STATUS_FIELDS = [
    "identifier",
    "scope",
    "type",
    "state",
    "failure_count",
    "max_attempts",
    "expiry",
    "expiry_strategy",
    "initial_expiry",
    "max_expiry",
    "backoff_factor",
    "half_open_max_calls",
    "success_threshold",
    "opened_at",
    "last_failure_time",
    "last_success_time",
    "last_state_change",
    "registered_at",
    "expiry_disabled",
    "metadata",
    "total_successes",
    "total_failures",
    "rejected_calls",
    "success_rate",
    # diagnosis (the ergonomics issue)
    "last_failure_reason",
    "half_open_permits_in_use",
    "open_until",
    "total_openings",
    # the rate policies
    "failure_rate",
    "slow_call_rate",
    "calls_in_window",
]


def make_status(**changes: Any) -> ConnectionStatus:
    values: dict[str, Any] = {
        "identifier": "db",
        "scope": None,
        "type": "general",
        "state": CircuitState.CLOSED,
        "failure_count": 0,
        "max_attempts": 10,
        "expiry": 60.0,
        "expiry_strategy": "fixed",
        "initial_expiry": 60.0,
        "max_expiry": 600.0,
        "backoff_factor": 2.0,
        "half_open_max_calls": 1,
        "success_threshold": 1,
        "opened_at": None,
        "last_failure_time": None,
        "last_success_time": None,
        "last_state_change": None,
        "registered_at": 1.0,
        "expiry_disabled": False,
        "metadata": {},
        "total_successes": 0,
        "total_failures": 0,
        "rejected_calls": 0,
        "success_rate": None,
    }
    values.update(changes)
    return ConnectionStatus(**values)


def test_circuit_state_values() -> None:
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]
    assert CircuitState.OPEN == "open"  # type: ignore[comparison-overlap]
    assert str(CircuitState.HALF_OPEN) == "half_open"
    assert f"{CircuitState.CLOSED}" == "closed"
    assert CircuitState("open") is CircuitState.OPEN


def test_event_type_values() -> None:
    expected = {
        "STATE_CHANGE": "state_change",
        "REGISTRATION": "registration",
        "FAILURE": "failure",
        "SUCCESS": "success",
        "EXPIRY": "expiry",
        "CLEANUP": "cleanup",
        "CIRCUIT_OPENED": "circuit_opened",
        "CIRCUIT_CLOSED": "circuit_closed",
        "CIRCUIT_RESET": "circuit_reset",
        "CONNECTION_REGISTERED": "connection_registered",
        "CONNECTION_UNREGISTERED": "connection_unregistered",
        "CIRCUIT_HALF_OPENED": "circuit_half_opened",
        "CONNECTION_REMOVED": "connection_removed",
        # the rate policies
        "FAILURE_RATE_EXCEEDED": "failure_rate_exceeded",
        "SLOW_CALL_RATE_EXCEEDED": "slow_call_rate_exceeded",
        # the fleet backend
        "BACKEND_UNAVAILABLE": "backend_unavailable",
        "BACKEND_RESTORED": "backend_restored",
    }
    assert {m.name: m.value for m in EventType} == expected
    assert EventType.SUCCESS == "success"  # type: ignore[comparison-overlap]


def test_coerce_accepts_members_and_strings() -> None:
    assert EventType.coerce("expiry") is EventType.EXPIRY
    assert EventType.coerce(EventType.CLEANUP) is EventType.CLEANUP
    assert CircuitState.coerce("half_open") is CircuitState.HALF_OPEN
    with pytest.raises(ConfigError, match="state_change"):
        EventType.coerce("nope")
    with pytest.raises(ConfigError, match="half_open"):
        CircuitState.coerce("ajar")


def test_connection_status_fields_are_exactly_the_contract() -> None:
    assert [f.name for f in dataclasses.fields(ConnectionStatus)] == STATUS_FIELDS


def test_connection_status_is_frozen_and_metadata_is_an_immutable_copy() -> None:
    meta = {"owner": "team-a"}
    status = make_status(metadata=meta)
    meta["owner"] = "changed"
    assert status.metadata == {"owner": "team-a"}
    with pytest.raises(TypeError):
        status.metadata["x"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.failure_count = 3  # type: ignore[misc]


def test_connection_status_available() -> None:
    assert make_status(state=CircuitState.CLOSED).available
    assert make_status(state=CircuitState.HALF_OPEN).available
    assert not make_status(state=CircuitState.OPEN).available


def test_event_coerces_type_and_freezes_data() -> None:
    data = {"a": 1}
    event = Event("state_change", 1.5, "db", None, data)  # type: ignore[arg-type]
    data["a"] = 2
    assert event.event is EventType.STATE_CHANGE
    assert event.data == {"a": 1}
    with pytest.raises(TypeError):
        event.data["b"] = 2  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.timestamp = 2.0  # type: ignore[misc]
    with pytest.raises(ConfigError):
        Event("bogus", 1.0, "db", None, {})  # type: ignore[arg-type]


def test_error_hierarchy() -> None:
    assert issubclass(BramaError, Exception)
    assert issubclass(NotFoundError, BramaError) and issubclass(NotFoundError, LookupError)
    assert issubclass(AlreadyRegisteredError, BramaError)
    assert issubclass(AlreadyRegisteredError, ValueError)
    assert issubclass(ConfigError, BramaError) and issubclass(ConfigError, ValueError)
    assert issubclass(CircuitOpenError, BramaError)


def test_circuit_open_error_message_and_status() -> None:
    status = make_status(identifier="payments", scope="eu", state=CircuitState.OPEN)
    error = CircuitOpenError(status)
    assert error.status is status
    assert "payments" in str(error) and "eu" in str(error) and "open" in str(error)
    assert str(CircuitOpenError(status, "custom")) == "custom"
    unscoped = CircuitOpenError(make_status(state=CircuitState.HALF_OPEN))
    assert "scope" not in str(unscoped) and "half_open" in str(unscoped)


def test_circuit_open_error_pickles() -> None:
    error = CircuitOpenError(make_status(state=CircuitState.OPEN, metadata={}), "msg")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "msg"
    assert copy.status.identifier == "db"
    assert copy.status.state is CircuitState.OPEN


def test_status_and_event_pickle() -> None:
    status = make_status(metadata={"k": [1, 2]})
    copy = pickle.loads(pickle.dumps(status))
    assert copy == status and copy.metadata == {"k": [1, 2]}
    event = Event(EventType.FAILURE, 2.0, "db", "s", {"reason": "x"})
    assert pickle.loads(pickle.dumps(event)) == event
