"""Discovery: which connections a namespace's fleet has in Redis, found without knowing them.

The fleet has no registry of its connections: each is its two keys (see `keys`), created
when a process first registers it and removed by their TTL once nobody uses it. `discover`
lists them by walking the key space with `SCAN ... MATCH brama:<ns>:\\{*\\}:state` (cursor
based: it never blocks the server the way `KEYS` would, whatever the key count; `count` is a
hint of keys looked at per round trip) and decoding each key with `keys.parse_state_key`,
so a key of another namespace, or one Brama did not make, is never taken for a connection.

It reads names only: it writes nothing, refreshes no TTL and needs only the `SCAN` command.
SCAN's guarantee is what discovery offers: a key present for the whole walk is listed
(possibly twice: duplicates are dropped); one created or removed during it may or may not be.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

from brama._fleet.config import FleetConfig, require_redis
from brama._fleet.errors import BackendUnavailable, describe
from brama._fleet.keys import check_namespace, parse_state_key, state_key_pattern

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["DEFAULT_COUNT", "discover"]

DEFAULT_COUNT: Final = 1000
"""Keys the server looks at per SCAN round trip (a hint; each round trip stays short)."""


def discover(source: Redis | FleetConfig, namespace: str | None = None, *,
             count: int = DEFAULT_COUNT) -> list[tuple[str | None, str]]:
    """Every connection `(scope, identifier)` with a fleet state in `namespace`, sorted (no
    scope first). `source` is a redis-py client, or a `FleetConfig` (its client is made and
    closed here; `namespace` defaults to the config's). Raises `BackendUnavailable` on any
    backend fault, with the reason; `ValueError` / `ConfigError` for a bad argument."""
    if isinstance(source, FleetConfig):
        namespace = source.namespace if namespace is None else namespace
    if namespace is None:
        raise ValueError("namespace is required with a redis client (a FleetConfig has one)")
    namespace = check_namespace(namespace)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
        raise ValueError(f"count={count!r} must be a whole number from 1 to 100000")
    redis = require_redis()
    client = source.client() if isinstance(source, FleetConfig) else source
    found: set[tuple[str | None, str]] = set()
    try:
        for key in client.scan_iter(match=state_key_pattern(namespace), count=count):
            connection = parse_state_key(key, namespace)
            if connection is not None:
                found.add(connection)
    except (redis.RedisError, OSError) as exc:
        where = (source.display_url if isinstance(source, FleetConfig) else "the fleet backend")
        raise BackendUnavailable(
            f"discovering the connections of namespace {namespace!r} on {where} failed: "
            f"{describe(exc)}") from exc
    finally:
        if isinstance(source, FleetConfig):
            with contextlib.suppress(Exception):  # closing a broken pool must not raise
                client.close()
    return sorted(found, key=lambda connection: (connection[0] or "", connection[1]))
