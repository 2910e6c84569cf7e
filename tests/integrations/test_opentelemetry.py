"""brama.integrations.opentelemetry with the SDK's InMemoryMetricReader: the instruments
(names, kinds, units, descriptions), their values through a sequence of calls, one snapshot
read per collection, the rates of real rate policies on the fake clock (observed only from
minimum_calls on, never without a policy), closing, the default system, and bad arguments."""

from __future__ import annotations

import importlib
import sys

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

import brama
import brama.integrations.opentelemetry as otel
from brama.integrations.opentelemetry import INSTRUMENT_NAMES, instrument
from brama.testing import FakeClock, default_system

T0 = 1_000_000.0


@pytest.fixture
def system():
    with brama.Brama(clock=FakeClock(T0)) as system:
        yield system


@pytest.fixture
def meter():
    """(meter provider, its in-memory reader); the provider is shut down after the test."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def collect(reader):
    """{instrument name: metric} of one collection (empty when nothing was observed)."""
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics if scope.scope.name == "brama"
            for metric in scope.metrics}


def points(metric):
    """{frozen attributes: value} of a metric's data points."""
    return {frozenset(point.attributes.items()): point.value for point in metric.data.data_points}


def value(metrics, name, connection, scope="", **attributes):
    key = frozenset({"connection": connection, "scope": scope, **attributes}.items())
    return points(metrics[name]).get(key) if name in metrics else None


@pytest.fixture
def instrumented(system, meter):
    provider, reader = meter
    instrumentation = instrument(system, provider)
    yield instrumentation, reader
    instrumentation.close()


def test_instruments_names_kinds_units_and_descriptions(instrumented, system):
    _, reader = instrumented
    system.register("api")
    metrics = collect(reader)
    # No connection has a rate policy, so the rate instruments observe nothing and an
    # instrument without observations is not exported.
    assert set(metrics) == set(INSTRUMENT_NAMES) - {
        "brama.circuit.failure_rate", "brama.circuit.slow_call_rate"}
    kinds = {name: type(metric.data) for name, metric in metrics.items()}
    assert kinds == {
        "brama.circuit.state": Gauge,
        "brama.calls": Sum,
        "brama.circuit.openings": Sum,
        "brama.circuit.failure_count": Gauge,
    }
    assert metrics["brama.calls"].data.is_monotonic
    assert metrics["brama.circuit.openings"].data.is_monotonic
    units = {name: metric.unit for name, metric in metrics.items()}
    assert units == {
        "brama.circuit.state": "1",
        "brama.calls": "{call}",
        "brama.circuit.openings": "{opening}",
        "brama.circuit.failure_count": "{failure}",
    }
    assert all(metric.description for metric in metrics.values())


def test_values_through_calls_rejections_and_reopenings(instrumented, system):
    _, reader = instrumented
    clock = system.clock
    system.register("api", max_attempts=2, expiry=10)
    system.register("db", scope="shop")

    def state(connection, scope=""):
        metrics = collect(reader)
        return {s: value(metrics, "brama.circuit.state", connection, scope, state=s)
                for s in ("closed", "open", "half_open")}

    def calls(connection, scope=""):
        metrics = collect(reader)
        return {o: value(metrics, "brama.calls", connection, scope, outcome=o)
                for o in ("success", "failure", "rejected")}

    def single(name, connection="api", scope=""):
        return value(collect(reader), name, connection, scope)

    assert state("api") == {"closed": 1, "open": 0, "half_open": 0}
    assert state("db", "shop") == {"closed": 1, "open": 0, "half_open": 0}
    system.success("api")
    system.failure("api")
    assert calls("api") == {"success": 1, "failure": 1, "rejected": 0}
    assert single("brama.circuit.failure_count") == 1
    system.failure("api")  # opens
    assert state("api") == {"closed": 0, "open": 1, "half_open": 0}
    assert single("brama.circuit.openings") == 1
    assert system.available("api") is False
    assert calls("api")["rejected"] == 1
    clock.advance(10)
    assert state("api")["half_open"] == 1
    assert system.available("api") is True
    system.failure("api")  # reopens
    assert single("brama.circuit.openings") == 2
    assert single("brama.circuit.failure_count") == 3
    clock.advance(10)
    assert system.available("api") is True
    system.success("api")  # closes
    assert state("api") == {"closed": 1, "open": 0, "half_open": 0}
    assert single("brama.circuit.failure_count") == 0
    assert calls("api") == {"success": 2, "failure": 3, "rejected": 1}
    assert calls("db", "shop") == {"success": 0, "failure": 0, "rejected": 0}


def test_an_unregistered_connection_is_not_observed_again(instrumented, system):
    _, reader = instrumented
    system.register("api")
    system.register("db")
    assert value(collect(reader), "brama.circuit.failure_count", "api") == 0
    system.unregister("api")
    metrics = collect(reader)
    assert value(metrics, "brama.circuit.failure_count", "api") is None
    assert value(metrics, "brama.circuit.failure_count", "db") == 0


def test_one_snapshot_read_per_collection(instrumented, system, monkeypatch):
    _, reader = instrumented
    system.register("api")
    reads = []
    real = otel.statuses

    def counted(target):
        reads.append(target)
        return real(target)

    monkeypatch.setattr(otel, "statuses", counted)
    collect(reader)
    assert reads == [system]  # six instruments, one read
    system.failure("api")
    assert value(collect(reader), "brama.circuit.failure_count", "api") == 1  # a fresh read
    assert len(reads) == 2


