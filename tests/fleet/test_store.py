"""FleetStore against a real server: join, compare-and-set, lost keys, TTLs, counters, scripts.

Each test plays several processes with several stores (each its own origin and pool) on one
key, stepping the real state machine the way the connection actor will.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.crc import key_slot

from brama._circuit import Acquire, Failure, Message, Step, Success, new_circuit, step
from brama._config import Settings
from brama._fleet import (
    BackendUnavailable,
    ContentionError,
    Counters,
    FleetConfig,
    FleetDataError,
    FleetState,
    FleetStore,
    Stepped,
)
from brama._fleet.codec import encode_state
from brama._messages import REFUSED
from brama._options import Options
from brama.types import CircuitState
from tests.fleet.harness import RedisServer
from tests.helpers import wait_until

OPTIONS = Settings(environ={}).resolve({"max_attempts": 3, "expiry": 30.0})


def stepper(store: FleetStore, message: Message,
            options: Options = OPTIONS) -> Callable[[FleetState], Stepped[Step]]:
    """The step function the connection actor will give `apply`: the state machine on
    server time, permits owned by this store's origin, expired permits dropped."""
    def run(shared: FleetState) -> Stepped[Step]:
        now = store.clock.now()
        shared = shared.drop_expired(now.mono)
        result = step(shared.circuit, options, message, now)
        return Stepped(shared.advance(result.circuit, store.origin), result.events, result)

    return run


def fresh(store: FleetStore, **overrides: Any) -> FleetState:
    return FleetState(new_circuit(store.clock.now(), overrides))


@pytest.fixture
def two(make_store: Callable[..., FleetStore], config: FleetConfig) -> tuple[FleetStore, ...]:
    """Two processes' stores on the same backend and namespace."""
    return make_store(config, origin="a/1/aa"), make_store(config, origin="b/2/bb")


def test_join_creates_once_and_never_resets(two: tuple[FleetStore, FleetStore]) -> None:
    a, b = two
    key = a.key("payments")
    first = a.join(key, fresh(a))
    assert first.created and first.version > 0
    opened = a.apply(key, first.version, first.state, stepper(a, Failure("x"), OPTIONS))
    for _ in range(2):
        opened = a.apply(key, opened.version, opened.state, stepper(a, Failure("x")))
    assert opened.state.circuit.state is CircuitState.OPEN
    newcomer = b.join(key, fresh(b))  # a new process: closed locally, joins an open fleet
    assert not newcomer.created
    assert (newcomer.version, newcomer.state.circuit) == (opened.version,
                                                           opened.state.circuit)
    assert a.read(key) is not None and a.read(key).state.circuit.state is CircuitState.OPEN


def test_compare_and_set_writes_the_next_version(store: FleetStore,
                                                  server: RedisServer) -> None:
    key = store.key("payments", scope="eu")
    joined = store.join(key, fresh(store))
    after = stepper(store, Failure("boom"))(joined.state)
    result = store.transition(key, joined.version, after.state, after.events)
    assert (result.written, result.created, result.version) == (True, False,
                                                                joined.version + 1)
    stored = server.admin().hgetall(key.state)
    assert int(stored[b"v"]) == joined.version + 1
    assert stored[b"s"].decode() == encode_state(after.state)


def test_a_mismatch_writes_nothing_and_returns_the_fleet_state(
        two: tuple[FleetStore, FleetStore], server: RedisServer) -> None:
    a, b = two
    key = a.key("payments")
    joined = a.join(key, fresh(a))
    mine = a.apply(key, joined.version, joined.state, stepper(a, Failure("a")))
    stale = stepper(b, Failure("b"))(joined.state)
    before = server.admin().hgetall(key.state)
    result = b.transition(key, joined.version, stale.state, stale.events)
    assert not result.written and result.version == mine.version
    assert result.state.circuit == mine.state.circuit
    assert server.admin().hgetall(key.state) == before


def test_apply_steps_again_on_the_fresh_state(two: tuple[FleetStore, FleetStore]) -> None:
    a, b = two
    key = a.key("payments")
    joined = a.join(key, fresh(a))
    a.apply(key, joined.version, joined.state, stepper(a, Failure("a")))
    late = b.apply(key, joined.version, joined.state, stepper(b, Failure("b")))
    assert late.written and late.attempts == 2
    assert late.version == joined.version + 2
    assert late.state.circuit.failure_count == 2  # both failures counted, none lost
    assert late.state.circuit.total_failures == 2


def test_apply_keeps_the_callers_local_options(two: tuple[FleetStore, FleetStore]) -> None:
    a, b = two
    key = a.key("payments")
    joined = a.join(key, fresh(a, max_attempts=9))
    a.apply(key, joined.version, joined.state, stepper(a, Failure("a")))
    mine = fresh(b, max_attempts=2)
    late = b.apply(key, joined.version, mine, stepper(b, Failure("b")))
    assert late.state.circuit.overrides == {"max_attempts": 2}


