"""OpenTelemetry metrics for Brama: observable instruments read at collection time.

    from brama.integrations.opentelemetry import instrument

    instrumentation = instrument()                         # default system, global provider
    instrumentation = instrument(system, meter_provider)   # or given ones
    ...
    instrumentation.close()                                # stop reporting

Every instrument is asynchronous (observable): its callback reads the connections' published
snapshots when a metric reader collects, so nothing is added to the hot path. One collection
reads the snapshots once and its six instruments share that read.

| instrument | kind | unit | attributes |
|---|---|---|---|
| `brama.circuit.state` | gauge | `1` | `connection`, `scope`, `state` (1 current, 0 others) |
| `brama.calls` | counter | `{call}` | `connection`, `scope`, `outcome` (success/failure/rejected) |
| `brama.circuit.openings` | counter | `{opening}` | `connection`, `scope` |
| `brama.circuit.failure_count` | gauge | `{failure}` | `connection`, `scope` |
| `brama.circuit.failure_rate` | gauge | `1` | `connection`, `scope` (only while known) |
| `brama.circuit.slow_call_rate` | gauge | `1` | `connection`, `scope` (only while known) |

`scope` is "" for a connection without one (attribute values cannot be None). Units follow the
OpenTelemetry semantic conventions: `1` for dimensionless values (a ratio, or a 1/0 state as in
`hw.status`), `{annotation}` for counts of things.

Needs the optional extra: `pip install 'brama[opentelemetry]'`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError as error:  # tests hide the module to check this message
    raise ImportError(
        "brama.integrations.opentelemetry needs opentelemetry-api: "
        "install the extra with  pip install 'brama[opentelemetry]'"
    ) from error

from brama import __version__
from brama.integrations import check_system, statuses
from brama.types import CircuitState, ConnectionStatus

if TYPE_CHECKING:
    import brama

__all__ = ["INSTRUMENT_NAMES", "METER_NAME", "Instrumentation", "instrument"]

METER_NAME = "brama"
"""The name of the meter the instruments belong to (the instrumentation scope)."""

INSTRUMENT_NAMES = (
    "brama.circuit.state",
    "brama.calls",
    "brama.circuit.openings",
    "brama.circuit.failure_count",
    "brama.circuit.failure_rate",
    "brama.circuit.slow_call_rate",
)
"""Every instrument `instrument()` registers."""

_STATES = tuple(state.value for state in CircuitState)
_MAX_AGE = 1.0
"""Seconds a snapshot may be shared between the instruments of one collection."""
_Callback = Callable[[CallbackOptions], Iterable[Observation]]


class Instrumentation:
    """The instruments registered by `instrument()`; `close()` makes them stop reporting.

    The OpenTelemetry API cannot remove an instrument from its meter, so a closed
    instrumentation's callbacks observe nothing: the series stop at the next collection.
    Also a context manager.
    """

    def __init__(self, system: brama.Brama | None, meter: metrics.Meter) -> None:
        self._system = system
        self._closed = False
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._snapshot: list[ConnectionStatus] = []
        self._served: set[str] = set()
        self.instruments = (
            meter.create_observable_gauge(
                "brama.circuit.state", [self._callback("brama.circuit.state", _state)],
                unit="1",
                description="Circuit state of the connection: 1 for the current state "
                "(attribute state), 0 for the others.",
            ),
            meter.create_observable_counter(
                "brama.calls", [self._callback("brama.calls", _calls)], unit="{call}",
                description="Calls by outcome: reported successes and failures, and calls "
                "rejected by the breaker.",
            ),
            meter.create_observable_counter(
                "brama.circuit.openings",
                [self._callback("brama.circuit.openings", _openings)], unit="{opening}",
                description="How many times the circuit opened (manual openings included).",
            ),
            meter.create_observable_gauge(
                "brama.circuit.failure_count",
                [self._callback("brama.circuit.failure_count", _failure_count)],
                unit="{failure}",
                description="Consecutive failures now (the circuit opens at max_attempts).",
            ),
            meter.create_observable_gauge(
                "brama.circuit.failure_rate",
                [self._callback("brama.circuit.failure_rate", _failure_rate)],
                unit="1",
                description="Share of failed calls in the failure-rate window (0 to 1); "
                "not observed while the window holds too few calls or the policy is off.",
            ),
            meter.create_observable_gauge(
                "brama.circuit.slow_call_rate",
                [self._callback("brama.circuit.slow_call_rate", _slow_call_rate)],
                unit="1",
                description="Share of slow calls in the window (0 to 1); not observed while "
                "the window holds too few calls or the policy is off.",
            ),
        )
        """The instrument objects, in the order of `INSTRUMENT_NAMES`."""

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    def close(self) -> None:
        """Stop reporting: from the next collection on, no instrument observes anything."""
        with self._lock:
            self._closed = True
            self._snapshot = []

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "reporting"
        return f"<Instrumentation {state} of {self._system or 'the default system'}>"

    def _callback(self, name: str,
                  observe: Callable[[list[ConnectionStatus]], list[Observation]]) -> _Callback:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            snapshot = self._statuses(name)
            return observe(snapshot) if snapshot else []

        return callback

    def _statuses(self, name: str) -> list[ConnectionStatus]:
        """The connections for instrument `name`, read once per collection.

        A collection calls each instrument's callback once, so the snapshot is read again
        when an instrument asks a second time (a new collection has begun) and otherwise
        shared by the instruments of the collection. A snapshot older than `_MAX_AGE` is
        never shared, which bounds how stale a reading can be even if a collection was cut
        short (an SDK time-out) and some instrument missed it.
        """
        with self._lock:
            if self._closed:
                return []
            now = time.monotonic()
            if name in self._served or now - self._read_at > _MAX_AGE:
                self._snapshot = statuses(self._system)
                self._read_at = now
                self._served = set()
            self._served.add(name)
            return self._snapshot


def instrument(system: brama.Brama | None = None,
               meter_provider: metrics.MeterProvider | None = None) -> Instrumentation:
    """Register Brama's observable instruments with `meter_provider` (None: the global one).

    `system=None` reads the default system as it is at each collection. Returns the
    `Instrumentation`; `close()` it to stop reporting.
    """
    system = check_system(system)
    if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
        raise TypeError(
            "meter_provider must be an opentelemetry.metrics.MeterProvider or None (the "
            f"global one), got {type(meter_provider).__name__}: {meter_provider!r}"
        )
    meter = metrics.get_meter(METER_NAME, __version__, meter_provider=meter_provider)
    return Instrumentation(system, meter)


def _attributes(status: ConnectionStatus) -> dict[str, str]:
    return {"connection": status.identifier, "scope": status.scope or ""}


def _state(snapshot: list[ConnectionStatus]) -> list[Observation]:
    observations: list[Observation] = []
    for status in snapshot:
        current = status.state.value
        for name in _STATES:
            observations.append(Observation(
                1 if name == current else 0, {**_attributes(status), "state": name},
            ))
    return observations


def _calls(snapshot: list[ConnectionStatus]) -> list[Observation]:
    observations: list[Observation] = []
    for status in snapshot:
        attributes = _attributes(status)
        observations += (
            Observation(status.total_successes, {**attributes, "outcome": "success"}),
            Observation(status.total_failures, {**attributes, "outcome": "failure"}),
            Observation(status.rejected_calls, {**attributes, "outcome": "rejected"}),
        )
    return observations


def _openings(snapshot: list[ConnectionStatus]) -> list[Observation]:
    return [Observation(status.total_openings, _attributes(status)) for status in snapshot]


def _failure_count(snapshot: list[ConnectionStatus]) -> list[Observation]:
    return [Observation(status.failure_count, _attributes(status)) for status in snapshot]


def _failure_rate(snapshot: list[ConnectionStatus]) -> list[Observation]:
    """Only the connections whose failure rate is known (None: below minimum_calls, or no
    rate policy)."""
    return [Observation(status.failure_rate, _attributes(status)) for status in snapshot
            if status.failure_rate is not None]


def _slow_call_rate(snapshot: list[ConnectionStatus]) -> list[Observation]:
    """Only the connections whose slow-call rate is known (None: below minimum_calls, or no
    slow_call_duration)."""
    return [Observation(status.slow_call_rate, _attributes(status)) for status in snapshot
            if status.slow_call_rate is not None]