def report(system, connection, pattern, durations=None, scope=None):
    """Report outcomes in order: "s" a success, "f" a failure, each with its duration if
    `durations` gives them (one per outcome)."""
    for outcome, duration in zip(pattern, durations or [None] * len(pattern), strict=True):
        if outcome == "s":
            system.success(connection, scope=scope, duration=duration)
        else:
            system.failure(connection, scope=scope, duration=duration, reason="x")


def test_the_failure_rate_of_a_policy_from_minimum_calls_on(instrumented, system):
    _, reader = instrumented
    system.register("api", failure_rate_threshold=0.5, minimum_calls=4)
    system.register("plain")  # no rate policy: never observed, whatever its calls
    report(system, "api", "fss")
    report(system, "plain", "fsss")
    metrics = collect(reader)  # 3 calls < minimum_calls: no rate anywhere, not exported
    assert "brama.circuit.failure_rate" not in metrics
    assert value(metrics, "brama.calls", "plain", outcome="failure") == 1
    report(system, "api", "s")
    metrics = collect(reader)
    rate = metrics["brama.circuit.failure_rate"]
    assert points(rate) == {frozenset({"connection": "api", "scope": ""}.items()): 0.25}
    assert (type(rate.data), rate.unit) == (Gauge, "1")
    assert "brama.circuit.slow_call_rate" not in metrics  # no slow_call_duration
    report(system, "api", "f")  # 2 of 5; the next collection observes the new rate
    assert value(collect(reader), "brama.circuit.failure_rate", "api") == 0.4


def test_the_slow_call_rate_from_reported_durations(instrumented, system):
    _, reader = instrumented
    system.register("api", slow_call_duration=1.0, minimum_calls=4, scope="shop")
    system.register("plain")
    report(system, "api", "ssf", [0.5, 1.0, 3.0], scope="shop")  # 1.0 is slow: at the duration
    report(system, "plain", "ssss", [5.0] * 4)  # slow, but no policy measures it
    assert "brama.circuit.slow_call_rate" not in collect(reader)
    report(system, "api", "s", [0.2], scope="shop")
    metrics = collect(reader)
    slow = metrics["brama.circuit.slow_call_rate"]
    assert points(slow) == {frozenset({"connection": "api", "scope": "shop"}.items()): 0.5}
    assert (type(slow.data), slow.unit) == (Gauge, "1")
    assert points(metrics["brama.circuit.failure_rate"]) == {
        frozenset({"connection": "api", "scope": "shop"}.items()): 0.25}


def test_a_rate_leaves_with_the_calls_of_a_time_window(instrumented, system):
    _, reader = instrumented
    system.register("api", failure_rate_threshold=0.9, minimum_calls=4, window_type="time",
                    window_size=10)
    report(system, "api", "fsss")
    assert value(collect(reader), "brama.circuit.failure_rate", "api") == 0.25
    system.clock.advance(11)  # the calls leave the window: below minimum_calls again
    assert "brama.circuit.failure_rate" not in collect(reader)


def test_a_rate_policy_trip_is_an_open_state_and_an_opening(instrumented, system):
    _, reader = instrumented
    system.register("api", failure_rate_threshold=0.5, minimum_calls=4)
    report(system, "api", "fsssff")  # 3 failures in 6: 0.5 reaches the threshold
    metrics = collect(reader)
    assert {s: value(metrics, "brama.circuit.state", "api", state=s)
            for s in ("closed", "open", "half_open")} == {"closed": 0, "open": 1, "half_open": 0}
    assert value(metrics, "brama.circuit.openings", "api") == 1
    assert value(metrics, "brama.circuit.failure_rate", "api") == 0.5
    assert value(metrics, "brama.circuit.failure_count", "api") == 2


def test_closing_stops_reporting(instrumented, system):
    instrumentation, reader = instrumented
    system.register("api")
    assert collect(reader)
    assert not instrumentation.closed
    instrumentation.close()
    instrumentation.close()  # idempotent
    assert instrumentation.closed
    assert collect(reader) == {}


def test_context_manager_closes(system, meter):
    provider, reader = meter
    system.register("api")
    with instrument(system, provider) as instrumentation:
        assert collect(reader)
    assert instrumentation.closed
    assert collect(reader) == {}


def test_the_default_system_is_read_at_collection_time(meter):
    provider, reader = meter
    with brama.Brama(clock=FakeClock(T0)) as first, brama.Brama(clock=FakeClock(T0)) as second:
        first.register("one")
        second.register("two")
        with instrument(meter_provider=provider):
            with default_system(first):
                metrics = collect(reader)
                assert value(metrics, "brama.circuit.failure_count", "one") == 0
                assert value(metrics, "brama.circuit.failure_count", "two") is None
            with default_system(second):
                metrics = collect(reader)
                assert value(metrics, "brama.circuit.failure_count", "one") is None
                assert value(metrics, "brama.circuit.failure_count", "two") == 0


def test_a_stopped_system_observes_nothing(meter):
    provider, reader = meter
    system = brama.Brama(clock=FakeClock(T0))
    system.register("api")
    with instrument(system, provider):
        system.stop()
        assert collect(reader) == {}


def test_bad_arguments_are_type_errors(system):
    with pytest.raises(TypeError, match=r"system must be a brama\.Brama or None.*int: 3"):
        instrument(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"meter_provider must be an opentelemetry\.metrics"
                                        r"\.MeterProvider or None.*str: 'global'"):
        instrument(system, "global")  # type: ignore[arg-type]


def test_missing_opentelemetry_names_the_extra(monkeypatch):
    for name in [name for name in sys.modules if name.partition(".")[0] == "opentelemetry"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: "not installed"
    monkeypatch.delitem(sys.modules, "brama.integrations.opentelemetry")
    with pytest.raises(ImportError, match=r"pip install 'brama\[opentelemetry\]'"):
        importlib.import_module("brama.integrations.opentelemetry")
