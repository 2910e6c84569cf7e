"""The fleet store: one connection's shared circuit in Redis, changed by compare-and-set.

The connection actor never reads before a transition: it steps the pure state machine on
the last fleet state it knows (version v) and calls `transition(key, v, new_state, events)`,
one EVALSHA that writes version v+1 and publishes a notice, or, when another process got
there first, writes nothing and returns the current version and state. `apply` is that loop
(step, compare-and-set, re-step on the fresh state, bounded), the way the actor will use it.

- `join` reads a connection's fleet state, creating it from the caller's state only when it
  is absent: starting a process never resets the fleet (pybreaker #26).
- A key that vanished (FLUSHALL, eviction, TTL) is re-created by the next transition from
  the caller's state, at a version above any the fleet saw (pybreaker #28: lost keys raise).
- Successes and rejections of a healthy circuit never touch Redis on the call path: they are
  added in batches with `add_counters` (HINCRBY on a hash outside the versioned state).
- Every operation is bounded by the configured timeout and raises `BackendUnavailable` on
  any fault; after a connection-level fault it raises at once, without I/O, until the
  background probe finds the backend again (`on_unavailable` / `on_restored`, once each).

Decoded states carry the caller's own local fields (per-connection options, rate window) of
the state it passed in: options are never shared, only the circuit is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, TypeVar

from brama._circuit import Emit
from brama._fleet.clock import ServerClock
from brama._fleet.codec import FleetState, decode_state, encode_state, notice_header
from brama._fleet.config import FleetConfig, require_redis
from brama._fleet.errors import BackendUnavailable, ContentionError, FleetDataError, describe
from brama._fleet.health import Availability
from brama._fleet.keys import FleetKey, changes_channel, fleet_key, process_origin
from brama._fleet.scripts import ADD_COUNTERS, JOIN, TRANSITION, Script

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "COUNTERS",
    "LAST_SUCCESS",
    "Applied",
    "Counters",
    "FleetStore",
    "Result",
    "Snapshot",
    "Stepped",
]

T = TypeVar("T")
COUNTERS: Final = ("successes", "failures", "rejections")
"""The summed fields of a connection's counters hash."""
LAST_SUCCESS: Final = "last_success"
"""The counters hash's field holding the latest success counted there (kept as a maximum)."""
DEFAULT_ATTEMPTS: Final = 8


class Counters(NamedTuple):
    """Fleet-wide counts kept outside the versioned state (a hash of HINCRBY fields), and the
    latest success counted there (a maximum, not a sum)."""

    successes: int = 0
    failures: int = 0
    rejections: int = 0
    last_success: float | None = None

    def plus(self, other: Counters) -> Counters:
        """Field-wise sum (the latest of the two last successes): stored counters plus this
        process's unflushed ones."""
        last = (other.last_success if self.last_success is None
                else self.last_success if other.last_success is None
                else max(self.last_success, other.last_success))
        return Counters(self.successes + other.successes, self.failures + other.failures,
                        self.rejections + other.rejections, last)


class Snapshot(NamedTuple):
    """A connection's fleet state as `join` or `read` found (or created) it."""

    version: int
    state: FleetState
    counters: Counters
    created: bool
    """True when `join` created the state from the caller's (it was absent)."""


class Result(NamedTuple):
    """What a compare-and-set transition did."""

    written: bool
    """True: `state` is now the fleet's state at `version`. False: a version mismatch,
    nothing was written, and `version` / `state` are the fleet's current ones."""
    created: bool
    """True when the key was missing and was created from the caller's state."""
    version: int
    state: FleetState


@dataclass(frozen=True, slots=True)
class Stepped(Generic[T]):
    """What the step function of `apply` returns: the next state, its events, and anything
    the caller wants back from the attempt that counted (the state machine's `Step`)."""

    state: FleetState
    events: Sequence[Emit]
    result: T
    wall: float | None = None
    """When the step happened on the stepping process's fleet clock (its events' time)."""


