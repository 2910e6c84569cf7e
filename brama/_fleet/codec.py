"""The fleet wire format: a circuit as JSON, the events of a transition, and change notices.

A connection's shared state is a `FleetState`: the pure `Circuit` plus who holds each
half-open permit. It is written as one JSON object whose keys are the `Circuit` fields
(`Circuit.__slots__`) and a `format` number, so `redis-cli HGET ... s` is readable:

    {"format":1,"state":"open","failure_count":10,...,"permits":[[7,1733000030.5,"web1/42/9f0c1d2e"]]}

- Local fields are NOT shared: `overrides` (per-connection options come from each process's
  own code) and `folded` (how many of this process's hot-path successes are already in the
  window). A decoder takes them from the caller's circuit (`local`). The rate policies'
  `window` IS shared: the fleet judges its rates over every process's calls (as
  `{"kind":"count",...}` / `{"kind":"time",...}`, see `window_data`).
- Times are whatever clock the fleet steps with: server time (see `ServerClock`), so
  deadlines written by one host mean the same on every other.
- `last_failure_reason` and event data keep JSON scalars, lists and string-keyed mappings;
  anything else becomes its `repr` (a state must always be writable, whatever users report).
- Decoding checks every field's type and refuses a newer `format` (`FleetDataError`); keys it
  does not know (written by a newer minor version) are ignored, missing ones take the
  `Circuit` default. A `Circuit` field this codec has no rule for (added to the core after
  it) is shared as JSON when its value is plain JSON data, and kept local otherwise: an
  object the codec cannot rebuild is never turned into a string the state machine chokes on.

A notice is what the transition script publishes:
`{"v":version,"t":server_time,"k":[scope,identifier],"o":origin,"e":[[type,data],...],"w":wall,
"s":{state}}` (`w`, the decider's time of the step, is optional).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from brama._circuit import Circuit, Emit
from brama._fleet.errors import FleetDataError
from brama._fleet.keys import FleetKey, fleet_key
from brama._window import CountWindow, TimeWindow, Window
from brama.otp import safe_repr
from brama.types import CircuitState, EventType

__all__ = [
    "FORMAT",
    "ChangeNotice",
    "FleetState",
    "decode_events",
    "decode_notice",
    "decode_state",
    "encode_events",
    "encode_state",
    "jsonable",
    "local_fields",
    "notice_header",
    "own_marker",
    "state_from_data",
    "window_data",
]

FORMAT: Final = 1
"""Version of the state's JSON layout; a decoder refuses anything newer."""
EMPTY: Final[Mapping[Any, Any]] = MappingProxyType({})
LOCAL_FIELDS: Final = frozenset({"overrides", "folded"})
"""Circuit fields that stay in their process and are never written to the fleet (names the
core may not have yet are harmless here)."""
_MAX_DEPTH = 8
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def jsonable(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON data: scalars, lists and str-keyed dicts; enums become their
    value, non-finite floats and anything else their repr (never raises)."""
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, Enum) and isinstance(value.value, (str, int, float)):
        return jsonable(value.value, depth + 1)  # CircuitState, EventType
    if isinstance(value, str):  # a str subclass: its text, without running its methods
        return str.__str__(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple)):
            return [jsonable(item, depth + 1) for item in value]
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return {str.__str__(k): jsonable(v, depth + 1) for k, v in value.items()}
    return safe_repr(value)


# --- field rules ---------------------------------------------------------------------------


def _int(name: str, value: Any) -> int:
    if type(value) is not int:
        raise FleetDataError(f"state field {name}={value!r} must be an integer")
    return value


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FleetDataError(f"state field {name}={value!r} must be a number")
    return float(value)


def _time(name: str, value: Any) -> float | None:
    return None if value is None else _float(name, value)


def _bool(name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise FleetDataError(f"state field {name}={value!r} must be true or false")
    return value


def _state(name: str, value: Any) -> CircuitState:
    try:
        return CircuitState(value)
    except ValueError:
        raise FleetDataError(f"state field {name}={value!r} is not a circuit state") from None


def _any(name: str, value: Any) -> Any:
    return value


_WINDOW_COUNTS: Final = ("size", "calls", "failed", "slow")
_TIME_COUNTS: Final = ("second", "past_calls", "past_failed", "past_slow")


def window_data(window: Window | None) -> dict[str, Any] | None:
    """A rate window as JSON data (None stays None)."""
    if window is None:
        return None
    data: dict[str, Any] = {name: getattr(window, name) for name in _WINDOW_COUNTS}
    if isinstance(window, TimeWindow):
        data.update({name: getattr(window, name) for name in _TIME_COUNTS})
        data["past"] = [list(bucket) for bucket in window.past]
        data["kind"] = "time"
    else:
        data["kind"] = "count"
    return data


def _window(name: str, value: Any) -> Window | None:
    """The window of `value` (`window_data`'s shape), every count checked."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("kind") not in ("count", "time"):
        raise FleetDataError(f"state field {name}={safe_repr(value)[:80]} is not a window")
    counts = {field: _int(f"{name}.{field}", value.get(field, 0)) for field in _WINDOW_COUNTS}
    if counts["size"] < 1 or min(counts.values()) < 0:
        raise FleetDataError(f"state field {name}={safe_repr(value)[:80]} has a bad count")
    if value["kind"] == "count":
        return CountWindow(**counts)
    counts.update({field: _int(f"{name}.{field}", value.get(field, 0))
                   for field in _TIME_COUNTS})
    past = value.get("past", [])
    if not isinstance(past, list) or not all(
            isinstance(b, list) and len(b) == 4 and all(type(x) is int for x in b) for b in past):
        raise FleetDataError(f"state field {name}.past={safe_repr(past)[:80]} is not buckets")
    return TimeWindow(**counts, past=tuple(tuple(b) for b in past))


def _frozen(value: Any) -> Any:
    """JSON data with lists turned into tuples (records compare and hash by value)."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _json(name: str, value: Any) -> Any:
    return _frozen(value)


def _plain(value: Any, depth: int = 0) -> bool:
    """True for JSON data that decodes back to an equal value (lists as tuples)."""
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is tuple and depth < _MAX_DEPTH:
        return all(_plain(item, depth + 1) for item in value)
    return False


_RULES: Final[Mapping[str, Callable[[str, Any], Any]]] = MappingProxyType({
    "state": _state,
    "failure_count": _int, "opening_step": _int, "generation": _int,
    "half_open_successes": _int, "next_permit_id": _int, "total_successes": _int,
    "total_failures": _int, "rejected_calls": _int, "total_openings": _int,
    "opened_at": _time, "open_deadline": _time, "current_expiry": _time,
    "last_failure_time": _time, "last_success_time": _time, "last_state_change": _time,
    "registered_at": _time, "last_activity": _float,
    "expiry_disabled": _bool,
    "last_failure_reason": _any,
    "window": _window,
})
"""How each shared field is checked when decoded; `permits` has its own rule, and a field
without a rule (added to `Circuit` after this codec) is taken as JSON."""
SHARED_FIELDS: Final = tuple(f for f in Circuit.__slots__ if f not in LOCAL_FIELDS)
KNOWN_FIELDS: Final = frozenset({*_RULES, "permits"})
_DEFAULT: Final = Circuit()


# --- the shared state ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetState:
    """A connection's fleet-wide state: the circuit, and the origin holding each permit."""

    circuit: Circuit
    owners: Mapping[int, str] = field(default_factory=lambda: EMPTY)
    """Permit id -> origin of the process it was granted to (diagnosis, graceful release)."""

    def advance(self, circuit: Circuit, origin: str) -> FleetState:
        """The state after a step by `origin` produced `circuit`: permits still out keep their
        owner, permits new in `circuit` belong to `origin`."""
        owners = self.owners
        return FleetState(circuit, MappingProxyType(
            {pid: owners.get(pid, origin) for pid, _ in circuit.permits}
        ))

    def drop_expired(self, now: float) -> FleetState:
        """Without the permits whose deadline is at or before `now` (server time): the trial
        permits of a process that died come back to the fleet. Itself if none expired."""
        permits = self.circuit.permits
        kept = tuple(p for p in permits if p[1] > now)
        if len(kept) == len(permits):
            return self
        owners = self.owners
        return FleetState(self.circuit.evolve(permits=kept), MappingProxyType(
            {pid: owners[pid] for pid, _ in kept if pid in owners}
        ))

    def owned_by(self, origin: str) -> tuple[int, ...]:
        """Ids of the permits held by `origin` (what a stopping process would release)."""
        return tuple(pid for pid, _ in self.circuit.permits if self.owners.get(pid) == origin)

    def with_local(self, local: Circuit) -> FleetState:
        """The same shared state with the local fields (options, window...) of `local`."""
        changes = local_fields(self.circuit, local)
        return FleetState(self.circuit.evolve(**changes), self.owners) if changes else self


def local_fields(circuit: Circuit, local: Circuit) -> dict[str, Any]:
    """The fields of `local` that are not shared and differ (by identity) in `circuit`."""
    changes = {}
    for name in Circuit.__slots__:
        if name in LOCAL_FIELDS or (name not in KNOWN_FIELDS and not _plain(
                getattr(local, name))):
            value = getattr(local, name)
            if getattr(circuit, name) is not value:
                changes[name] = value
    return changes


def encode_state(state: FleetState) -> str:
    """The JSON text of `state`'s shared fields (see the module docstring)."""
    circuit = state.circuit
    owners = state.owners
    data: dict[str, Any] = {"format": FORMAT}
    for name in SHARED_FIELDS:
        value = getattr(circuit, name)
        if name == "permits":
            data[name] = [[pid, deadline, owners.get(pid)] for pid, deadline in value]
        elif name == "state":
            data[name] = value.value
        elif name == "window":
            data[name] = window_data(value)
        elif name in KNOWN_FIELDS or _plain(value):
            data[name] = jsonable(value)
    return _dumps(data)


def _permits(value: Any) -> tuple[tuple[tuple[int, float], ...], Mapping[int, str]]:
    if not isinstance(value, list):
        raise FleetDataError(f"state field permits={value!r} must be a list")
    permits: list[tuple[int, float]] = []
    owners: dict[int, str] = {}
    for entry in value:
        if not isinstance(entry, list) or len(entry) not in (2, 3):
            raise FleetDataError(f"state permit {entry!r} must be [id, deadline, owner]")
        pid = _int("permits[].id", entry[0])
        permits.append((pid, _float("permits[].deadline", entry[1])))
        if len(entry) == 3 and isinstance(entry[2], str):
            owners[pid] = entry[2]
    return tuple(permits), MappingProxyType(owners)


def _load(text: bytes | str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise FleetDataError(f"{what} is not valid JSON: {exc}") from None


def decode_state(text: bytes | str, local: Circuit | None = None) -> FleetState:
    """The `FleetState` of JSON `text`; its local fields (options, window...) are `local`'s,
    or the defaults without one."""
    data = _load(text, "fleet state")
    return state_from_data(data, local)


def state_from_data(data: Any, local: Circuit | None = None) -> FleetState:
    """`decode_state` on already parsed JSON data."""
    if not isinstance(data, dict):
        raise FleetDataError(f"fleet state must be a JSON object, got {safe_repr(data)[:80]}")
    version = data.get("format")
    if type(version) is not int or not 1 <= version <= FORMAT:
        raise FleetDataError(
            f"fleet state format {version!r} is not supported (this Brama reads 1..{FORMAT}); "
            "is a newer Brama writing to this namespace?"
        )
    fields: dict[str, Any] = {}
    owners: Mapping[int, str] = EMPTY
    for name in SHARED_FIELDS:
        if name not in data:
            continue
        if name == "permits":
            fields[name], owners = _permits(data[name])
        else:
            fields[name] = _RULES.get(name, _json)(name, data[name])
    circuit = _DEFAULT.evolve(**fields)
    if local is not None:
        circuit = circuit.evolve(**local_fields(circuit, local))
    return FleetState(circuit, owners)


# --- events and notices --------------------------------------------------------------------


def _event_data(events: Iterable[Emit]) -> list[Any]:
    return [[event.event.value, jsonable(event.data)] for event in events]


def encode_events(events: Iterable[Emit]) -> str:
    """The JSON text of a transition's events: `[[type, data], ...]`."""
    return _dumps(_event_data(events))


def decode_events(data: Any) -> tuple[Emit, ...]:
    """Events from parsed JSON; entries of an unknown type (a newer Brama) are skipped."""
    if not isinstance(data, list):
        raise FleetDataError(f"notice events must be a list, got {safe_repr(data)[:80]}")
    events: list[Emit] = []
    for entry in data:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            raise FleetDataError(f"notice event {safe_repr(entry)[:80]} must be [type, data]")
        try:
            kind = EventType(entry[0])
        except ValueError:
            continue
        events.append(Emit(kind, MappingProxyType(entry[1])))
    return tuple(events)


def notice_header(key: FleetKey, origin: str, events: Sequence[Emit],
                  wall: float | None = None) -> str:
    """The part of a notice the caller knows before the script runs: key, origin, events, and
    the time on the decider's clock (`wall`) that its events carry (the script wraps it with
    the version, the server time and the state)."""
    header = (f'"k":{_dumps([key.scope, key.identifier])},"o":{_dumps(origin)},'
              f'"e":{_dumps(_event_data(events))}')
    if wall is not None and math.isfinite(wall):
        header += f',"w":{wall!r}'
    return header


@functools.lru_cache(maxsize=8)
def own_marker(origin: str) -> bytes:
    """Bytes found in a notice payload exactly when `origin` published it: JSON escapes every
    quote inside strings, so `,"o":"<origin>","e":` cannot occur inside a scope or identifier,
    and a process can skip its own notices without decoding them."""
    return f',"o":{_dumps(origin)},"e":'.encode()


@dataclass(frozen=True, slots=True)
class ChangeNotice:
    """One transition somewhere in the fleet, as published by the transition script."""

    key: FleetKey
    version: int
    state: FleetState
    """The state written at `version` (its local fields are the defaults: `with_local`)."""
    events: tuple[Emit, ...]
    origin: str
    """The process that made the transition."""
    time: float
    """Server time of the transition."""
    wall: float | None = None
    """The time of the step on the decider's fleet clock (its events' timestamp), if sent."""


def decode_notice(payload: bytes | str, namespace: str) -> ChangeNotice:
    """The notice published on `namespace`'s channel; FleetDataError if it is not one."""
    data = _load(payload, "change notice")
    if not isinstance(data, dict):
        raise FleetDataError("change notice must be a JSON object")
    try:
        version, when, (scope, identifier) = data["v"], data["t"], data["k"]
        origin, events, state = data["o"], data["e"], data["s"]
    except (KeyError, TypeError, ValueError) as exc:
        raise FleetDataError(f"change notice lacks a field: {exc!r}") from None
    if type(version) is not int or not isinstance(origin, str):
        raise FleetDataError(f"change notice has a bad version or origin: {version!r}")
    try:
        key = fleet_key(namespace, identifier, scope)
    except (TypeError, ValueError) as exc:
        raise FleetDataError(f"change notice names no connection: {exc}") from None
    wall = data.get("w")
    return ChangeNotice(key, version, state_from_data(state), decode_events(events), origin,
                        _float("t", when), None if wall is None else _float("w", wall))
