"""Faults never break a caller: Redis killed, hung (SIGSTOP) or flushed.

Every store call answers or raises `BackendUnavailable` within about the timeout; once the
store knows Redis is down, calls raise at once without I/O, one background probe per
process finds Redis again, and `on_unavailable` / `on_restored` fire once per change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from brama._circuit import Failure, new_circuit, step
from brama._config import Settings
from brama._fleet import BackendUnavailable, FleetConfig, FleetState, FleetStore, Stepped
from tests.fleet.harness import RedisServer
from tests.helpers import timed_call, wait_until

TIMEOUT = 0.1
SLACK = 0.4
"""What a loaded 2-core machine may add to a timeout before a call returns."""
OPTIONS = Settings(environ={}).resolve({})


class Watch:
    """Counts the availability callbacks."""

    def __init__(self) -> None:
        self.down: list[BaseException] = []
        self.up = 0

    def on_unavailable(self, error: BaseException) -> None:
        self.down.append(error)

    def on_restored(self) -> None:
        self.up += 1


@pytest.fixture
def fault_config(own_server: RedisServer, namespace: str) -> FleetConfig:
    return FleetConfig.from_url(own_server.url, namespace=namespace, timeout=TIMEOUT,
                                probe_min=0.02, probe_max=0.2)


@pytest.fixture
def watched(make_store: Callable[..., FleetStore],
            fault_config: FleetConfig) -> tuple[FleetStore, Watch]:
    watch = Watch()
    store = make_store(fault_config, on_unavailable=watch.on_unavailable,
                       on_restored=watch.on_restored)
    return store, watch


def fresh(store: FleetStore) -> FleetState:
    return FleetState(new_circuit(store.clock.now()))


def fail_step(store: FleetStore) -> Callable[[FleetState], Stepped[None]]:
    def run(shared: FleetState) -> Stepped[None]:
        result = step(shared.circuit, OPTIONS, Failure("x"), store.clock.now())
        return Stepped(shared.advance(result.circuit, store.origin), result.events, None)
    return run


def operations(store: FleetStore) -> dict[str, Callable[[], Any]]:
    key = store.key("payments")
    state = fresh(store)
    return {
        "join": lambda: store.join(key, state),
        "read": lambda: store.read(key),
        "transition": lambda: store.transition(key, 1, state),
        "apply": lambda: store.apply(key, 1, state, fail_step(store)),
        "add_counters": lambda: store.add_counters(key, successes=1),
        "counters": lambda: store.counters(key),
        "sync_clock": store.sync_clock,
    }


@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_every_operation_fails_within_the_timeout_then_at_once(
        watched: tuple[FleetStore, Watch], own_server: RedisServer, fault: str) -> None:
    store, watch = watched
    store.join(store.key("payments"), fresh(store))
    if fault == "killed":
        own_server.kill()
    else:
        own_server.pause()
    try:
        for name, operation in operations(store).items():
            outcome = timed_call(operation)
            assert isinstance(outcome.error, BackendUnavailable), (name, outcome)
            assert outcome.seconds < TIMEOUT + SLACK, (name, outcome)
        wait_until(lambda: watch.down, what="on_unavailable")
        fast = timed_call(lambda: store.counters(store.key("payments")))
        assert isinstance(fast.error, BackendUnavailable)
        assert "unavailable" in str(fast.error) and fast.seconds < 0.05
    finally:
        own_server.resume()
    assert len(watch.down) == 1 and watch.up == 0
    assert not store.available


@pytest.mark.parametrize("name", [
    "join", "read", "transition", "apply", "add_counters", "counters", "sync_clock"])
def test_each_operation_waits_at_most_the_timeout_on_a_hung_server(
        make_store: Callable[..., FleetStore], fault_config: FleetConfig,
        own_server: RedisServer, name: str) -> None:
    store = make_store(fault_config)
    store.sync_clock()  # connected, and believed available
    own_server.pause()
    try:
        outcome = timed_call(operations(store)[name])
    finally:
        own_server.resume()
    assert isinstance(outcome.error, BackendUnavailable), outcome
    assert "TimeoutError" in str(outcome.error)
    assert TIMEOUT * 0.9 <= outcome.seconds < TIMEOUT + SLACK, outcome


@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_availability_callbacks_fire_once_each_way(watched: tuple[FleetStore, Watch],
                                                    own_server: RedisServer,
                                                    fault: str) -> None:
    store, watch = watched
    key = store.key("payments")
    for cycle in (1, 2):
        store.join(key, fresh(store))
        if fault == "killed":
            own_server.kill()
        else:
            own_server.pause()
        try:
            for _ in range(5):
                with pytest.raises(BackendUnavailable):
                    store.join(key, fresh(store))
            wait_until(lambda cycle=cycle: len(watch.down) == cycle, what="on_unavailable")
        finally:
            if fault == "killed":
                own_server.restart()
            else:
                own_server.resume()
        wait_until(lambda cycle=cycle: watch.up == cycle, what="on_restored")
        assert store.available
        # a restarted server is empty: the key is recreated; a resumed one kept it
        assert store.join(key, fresh(store)).created is (fault == "killed")
    assert len(watch.down) == 2 and watch.up == 2
    assert store.availability.changes == 4


def test_no_reconnect_storm_while_down(watched: tuple[FleetStore, Watch],
                                       own_server: RedisServer) -> None:
    store, watch = watched
    key = store.key("payments")
    store.join(key, fresh(store))
    own_server.kill()
    with pytest.raises(BackendUnavailable):
        store.counters(key)
    calls = [0]
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                store.counters(key)
            except BackendUnavailable:
                calls[0] += 1

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    stop.wait(1.0)  # let them hammer for a second: that is the point of the test
    stop.set()
    for thread in threads:
        thread.join(5)
    assert calls[0] > 1000  # callers never waited on the dead backend
    # backoff 0.02 doubling to 0.2, ±20 %: at most about a dozen probes in a second
    assert 1 <= store.availability.probes <= 14
    own_server.restart()
    wait_until(lambda: watch.up == 1, what="on_restored")


def test_a_flushed_server_is_refilled_not_an_error(watched: tuple[FleetStore, Watch],
                                                    own_server: RedisServer) -> None:
    store, watch = watched
    key = store.key("payments")
    joined = store.join(key, fresh(store))
    store.add_counters(key, successes=3)
    own_server.flushall()
    assert store.read(key) is None
    assert store.counters(key) == (0, 0, 0, None)
    applied = store.apply(key, joined.version, joined.state, fail_step(store))
    assert applied.written and applied.version > joined.version
    own_server.admin().flushall()
    own_server.admin().script_flush()
    again = store.join(key, fresh(store))
    assert again.created
    assert store.add_counters(key, successes=1).successes == 1
    assert watch.down == [] and store.available


def test_failing_callbacks_do_not_stop_the_probe(make_store: Callable[..., FleetStore],
                                                 fault_config: FleetConfig,
                                                 own_server: RedisServer) -> None:
    restored = threading.Event()

    def explode(*args: object) -> None:
        raise RuntimeError("owner bug")

    store = make_store(fault_config, on_unavailable=explode,
                       on_restored=lambda: (restored.set(), explode()))
    own_server.kill()
    with pytest.raises(BackendUnavailable):
        store.counters(store.key("x"))
    own_server.restart()
    assert restored.wait(5)
    wait_until(lambda: store.available, what="the store to be available")
    assert store.counters(store.key("x")) == (0, 0, 0, None)


def test_close_never_hangs_on_a_hung_server(make_store: Callable[..., FleetStore],
                                            fault_config: FleetConfig,
                                            own_server: RedisServer) -> None:
    store = FleetStore(fault_config)
    store.sync_clock()
    own_server.pause()
    try:
        with pytest.raises(BackendUnavailable):
            store.sync_clock()
        outcome = timed_call(store.close)
        assert outcome.error is None and outcome.seconds < 1.0 + TIMEOUT + SLACK
    finally:
        own_server.resume()


def test_wrong_credentials_are_unavailable_not_a_crash(make_store: Callable[..., FleetStore],
                                                       redis_binary: str,
                                                       namespace: str) -> None:
    server = RedisServer(redis_binary, extra=["--requirepass", "right"],
                         password="right").start()
    try:
        wrong = FleetConfig.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0",
                                     namespace=namespace, timeout=1.0)
        store = make_store(wrong)
        outcome = timed_call(lambda: store.join(store.key("x"), fresh(store)))
        assert isinstance(outcome.error, BackendUnavailable)
        assert "AuthenticationError" in str(outcome.error)
        assert ":wrong@" not in str(outcome.error)  # the password is masked
    finally:
        server.destroy()
