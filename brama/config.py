"""Options of Brama: names, defaults, environment variables, validation and precedence.

Layers, lowest to highest: defaults < `BRAMA_<OPTION>` environment variables < options given
at start < runtime `configure(...)` < per-connection options. `initial_expiry` and
`max_expiry` follow the effective `expiry` (times 1 and times 10) unless some layer sets them.
"""

from __future__ import annotations

import difflib
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

from brama.errors import ConfigError

__all__ = [
    "CONNECTION_OPTIONS",
    "DEFAULTS",
    "ENV_PREFIX",
    "EXPIRY_STRATEGIES",
    "GLOBAL_OPTIONS",
    "Options",
    "Settings",
    "options_from_env",
    "validate_duration",
    "validate_options",
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
    }
)
"""Options that can be set per connection (and globally)."""

GLOBAL_OPTIONS: frozenset[str] = CONNECTION_OPTIONS | frozenset(
    {"cleanup_interval", "inactive_threshold", "max_restarts", "max_seconds", "clock"}
)
"""Every option a system accepts at start and in a global `configure`."""

EXPIRY_STRATEGIES: frozenset[str] = frozenset({"fixed", "progressive"})

ENV_PREFIX = "BRAMA_"

EXPIRY_MULTIPLIER_FOR_MAX = 10.0
"""`max_expiry` defaults to this many times the effective `expiry`."""

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "max_attempts": 10,
        "expiry": 60.0,
        "expiry_strategy": "fixed",
        "backoff_factor": 2.0,
        "half_open_max_calls": 1,
        "success_threshold": 1,
        "hibernate_after": 5.0,
        "cleanup_interval": 10.0,
        "inactive_threshold": 86400.0,
        "max_restarts": 3,
        "max_seconds": 5.0,
        "clock": None,
    }
)
"""Built-in defaults; `initial_expiry` and `max_expiry` are derived from `expiry` instead."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one option is checked: its kind, its lower bound, and whether None is allowed."""

    kind: str  # "int", "float", "strategy" or "clock"
    minimum: float = 0.0
    inclusive: bool = True
    nullable: bool = False

    def describe(self) -> str:
        """The accepted values in words, for error messages."""
        match self.kind:
            case "int":
                text = f"an int >= {int(self.minimum)} (not a bool)"
            case "float":
                op = ">=" if self.inclusive else ">"
                minimum: float = (
                    int(self.minimum) if float(self.minimum).is_integer() else self.minimum
                )
                text = f"a finite number {op} {minimum}"
            case "strategy":
                text = "one of " + ", ".join(repr(s) for s in sorted(EXPIRY_STRATEGIES))
            case _:
                text = "an object with callable time() and monotonic()"
        return f"{text} or None" if self.nullable else text


