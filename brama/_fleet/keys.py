"""Names in Redis: the key layout of a connection, the namespace's channel, a process's origin.

    brama:<namespace>:{<scope>/<identifier>}:state      hash  v (version), s (state JSON)
    brama:<namespace>:{<scope>/<identifier>}:counters   hash  successes, failures, rejections
    brama:<namespace>:changes                           pub/sub channel of every transition

The braces are a Redis Cluster hash tag: both keys of one connection hash to the same slot,
so one script can touch both; different connections spread over the cluster. Scope and
identifier are percent-encoded (`{`, `}`, `/`, `%` and anything outside a small readable set
become `%XX`), so the tag is never cut short and two connections never share a key; a
connection without a scope has an empty scope part (`{/payments}`), which no real scope can
produce since scopes are non-empty.

The origin names one process of the fleet in notices and permit owners:
`<host>/<pid>/<random>`. The random part tells apart two processes with the same pid (pid 1
in every container); a forked child gets an origin of its own.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import quote, unquote

from brama._fleet.urls import NAMESPACE_PATTERN, check_namespace
from brama._validation import check_identifier, check_scope

__all__ = [
    "KEY_PREFIX",
    "NAMESPACE_PATTERN",
    "FleetKey",
    "changes_channel",
    "check_namespace",
    "fleet_key",
    "new_origin",
    "parse_state_key",
    "process_origin",
    "state_key_pattern",
]

KEY_PREFIX = "brama"
_SAFE = ":@"
"""Characters kept as they are in key parts besides letters, digits and `_ . - ~`."""


@dataclass(frozen=True, slots=True)
class FleetKey:
    """The Redis names of one connection's fleet state: built by `fleet_key`, used by the store
    and carried by change notices (so an owner can route a notice to its connection)."""

    namespace: str
    scope: str | None
    identifier: str
    state: str
    """Key of the versioned state hash."""
    counters: str
    """Key of the counters hash (same hash slot as `state`)."""

    def __repr__(self) -> str:
        return f"FleetKey({self.state!r})"


def fleet_key(namespace: str, identifier: str, scope: str | None = None) -> FleetKey:
    """The key pair of connection `(scope, identifier)` in `namespace` (all three checked)."""
    namespace = check_namespace(namespace)
    identifier = check_identifier(identifier)
    scope = check_scope(scope)
    tag = quote(scope or "", safe=_SAFE) + "/" + quote(identifier, safe=_SAFE)
    base = f"{KEY_PREFIX}:{namespace}:{{{tag}}}:"
    return FleetKey(namespace, scope, identifier, base + "state", base + "counters")


def state_key_pattern(namespace: str) -> str:
    """A `SCAN ... MATCH` glob of every state key of `namespace` (and of no other namespace:
    a namespace never holds `{`, so `brama:shop:` cannot start a key of `brama:shop:eu:`).
    The hash tag's braces are escaped, as MATCH would otherwise read them as glob syntax
    in some servers; the tag's content is percent-encoded, so it holds no glob character."""
    return f"{KEY_PREFIX}:{check_namespace(namespace)}:\\{{*\\}}:state"


def parse_state_key(key: str | bytes, namespace: str) -> tuple[str | None, str] | None:
    """`(scope, identifier)` of a state key of `namespace` made by `fleet_key`, or None when
    `key` is not one (another namespace, the counters key, a foreign or malformed key).
    Exactly the inverse of `fleet_key`: a key it would not produce again is refused."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    prefix = f"{KEY_PREFIX}:{check_namespace(namespace)}:{{"
    suffix = "}:state"
    if not (text.startswith(prefix) and text.endswith(suffix)):
        return None
    tag = text[len(prefix):len(text) - len(suffix)]
    scope_part, slash, identifier_part = tag.partition("/")
    if not slash or not identifier_part or "/" in identifier_part:
        return None
    scope = None
    try:
        identifier = unquote(identifier_part, errors="strict")
        if scope_part:
            scope = unquote(scope_part, errors="strict")
        rebuilt = fleet_key(namespace, identifier, scope)
    except (UnicodeDecodeError, TypeError, ValueError):
        return None
    return (scope, identifier) if rebuilt.state == text else None


def changes_channel(namespace: str) -> str:
    """The pub/sub channel on which every transition of `namespace` is published."""
    return f"{KEY_PREFIX}:{check_namespace(namespace)}:changes"


def new_origin() -> str:
    """A new origin for this process: `<host>/<pid>/<random>`. Each system sharing circuits
    takes one of its own (two systems in one process are two members of the fleet)."""
    return f"{socket.gethostname() or 'host'}/{os.getpid()}/{secrets.token_hex(4)}"


class _Origin:
    """This process's origin, made again in a forked child (its pid changed)."""

    __slots__ = ("pid", "value")

    def __init__(self) -> None:
        self.pid = -1
        self.value = ""

    def get(self) -> str:
        pid = os.getpid()
        if pid != self.pid:
            self.value = new_origin()
            self.pid = pid
        return self.value


_origin = _Origin()


def process_origin() -> str:
    """The origin of this process: `<host>/<pid>/<random>`, stable for the process's life."""
    return _origin.get()
