"""brama.integrations.prometheus: every metric's value through a sequence of calls, the rates
of real rate policies on the fake clock (a sample only from minimum_calls on, none without a
policy, a rate-policy trip as an opening), series of unregistered connections gone at the next
scrape, the default system at scrape time, the optional dependency's import error, and the
cost of a scrape of 10,000 connections."""

from __future__ import annotations

import importlib
import sys
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import brama
import brama.integrations.prometheus as prometheus
from brama.integrations.prometheus import METRIC_NAMES, BramaCollector
from brama.testing import FakeClock, default_system

T0 = 1_000_000.0


@pytest.fixture
def system():
    with brama.Brama(clock=FakeClock(T0)) as system:
        yield system


@pytest.fixture
def registry(system):
    registry = CollectorRegistry()
    registry.register(BramaCollector(system))
    return registry


def sample(registry, name, connection, scope="", **labels):
    """The value of one series (None when the scrape does not have it)."""
    return registry.get_sample_value(name, {"connection": connection, "scope": scope, **labels})


def states(registry, connection, scope=""):
    return {state: sample(registry, "brama_circuit_state", connection, scope, state=state)
            for state in ("closed", "open", "half_open")}


def calls(registry, connection, scope=""):
    return {outcome: sample(registry, "brama_calls_total", connection, scope, outcome=outcome)
            for outcome in ("success", "failure", "rejected")}


def test_metric_names_and_types_are_fixed(registry, system):
    system.register("api")
    families = {family.name: family for family in registry.collect()}
    # prometheus_client keeps a counter's family name without `_total`; its samples have it.
    assert {f"{name}_total" if family.type == "counter" else name
            for name, family in families.items()} == set(METRIC_NAMES)
    assert {name: family.type for name, family in families.items()} == {
        "brama_circuit_state": "gauge",
        "brama_calls": "counter",
        "brama_circuit_openings": "counter",
        "brama_failure_count": "gauge",
        "brama_failure_rate": "gauge",
        "brama_slow_call_rate": "gauge",
    }
    text = generate_latest(registry).decode()
    assert 'brama_calls_total{connection="api",outcome="success",scope=""} 0.0' in text
    assert 'brama_circuit_state{connection="api",scope="",state="closed"} 1.0' in text


def test_every_metric_through_calls_rejections_and_reopenings(registry, system):
    clock = system.clock
    system.register("api", max_attempts=2, expiry=10)
    system.register("db", scope="shop")
    assert states(registry, "api") == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    assert calls(registry, "api") == {"success": 0.0, "failure": 0.0, "rejected": 0.0}
    assert sample(registry, "brama_circuit_openings_total", "api") == 0.0
    assert sample(registry, "brama_failure_count", "api") == 0.0

    for _ in range(3):
        system.success("api")
    system.failure("api", reason="timeout")
    assert calls(registry, "api") == {"success": 3.0, "failure": 1.0, "rejected": 0.0}
    assert sample(registry, "brama_failure_count", "api") == 1.0
    assert states(registry, "api")["closed"] == 1.0

    system.failure("api", reason="timeout")  # the second in a row opens the circuit
    assert states(registry, "api") == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
    assert sample(registry, "brama_circuit_openings_total", "api") == 1.0
    assert sample(registry, "brama_failure_count", "api") == 2.0
    assert system.available("api") is False
    assert system.available("api") is False
    assert calls(registry, "api") == {"success": 3.0, "failure": 2.0, "rejected": 2.0}

    clock.advance(10)  # expiry: half-open
    assert states(registry, "api") == {"closed": 0.0, "open": 0.0, "half_open": 1.0}
    assert system.available("api") is True  # the trial call
    system.failure("api", reason="still down")  # reopens
    assert states(registry, "api")["open"] == 1.0
    assert sample(registry, "brama_circuit_openings_total", "api") == 2.0

    clock.advance(20)  # the second opening lasts as long (fixed expiry)
    assert states(registry, "api")["half_open"] == 1.0
    assert system.available("api") is True
    system.success("api")  # closes
    assert states(registry, "api") == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    assert sample(registry, "brama_failure_count", "api") == 0.0
    assert calls(registry, "api") == {"success": 4.0, "failure": 3.0, "rejected": 2.0}

    system.open_circuit("api", reason="maintenance")  # manual openings count too
    assert sample(registry, "brama_circuit_openings_total", "api") == 3.0

    # The other connection, in a scope, was untouched throughout.
    assert states(registry, "db", "shop") == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    assert calls(registry, "db", "shop") == {"success": 0.0, "failure": 0.0, "rejected": 0.0}
    assert sample(registry, "brama_circuit_state", "db", state="closed") is None  # scope ""


