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

`last_changes` reads, for connections found, who made the last change and when: the
transition script keeps the origin (`o`), the server time (`t`) and the version they belong
to (`ov`) next to the state (`HMGET`, one pipelined round trip for all of them; no writes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, NamedTuple

from brama._fleet.config import FleetConfig, require_redis
from brama._fleet.errors import BackendUnavailable, describe
from brama._fleet.keys import check_namespace, fleet_key, parse_state_key, state_key_pattern

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["DEFAULT_COUNT", "LastChange", "discover", "last_changes"]

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


class LastChange(NamedTuple):
    """The last transition of a connection's fleet state."""

    origin: str
    """The process that made it (`host/pid/random`)."""
    at: float
    """When, on the Redis server's clock (epoch seconds)."""
    version: int
    """The fleet state's version it produced (the current one)."""


def _text(value: object) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (
        value if isinstance(value, str) else None)


def last_changes(client: Redis, namespace: str,
                 connections: Iterable[tuple[str | None, str]]
                 ) -> dict[tuple[str | None, str], LastChange]:
    """Who made the current version of each connection's state, and when; connections whose
    state is gone, was only ever joined (no transition yet), or was last written by a Brama
    that does not record it are left out. Raises `BackendUnavailable` on a backend fault."""
    namespace = check_namespace(namespace)
    wanted = list(connections)
    if not wanted:
        return {}
    redis = require_redis()
    try:
        pipeline = client.pipeline(transaction=False)
        for scope, identifier in wanted:
            pipeline.hmget(fleet_key(namespace, identifier, scope).state, "v", "o", "t", "ov")
        replies = pipeline.execute()
    except (redis.RedisError, OSError) as exc:
        raise BackendUnavailable(
            f"reading the last changes of namespace {namespace!r} failed: {describe(exc)}"
        ) from exc
    changes: dict[tuple[str | None, str], LastChange] = {}
    for connection, (version, origin, at, origin_version) in zip(wanted, replies, strict=True):
        version_text, origin_text = _text(version), _text(origin)
        if not origin_text or version_text is None or version_text != _text(origin_version):
            continue
        try:
            changes[connection] = LastChange(origin_text, float(_text(at) or "nan"),
                                             int(version_text))
        except ValueError:
            continue
    return changes