@dataclass(frozen=True, slots=True)
class Applied(Generic[T]):
    """The end of `apply`: the fleet's version and state now, and the counted step's result."""

    written: bool
    """False when the last step changed nothing, so nothing was written."""
    version: int
    state: FleetState
    """The state the counted step produced (shared fields as in the fleet, local fields as
    the step left them)."""
    result: T
    attempts: int
    created: bool = False
    """True when the key was missing and the write created it (at a fresh version)."""


def _counters(flat: Sequence[Any]) -> Counters:
    """Counters from a flat HGETALL reply (unknown fields ignored)."""
    values: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    for index in range(0, len(flat) - 1, 2):
        name = flat[index].decode() if isinstance(flat[index], bytes) else str(flat[index])
        if name == LAST_SUCCESS:
            try:
                values[name] = float(flat[index + 1])
            except ValueError:
                raise FleetDataError(
                    f"counter {name}={flat[index + 1]!r} is not a number") from None
        elif name in values:
            try:
                values[name] = int(flat[index + 1])
            except ValueError:
                raise FleetDataError(
                    f"counter {name}={flat[index + 1]!r} is not an integer") from None
    return Counters(**values)


def _counter_args(successes: int, failures: int, rejections: int,
                  last_success: float | None) -> list[str]:
    """ADD_COUNTERS's field/value pairs (checked: ValueError for a bad count)."""
    pairs: list[str] = []
    for name, value in zip(COUNTERS, (successes, failures, rejections), strict=True):
        if _count(name, value):
            pairs += (name, str(value))
    if last_success is not None:
        pairs += (LAST_SUCCESS, repr(float(last_success)))
    return pairs


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} must be a whole number >= 0")
    return value


