"""Acceptance tests: configuration layers and their precedence, runtime configure, validation."""

from __future__ import annotations

import math

import pytest

import brama
from brama import BramaError, CircuitState, ConfigError, NotFoundError
from brama.testing import FakeClock
from tests.helpers import events_before_marker

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No BRAMA_* variable of the outer environment leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("BRAMA_"):
            monkeypatch.delenv(name)


def opens_after(system, identifier, limit=50):
    """How many failures it takes to open the circuit (the effective max_attempts)."""
    for n in range(1, limit + 1):
        system.failure(identifier)
        if system.status(identifier).state is OPEN:
            return n
    raise AssertionError(f"{identifier} did not open after {limit} failures")


def test_environment_variables_set_defaults(monkeypatch):
    monkeypatch.setenv("BRAMA_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("BRAMA_EXPIRY", "12.5")
    monkeypatch.setenv("BRAMA_EXPIRY_STRATEGY", "progressive")
    monkeypatch.setenv("BRAMA_HALF_OPEN_MAX_CALLS", "3")
    with brama.Brama(clock=FakeClock(0.0)) as system:
        status = system.register("db")
        assert status.max_attempts == 5
        assert status.expiry == 12.5
        assert status.initial_expiry == 12.5
        assert status.max_expiry == 125.0
        assert status.expiry_strategy == "progressive"
        assert status.half_open_max_calls == 3
        assert opens_after(system, "db") == 5


def test_bad_environment_variable_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.setenv("BRAMA_MAX_ATTEMPTS", "many")
    with pytest.raises(ConfigError, match="BRAMA_MAX_ATTEMPTS"):
        brama.Brama(clock=FakeClock(0.0))
    monkeypatch.setenv("BRAMA_MAX_ATTEMPTS", "0")
    with pytest.raises(ConfigError, match="BRAMA_MAX_ATTEMPTS"):
        brama.Brama(clock=FakeClock(0.0))


def test_precedence_per_connection_over_runtime_over_start_over_env_over_default(monkeypatch):
    monkeypatch.setenv("BRAMA_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("BRAMA_SUCCESS_THRESHOLD", "4")
    monkeypatch.setenv("BRAMA_HALF_OPEN_MAX_CALLS", "6")
    with brama.Brama(clock=FakeClock(0.0), max_attempts=7, success_threshold=3) as system:
        plain = system.register("plain")
        # default < env
        assert plain.backoff_factor == 2.0
        assert plain.half_open_max_calls == 6
        # env < start
        assert plain.max_attempts == 7
        assert plain.success_threshold == 3
        # start < runtime configure
        system.configure(max_attempts=8)
        assert system.status("plain").max_attempts == 8
        assert system.status("plain").success_threshold == 3
        # runtime configure < per connection
        own = system.register("own", max_attempts=9, half_open_max_calls=2)
        assert own.max_attempts == 9
        assert own.half_open_max_calls == 2
        assert own.success_threshold == 3
        assert opens_after(system, "plain") == 8
        assert opens_after(system, "own") == 9


def test_start_options_override_defaults():
    with brama.Brama(clock=FakeClock(0.0), expiry=30, max_attempts=2) as system:
        status = system.register("db")
        assert (status.expiry, status.initial_expiry, status.max_expiry) == (30.0, 30.0, 300.0)
        assert status.max_attempts == 2


def test_runtime_global_configure_affects_existing_connections_without_own_option(
    brama_system, brama_clock
):
    brama_system.register("inherits")
    brama_system.register("own", max_attempts=4, expiry=100)
    assert brama_system.configure(max_attempts=2, expiry=10) is None
    inherits = brama_system.status("inherits")
    own = brama_system.status("own")
    assert (inherits.max_attempts, inherits.expiry, inherits.max_expiry) == (2, 10.0, 100.0)
    assert (own.max_attempts, own.expiry) == (4, 100.0)
    # behaviour follows
    assert opens_after(brama_system, "inherits") == 2
    assert opens_after(brama_system, "own") == 4
    brama_clock.advance(10)
    assert brama_system.status("inherits").state is HALF_OPEN
    assert brama_system.status("own").state is OPEN
    brama_clock.advance(90)
    assert brama_system.status("own").state is HALF_OPEN
    # and the new defaults apply to connections registered afterwards
    assert brama_system.register("later").max_attempts == 2


def test_configure_one_connection(brama_system):
    brama_system.register("a")
    brama_system.register("b")
    brama_system.register("a", scope="s")
    assert brama_system.configure("a", max_attempts=2, success_threshold=3) is None
    assert brama_system.status("a").max_attempts == 2
    assert brama_system.status("a").success_threshold == 3
    assert brama_system.status("b").max_attempts == 10
    assert brama_system.status("a", scope="s").max_attempts == 10
    brama_system.configure("a", scope="s", max_attempts=4)
    assert brama_system.status("a", scope="s").max_attempts == 4
    assert brama_system.status("a").max_attempts == 2
    # a later global configure does not override what the connection set itself
    brama_system.configure(max_attempts=6, success_threshold=2)
    assert brama_system.status("a").max_attempts == 2
    assert brama_system.status("a").success_threshold == 3
    assert brama_system.status("b").max_attempts == 6
    assert opens_after(brama_system, "a") == 2


def test_configure_unknown_connection_raises_not_found(brama_system):
    brama_system.register("db", scope="s")
    with pytest.raises(NotFoundError):
        brama_system.configure("ghost", max_attempts=3)
    with pytest.raises(NotFoundError):
        brama_system.configure("db", max_attempts=3)
    assert brama_system.status("db", scope="s").max_attempts == 10


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"expiry": math.nan}, "expiry"),
        ({"expiry": -2}, "expiry"),
        ({"backoff_factor": 0.9}, "backoff_factor"),
        ({"expiry_strategy": "exponential"}, "expiry_strategy"),
        ({"cleanup_interval": 0}, "cleanup_interval"),
        ({"inactive_threshold": -1}, "inactive_threshold"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"unknown_thing": 1}, "unknown_thing"),
        ({"max_attempts": 3, "expiry": "soon"}, "expiry"),
    ],
)
def test_bad_global_configure_rejected_with_no_change(brama_system, options, named):
    brama_system.register("db")
    sub = brama_system.subscribe()
    before = brama_system.connections()
    with pytest.raises(ConfigError, match=named):
        brama_system.configure(**options)
    assert brama_system.connections() == before
    assert brama_system.register("fresh").max_attempts == 10
    assert brama_system.register("fresh2").expiry == 60.0
    assert [e.connection for e in events_before_marker(brama_system, sub)] == [
        "fresh", "fresh", "fresh2", "fresh2",
    ]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"success_threshold": False}, "success_threshold"),
        ({"expiry": math.inf}, "expiry"),
        ({"cleanup_interval": 5.0}, "cleanup_interval"),  # global only
        ({"max_attempts": 2, "bogus": 1}, "bogus"),
    ],
)
def test_bad_connection_configure_rejected_with_no_change(brama_system, options, named):
    brama_system.register("db")
    brama_system.failure("db")
    sub = brama_system.subscribe()
    before = brama_system.status("db")
    with pytest.raises(ConfigError, match=named):
        brama_system.configure("db", **options)
    assert brama_system.status("db") == before
    assert events_before_marker(brama_system, sub) == []
    assert opens_after(brama_system, "db") == 9  # one failure was already counted


