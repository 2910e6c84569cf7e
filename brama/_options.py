"""The options of Brama: names, kinds, ranges, defaults, and the check of one value.

Every error names the option, the value given, where it came from (an argument, `configure`,
an environment variable) and the accepted range, in the user's terms. Durations accept a
`datetime.timedelta` as well as a number of seconds.
"""

from __future__ import annotations

import datetime
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final

from brama.errors import ConfigError
from brama.otp import safe_repr

__all__ = [
    "CONNECTION_OPTIONS",
    "DEFAULTS",
    "DEFAULT_WINDOW_SIZES",
    "EXPIRY_STRATEGIES",
    "GLOBAL_OPTIONS",
    "SPECS",
    "START_ONLY_OPTIONS",
    "SYSTEM_OPTIONS",
    "WINDOW_TYPES",
    "Options",
    "Spec",
    "check_option",
    "duration",
    "mask_url",
    "shown",
    "unknown_option",
]

CONNECTION_OPTIONS: frozenset[str] = frozenset(
    {
        "max_attempts",
        "expiry",
        "expiry_strategy",
        "initial_expiry",
        "max_expiry",
        "backoff_factor",
        "half_open_max_calls",
        "success_threshold",
        "hibernate_after",
        "failure_rate_threshold",
        "slow_call_duration",
        "slow_call_rate_threshold",
        "window_type",
        "window_size",
        "minimum_calls",
    }
)
"""Options that can be set per connection (and globally)."""

SYSTEM_OPTIONS: frozenset[str] = frozenset(
    {"cleanup_interval", "inactive_threshold", "max_restarts", "max_seconds", "clock",
     "backend", "namespace", "backend_timeout"}
)
"""Options of a whole system (never per connection)."""
START_ONLY_OPTIONS: frozenset[str] = frozenset({"clock", "backend", "namespace", "backend_timeout"})
"""System options fixed when the system starts (a runtime `configure` refuses them)."""
GLOBAL_OPTIONS: frozenset[str] = CONNECTION_OPTIONS | SYSTEM_OPTIONS
"""Every option a system accepts at start and in a global `configure`."""

EXPIRY_STRATEGIES: frozenset[str] = frozenset({"fixed", "progressive"})
WINDOW_TYPES: frozenset[str] = frozenset({"count", "time"})
DEFAULT_WINDOW_SIZES: Mapping[str, float] = MappingProxyType({"count": 100, "time": 60.0})
"""`window_size` when it is not set: 100 calls, or 60 seconds."""

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "max_attempts": 10,
        "expiry": 60.0,
        "expiry_strategy": "fixed",
        "backoff_factor": 2.0,
        "half_open_max_calls": 1,
        "success_threshold": 1,
        "hibernate_after": 5.0,
        "failure_rate_threshold": None,
        "slow_call_duration": None,
        "slow_call_rate_threshold": None,
        "window_type": "count",
        "window_size": None,
        "minimum_calls": 10,
        "cleanup_interval": 10.0,
        "inactive_threshold": None,
        "max_restarts": 3,
        "max_seconds": 5.0,
        "clock": None,
        "backend": None,
        "namespace": "brama",
        "backend_timeout": 0.1,
    }
)
"""Built-in defaults; `initial_expiry` and `max_expiry` are derived from `expiry` instead."""


