"""The option layers of one system, the environment, and the resolution of a connection's options.

Layers, lowest to highest: defaults < `BRAMA_<OPTION>` environment variables < options given
at start < runtime `configure(...)` < per-connection options. `initial_expiry` and
`max_expiry` follow the effective `expiry` (times 1 and times 10) unless some layer sets them.

Every value remembers where it came from, so an error about a combination (max_expiry below
initial_expiry) names both values and their origins instead of a number the user never set.
"""

from __future__ import annotations

import difflib
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from brama._options import (
    CONNECTION_OPTIONS,
    DEFAULT_WINDOW_SIZES,
    DEFAULTS,
    GLOBAL_OPTIONS,
    SPECS,
    Options,
    check_option,
    unknown_option,
)
from brama.errors import ConfigError, ConfigWarning

__all__ = [
    "ENV_PREFIX",
    "ENV_SETTINGS",
    "Settings",
    "options_from_env",
    "validate_options",
]

ENV_PREFIX = "BRAMA_"
ENV_SETTINGS: frozenset[str] = frozenset()
"""`BRAMA_*` variables that are read elsewhere than as options (none: `BRAMA_BACKEND` and
`BRAMA_NAMESPACE` are the system options `backend` and `namespace`)."""
EXPIRY_MULTIPLIER_FOR_MAX = 10.0
"""`max_expiry` defaults to this many times the effective `expiry`."""
_CACHE_LIMIT = 4096
_warned: set[str] = set()


def validate_options(
    options: Mapping[str, Any], *, allowed: frozenset[str], source: str = "argument"
) -> dict[str, Any]:
    """Check option names, types and ranges; return a normalised copy.

    Raises ConfigError naming the first bad option, its value, `source` and what it accepts;
    when both `initial_expiry` and `max_expiry` are given, also checks their order.
    """
    result: dict[str, Any] = {}
    for name, value in options.items():
        if name not in allowed or name not in SPECS:
            raise unknown_option(name, allowed, f" (from {source})")
        result[name] = check_option(name, value, source)
    if "initial_expiry" in result and "max_expiry" in result:
        _cross_check(result, dict.fromkeys(result, source))
    return result


def _parse_env(name: str, raw: str) -> Any:
    """The text of `BRAMA_<NAME>` as a value of the option's kind (not yet range-checked)."""
    text = raw.strip()
    spec = SPECS[name]
    if spec.nullable and text.lower() == "none":
        return None
    match spec.kind:
        case "int":
            return int(text)
        case "seconds" | "factor" | "rate" | "size":
            return float(text)
        case "url" | "namespace":
            return text  # case matters (a password, a namespace)
        case _:
            return text.lower()


def options_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, tuple[Any, str]]:
    """Read `BRAMA_<OPTION>` variables: `{option: (value, "environment variable ...")}`.

    Blank variables are ignored; `none` means None where None is accepted. A value that does
    not parse or is out of range raises ConfigError naming the variable. An unknown `BRAMA_*`
    variable (a misspelling, most likely) is ignored with a `ConfigWarning`, once per process.
    """
    known = {ENV_PREFIX + name.upper(): name for name in GLOBAL_OPTIONS - {"clock"}}
    result: dict[str, tuple[Any, str]] = {}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = known.get(variable)
        if name is None:
            if variable[len(ENV_PREFIX):] not in ENV_SETTINGS and variable not in _warned:
                _warned.add(variable)
                names = sorted(known) + [ENV_PREFIX + s for s in sorted(ENV_SETTINGS)]
                hint = difflib.get_close_matches(variable, names, n=1)
                did_you_mean = f"; did you mean {hint[0]}?" if hint else ""
                warnings.warn(
                    f"unknown environment variable {variable} ignored{did_you_mean}",
                    ConfigWarning,
                    stacklevel=2,
                )
            continue
        raw = environ[variable]
        if not raw.strip():
            continue
        source = f"environment variable {variable}"
        try:
            value = _parse_env(name, raw)
        except ValueError:
            raise ConfigError(
                f"option {name}={raw!r} (from {source}) must be "
                f"{SPECS[name].describe(from_env=True)}"
            ) from None
        result[name] = (check_option(name, value, source, from_env=True), source)
    if "initial_expiry" in result and "max_expiry" in result:
        _cross_check({n: v for n, (v, _) in result.items()}, {n: s for n, (_, s) in result.items()})
    return result


def _effective(merged: Mapping[str, Any], name: str) -> Any:
    """The effective value of `name` in a merged layer dict, deriving the expiry bounds and
    the window size."""
    if name == "window_size":
        size = merged.get("window_size")
        return DEFAULT_WINDOW_SIZES[merged["window_type"]] if size is None else size
    if name in merged:
        return merged[name]
    if name == "initial_expiry":
        return merged["expiry"]
    if name == "max_expiry":
        return merged["expiry"] * EXPIRY_MULTIPLIER_FOR_MAX
    raise unknown_option(name, GLOBAL_OPTIONS)


def _origin(origins: Mapping[str, str], merged: Mapping[str, Any], name: str) -> str:
    """Where the effective value of `name` comes from, in words."""
    if name in origins:
        return origins[name]
    if name in ("initial_expiry", "max_expiry"):
        factor = "" if name == "initial_expiry" else f"{EXPIRY_MULTIPLIER_FOR_MAX:g} x "
        source = origins.get("expiry", "the default")
        return f"derived as {factor}expiry={merged['expiry']!r}, from {source}"
    return "the default"