_SPECS: Mapping[str, _Spec] = MappingProxyType(
    {
        "max_attempts": _Spec("int", 1),
        "expiry": _Spec("float", 0, inclusive=False),
        "expiry_strategy": _Spec("strategy"),
        "initial_expiry": _Spec("float", 0, inclusive=False),
        "max_expiry": _Spec("float", 0, inclusive=False),
        "backoff_factor": _Spec("float", 1),
        "half_open_max_calls": _Spec("int", 1),
        "success_threshold": _Spec("int", 1),
        "hibernate_after": _Spec("float", 0),
        "cleanup_interval": _Spec("float", 0, inclusive=False),
        "inactive_threshold": _Spec("float", 0, inclusive=False, nullable=True),
        "max_restarts": _Spec("int", 0),
        "max_seconds": _Spec("float", 0, inclusive=False),
        "clock": _Spec("clock", nullable=True),
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

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict, keyed by option name."""
        return asdict(self)


def _unknown(name: str, allowed: frozenset[str]) -> ConfigError:
    """The error for an option name that is not in `allowed`, listing the accepted names."""
    hint = difflib.get_close_matches(str(name), sorted(allowed), n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(
        f"unknown option {name!r}{did_you_mean}; accepted options: {', '.join(sorted(allowed))}"
    )


def _check(name: str, value: Any) -> Any:
    """Validate one known option and return it normalised (floats as float)."""
    spec = _SPECS[name]

    def bad() -> ConfigError:
        return ConfigError(f"option {name} must be {spec.describe()}, got {value!r}")

    if value is None:
        if spec.nullable:
            return None
        raise bad()
    match spec.kind:
        case "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < spec.minimum:
                raise bad()
            return int(value)
        case "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            try:
                number = float(value)
            except OverflowError:  # an int beyond any float
                raise bad() from None
            in_range = number >= spec.minimum if spec.inclusive else number > spec.minimum
            if not math.isfinite(number) or not in_range:
                raise bad()
            return number
        case "strategy":
            if not isinstance(value, str) or value not in EXPIRY_STRATEGIES:
                raise bad()
            return str(value)
        case _:
            if not (
                callable(getattr(value, "time", None))
                and callable(getattr(value, "monotonic", None))
            ):
                raise bad()
            return value


def _cross_check(initial_expiry: Any, max_expiry: Any, where: str = "") -> None:
    """Raise ConfigError unless max_expiry >= initial_expiry."""
    if max_expiry < initial_expiry:
        raise ConfigError(
            f"option max_expiry ({max_expiry}) must be >= initial_expiry ({initial_expiry}){where}"
        )


def validate_options(options: Mapping[str, Any], *, allowed: frozenset[str]) -> dict[str, Any]:
    """Check option names, types and ranges, and return a normalised copy.

    Raises ConfigError naming the first bad option and what it accepts; when both
    `initial_expiry` and `max_expiry` are given, also checks max_expiry >= initial_expiry.
    """
    result: dict[str, Any] = {}
    for name, value in options.items():
        if name not in allowed or name not in _SPECS:
            raise _unknown(name, allowed)
        result[name] = _check(name, value)
    if "initial_expiry" in result and "max_expiry" in result:
        _cross_check(result["initial_expiry"], result["max_expiry"])
    return result


def validate_duration(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Check a duration argument (e.g. `expires_in`, `set_expiry`'s `seconds`) and return it.

    Accepts a finite int or float (not a bool) > 0, or >= 0 with `allow_zero`; raises
    ConfigError naming the argument otherwise.
    """
    op = ">=" if allow_zero else ">"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a finite number {op} 0 (seconds), got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a finite number {op} 0 (seconds), got {value!r}")
    return number


def _parse_env(name: str, raw: str) -> Any:
    """Turn the text of `BRAMA_<NAME>` into a value of the option's kind (not yet range-checked)."""
    text = raw.strip()
    spec = _SPECS[name]
    if spec.nullable and text.lower() == "none":
        return None
    match spec.kind:
        case "int":
            return int(text)
        case "float":
            return float(text)
        case _:
            return text.lower()


def options_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Read `BRAMA_<OPTION>` variables for every global option except `clock`.

    Unset or blank variables are ignored; `BRAMA_INACTIVE_THRESHOLD=none` means None.
    A value that does not parse or is out of range raises ConfigError naming the variable.
    """
    result: dict[str, Any] = {}
    for name in sorted(GLOBAL_OPTIONS - {"clock"}):
        variable = ENV_PREFIX + name.upper()
        raw = environ.get(variable)
        if raw is None or not raw.strip():
            continue
        try:
            value = _parse_env(name, raw)
        except ValueError:
            raise ConfigError(
                f"environment variable {variable}={raw!r}: option {name} must be "
                f"{_SPECS[name].describe()}"
            ) from None
        try:
            result[name] = _check(name, value)
        except ConfigError as exc:
            raise ConfigError(f"environment variable {variable}={raw!r}: {exc}") from None
    if "initial_expiry" in result and "max_expiry" in result:
        _cross_check(
            result["initial_expiry"],
            result["max_expiry"],
            f" (environment variables {ENV_PREFIX}MAX_EXPIRY and {ENV_PREFIX}INITIAL_EXPIRY)",
        )
    return result


def _effective(merged: Mapping[str, Any], name: str) -> Any:
    """The effective value of `name` in a merged layer dict, deriving the expiry bounds."""
    if name in merged:
        return merged[name]
    if name == "initial_expiry":
        return merged["expiry"]
    if name == "max_expiry":
        return merged["expiry"] * EXPIRY_MULTIPLIER_FOR_MAX
    raise _unknown(name, GLOBAL_OPTIONS)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One version of the global layers, swapped atomically by `configure`."""

    version: int
    runtime: Mapping[str, Any]
    merged: Mapping[str, Any]
    cache: dict[frozenset[tuple[str, Any]], Options]


_CACHE_LIMIT = 4096


class Settings:
    """The global option layers of one system, and the resolution of per-connection options.

    Thread-safe: readers see one consistent version; `configure` validates everything before
    swapping in a new version, so a rejected change leaves no trace.
    """

    def __init__(
        self,
        start_options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._env: Mapping[str, Any] = MappingProxyType(
            options_from_env(os.environ if environ is None else environ)
        )
        self._start: Mapping[str, Any] = MappingProxyType(
            validate_options(start_options or {}, allowed=GLOBAL_OPTIONS)
        )
        self._snapshot = self._build(0, {})

    def _build(self, version: int, runtime: Mapping[str, Any]) -> _Snapshot:
        """Merge the layers into a new snapshot, checking the derived expiry bounds."""
        merged = {**DEFAULTS, **self._env, **self._start, **runtime}
        _cross_check(_effective(merged, "initial_expiry"), _effective(merged, "max_expiry"))
        return _Snapshot(version, MappingProxyType(dict(runtime)), MappingProxyType(merged), {})

    @property
    def version(self) -> int:
        """Bumped by every `configure`; resolved options are cached per version."""
        return self._snapshot.version

    def configure(self, **options: Any) -> None:
        """Apply runtime global options: all validated first, then applied at once."""
        validated = validate_options(options, allowed=GLOBAL_OPTIONS)
        with self._lock:
            current = self._snapshot
            self._snapshot = self._build(current.version + 1, {**current.runtime, **validated})

    def preview(self, **options: Any) -> Settings:
        """A copy of these settings with `configure(**options)` applied; self is unchanged.

        Lets a caller check what a global change would do (e.g. resolve every existing
        connection's overrides) before committing it.
        """
        clone = Settings.__new__(Settings)
        clone._lock = threading.Lock()
        clone._env = self._env
        clone._start = self._start
        clone._snapshot = self._snapshot
        clone.configure(**options)
        return clone

    def get(self, name: str) -> Any:
        """The effective global value of option `name` (ConfigError if unknown)."""
        if name not in GLOBAL_OPTIONS:
            raise _unknown(name, GLOBAL_OPTIONS)
        return _effective(self._snapshot.merged, name)

    def as_dict(self) -> dict[str, Any]:
        """Every effective global option, keyed by name."""
        merged = self._snapshot.merged
        return {name: _effective(merged, name) for name in sorted(GLOBAL_OPTIONS)}

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> Options:
        """The concrete options of a connection whose own options are `overrides`.

        Overrides are validated (ConfigError for unknown, mistyped or out-of-range ones, or
        when the result has max_expiry < initial_expiry). Results are cached per version.
        """
        snapshot = self._snapshot
        overrides = overrides or {}
        key: frozenset[tuple[str, Any]] | None
        try:
            key = frozenset(overrides.items())
        except TypeError:
            key = None
        if key is not None:
            cached = snapshot.cache.get(key)
            if cached is not None:
                return cached
        checked = validate_options(overrides, allowed=CONNECTION_OPTIONS)
        merged = {**snapshot.merged, **checked}
        values = {name: _effective(merged, name) for name in CONNECTION_OPTIONS}
        _cross_check(values["initial_expiry"], values["max_expiry"])
        options = Options(**values)
        if key is not None:
            if len(snapshot.cache) >= _CACHE_LIMIT:
                snapshot.cache.clear()
            snapshot.cache[key] = options
        return options
