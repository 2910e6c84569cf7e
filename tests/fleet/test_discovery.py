"""Discovery of a namespace's connections (`brama._fleet.discover`) on a real server: what
SCAN finds, what it must not take for a connection, and a backend that is down."""

from __future__ import annotations

import pytest

from brama._circuit import Circuit
from brama._fleet import (
    BackendUnavailable,
    FleetConfig,
    FleetState,
    discover,
    fleet_key,
    parse_state_key,
    state_key_pattern,
)
from tests.fleet.harness import free_port

AWKWARD = [(None, "pay"), ("billing", "payments"), ("a/b", "x{y}%z*?[]"), ("é", "ü :@")]


def test_every_connection_of_the_namespace_and_no_other(server, store, make_store,
                                                         make_config, namespace):
    for scope, identifier in AWKWARD:
        store.join(store.key(identifier, scope), FleetState(Circuit()))
    other = make_store(make_config(namespace=namespace + ":eu"))
    other.join(other.key("elsewhere"), FleetState(Circuit()))
    prefixed = make_store(make_config(namespace=namespace + "x"))
    prefixed.join(prefixed.key("elsewhere"), FleetState(Circuit()))
    admin = server.admin()
    admin.set(f"brama:{namespace}:{{not a connection}}:state", "1")
    admin.set(f"brama:{namespace}:unrelated", "1")
    store.add_counters(store.key("pay"), successes=1)  # counters keys are not listed twice

    expected = sorted(AWKWARD, key=lambda c: (c[0] or "", c[1]))
    assert discover(store.client, namespace) == expected
    assert discover(make_config(), count=1) == expected  # many short round trips
    assert discover(other.client, namespace + ":eu") == [(None, "elsewhere")]


def test_discovery_writes_nothing(server, store, namespace):
    key = store.key("pay")
    store.join(key, FleetState(Circuit()))
    admin = server.admin()
    admin.pexpire(key.state, 60_000)
    before = admin.hgetall(key.state), admin.pttl(key.state)
    assert discover(store.client, namespace) == [(None, "pay")]
    stored, ttl = admin.hgetall(key.state), admin.pttl(key.state)
    assert stored == before[0] and ttl <= before[1]


def test_an_empty_namespace(server, store, namespace):
    assert discover(store.client, namespace) == []


def test_a_dead_backend_is_backend_unavailable():
    config = FleetConfig.from_url(f"redis://127.0.0.1:{free_port()}/0", namespace="n",
                                  timeout=0.5)
    with pytest.raises(BackendUnavailable, match="discovering the connections of namespace"):
        discover(config)


def test_bad_arguments(store):
    with pytest.raises(ValueError, match="namespace is required"):
        discover(store.client)
    with pytest.raises(ValueError, match="count"):
        discover(store.client, "n", count=0)


@pytest.mark.parametrize("key", [
    "brama:n:{/pay}:counters", "brama:m:{/pay}:state", "brama:n:{pay}:state",
    "brama:n:{/}:state", "brama:n:{/a/b}:state", "brama:n:{/a%2fb}:state",
    "brama:n:{/%ff}:state", "brama:n:{/pay}:state:x", "other:n:{/pay}:state",
])
def test_keys_that_are_not_connections_of_the_namespace(key):
    assert parse_state_key(key, "n") is None


def test_parse_is_the_inverse_of_fleet_key():
    for scope, identifier in AWKWARD:
        key = fleet_key("n", identifier, scope).state
        assert parse_state_key(key, "n") == (scope, identifier)
        assert parse_state_key(key.encode(), "n") == (scope, identifier)
    assert state_key_pattern("shop") == "brama:shop:\\{*\\}:state"


def test_last_changes_name_the_writer_of_the_current_version(server, store, namespace):
    from brama._fleet import last_changes

    joined_only, changed, legacy = store.key("joined"), store.key("changed"), store.key("old")
    store.join(joined_only, FleetState(Circuit()))
    for key in (changed, legacy):
        snapshot = store.join(key, FleetState(Circuit()))
        result = store.transition(key, snapshot.version, snapshot.state)
        assert result.written
    admin = server.admin()
    admin.hincrby(legacy.state, "v", 1)  # a writer that does not record its origin
    clock = admin.time()
    changes = last_changes(store.client, namespace, [(None, "joined"), (None, "changed"),
                                                     (None, "old"), (None, "missing")])
    assert set(changes) == {(None, "changed")}
    change = changes[(None, "changed")]
    assert change.origin == store.origin
    assert change.version == int(admin.hget(changed.state, "v"))
    assert abs(change.at - (clock[0] + clock[1] / 1e6)) < 5.0
    assert last_changes(store.client, namespace, []) == {}