def _cross_check(values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """ConfigError for options that are fine alone but not together, naming their origins."""

    def where(name: str) -> str:
        origin = _origin(origins, values, name)
        return origin if origin.startswith("derived") else f"from {origin}"

    initial, maximum = _effective(values, "initial_expiry"), _effective(values, "max_expiry")
    if maximum < initial:
        raise ConfigError(
            f"option max_expiry={maximum!r} ({where('max_expiry')}) must be "
            f">= initial_expiry={initial!r} ({where('initial_expiry')})"
        )
    if "window_type" not in values:
        return  # a layer alone (options given together are checked when resolved)
    if values.get("slow_call_rate_threshold") is not None and (
        values.get("slow_call_duration") is None
    ):
        raise ConfigError(
            f"option slow_call_rate_threshold={values['slow_call_rate_threshold']!r} "
            f"({where('slow_call_rate_threshold')}) needs slow_call_duration: without it no "
            "call is slow"
        )
    size = _effective(values, "window_size")
    if float(size) != int(size):
        raise ConfigError(
            f"option window_size={size!r} ({where('window_size')}) must be a whole number "
            f"(of calls for a count window, of seconds for a time window)"
        )
    minimum = values.get("minimum_calls", 1)
    if values["window_type"] == "count" and minimum > size:
        raise ConfigError(
            f"option minimum_calls={minimum!r} ({where('minimum_calls')}) must be <= "
            f"window_size={int(size)!r} ({where('window_size')}): a count window never holds "
            "more calls than its size, so no rate would ever be judged"
        )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One version of the global layers, swapped atomically by `configure`."""

    version: int
    runtime: Mapping[str, Any]
    merged: Mapping[str, Any]
    origins: Mapping[str, str]
    cache: dict[frozenset[tuple[str, Any]], Options]


class Settings:
    """The global option layers of one system, and per-connection resolution.

    Readers see one consistent version without locking. `lock` is the configuration
    transaction: whoever checks a change against the current options and then applies it
    (a global `configure`, a per-connection `configure`, `set_expiry`, `register`) holds it,
    so two changes cannot each be valid alone and together unresolvable.
    """

    def __init__(
        self,
        start_options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        env = options_from_env(os.environ if environ is None else environ)
        self._env = MappingProxyType({n: v for n, (v, _) in env.items()})
        self._env_origins = MappingProxyType({n: s for n, (_, s) in env.items()})
        self._start = MappingProxyType(
            validate_options(start_options or {}, allowed=GLOBAL_OPTIONS,
                             source="the options given at start")
        )
        self._snapshot = self._build(0, {})

    def _build(self, version: int, runtime: Mapping[str, Any]) -> _Snapshot:
        """Merge the layers into a new snapshot, checking the derived expiry bounds."""
        merged = {**DEFAULTS, **self._env, **self._start, **runtime}
        origins = {
            **self._env_origins,
            **dict.fromkeys(self._start, "the options given at start"),
            **dict.fromkeys(runtime, "configure()"),
        }
        _cross_check(merged, origins)
        return _Snapshot(version, MappingProxyType(dict(runtime)), MappingProxyType(merged),
                         MappingProxyType(origins), {})

    def after_fork_in_child(self) -> None:
        """Another thread of the parent may have held the lock when the process forked."""
        self.lock = threading.RLock()

    @property
    def version(self) -> int:
        """Bumped by every `configure`; resolved options are cached per version."""
        return self._snapshot.version

    def configure(self, **options: Any) -> None:
        """Apply runtime global options: all validated first, then applied at once."""
        validated = validate_options(options, allowed=GLOBAL_OPTIONS, source="configure()")
        with self.lock:
            current = self._snapshot
            self._snapshot = self._build(current.version + 1, {**current.runtime, **validated})

    def preview(self, **options: Any) -> Settings:
        """A copy of these settings with `configure(**options)` applied; self is unchanged."""
        clone = Settings.__new__(Settings)
        clone.lock = threading.RLock()
        clone._env, clone._env_origins, clone._start = self._env, self._env_origins, self._start
        clone._snapshot = self._snapshot
        clone.configure(**options)
        return clone

    def get(self, name: str) -> Any:
        """The effective global value of option `name` (ConfigError if unknown)."""
        if name not in GLOBAL_OPTIONS:
            raise unknown_option(name, GLOBAL_OPTIONS)
        return _effective(self._snapshot.merged, name)

    def as_dict(self) -> dict[str, Any]:
        """Every effective global option, keyed by name."""
        merged = self._snapshot.merged
        return {name: _effective(merged, name) for name in sorted(GLOBAL_OPTIONS)}

    def origin(self, name: str) -> str:
        """Where the effective global value of `name` comes from, in words."""
        snapshot = self._snapshot
        return _origin(snapshot.origins, snapshot.merged, name)

    def resolve(
        self, overrides: Mapping[str, Any] | None = None, source: str = "the connection's options"
    ) -> Options:
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
        checked = validate_options(overrides, allowed=CONNECTION_OPTIONS, source=source)
        merged = {**snapshot.merged, **checked}
        _cross_check(merged, {**snapshot.origins, **dict.fromkeys(checked, source)})
        values = {name: _effective(merged, name) for name in CONNECTION_OPTIONS}
        values["window_size"] = int(values["window_size"])
        options = Options(**values)
        if key is not None:
            if len(snapshot.cache) >= _CACHE_LIMIT:
                snapshot.cache.clear()
            snapshot.cache[key] = options
        return options
