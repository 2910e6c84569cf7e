"""The fleet's addresses checked and shown: the backend URL, with its password masked in every
message and repr, and the namespace.

A leaf of the fleet package (it imports nothing of Brama but its errors), so that the option
checks of `brama._options` can use it without loading the rest of the fleet.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from brama.errors import ConfigError

__all__ = ["NAMESPACE_PATTERN", "OWNED_QUERY", "SCHEMES", "check_namespace", "check_url",
           "mask_url"]

SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
OWNED_QUERY: Final = frozenset({
    "socket_timeout", "socket_connect_timeout", "timeout", "retry_on_timeout",
    "retry_on_error", "health_check_interval", "single_connection_client",
})
"""URL query parameters that would override what Brama controls: refused, with the argument
to use instead."""
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")
"""A namespace: 1 to 64 characters, letters, digits and `_ . : -`, not starting with a
punctuation mark other than `_` (so it never holds a brace, a space or a glob character)."""

def check_namespace(namespace: object, name: str = "namespace") -> str:
    """A valid namespace, or ConfigError naming the argument `name`, the value and the rule."""
    if not isinstance(namespace, str) or NAMESPACE_PATTERN.fullmatch(namespace) is None:
        raise ConfigError(
            f"{name}={namespace!r} must be 1 to 64 characters of letters, digits and "
            "'_.:-', starting with a letter, a digit or '_'"
        )
    return namespace


def mask_url(url: str) -> str:
    """`url` with its password replaced by `***`, for messages and reprs: the password of the
    user part (`user:password@`, also in a URL too broken to parse) and a `password=` query
    parameter."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            netloc = f"{user}:***@{host}"
    tail = _PASSWORD_QUERY.sub(r"\1***", tail)
    return (f"{scheme}://" if sep else "") + netloc + slash + tail


_PASSWORD_QUERY: Final = re.compile(r"((?:^|[?&;])password=)[^&;#]*", re.IGNORECASE)


def check_url(url: Any, source: str) -> str:
    """A redis://, rediss:// or unix:// URL that redis-py can use, or ConfigError."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{source}={url!r} must be a redis://, rediss:// or unix:// URL")
    text: str = url.strip()
    shown = mask_url(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{source}={shown!r} is not a valid URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"{source}={shown!r} must start with redis://, rediss:// or unix:// "
            f"(got scheme {parts.scheme!r})"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{source}={shown!r} must name a socket path (unix:///path)")
    elif port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{source}={shown!r}: port {port} must be in [1, 65535]")
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and (not path.isdigit() or int(path) > 1_000_000):
        raise ConfigError(f"{source}={shown!r}: the database {path!r} must be a number >= 0")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if name in OWNED_QUERY:
            raise ConfigError(
                f"{source}={shown!r}: query parameter {name!r} is set by Brama; use the "
                "timeout / connect_timeout arguments instead"
            )
    return text