def test_a_step_that_changes_nothing_writes_nothing(store: FleetStore) -> None:
    key = store.key("payments")
    joined = store.join(key, fresh(store))
    applied = store.apply(key, joined.version, joined.state, stepper(store, Acquire()))
    assert not applied.written and applied.version == joined.version
    assert applied.result.reply != REFUSED


def test_apply_gives_up_after_its_attempts(two: tuple[FleetStore, FleetStore]) -> None:
    a, b = two
    key = a.key("payments")
    joined = a.join(key, fresh(a))
    latest = [joined.version, joined.state]

    def interfering(shared: FleetState) -> Stepped[Step]:
        # another process wins the race every time, between our read and our write
        won = b.apply(key, latest[0], latest[1], stepper(b, Failure("b")))
        latest[:] = [won.version, won.state]
        return stepper(a, Success())(shared)

    with pytest.raises(ContentionError) as info:
        a.apply(key, joined.version, joined.state, interfering, attempts=3)
    assert info.value.version == latest[0]
    assert info.value.state.circuit == latest[1].circuit
    assert isinstance(info.value, BackendUnavailable)
    with pytest.raises(ValueError, match="attempts=0"):
        a.apply(key, joined.version, joined.state, interfering, attempts=0)


@pytest.mark.parametrize("loss", ["flushall", "del", "expired"])
def test_a_lost_key_is_recreated_above_every_old_version(store: FleetStore,
                                                        server: RedisServer,
                                                        loss: str) -> None:
    key = store.key("payments")
    joined = store.join(key, fresh(store))
    one = store.apply(key, joined.version, joined.state, stepper(store, Failure("x")))
    admin = server.admin()
    if loss == "flushall":
        admin.flushall()
    elif loss == "del":
        admin.delete(key.state)
    else:
        admin.pexpire(key.state, 1)
        wait_until(lambda: not admin.exists(key.state), what="the TTL to expire the key")
    two = store.apply(key, one.version, one.state, stepper(store, Failure("y")))
    assert two.written and two.version > one.version
    assert two.state.circuit.failure_count == 2  # the caller's state, not a reset
    assert store.read(key) is not None and store.read(key).version == two.version


def test_transition_reports_the_recreation(store: FleetStore, server: RedisServer) -> None:
    key = store.key("payments")
    joined = store.join(key, fresh(store))
    server.flushall()
    result = store.transition(key, joined.version, joined.state)
    assert result.written and result.created and result.version > joined.version
    with pytest.raises(ValueError, match="expected_version=-1"):
        store.transition(key, -1, joined.state)


def test_ttls_are_set_and_refreshed_on_write(make_store: Callable[..., FleetStore],
                                             make_config: Callable[..., FleetConfig],
                                             server: RedisServer) -> None:
    store = make_store(make_config(ttl=100.0))
    key = store.key("payments")
    admin = server.admin()
    joined = store.join(key, fresh(store))
    store.add_counters(key, successes=1)
    for name in (key.state, key.counters):
        assert 90_000 < admin.pttl(name) <= 100_000
        admin.pexpire(name, 5_000)
    store.apply(key, joined.version, joined.state, stepper(store, Failure("x")))
    for name in (key.state, key.counters):
        assert 90_000 < admin.pttl(name) <= 100_000
        admin.pexpire(name, 5_000)
    store.add_counters(key, rejections=1)  # counting keeps the state alive too
    assert 90_000 < admin.pttl(key.state) <= 100_000
    admin.pexpire(key.state, 5_000)
    assert store.read(key) is not None  # a read changes nothing
    assert admin.pttl(key.state) <= 5_000
    admin.pexpire(key.counters, 5_000)
    assert store.add_counters(key).rejections == 1  # nor does reading the counters: watching
    assert store.add_counters_many([(key, 0, 0, None)])[0].rejections == 1  # is not using
    assert admin.pttl(key.state) <= 5_000 and admin.pttl(key.counters) <= 5_000


def test_every_key_has_its_connections_hash_tag(store: FleetStore,
                                                server: RedisServer) -> None:
    names = [("payments", None), ("payments", "eu"), ("we{ir}d/na%me", "x/y")]
    for identifier, scope in names:
        key = store.key(identifier, scope)
        joined = store.join(key, fresh(store))
        store.apply(key, joined.version, joined.state, stepper(store, Failure("x")))
        store.add_counters(key, successes=2)
        assert key_slot(key.state.encode()) == key_slot(key.counters.encode())
    keys = sorted(k.decode() for k in server.admin().scan_iter(match="brama:*"))
    assert len(keys) == 2 * len(names)
    for name in keys:
        assert name.count("{") == 1 and name.count("}") == 1, name
        assert name.startswith(f"brama:{store.config.namespace}:{{")
    slots = {key_slot(store.key(i, s).state.encode()) for i, s in names}
    assert len(slots) == len(names)  # connections spread over the cluster