@dataclass(frozen=True, slots=True)
class Spec:
    """How one option is checked: its kind, its lower bound, and whether None is allowed."""

    kind: str  # "int", "seconds", "factor", "rate", "size", "choice", "clock", "url", "namespace"
    minimum: float = 0.0
    inclusive: bool = True
    maximum: float = math.inf
    nullable: bool = False
    meaning_of_none: str = ""
    choices: frozenset[str] = frozenset()

    def describe(self, *, from_env: bool = False) -> str:
        """The accepted values in words, for error messages (`from_env`: as text in an
        environment variable, where a timedelta cannot be given)."""
        match self.kind:
            case "int":
                text = f"a whole number >= {int(self.minimum)}"
            case "seconds":
                op = ">=" if self.inclusive else ">"
                text = f"a finite number of seconds {op} {self.minimum:g}"
                if self.maximum != math.inf:
                    text = f"a number of seconds {op} {self.minimum:g} and <= {self.maximum:g}"
                if not from_env:
                    text += ", or a timedelta"
            case "factor":
                text = f"a finite number >= {self.minimum:g}"
            case "rate":
                text = "a fraction in (0, 1]"
            case "size":
                text = "a whole number of calls >= 1 (count window) or of seconds (time window)"
            case "choice":
                text = "one of " + ", ".join(repr(s) for s in sorted(self.choices))
            case "url":
                text = ("a redis://, rediss:// or unix:// URL "
                        "(redis://[[user]:password@]host[:port][/db])")
            case "namespace":
                text = ("1 to 64 characters of letters, digits and '_.:-', starting with a "
                        "letter, a digit or '_'")
            case _:
                text = "an object with callable time() and monotonic()"
        if self.nullable:
            text += f", or None ({self.meaning_of_none})" if self.meaning_of_none else ", or None"
        return text


SPECS: Mapping[str, Spec] = MappingProxyType(
    {
        "max_attempts": Spec("int", 1),
        "expiry": Spec("seconds", 0, inclusive=False),
        "expiry_strategy": Spec("choice", choices=EXPIRY_STRATEGIES),
        "initial_expiry": Spec("seconds", 0, inclusive=False),
        "max_expiry": Spec("seconds", 0, inclusive=False),
        "backoff_factor": Spec("factor", 1),
        "half_open_max_calls": Spec("int", 1),
        "success_threshold": Spec("int", 1),
        "hibernate_after": Spec("seconds", 0),
        "failure_rate_threshold": Spec("rate", nullable=True, meaning_of_none="off"),
        "slow_call_duration": Spec("seconds", 0, inclusive=False, nullable=True,
                                   meaning_of_none="no call is slow"),
        "slow_call_rate_threshold": Spec("rate", nullable=True, meaning_of_none="off"),
        "window_type": Spec("choice", choices=WINDOW_TYPES),
        "window_size": Spec("size", nullable=True,
                            meaning_of_none="100 calls, or 60 seconds for a time window"),
        "minimum_calls": Spec("int", 1),
        "cleanup_interval": Spec("seconds", 0.001),  # more often is a busy loop
        "inactive_threshold": Spec("seconds", 0, inclusive=False, nullable=True,
                                   meaning_of_none="never sweep"),
        "max_restarts": Spec("int", 0),
        "max_seconds": Spec("seconds", 0, inclusive=False),
        "clock": Spec("clock", nullable=True, meaning_of_none="the system clock"),
        "backend": Spec("url", nullable=True, meaning_of_none="local circuits, no fleet"),
        "namespace": Spec("namespace"),
        "backend_timeout": Spec("seconds", 0, inclusive=False, maximum=60.0),
    }
)


