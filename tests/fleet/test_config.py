"""FleetConfig: URL parsing and validation, environment variables, the key layout, the extra."""

from __future__ import annotations

import sys

import pytest

from brama._fleet import (
    FleetConfig,
    RedisMissingError,
    changes_channel,
    fleet_key,
    from_env,
    process_origin,
)
from brama._fleet.config import mask_url
from brama.errors import ConfigError


def test_from_url_defaults() -> None:
    config = FleetConfig.from_url("redis://cache.internal:6380/2")
    assert config.namespace == "default"
    assert config.timeout == 0.1
    assert config.connect_timeout == 0.1
    assert config.ttl == 7 * 24 * 3600
    assert not config.tls
    assert config.username is None


def test_client_gets_the_url_and_the_timeouts() -> None:
    config = FleetConfig.from_url("redis://bob:p%40ss@cache:6390/3", timeout=0.25,
                                  connect_timeout=0.5, client_name="web")
    kwargs = config.client().connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache", 6390, 3)
    assert (kwargs["username"], kwargs["password"]) == ("bob", "p@ss")
    assert kwargs["socket_timeout"] == 0.25
    assert kwargs["socket_connect_timeout"] == 0.5
    assert kwargs["client_name"] == "web"
    assert kwargs["retry"].get_retries() == 0


def test_rediss_and_unix_urls() -> None:
    tls = FleetConfig.from_url("rediss://default:secret@cache:6379/0?ssl_cert_reqs=none")
    assert tls.tls
    pool = tls.client().connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    unix = FleetConfig.from_url("unix:///run/redis.sock?db=1")
    assert unix.client().connection_pool.connection_kwargs["path"] == "/run/redis.sock"


def test_password_never_shown() -> None:
    config = FleetConfig.from_url("redis://alice:hunter2@cache:6379/0")
    assert "hunter2" not in repr(config)
    assert config.display_url == "redis://alice:***@cache:6379/0"
    assert mask_url("redis://cache:6379") == "redis://cache:6379"
    with pytest.raises(ConfigError) as info:
        FleetConfig.from_url("http://alice:hunter2@cache")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "url=''"),
        (42, "url=42"),
        ("http://cache:6379", "scheme 'http'"),
        ("redis://cache:99999/0", "out of range"),
        ("redis://cache:0/0", "port 0 must be in [1, 65535]"),
        ("redis://cache:6379/x", "database 'x'"),
        ("unix://", "socket path"),
        ("redis://cache/0?socket_timeout=5", "'socket_timeout' is set by Brama"),
    ],
)
def test_bad_urls_name_the_argument(url: object, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        FleetConfig.from_url(url)  # type: ignore[arg-type]
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"namespace": ""}, "namespace=''"),
        ({"namespace": "a{b}"}, "namespace='a{b}'"),
        ({"namespace": "x" * 65}, "1 to 64"),
        ({"timeout": 0}, "timeout=0 must be a number of seconds in (0, 60]"),
        ({"timeout": float("nan")}, "timeout=nan"),
        ({"timeout": True}, "timeout=True"),
        ({"connect_timeout": 61}, "connect_timeout=61"),
        ({"ttl": 0.5}, "ttl=0.5 must be a number of seconds in [1, "),
        ({"probe_min": 2.0, "probe_max": 1.0}, "probe_max=1.0 must be >= probe_min=2.0"),
        ({"heartbeat": -1}, "heartbeat=-1"),
        ({"retry_on_timeout": True}, "'retry_on_timeout' is set by Brama"),
    ],
)
def test_bad_options_name_argument_value_and_range(options: dict[str, object],
                                                    words: str) -> None:
    with pytest.raises(ConfigError) as info:
        FleetConfig.from_url("redis://cache:6379/0", **options)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_from_env() -> None:
    assert from_env({}) is None
    assert from_env({"BRAMA_BACKEND": "  "}) is None
    config = from_env({"BRAMA_BACKEND": "redis://cache:6379/1", "BRAMA_NAMESPACE": "shop"},
                      timeout=0.2)
    assert config is not None
    assert (config.namespace, config.timeout) == ("shop", 0.2)
    default = from_env({"BRAMA_BACKEND": "redis://cache:6379/1"})
    assert default is not None and default.namespace == "default"
    with pytest.raises(ConfigError, match="environment variable BRAMA_BACKEND"):
        from_env({"BRAMA_BACKEND": "cache:6379"})
    with pytest.raises(ConfigError, match="environment variable BRAMA_NAMESPACE"):
        from_env({"BRAMA_BACKEND": "redis://cache", "BRAMA_NAMESPACE": "a b"})


def test_key_layout_has_one_hash_tag_per_connection() -> None:
    plain = fleet_key("shop", "payments")
    assert plain.state == "brama:shop:{/payments}:state"
    assert plain.counters == "brama:shop:{/payments}:counters"
    scoped = fleet_key("shop", "payments", scope="eu")
    assert scoped.state == "brama:shop:{eu/payments}:state"
    assert changes_channel("shop") == "brama:shop:changes"


def test_key_parts_are_escaped_so_tags_and_keys_never_collide() -> None:
    tricky = fleet_key("shop", "a}b{c/d%e", scope="x/y")
    tag = tricky.state[tricky.state.index("{") + 1:tricky.state.index("}")]
    assert tag == "x%2Fy/a%7Db%7Bc%2Fd%25e"
    assert tricky.counters.startswith(tricky.state[:-len("state")])
    keys = {
        fleet_key("n", "a/b").state, fleet_key("n", "b", scope="a").state,
        fleet_key("n", "a%2Fb").state, fleet_key("n", "ab").state,
    }
    assert len(keys) == 4


def test_key_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="identifier"):
        fleet_key("shop", "")
    with pytest.raises(TypeError, match="scope"):
        fleet_key("shop", "x", scope=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="namespace"):
        fleet_key("", "x")


def test_origin_names_host_pid_and_a_random_part() -> None:
    import os

    origin = process_origin()
    host, pid, token = origin.split("/")
    assert pid == str(os.getpid()) and len(token) == 8 and host
    assert process_origin() == origin


def test_missing_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    config = FleetConfig.from_url("redis://cache:6379/0")
    with pytest.raises(RedisMissingError, match=r"brama\[redis\]"):
        config.client()
    assert issubclass(RedisMissingError, ImportError)
