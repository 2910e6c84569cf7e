"""The reference model against a fleet: two systems on one backend share every circuit.

`FleetModel` is `tests.reliability.test_model.BramaModel` with two `Brama` systems on the
same Redis namespace and one `FakeClock` (given to both: the fleet then steps on that clock,
not the server's, so the run is deterministic). Operations are spread over the two systems
in turn; after every step `brama.testing.sync_fleet` flushes the fast counters, waits until
each system heard every transition, and the whole observable state of every connection, and
the STATE_CHANGE events each system's subscribers received, are compared from BOTH systems
with the one `Reference`. A fleet that added up counts wrongly, half-opened twice, handed out
too many permits, lost or duplicated a relayed event, or let one system diverge fails here.

What is per process stays per process and is done on both, as a deployment would: options
(`register`, `configure`, `set_expiry`) and registrations. Unregistering is followed by the
connection's keys expiring (deleted here, as the TTL would): the fleet keeps a connection's
state across registrations (a joining process never resets it, see test_fleet_brama.py),
the reference starts a re-registered connection afresh.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from brama import Brama, EventType
from brama._fleet import fleet_key
from brama.testing import FakeClock, sync_fleet
from tests.fleet.harness import RedisServer
from tests.reliability.test_model import (
    KEYS,
    MODEL_SETTINGS,
    NEVER,
    START_TIME,
    BramaModel,
    Reference,
    keys,
    start_options,
)
from tests.reliability.test_model_policies import PolicyBramaModel

_examples = itertools.count()


class _Both:
    """Calls a method on every system in turn (what is per process is done on each)."""

    def __init__(self, systems: list[Brama]) -> None:
        self.systems = systems

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = getattr(self.systems[0], name)(*args, **kwargs)
            for other in self.systems[1:]:
                getattr(other, name)(*args, **kwargs)
            return result

        return call


class FleetModel(BramaModel):
    """Random operations spread over a fleet of two systems, checked against `Reference`."""

    url = ""  # the server's URL, set by the test

    def __init__(self) -> None:
        self.systems: list[Brama] = []
        self.turn = 0
        self.fixed: Any = None
        super().__init__()

    @property  # type: ignore[override]
    def system(self) -> Any:
        if not self.systems:
            return None
        if self.fixed is not None:
            return self.fixed
        self.turn += 1
        return self.systems[self.turn % len(self.systems)]

    @system.setter
    def system(self, value: Any) -> None:
        if value is None:
            self.systems = []

    @contextlib.contextmanager
    def on_both(self) -> Iterator[None]:
        self.fixed = _Both(self.systems)
        try:
            yield
        finally:
            self.fixed = None

    @initialize(start=start_options, data=st.data())
    def start(self, start: dict[str, Any], data: st.DataObject) -> None:
        self.clock = FakeClock(START_TIME)
        self.namespace = f"model{next(_examples)}"
        options = dict(start, inactive_threshold=86_400.0, cleanup_interval=10.0,
                       hibernate_after=NEVER)
        self.systems = [
            Brama(clock=self.clock, backend=self.url, namespace=self.namespace,
                  backend_timeout=2.0, **options)
            for _ in range(2)
        ]
        self.model = Reference(start, START_TIME)
        self.held = []
        self.subscriptions = [s.subscribe(events=[EventType.STATE_CHANGE]) for s in self.systems]
        for key in KEYS:
            self.register(key, data)

    def teardown(self) -> None:
        for system in self.systems:
            system.stop()

    # per process: done on both systems

    @rule(key=keys, options=st.data())
    def register(self, key: tuple[str | None, str], options: st.DataObject) -> None:
        with self.on_both():
            BramaModel.register(self, key, options)

    @precondition(lambda self: bool(self.systems) and len(self.model.conns) == len(KEYS))
    @rule(key=keys)
    def unregister(self, key: tuple[str | None, str]) -> None:
        with self.on_both():
            BramaModel.unregister(self, key)
        fleet = fleet_key(self.namespace, key[1], key[0])
        with redis.Redis.from_url(self.url) as client:  # the TTL runs out
            client.delete(fleet.state, fleet.counters)

    @rule(key=keys, value=st.integers(1, 10).map(float))
    def set_expiry(self, key: tuple[str | None, str], value: float) -> None:
        with self.on_both():
            BramaModel.set_expiry(self, key, value)

    @rule(key=keys, options=st.data())
    def configure_connection(self, key: tuple[str | None, str], options: st.DataObject) -> None:
        with self.on_both():
            BramaModel.configure_connection(self, key, options)

    @rule(data=st.data())
    def configure_global(self, data: st.DataObject) -> None:
        with self.on_both():
            BramaModel.configure_global(self, data)

    # the check: the same view from both systems

    @invariant()
    def matches_model(self) -> None:
        if not self.systems:
            return
        sync_fleet(*self.systems)
        changes = list(self.model.changes)
        for system, subscription in zip(self.systems, self.subscriptions, strict=True):
            self.model.changes[:] = changes
            self.fixed, self.changes = system, subscription
            try:
                BramaModel.matches_model(self)
            finally:
                self.fixed = None


class PolicyFleetModel(FleetModel):
    """The same fleet with the rate policies on: the shared window adds up both systems."""

    connection_options = PolicyBramaModel.connection_options
    configure_options = PolicyBramaModel.configure_options
    durations = PolicyBramaModel.durations


@pytest.fixture
def fleet_url(server: RedisServer) -> str:
    return server.url


@pytest.mark.timeout(300)
def test_a_fleet_of_two_matches_the_reference_model(fleet_url: str) -> None:
    FleetModel.url = fleet_url
    started = time.monotonic()
    run_state_machine_as_test(FleetModel, settings=settings(MODEL_SETTINGS, max_examples=40))
    print(f"fleet model: 40 examples in {time.monotonic() - started:.1f} s")


@pytest.mark.timeout(300)
def test_a_fleet_of_two_matches_the_reference_model_with_rate_policies(fleet_url: str) -> None:
    PolicyFleetModel.url = fleet_url
    started = time.monotonic()
    run_state_machine_as_test(PolicyFleetModel,
                              settings=settings(MODEL_SETTINGS, max_examples=25))
    print(f"fleet policy model: 25 examples in {time.monotonic() - started:.1f} s")
