"""Fleet configuration: the backend URL, the namespace, timeouts, and the redis-py client.

Every process with the same backend URL and namespace shares each connection's circuit.
`FleetConfig.from_url` validates everything at once (errors name the argument, the value and
the accepted range, never a password); `from_env` reads `BRAMA_BACKEND` and
`BRAMA_NAMESPACE`, which the system calls when it starts. redis-py is the optional extra
`brama[redis]`: it is imported only when a client is made, with a clear error if missing.

The client never retries on its own (a retry would multiply the caller's wait) and every
socket operation, connecting included, is bounded by the configured timeouts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from brama._fleet.errors import RedisMissingError
from brama._fleet.urls import OWNED_QUERY, check_namespace, check_url, mask_url
from brama.errors import ConfigError

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TTL",
    "ENV_BACKEND",
    "ENV_NAMESPACE",
    "FleetConfig",
    "check_url",
    "from_env",
    "mask_url",
    "require_redis",
]

DEFAULT_NAMESPACE: Final = "default"
DEFAULT_TIMEOUT: Final = 0.1
"""Seconds any one Redis operation (and a connect) may take before it counts as a failure."""
DEFAULT_TTL: Final = 7 * 24 * 3600.0
"""Seconds a connection's keys live after their last write: abandoned connections vanish."""
ENV_BACKEND: Final = "BRAMA_BACKEND"
ENV_NAMESPACE: Final = "BRAMA_NAMESPACE"
MAX_TIMEOUT: Final = 60.0
MAX_TTL: Final = 10 * 365 * 24 * 3600.0


def require_redis() -> ModuleType:
    """The `redis` package, or `RedisMissingError` naming the extra to install."""
    try:
        import redis
    except ImportError as exc:
        raise RedisMissingError(
            "Brama's fleet backend needs redis-py: install the extra with "
            "`pip install 'brama[redis]'` (or `pip install 'redis>=5'`)"
        ) from exc
    return redis


def _seconds(name: str, value: Any, low: float, high: float, *, open_low: bool = True) -> float:
    """A duration argument in its range, or ConfigError naming it, the value and the range."""
    bracket = "(" if open_low else "["
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"{name}={value!r} must be a number of seconds in {bracket}{low:g}, {high:g}]"
        )
    number = float(value)
    too_low = number <= low if open_low else number < low
    if not math.isfinite(number) or too_low or number > high:
        raise ConfigError(
            f"{name}={value!r} must be a number of seconds in {bracket}{low:g}, {high:g}]"
        )
    return number


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Where the fleet state lives and how long any Redis operation may take.

    Build it with `from_url` (validated); `client()` makes a redis-py client with these
    timeouts. `repr` and messages show the URL with its password masked.
    """

    url: str = field(repr=False)
    namespace: str = DEFAULT_NAMESPACE
    timeout: float = DEFAULT_TIMEOUT
    """Socket timeout of every operation, in seconds."""
    connect_timeout: float = DEFAULT_TIMEOUT
    ttl: float = DEFAULT_TTL
    """Seconds a connection's keys live after their last write."""
    probe_min: float = 0.05
    """First delay of the reconnection probe after a failure; it doubles up to `probe_max`."""
    probe_max: float = 5.0
    clock_refresh: float = 30.0
    """Seconds between server-clock samples when no script call refreshed it."""
    heartbeat: float = 1.0
    """Seconds between the bridge's PINGs on its subscription (finds a hung server)."""
    redis_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Extra keyword arguments for `redis.Redis.from_url` (e.g. `ssl_ca_certs`)."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        ttl: float = DEFAULT_TTL,
        probe_min: float = 0.05,
        probe_max: float = 5.0,
        clock_refresh: float = 30.0,
        heartbeat: float = 1.0,
        source: str = "url",
        **redis_options: Any,
    ) -> FleetConfig:
        """A validated configuration; ConfigError names the first bad argument.

        `url`: `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS; certificate
        options as query parameters or `redis_options`) or `unix:///path.sock?db=0`.
        `timeout` and `connect_timeout` (default: `timeout`) are in (0, 60] seconds; `ttl` in
        [1 s, 10 years]; `probe_min` <= `probe_max`, both in (0, 3600]; `clock_refresh` and
        `heartbeat` in (0, 3600]. `source` names the URL's origin in messages.
        """
        url = check_url(url, source)
        namespace = check_namespace(namespace)
        timeout = _seconds("timeout", timeout, 0.0, MAX_TIMEOUT)
        connect = timeout if connect_timeout is None else _seconds(
            "connect_timeout", connect_timeout, 0.0, MAX_TIMEOUT)
        ttl = _seconds("ttl", ttl, 1.0, MAX_TTL, open_low=False)
        probe_min = _seconds("probe_min", probe_min, 0.0, 3600.0)
        probe_max = _seconds("probe_max", probe_max, 0.0, 3600.0)
        if probe_max < probe_min:
            raise ConfigError(
                f"probe_max={probe_max!r} must be >= probe_min={probe_min!r}"
            )
        clock_refresh = _seconds("clock_refresh", clock_refresh, 0.0, 3600.0)
        heartbeat = _seconds("heartbeat", heartbeat, 0.0, 3600.0)
        for name in redis_options:
            if name in OWNED_QUERY or name == "retry":
                raise ConfigError(
                    f"redis option {name!r} is set by Brama; use the timeout / "
                    "connect_timeout arguments instead"
                )
        return cls(url, namespace, timeout, connect, ttl, probe_min, probe_max, clock_refresh,
                   heartbeat, MappingProxyType(dict(redis_options)))

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return mask_url(self.url)

    @property
    def tls(self) -> bool:
        """True for a rediss:// URL."""
        return self.url.startswith("rediss://")

    @property
    def username(self) -> str | None:
        """The ACL user named in the URL, if any."""
        return urlsplit(self.url).username

    def __repr__(self) -> str:
        return (f"FleetConfig({self.display_url!r}, namespace={self.namespace!r}, "
                f"timeout={self.timeout!r}, ttl={self.ttl!r})")

    def client(self) -> Redis:
        """A redis-py client: no retries, every socket operation bounded by the timeouts.

        RESP2 unless `redis_options` (or the URL) say otherwise: every command Brama sends
        answers the same in both, and RESP2 also works with servers older than Redis 6
        (redis-py 8 would open every connection with HELLO 3)."""
        redis = require_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options = {"protocol": 2, **self.redis_options}
        client: Redis = redis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            **options,
        )
        return client


def from_env(environ: Mapping[str, str] | None = None, **options: Any) -> FleetConfig | None:
    """The configuration named by `BRAMA_BACKEND` (and `BRAMA_NAMESPACE`), or None when
    `BRAMA_BACKEND` is unset or blank (fleet mode off). `options` are `from_url`'s other
    arguments. A bad value raises ConfigError naming the variable."""
    env = os.environ if environ is None else environ
    url = env.get(ENV_BACKEND, "").strip()
    if not url:
        return None
    namespace = env.get(ENV_NAMESPACE, "").strip() or DEFAULT_NAMESPACE
    check_namespace(namespace, f"environment variable {ENV_NAMESPACE}")
    return FleetConfig.from_url(url, namespace=namespace,
                                source=f"environment variable {ENV_BACKEND}", **options)