def test_an_unregistered_connection_disappears_from_the_next_scrape(registry, system):
    system.register("api")
    system.register("db")
    system.failure("api")
    assert sample(registry, "brama_failure_count", "api") == 1.0
    system.unregister("api")
    text = generate_latest(registry).decode()
    assert 'connection="api"' not in text
    assert 'connection="db"' in text
    system.register("api")  # a new registration starts from zero
    assert sample(registry, "brama_failure_count", "api") == 0.0
    assert calls(registry, "api")["failure"] == 0.0


def report(system, connection, pattern, durations=None):
    """Report outcomes in order: "s" a success, "f" a failure, each with its duration if
    `durations` gives them (one per outcome)."""
    for outcome, duration in zip(pattern, durations or [None] * len(pattern), strict=True):
        if outcome == "s":
            system.success(connection, duration=duration)
        else:
            system.failure(connection, duration=duration, reason="x")


def rate_series(registry, name):
    """{connection: value} of every sample of the rate metric `name`."""
    [family] = [f for f in registry.collect() if f.name == name]
    return {s.labels["connection"]: s.value for s in family.samples}


def test_the_failure_rate_of_a_policy_from_minimum_calls_on(registry, system):
    system.register("api", failure_rate_threshold=0.5, minimum_calls=4)
    system.register("plain")  # no rate policy: no rate series, whatever its calls
    report(system, "api", "fss")
    report(system, "plain", "fsss")
    assert sample(registry, "brama_failure_rate", "api") is None  # 3 calls < minimum_calls
    report(system, "api", "s")
    assert sample(registry, "brama_failure_rate", "api") == 0.25  # 1 failure in 4 calls
    assert sample(registry, "brama_slow_call_rate", "api") is None  # no slow_call_duration
    assert rate_series(registry, "brama_failure_rate") == {"api": 0.25}
    assert rate_series(registry, "brama_slow_call_rate") == {}
    assert calls(registry, "plain") == {"success": 3.0, "failure": 1.0, "rejected": 0.0}


def test_a_rate_leaves_with_the_calls_of_a_time_window(registry, system):
    system.register("api", failure_rate_threshold=0.9, minimum_calls=4, window_type="time",
                    window_size=10)
    report(system, "api", "fsss")
    assert sample(registry, "brama_failure_rate", "api") == 0.25
    system.clock.advance(11)  # the four calls leave the window: below minimum_calls again
    assert sample(registry, "brama_failure_rate", "api") is None
    report(system, "api", "ffss")
    assert sample(registry, "brama_failure_rate", "api") == 0.5


def test_the_slow_call_rate_from_reported_durations(registry, system):
    system.register("api", slow_call_duration=1.0, minimum_calls=4)
    report(system, "api", "ssf", durations=[0.5, 1.0, 3.0])  # 1.0 is slow: at the duration
    assert sample(registry, "brama_slow_call_rate", "api") is None  # 3 calls < minimum_calls
    report(system, "api", "s", durations=[0.2])
    assert sample(registry, "brama_slow_call_rate", "api") == 0.5  # 2 slow in 4
    # slow_call_duration alone keeps a window, so the failure rate is known too (no
    # threshold: nothing trips).
    assert sample(registry, "brama_failure_rate", "api") == 0.25
    report(system, "api", "s")  # no duration reported: not slow
    assert sample(registry, "brama_slow_call_rate", "api") == 0.4
    assert states(registry, "api")["closed"] == 1.0


