"""Prometheus metrics for Brama: a custom collector that reads the connections at scrape time.

    from prometheus_client import REGISTRY
    from brama.integrations.prometheus import BramaCollector

    REGISTRY.register(BramaCollector())        # the default system
    REGISTRY.register(BramaCollector(system))  # or a given one

Nothing is counted on the hot path: every scrape reads each connection's published snapshot
(`Brama.connections()`) and turns it into metric families, so a connection unregistered since
the last scrape simply is not there any more. The metric names and labels below are fixed:
dashboards and alerts depend on them (docs/observability.md lists them with their meaning).
Every series has the labels `connection` (the identifier) and `scope` ("" for none).

Needs the optional extra: `pip install 'brama[prometheus]'`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.samples import Sample
except ImportError as error:  # tests hide the module to check this message
    raise ImportError(
        "brama.integrations.prometheus needs prometheus-client: "
        "install the extra with  pip install 'brama[prometheus]'"
    ) from error

from brama.integrations import check_system, statuses
from brama.types import CircuitState

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    import brama

__all__ = ["METRIC_NAMES", "BramaCollector"]

METRIC_NAMES = (
    "brama_circuit_state",
    "brama_calls_total",
    "brama_circuit_openings_total",
    "brama_failure_count",
    "brama_failure_rate",
    "brama_slow_call_rate",
)
"""Every metric the collector exposes (counters with their `_total` suffix), in scrape order."""

_LABELS = ("connection", "scope")
_STATES = tuple(state.value for state in CircuitState)


class BramaCollector:
    """A `prometheus_client` collector of every connection of a Brama system.

    `system=None` reads the default system as it is at each scrape (so it follows
    `brama.shutdown()` and a restart); a stopped system yields the families with no samples.
    `describe()` names the families without reading anything, so registering the collector
    does not start the default system.
    """

    def __init__(self, system: brama.Brama | None = None) -> None:
        self._system = check_system(system)

    def __repr__(self) -> str:
        return f"<BramaCollector of {self._system or 'the default system'}>"

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (what the registry checks for name clashes)."""
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        """Read every connection's snapshot now and yield the six metric families."""
        families = _families()
        state, calls, openings, failures, failure_rate, slow_rate = (f.samples for f in families)
        # Samples are built directly (`add_metric` zips label names for every sample): a
        # scrape of 10,000 connections makes 80,000 of them.
        for status in statuses(self._system):
            connection, scope = status.identifier, status.scope or ""
            current = status.state.value
            for name in _STATES:
                state.append(Sample("brama_circuit_state", {
                    "connection": connection, "scope": scope, "state": name,
                }, 1.0 if name == current else 0.0))
            for outcome, value in (("success", status.total_successes),
                                   ("failure", status.total_failures),
                                   ("rejected", status.rejected_calls)):
                calls.append(Sample("brama_calls_total", {
                    "connection": connection, "scope": scope, "outcome": outcome,
                }, value))
            labels = {"connection": connection, "scope": scope}
            openings.append(Sample("brama_circuit_openings_total", labels, status.total_openings))
            failures.append(Sample("brama_failure_count", labels, status.failure_count))
            # A rate is None below the policy's minimum_calls or without the policy: no sample.
            if status.failure_rate is not None:
                failure_rate.append(Sample("brama_failure_rate", labels, status.failure_rate))
            if status.slow_call_rate is not None:
                slow_rate.append(Sample("brama_slow_call_rate", labels, status.slow_call_rate))
        return iter(families)


def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily,
                         GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    """Fresh, empty metric families (one set per scrape: collectors must not share samples)."""
    return (
        GaugeMetricFamily(
            "brama_circuit_state",
            "Circuit state of the connection: 1 for the current state, 0 for the others.",
            labels=(*_LABELS, "state"),
        ),
        CounterMetricFamily(
            "brama_calls_total",
            "Calls by outcome: reported successes and failures, and calls rejected by the "
            "breaker (open circuit, or no half-open permit left).",
            labels=(*_LABELS, "outcome"),
        ),
        CounterMetricFamily(
            "brama_circuit_openings_total",
            "How many times the circuit opened (manual openings included).",
            labels=_LABELS,
        ),
        GaugeMetricFamily(
            "brama_failure_count",
            "Consecutive failures now (the circuit opens at max_attempts).",
            labels=_LABELS,
        ),
        GaugeMetricFamily(
            "brama_failure_rate",
            "Share of failed calls in the failure-rate window (0 to 1); absent while the "
            "window holds too few calls or the policy is off.",
            labels=_LABELS,
        ),
        GaugeMetricFamily(
            "brama_slow_call_rate",
            "Share of slow calls in the window (0 to 1); absent while the window holds too "
            "few calls or the policy is off.",
            labels=_LABELS,
        ),
    )