def test_counters_are_added_in_batches(two: tuple[FleetStore, FleetStore]) -> None:
    a, b = two
    key = a.key("payments")
    assert a.counters(key) == (0, 0, 0, None)
    assert a.add_counters(key, successes=5, rejections=2) == (5, 0, 2, None)
    totals = b.add_counters(key, successes=3, failures=1)
    assert totals == (8, 1, 2, None)
    assert a.counters(key).plus(totals) == (16, 2, 4, None)
    assert b.add_counters(key) == totals  # nothing to add: a read
    # the latest success is a maximum, not a sum (a late flush never moves it back)
    assert a.add_counters(key, successes=1, last_success=1_800_000_000.5).last_success == (
        1_800_000_000.5)
    assert b.add_counters(key, last_success=1_700_000_000.25).last_success == 1_800_000_000.5
    assert b.add_counters(key, last_success=1_800_000_001.0).last_success == 1_800_000_001.0
    assert Counters(1, 0, 0, 5.0).plus(Counters(1, 0, 0, None)) == (2, 0, 0, 5.0)
    with pytest.raises(ValueError, match=r"successes=-1 must be a whole number >= 0"):
        a.add_counters(key, successes=-1)
    with pytest.raises(ValueError, match="rejections=True"):
        a.add_counters(key, rejections=True)


def test_counters_of_many_connections_in_one_round_trip(
        store: FleetStore, server: RedisServer) -> None:
    """`add_counters_many`: every connection's totals in one pipelined round trip (the
    server's socket reads barely move); after SCRIPT FLUSH only the refused calls are sent
    again (nothing counted twice); a connection the server refuses (WRONGTYPE) gets its
    error, the others their totals."""
    admin = server.admin()
    keys = [store.key(f"svc-{i}") for i in range(200)]
    store.add_counters(keys[0], successes=1)  # the script is known, the pool connected
    admin.script_flush()
    reads = int(admin.info("stats")["total_reads_processed"])
    results = store.add_counters_many([(key, 2, 1, 1_800_000_000.0) for key in keys])
    reads = int(admin.info("stats")["total_reads_processed"]) - reads
    assert results[0] == (3, 0, 1, 1_800_000_000.0)
    assert all(totals == (2, 0, 1, 1_800_000_000.0) for totals in results[1:]), results[:3]
    assert reads < 40, reads  # sequential calls would be 200 reads and more
    assert store.counters(keys[1]) == (2, 0, 1, 1_800_000_000.0)

    admin.set(keys[5].counters, "not a hash")
    results = store.add_counters_many([(key, 0, 0, None) for key in keys[:10]])
    assert isinstance(results[5], BackendUnavailable) and "WRONGTYPE" in str(results[5])
    assert [r.successes for i, r in enumerate(results) if i != 5] == [3] + [2] * 8
    assert store.available
    assert store.add_counters_many([]) == []


def test_scripts_are_loaded_again_after_the_cache_is_flushed(
        store: FleetStore, server: RedisServer) -> None:
    key = store.key("payments")
    joined = store.join(key, fresh(store))
    server.admin().script_flush()
    applied = store.apply(key, joined.version, joined.state, stepper(store, Failure("x")))
    assert applied.written
    server.admin().script_flush()
    assert store.add_counters(key, successes=1).successes == 1


def test_foreign_data_is_refused_without_marking_the_backend_down(
        store: FleetStore, server: RedisServer) -> None:
    key = store.key("payments")
    admin = server.admin()
    admin.set(key.state, "not a hash")
    with pytest.raises(BackendUnavailable, match="WRONGTYPE"):
        store.join(key, fresh(store))
    assert store.available
    admin.delete(key.state)
    admin.hset(key.state, mapping={"v": "7", "s": "{not json"})
    with pytest.raises(FleetDataError, match="not valid JSON"):
        store.join(key, fresh(store))
    admin.hset(key.state, mapping={"v": "7", "s": '{"format": 99}'})
    with pytest.raises(FleetDataError, match="newer Brama"):
        store.read(key)
    assert store.available


def test_half_open_permits_are_fleet_wide_and_come_back_from_the_dead(
        two: tuple[FleetStore, FleetStore]) -> None:
    """One trial permit for the fleet: a second process is refused; when the holder dies
    without reporting, its permit's deadline (server time) gives it back to the fleet."""
    a, b = two
    options = Settings(environ={}).resolve({"expiry": 1.0, "half_open_max_calls": 1})
    key = a.key("payments")
    now = a.clock.now()
    half = new_circuit(now).evolve(state=CircuitState.HALF_OPEN, current_expiry=0.2)
    joined = a.join(key, FleetState(half))
    got = a.apply(key, joined.version, joined.state, stepper(a, Acquire(), options))
    assert got.result.reply >= 0 and got.state.owned_by(a.origin) == (got.result.reply,)
    refused = b.apply(key, joined.version, joined.state, stepper(b, Acquire(), options))
    assert refused.result.reply == REFUSED and refused.attempts == 2
    deadline = got.state.circuit.permits[0][1]
    # a (the holder) died: nothing reports; wait for the server's clock to pass the deadline
    wait_until(lambda: b.sync_clock() > deadline, what="the permit deadline")
    again = b.apply(key, refused.version, refused.state, stepper(b, Acquire(), options))
    assert again.result.reply >= 0 and again.state.owned_by(b.origin) == (again.result.reply,)
    assert again.state.owned_by(a.origin) == ()