def test_bad_start_options():
    with pytest.raises(ConfigError, match="max_attempts"):
        brama.Brama(clock=FakeClock(0.0), max_attempts=0)
    with pytest.raises(ConfigError, match="nonsense"):
        brama.Brama(clock=FakeClock(0.0), nonsense=1)
    with pytest.raises(ConfigError, match="clock"):
        brama.Brama(clock=object())
    with pytest.raises(ConfigError, match="expiry"):
        brama.Brama(clock=FakeClock(0.0), expiry=math.nan)


def test_clock_cannot_be_configured_at_runtime(brama_system):
    with pytest.raises(ConfigError, match="clock"):
        brama_system.configure(clock=FakeClock(0.0))


def test_errors_are_brama_errors():
    assert issubclass(ConfigError, BramaError)
    assert issubclass(ConfigError, ValueError)


def test_configure_expiry_strategy_globally_changes_next_opening(brama_system, brama_clock):
    brama_system.register("db", max_attempts=1)
    brama_system.configure(expiry_strategy="progressive", initial_expiry=2, max_expiry=7)
    assert brama_system.status("db").expiry == 2.0
    lengths = []
    brama_system.failure("db")
    for _ in range(4):
        length = brama_system.status("db").expiry
        lengths.append(length)
        brama_clock.advance(length)
        assert brama_system.available("db") is True
        brama_system.failure("db")
    assert lengths == [2.0, 4.0, 7.0, 7.0]


def test_runtime_cleanup_interval_applies_to_the_next_sweep(brama_clock):
    with brama.Brama(clock=brama_clock, cleanup_interval=1000, inactive_threshold=5) as system:
        system.register("idle")
        system.configure(cleanup_interval=1)
        brama_clock.advance(10)
        assert system.connections() == []


def test_runtime_inactive_threshold(brama_clock):
    with brama.Brama(clock=brama_clock, cleanup_interval=1, inactive_threshold=None) as system:
        system.register("idle")
        brama_clock.advance(100)
        assert [c.identifier for c in system.connections()] == ["idle"]
        system.configure(inactive_threshold=50)
        brama_clock.advance(1)
        assert system.connections() == []


def test_environment_inactive_threshold_none(monkeypatch, brama_clock):
    monkeypatch.setenv("BRAMA_INACTIVE_THRESHOLD", "none")
    monkeypatch.setenv("BRAMA_CLEANUP_INTERVAL", "60")
    with brama.Brama(clock=brama_clock) as system:
        system.register("db")
        brama_clock.advance(3 * 86400)
        assert [c.identifier for c in system.connections()] == ["db"]