def test_a_rate_policy_trip_is_an_open_state_and_an_opening(registry, system):
    system.register("api", failure_rate_threshold=0.5, minimum_calls=4)
    report(system, "api", "fsssf")  # 2 failures in 5: 0.4
    assert states(registry, "api")["closed"] == 1.0
    assert sample(registry, "brama_circuit_openings_total", "api") == 0.0
    report(system, "api", "f")  # 3 in 6: 0.5 reaches the threshold
    assert states(registry, "api") == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
    assert sample(registry, "brama_circuit_openings_total", "api") == 1.0
    assert sample(registry, "brama_failure_rate", "api") == 0.5
    assert sample(registry, "brama_failure_count", "api") == 2.0  # max_attempts (10) did not
    text = generate_latest(registry).decode()
    assert 'brama_circuit_state{connection="api",scope="",state="open"} 1.0' in text
    assert 'brama_circuit_openings_total{connection="api",scope=""} 1.0' in text


def test_the_default_system_is_read_at_scrape_time():
    registry = CollectorRegistry()
    registry.register(BramaCollector())
    with brama.Brama(clock=FakeClock(T0)) as first, brama.Brama(clock=FakeClock(T0)) as second:
        first.register("one")
        second.register("two")
        with default_system(first):
            assert sample(registry, "brama_failure_count", "one") == 0.0
            assert sample(registry, "brama_failure_count", "two") is None
        with default_system(second):
            assert sample(registry, "brama_failure_count", "one") is None
            assert sample(registry, "brama_failure_count", "two") == 0.0


def test_registering_reads_nothing(monkeypatch):
    def fail(system):
        raise AssertionError("describe() must not read the connections")

    monkeypatch.setattr(prometheus, "statuses", fail)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(BramaCollector())  # describe(): names only, the default system untouched
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(BramaCollector())


def test_a_stopped_system_is_scraped_as_empty():
    system = brama.Brama(clock=FakeClock(T0))
    system.register("api")
    registry = CollectorRegistry()
    registry.register(BramaCollector(system))
    system.stop()
    families = list(registry.collect())
    assert len(families) == 6
    assert all(family.samples == [] for family in families)


def test_bad_system_is_a_type_error():
    with pytest.raises(TypeError, match=r"system must be a brama\.Brama or None.*str: 'x'"):
        BramaCollector("x")  # type: ignore[arg-type]


def test_missing_prometheus_client_names_the_extra(monkeypatch):
    for name in [name for name in sys.modules if name.partition(".")[0] == "prometheus_client"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: "not installed"
    monkeypatch.delitem(sys.modules, "brama.integrations.prometheus")
    with pytest.raises(ImportError, match=r"pip install 'brama\[prometheus\]'"):
        importlib.import_module("brama.integrations.prometheus")


def test_a_scrape_of_10000_connections(system):
    for n in range(10_000):
        system.register(f"conn-{n}", scope=None if n % 2 else "even", max_attempts=1)
    for n in range(0, 10_000, 100):
        system.failure(f"conn-{n}", scope="even")  # 100 open circuits
    collector = BramaCollector(system)
    registry = CollectorRegistry()
    registry.register(collector)
    start = time.perf_counter()
    families = list(collector.collect())
    collected = time.perf_counter() - start
    start = time.perf_counter()
    text = generate_latest(registry)  # what a Prometheus server gets: collect + text format
    scraped = time.perf_counter() - start
    print(f"\n10,000 connections: collect() {collected * 1000:.0f} ms, full text scrape "
          f"{scraped * 1000:.0f} ms ({len(text) / 1e6:.1f} MB, "
          f"{sum(len(f.samples) for f in families)} samples)")
    assert sum(len(f.samples) for f in families) == 80_000
    assert text.count(b'state="open"} 1.0') == 100
    assert scraped < 3.0, f"a scrape of 10,000 connections took {scraped:.2f} s"