@dataclass(frozen=True, slots=True)
class Options:
    """The resolved settings of one connection: every per-connection option, concrete."""

    max_attempts: int
    expiry: float
    expiry_strategy: str
    initial_expiry: float
    max_expiry: float
    backoff_factor: float
    half_open_max_calls: int
    success_threshold: int
    hibernate_after: float
    failure_rate_threshold: float | None
    slow_call_duration: float | None
    slow_call_rate_threshold: float | None
    window_type: str
    window_size: float
    minimum_calls: int
    windowed: bool = field(init=False, repr=False, compare=False)
    """True when a rate policy needs the window of recent calls (derived once: every step of
    the state machine reads it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "windowed", self.failure_rate_threshold is not None
                           or self.slow_call_duration is not None)

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict, keyed by option name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


def unknown_option(name: Any, allowed: Iterable[str], where: str = "") -> ConfigError:
    """The error for an option name that is not accepted here, with a "did you mean"."""
    accepted = sorted(allowed)
    hint = difflib.get_close_matches(str(name), accepted, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(
        f"unknown option {name!r}{where}{did_you_mean}; accepted options: {', '.join(accepted)}"
    )


_SECONDS_TYPES: Final = (int, float, datetime.timedelta)


def duration(value: Any) -> float | None:
    """`value` as a float of seconds if it is a number (not a bool) or a timedelta; else None.

    An int too large for a float becomes `inf` (refused later as not finite).
    """
    if isinstance(value, bool) or not isinstance(value, _SECONDS_TYPES):
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    try:
        return float(value)
    except OverflowError:
        return math.inf


def shown(value: Any) -> str:
    """A value as messages show it: its repr, but a timedelta as the user would write it
    (`timedelta(seconds=-1)`, not `datetime.timedelta(days=-1, seconds=86399)`)."""
    if isinstance(value, datetime.timedelta):
        return f"timedelta(seconds={value.total_seconds():g})"
    return safe_repr(value)


def mask_url(url: str) -> str:
    """`url` with its password replaced by `***` (for every message and repr)."""
    from brama._fleet.urls import mask_url as mask

    return mask(url)


def _check_backend_text(kind: str, value: Any, bad: Callable[[str], ConfigError]) -> str:
    """A backend URL or a namespace, checked by the fleet's own rules (imported only when a
    backend option is given: a system without one never loads the fleet modules)."""
    if not isinstance(value, str) or not value.strip():
        raise bad("")
    from brama._fleet.urls import check_namespace, check_url

    try:
        return check_url(value, "backend") if kind == "url" else check_namespace(value)
    except ConfigError as exc:
        if kind != "url":
            raise bad("") from None
        text = str(exc)
        prefix = f"backend={mask_url(value.strip())!r}"
        if text.startswith(prefix):
            text = text[len(prefix):].lstrip(": ")
        raise bad(f"; this one {text}" if text.startswith("must") else f"; {text}") from None


def check_option(name: str, value: Any, source: str, *, from_env: bool = False) -> Any:
    """Validate one known option and return it normalised (durations as float seconds).

    `source` says where the value came from, for the message ("argument", "configure()",
    "environment variable BRAMA_EXPIRY", ...).
    """
    spec = SPECS[name]

    def bad(detail: str = "") -> ConfigError:
        display = mask_url(value) if spec.kind == "url" and isinstance(value, str) else value
        return ConfigError(
            f"option {name}={shown(display)} (from {source}) must be "
            f"{spec.describe(from_env=from_env)}{detail}"
        )

    if value is None:
        if spec.nullable:
            return None
        raise bad()
    match spec.kind:
        case "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < spec.minimum:
                raise bad()
            return int(value)
        case "seconds" | "factor":
            number = duration(value)
            if number is None or (spec.kind == "factor" and isinstance(value, datetime.timedelta)):
                raise bad()
            in_range = number >= spec.minimum if spec.inclusive else number > spec.minimum
            if not math.isfinite(number) or not in_range or number > spec.maximum:
                raise bad()
            return number
        case "rate":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            try:
                number = float(value)
            except OverflowError:
                raise bad() from None
            if not 0.0 < number <= 1.0:
                raise bad()
            return number
        case "size":
            number = duration(value)
            if number is None or not math.isfinite(number) or number < 1:
                raise bad()
            return number
        case "choice":  # a str subclass by its characters: none of its methods runs
            plain = str.__str__(value) if isinstance(value, str) else None
            if plain is None or plain not in spec.choices:
                raise bad()
            return plain
        case "url" | "namespace":
            return _check_backend_text(spec.kind, value, bad)
        case _:
            if not (
                callable(getattr(value, "time", None))
                and callable(getattr(value, "monotonic", None))
            ):
                raise bad()
            return value