class FleetStore:
    """Fleet state of many connections in one Redis namespace; thread-safe, see the module
    docstring. One per process and backend is enough: it holds a connection pool."""

    def __init__(
        self,
        config: FleetConfig,
        *,
        clock: ServerClock | None = None,
        origin: str | None = None,
        on_unavailable: Callable[[BaseException], None] | None = None,
        on_restored: Callable[[], None] | None = None,
        client: Redis | None = None,
    ) -> None:
        redis = require_redis()
        self.config = config
        self.clock = clock if clock is not None else ServerClock()
        self._origin = origin
        self.client: Redis = client if client is not None else config.client()
        self.channel = changes_channel(config.namespace)
        self._ttl_ms = str(max(1, round(config.ttl * 1000)))
        self._connection_errors: tuple[type[BaseException], ...] = (
            redis.ConnectionError, redis.TimeoutError, OSError)
        self._redis_error: type[BaseException] = redis.RedisError
        self.availability = Availability(
            self._probe, name=f"{config.display_url} [{config.namespace}]",
            probe_min=config.probe_min, probe_max=config.probe_max,
            periodic=self._refresh_clock, period=config.clock_refresh,
            on_unavailable=on_unavailable, on_restored=on_restored,
        )

    def __repr__(self) -> str:
        return f"<FleetStore {self.config!r} {'up' if self.available else 'down'}>"

    def __enter__(self) -> FleetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def origin(self) -> str:
        """The origin written into notices and permit owners (this process by default)."""
        return self._origin if self._origin is not None else process_origin()

    @property
    def available(self) -> bool:
        """False from a connection-level fault until the background probe succeeds."""
        return self.availability.available

    def key(self, identifier: str, scope: str | None = None) -> FleetKey:
        """The keys of connection `(scope, identifier)` in this store's namespace."""
        return fleet_key(self.config.namespace, identifier, scope)

    # -- operations --

    def join(self, key: FleetKey, state: FleetState) -> Snapshot:
        """The fleet's state of `key`, created from `state` if there is none (atomically,
        SET NX-like); refreshes the TTLs. Never overwrites an existing state."""
        text = encode_state(state)
        reply = self._script(JOIN, key, (text, self._ttl_ms, "1"), "join")
        status, version, stored, counters = reply[0], reply[1], reply[2], reply[5]
        if status == 1:
            return Snapshot(int(version), state, _counters(counters), True)
        return Snapshot(int(version), self._decode(stored, state, key), _counters(counters),
                        False)

    def read(self, key: FleetKey, like: FleetState | None = None) -> Snapshot | None:
        """The fleet's state of `key`, or None if there is none; writes nothing. Decoded with
        `like`'s local fields if given."""
        reply = self._script(JOIN, key, ("", self._ttl_ms, "0"), "read")
        if reply[1] is None:
            return None
        return Snapshot(int(reply[1]), self._decode(reply[2], like, key),
                        _counters(reply[5]), False)

    def transition(self, key: FleetKey, expected_version: int, new_state: FleetState,
                   events: Sequence[Emit] = (), origin: str | None = None,
                   wall: float | None = None) -> Result:
        """Compare-and-set: write `new_state` as version `expected_version + 1` and publish
        it with `events` and `origin`, if the fleet is still at `expected_version` (or the
        key is missing: then it is created). Otherwise write nothing and return the current
        version and state, for the caller to step again on."""
        return self._transition(key, expected_version, new_state, encode_state(new_state),
                                events, origin, wall)

    def _transition(self, key: FleetKey, expected_version: int, new_state: FleetState,
                    text: str, events: Sequence[Emit], origin: str | None,
                    wall: float | None = None) -> Result:
        """`transition` with the state already encoded as `text`."""
        expected = _count("expected_version", expected_version)
        decider = self.origin if origin is None else origin
        header = notice_header(key, decider, events, wall)
        args = (str(expected), text, self._ttl_ms, self.channel, header, decider)
        reply = self._script(TRANSITION, key, args, "transition")
        status, version = reply[0], int(reply[1])
        if status == 0:
            return Result(False, False, version, self._decode(reply[2], new_state, key))
        return Result(True, status == 2, version, new_state)

    def apply(self, key: FleetKey, version: int, state: FleetState,
              step: Callable[[FleetState], Stepped[T]], *, attempts: int = DEFAULT_ATTEMPTS,
              origin: str | None = None) -> Applied[T]:
        """Step and compare-and-set until it sticks: `step(state)` on the last known fleet
        state; on a mismatch, `step` again on the fresh state, at most `attempts` times.

        A step that changes nothing (the same shared state, no events) writes nothing; the
        state returned is then the step's (its local fields as the step left them).
        Raises ContentionError (with `.version` / `.state`, the freshest known) when every
        attempt lost, and BackendUnavailable on any backend fault.
        """
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts={attempts!r} must be a whole number >= 1")
        for attempt in range(1, attempts + 1):
            stepped = step(state)
            after = stepped.state
            text = encode_state(after)
            if not stepped.events and (after is state or text == encode_state(state)):
                return Applied(False, version, after, stepped.result, attempt)
            result = self._transition(key, version, after, text, stepped.events, origin,
                                      stepped.wall)
            if result.written:
                return Applied(True, result.version, after, stepped.result, attempt,
                               result.created)
            version, state = result.version, result.state
        raise ContentionError(
            f"transition of {key!r} lost {attempts} compare-and-set attempts in a row",
            version, state)

    def add_counters(self, key: FleetKey, *, successes: int = 0, failures: int = 0,
                     rejections: int = 0, last_success: float | None = None) -> Counters:
        """Add this process's unflushed counts (HINCRBY), raise the latest success to
        `last_success` if it is later, and refresh both TTLs; returns the fleet's totals."""
        pairs = _counter_args(successes, failures, rejections, last_success)
        reply = self._script(ADD_COUNTERS, key, (self._ttl_ms, *pairs), "add_counters",
                             keys=(key.counters, key.state), time_at=1)
        return _counters(reply[0])

    def add_counters_many(
        self, items: Sequence[tuple[FleetKey, int, int, float | None]],
    ) -> list[Counters | BackendUnavailable]:
        """`add_counters` for many connections in one pipelined round trip: (key, successes,
        rejections, last success) each. Per item, the totals after, or the error the server
        answered for it. Raises BackendUnavailable when the backend cannot be reached."""
        calls = []
        for key, successes, rejections, last_success in items:
            pairs = _counter_args(successes, 0, rejections, last_success)
            calls.append(((key.counters, key.state), (self._ttl_ms, *pairs)))
        if not calls:
            return []
        client, clock = self.client, self.clock

        def run() -> list[Any]:
            sent = clock.local()
            replies = ADD_COUNTERS.run_many(client, calls)
            received = clock.local()
            for reply in replies:
                if not isinstance(reply, Exception):
                    clock.observe_reply(sent, received, reply[1], reply[2])
                    break
            return replies

        results: list[Counters | BackendUnavailable] = []
        for (key, *_), reply in zip(items, self._call("add_counters", run), strict=True):
            if isinstance(reply, Exception):
                results.append(BackendUnavailable(
                    f"add_counters of {key!r} refused by fleet backend "
                    f"{self.config.display_url}: {describe(reply)}"))
            else:
                results.append(_counters(reply[0]))
        return results

    def counters(self, key: FleetKey) -> Counters:
        """The fleet's stored counters of `key` (without anyone's unflushed counts)."""
        reply = self._script(JOIN, key, ("", self._ttl_ms, "0"), "counters")
        return _counters(reply[5])

    def sync_clock(self) -> float:
        """Sample the server clock now (one TIME); returns the estimated server time."""
        self._call("time", self._sample_time)
        return self.clock.monotonic()

    def close(self) -> None:
        """Stop the background probe and close the connection pool."""
        self.availability.close()
        with contextlib.suppress(Exception):  # closing a broken pool must not raise
            self.client.close()

    # -- plumbing --

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        self.availability.check()
        try:
            return operation()
        except self._connection_errors as exc:
            self.availability.failed(exc)
            raise BackendUnavailable(
                f"{what} on fleet backend {self.config.display_url} failed: {describe(exc)}"
            ) from exc
        except self._redis_error as exc:  # refused by the server (OOM, READONLY, NOPERM...)
            raise BackendUnavailable(
                f"{what} refused by fleet backend {self.config.display_url}: {describe(exc)}"
            ) from exc

    def _script(self, script: Script, key: FleetKey, args: Sequence[Any], what: str, *,
                keys: tuple[str, str] | None = None, time_at: int = 3) -> Any:
        """Run `script` on `key`'s two keys; feed the TIME it returns to the clock."""
        names = (key.state, key.counters) if keys is None else keys
        client, clock = self.client, self.clock

        def run() -> Any:
            sent = clock.local()
            reply = script.run(client, names, args)
            clock.observe_reply(sent, clock.local(), reply[time_at], reply[time_at + 1])
            return reply

        return self._call(what, run)

    def _decode(self, text: Any, like: FleetState | None, key: FleetKey) -> FleetState:
        if text is None:
            raise FleetDataError(f"the fleet state of {key!r} has a version but no state")
        return decode_state(text, None if like is None else like.circuit)

    def _sample_time(self) -> None:
        clock = self.clock
        sent = clock.local()
        seconds, micros = self.client.time()
        clock.observe_reply(sent, clock.local(), seconds, micros)

    def _probe(self) -> None:
        """The keeper's probe: one TIME straight to the server (bypassing the fast fail)."""
        self._sample_time()

    def _refresh_clock(self) -> None:
        """The keeper's periodic job: sample the clock unless a script just did."""
        if self.clock.age() >= self.config.clock_refresh * 0.9:
            self.sync_clock()
