"""Tests of option validation, environment parsing and the precedence of option layers."""

from __future__ import annotations

import datetime
import math
import time
import warnings
from typing import Any

import pytest

from brama._config import Settings, options_from_env, validate_options
from brama._options import CONNECTION_OPTIONS, DEFAULTS, GLOBAL_OPTIONS, Options
from brama._validation import check_duration
from brama.errors import ConfigError, ConfigWarning

INT_OPTIONS = {
    "max_attempts": 1,
    "half_open_max_calls": 1,
    "success_threshold": 1,
    "max_restarts": 0,
}
FLOAT_OPTIONS = {
    # name: (smallest accepted value, whether that bound itself is accepted)
    "expiry": (0.0, False),
    "initial_expiry": (0.0, False),
    "max_expiry": (0.0, False),
    "backoff_factor": (1.0, True),
    "hibernate_after": (0.0, True),
    "cleanup_interval": (0.001, True),
    "inactive_threshold": (0.0, False),
    "max_seconds": (0.0, False),
}


class Clock:
    def time(self) -> float:
        return 1.0

    def monotonic(self) -> float:
        return 2.0


def check(options: dict[str, Any]) -> dict[str, Any]:
    return validate_options(options, allowed=GLOBAL_OPTIONS)


def test_option_sets() -> None:
    assert {
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
    } == CONNECTION_OPTIONS
    assert (
        CONNECTION_OPTIONS
        | {
            "cleanup_interval",
            "inactive_threshold",
            "max_restarts",
            "max_seconds",
            "clock",
            "backend",
            "namespace",
            "backend_timeout",
        }
        == GLOBAL_OPTIONS
    )


def test_defaults() -> None:
    settings = Settings({}, environ={})
    assert settings.as_dict() == {
        "max_attempts": 10,
        "expiry": 60.0,
        "expiry_strategy": "fixed",
        "initial_expiry": 60.0,
        "max_expiry": 600.0,
        "backoff_factor": 2.0,
        "half_open_max_calls": 1,
        "success_threshold": 1,
        "cleanup_interval": 10.0,
        "inactive_threshold": None,
        "max_restarts": 3,
        "max_seconds": 5.0,
        "hibernate_after": 5.0,
        "clock": None,
        "backend": None,
        "namespace": "brama",
        "backend_timeout": 0.1,
        "failure_rate_threshold": None,
        "slow_call_duration": None,
        "slow_call_rate_threshold": None,
        "window_type": "count",
        "window_size": 100,
        "minimum_calls": 10,
    }
    assert settings.resolve() == Options(
        max_attempts=10,
        expiry=60.0,
        expiry_strategy="fixed",
        initial_expiry=60.0,
        max_expiry=600.0,
        backoff_factor=2.0,
        half_open_max_calls=1,
        success_threshold=1,
        hibernate_after=5.0,
        failure_rate_threshold=None,
        slow_call_duration=None,
        slow_call_rate_threshold=None,
        window_type="count",
        window_size=100,
        minimum_calls=10,
    )
    assert "initial_expiry" not in DEFAULTS and "max_expiry" not in DEFAULTS


# --- validate_options -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INT_OPTIONS))
@pytest.mark.parametrize("bad", [True, False, 1.0, "3", None, float("nan")])
def test_int_options_reject_wrong_types(name: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        check({name: bad})


@pytest.mark.parametrize(("name", "minimum"), sorted(INT_OPTIONS.items()))
def test_int_options_range(name: str, minimum: int) -> None:
    assert check({name: minimum}) == {name: minimum}
    with pytest.raises(ConfigError, match=rf"{name}.*>= {minimum}"):
        check({name: minimum - 1})
    with pytest.raises(ConfigError, match=name):
        check({name: -5})


@pytest.mark.parametrize("name", sorted(FLOAT_OPTIONS))
@pytest.mark.parametrize(
    "bad", [True, False, "1.0", float("nan"), float("inf"), float("-inf"), [1.0]]
)
def test_float_options_reject_wrong_types_and_non_finite(name: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        check({name: bad})


@pytest.mark.parametrize(("name", "bound"), sorted(FLOAT_OPTIONS.items()))
def test_float_options_range_and_normalisation(name: str, bound: tuple[float, bool]) -> None:
    minimum, inclusive = bound
    result = check({name: 7})
    assert result == {name: 7.0} and type(result[name]) is float
    with pytest.raises(ConfigError, match=name):
        check({name: -1.0})
    if inclusive:
        assert check({name: minimum}) == {name: minimum}
    else:
        with pytest.raises(ConfigError, match=rf"{name}.*> 0"):
            check({name: minimum})


def test_none_only_for_inactive_threshold_and_clock() -> None:
    assert check({"inactive_threshold": None}) == {"inactive_threshold": None}
    assert check({"clock": None}) == {"clock": None}
    with pytest.raises(ConfigError, match="expiry"):
        check({"expiry": None})
    with pytest.raises(ConfigError, match="expiry_strategy"):
        check({"expiry_strategy": None})


def test_expiry_strategy() -> None:
    assert check({"expiry_strategy": "progressive"}) == {"expiry_strategy": "progressive"}
    for bad in ["exponential", "FIXED", 1, True]:
        with pytest.raises(ConfigError, match=r"expiry_strategy.*'fixed', 'progressive'"):
            check({"expiry_strategy": bad})


def test_clock() -> None:
    clock = Clock()
    assert check({"clock": clock})["clock"] is clock
    assert check({"clock": time})["clock"] is time  # the time module has both functions

    class HalfClock:
        def time(self) -> float:
            return 0.0

        monotonic = 5

    for bad in [HalfClock(), object(), 3]:
        with pytest.raises(ConfigError, match=r"clock.*time\(\).*monotonic\(\)"):
            check({"clock": bad})


def test_unknown_option_lists_accepted_names() -> None:
    with pytest.raises(ConfigError) as info:
        check({"max_attempt": 3})
    message = str(info.value)
    assert "max_attempt'" in message and "did you mean 'max_attempts'" in message
    for name in GLOBAL_OPTIONS:
        assert name in message


def test_global_only_option_is_unknown_per_connection() -> None:
    with pytest.raises(ConfigError, match="cleanup_interval") as info:
        validate_options({"cleanup_interval": 5.0}, allowed=CONNECTION_OPTIONS)
    assert "accepted options" in str(info.value)
    assert "max_seconds" not in str(info.value).split("accepted options:")[1]


def test_cross_check_of_expiry_bounds() -> None:
    assert check({"initial_expiry": 5, "max_expiry": 5})
    with pytest.raises(ConfigError, match=r"max_expiry.*initial_expiry"):
        check({"initial_expiry": 10.0, "max_expiry": 5.0})


def test_validate_returns_a_copy() -> None:
    given = {"expiry": 5}
    result = check(given)
    result["expiry"] = 99.0
    assert given == {"expiry": 5}


def test_check_duration() -> None:
    assert check_duration("expires_in", 2) == 2.0
    assert check_duration("expires_in", datetime.timedelta(milliseconds=1500)) == 1.5
    assert check_duration("seconds", 0, allow_zero=True) == 0.0
    for bad in [0, -1, math.nan, math.inf, True, "1", None, datetime.timedelta(0), 10**400]:
        with pytest.raises(ConfigError, match="expires_in"):
            check_duration("expires_in", bad)


# --- environment ---------------------------------------------------------------------------


def values_from_env(env: dict[str, str]) -> dict[str, Any]:
    return {name: value for name, (value, _) in options_from_env(env).items()}


def test_env_parsing() -> None:
    env = {
        "BRAMA_MAX_ATTEMPTS": " 5 ",
        "BRAMA_EXPIRY": "1.5",
        "BRAMA_EXPIRY_STRATEGY": "Progressive",
        "BRAMA_BACKOFF_FACTOR": "3",
        "BRAMA_INACTIVE_THRESHOLD": "None",
        "BRAMA_MAX_RESTARTS": "0",
        "BRAMA_BACKEND": " redis://Cache:6379/1 ",
        "OTHER": "1",
    }
    found = options_from_env(env)
    assert {name: value for name, (value, _) in found.items()} == {
        "max_attempts": 5,
        "expiry": 1.5,
        "expiry_strategy": "progressive",
        "backoff_factor": 3.0,
        "inactive_threshold": None,
        "max_restarts": 0,
        "backend": "redis://Cache:6379/1",  # a URL keeps its case (a password would)
    }
    assert found["expiry"][1] == "environment variable BRAMA_EXPIRY"


def test_unknown_brama_variables_warn_once_with_a_suggestion() -> None:
    with pytest.warns(ConfigWarning, match=r"BRAMA_MAXATTEMPTS.*did you mean BRAMA_MAX_ATTEMPTS"):
        assert options_from_env({"BRAMA_MAXATTEMPTS": "3"}) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        options_from_env({"BRAMA_MAXATTEMPTS": "3"})  # once per process
    with pytest.warns(ConfigWarning, match="BRAMA_CLOCK"):
        options_from_env({"BRAMA_CLOCK": "not settable from the environment"})


def test_env_every_global_option_but_clock_is_read() -> None:
    env = {
        "BRAMA_MAX_ATTEMPTS": "2",
        "BRAMA_EXPIRY": "2",
        "BRAMA_EXPIRY_STRATEGY": "fixed",
        "BRAMA_INITIAL_EXPIRY": "2",
        "BRAMA_MAX_EXPIRY": "20",
        "BRAMA_BACKOFF_FACTOR": "2",
        "BRAMA_HALF_OPEN_MAX_CALLS": "2",
        "BRAMA_SUCCESS_THRESHOLD": "2",
        "BRAMA_HIBERNATE_AFTER": "2",
        "BRAMA_CLEANUP_INTERVAL": "2",
        "BRAMA_INACTIVE_THRESHOLD": "2",
        "BRAMA_MAX_RESTARTS": "2",
        "BRAMA_MAX_SECONDS": "2",
        "BRAMA_FAILURE_RATE_THRESHOLD": "0.5",
        "BRAMA_SLOW_CALL_DURATION": "2",
        "BRAMA_SLOW_CALL_RATE_THRESHOLD": "0.5",
        "BRAMA_WINDOW_TYPE": "time",
        "BRAMA_WINDOW_SIZE": "30",
        "BRAMA_MINIMUM_CALLS": "2",
        "BRAMA_BACKEND": "redis://localhost:6379/0",
        "BRAMA_NAMESPACE": "shop",
        "BRAMA_BACKEND_TIMEOUT": "0.25",
    }
    assert set(values_from_env(env)) == GLOBAL_OPTIONS - {"clock"}


def test_env_blank_is_ignored() -> None:
    assert options_from_env({"BRAMA_EXPIRY": "  "}) == {}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BRAMA_MAX_ATTEMPTS", "five"),
        ("BRAMA_MAX_ATTEMPTS", "5.0"),
        ("BRAMA_MAX_ATTEMPTS", "0"),
        ("BRAMA_EXPIRY", "nan"),
        ("BRAMA_EXPIRY", "inf"),
        ("BRAMA_EXPIRY", "-1"),
        ("BRAMA_EXPIRY", "none"),
        ("BRAMA_EXPIRY_STRATEGY", "linear"),
        ("BRAMA_INACTIVE_THRESHOLD", "never"),
        ("BRAMA_BACKOFF_FACTOR", "0.5"),
    ],
)
def test_env_invalid_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        options_from_env({variable: value})


def test_env_cross_check() -> None:
    with pytest.raises(ConfigError, match="BRAMA_MAX_EXPIRY") as info:
        options_from_env({"BRAMA_INITIAL_EXPIRY": "10", "BRAMA_MAX_EXPIRY": "5"})
    assert "BRAMA_INITIAL_EXPIRY" in str(info.value)


def test_settings_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAMA_MAX_ATTEMPTS", "4")
    assert Settings({}).get("max_attempts") == 4
    monkeypatch.setenv("BRAMA_MAX_ATTEMPTS", "zero")
    with pytest.raises(ConfigError, match="BRAMA_MAX_ATTEMPTS"):
        Settings({})


# --- precedence ----------------------------------------------------------------------------


def test_precedence_of_layers() -> None:
    settings = Settings({"max_attempts": 3}, environ={"BRAMA_MAX_ATTEMPTS": "5"})
    assert Settings({}, environ={"BRAMA_MAX_ATTEMPTS": "5"}).get("max_attempts") == 5
    assert settings.get("max_attempts") == 3  # start > env
    assert settings.resolve().max_attempts == 3
    settings.configure(max_attempts=7)  # configure > start
    assert settings.get("max_attempts") == 7
    assert settings.resolve().max_attempts == 7
    assert settings.resolve({"max_attempts": 2}).max_attempts == 2  # per-connection > all


def test_configure_is_cumulative_and_keeps_other_layers() -> None:
    settings = Settings({"expiry": 5.0}, environ={"BRAMA_MAX_ATTEMPTS": "4"})
    settings.configure(success_threshold=2)
    settings.configure(half_open_max_calls=3)
    options = settings.resolve()
    assert (options.success_threshold, options.half_open_max_calls) == (2, 3)
    assert (options.expiry, options.max_attempts) == (5.0, 4)


def test_initial_and_max_expiry_follow_effective_expiry() -> None:
    settings = Settings({}, environ={"BRAMA_EXPIRY": "2"})
    assert (settings.get("initial_expiry"), settings.get("max_expiry")) == (2.0, 20.0)
    settings.configure(expiry=3.0)
    assert (settings.get("initial_expiry"), settings.get("max_expiry")) == (3.0, 30.0)
    options = settings.resolve({"expiry": 5.0})
    assert (options.expiry, options.initial_expiry, options.max_expiry) == (5.0, 5.0, 50.0)


def test_explicit_initial_and_max_expiry_at_any_layer_win() -> None:
    settings = Settings({"initial_expiry": 1.0}, environ={"BRAMA_MAX_EXPIRY": "100"})
    options = settings.resolve({"expiry": 30.0})
    assert (options.initial_expiry, options.max_expiry) == (1.0, 100.0)
    settings.configure(expiry=7.0)
    assert (settings.get("initial_expiry"), settings.get("max_expiry")) == (1.0, 100.0)
    options = settings.resolve({"initial_expiry": 4.0})
    assert (options.expiry, options.initial_expiry, options.max_expiry) == (7.0, 4.0, 100.0)


def test_start_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        Settings({"max_attempts": 0}, environ={})
    with pytest.raises(ConfigError, match="bogus"):
        Settings({"bogus": 1}, environ={})
    with pytest.raises(ConfigError, match=r"max_expiry.*initial_expiry"):
        Settings({"expiry": 20.0, "max_expiry": 10.0}, environ={})


def test_configure_validates_first_and_applies_atomically() -> None:
    settings = Settings({}, environ={})
    version = settings.version
    with pytest.raises(ConfigError, match="success_threshold"):
        settings.configure(max_attempts=3, success_threshold=0)
    with pytest.raises(ConfigError, match=r"max_expiry.*initial_expiry"):
        settings.configure(max_attempts=3, max_expiry=1.0)  # initial follows expiry = 60
    assert settings.version == version
    assert settings.get("max_attempts") == 10
    assert settings.get("max_expiry") == 600.0
    settings.configure(max_attempts=3)
    assert settings.version == version + 1
    assert settings.get("max_attempts") == 3


def test_resolve_validates_overrides() -> None:
    settings = Settings({"max_expiry": 100.0}, environ={})
    with pytest.raises(ConfigError, match="cleanup_interval"):
        settings.resolve({"cleanup_interval": 1.0})
    with pytest.raises(ConfigError, match="max_attempts"):
        settings.resolve({"max_attempts": True})
    with pytest.raises(ConfigError, match=r"max_expiry.*initial_expiry"):
        settings.resolve({"expiry": 200.0})  # initial follows to 200 > explicit max 100


def test_resolve_is_cached_per_version() -> None:
    settings = Settings({}, environ={})
    first = settings.resolve({"expiry": 5.0})
    assert settings.resolve({"expiry": 5.0}) is first
    settings.configure(max_attempts=2)
    second = settings.resolve({"expiry": 5.0})
    assert second is not first and second.max_attempts == 2
    # unhashable override values still resolve (uncached) or fail validation cleanly
    with pytest.raises(ConfigError, match="expiry"):
        settings.resolve({"expiry": [1.0]})


def test_preview_leaves_settings_unchanged() -> None:
    settings = Settings({}, environ={})
    preview = settings.preview(expiry=1.0)
    assert preview.get("expiry") == 1.0 and preview.version == settings.version + 1
    assert settings.get("expiry") == 60.0
    with pytest.raises(ConfigError, match=r"max_expiry.*initial_expiry"):
        settings.preview(max_expiry=5.0).resolve({})  # the preview itself is rejected


def test_get_unknown_option() -> None:
    with pytest.raises(ConfigError, match="accepted options"):
        Settings({}, environ={}).get("nope")


def test_options_as_dict() -> None:
    options = Settings({}, environ={}).resolve()
    assert set(options.as_dict()) == CONNECTION_OPTIONS


# --- messages in the user's terms -----------------------------------------------------------


def test_an_error_names_the_option_the_value_its_origin_and_the_range() -> None:
    with pytest.raises(ConfigError) as info:
        Settings({"max_attempts": 0}, environ={})
    assert str(info.value) == (
        "option max_attempts=0 (from the options given at start) must be a whole number >= 1"
    )
    with pytest.raises(ConfigError) as info:
        Settings({}, environ={"BRAMA_EXPIRY": "-3"})
    assert str(info.value) == (  # no "or a timedelta": a variable cannot hold one
        "option expiry=-3.0 (from environment variable BRAMA_EXPIRY) must be a finite number "
        "of seconds > 0"
    )


def test_a_bad_combination_names_both_values_and_where_they_came_from() -> None:
    """Found: max_expiry=5 said "must be >= initial_expiry (60.0)", a value never set."""
    settings = Settings({}, environ={})
    with pytest.raises(ConfigError) as info:
        settings.resolve({"max_expiry": 5}, source="register()")
    assert str(info.value) == (
        "option max_expiry=5.0 (from register()) must be >= initial_expiry=60.0 "
        "(derived as expiry=60.0, from the default)"
    )
    env = Settings({}, environ={"BRAMA_MAX_EXPIRY": "5", "BRAMA_EXPIRY": "1"})
    with pytest.raises(ConfigError) as info:
        env.preview(expiry=10)
    assert str(info.value) == (
        "option max_expiry=5.0 (from environment variable BRAMA_MAX_EXPIRY) must be >= "
        "initial_expiry=10.0 (derived as expiry=10.0, from configure())"
    )


def test_durations_accept_timedelta() -> None:
    options = check({"expiry": datetime.timedelta(seconds=90), "hibernate_after": 0})
    assert options == {"expiry": 90.0, "hibernate_after": 0.0}
    with pytest.raises(ConfigError, match="backoff_factor"):
        check({"backoff_factor": datetime.timedelta(seconds=2)})


# --- the fleet backend's system options ----------------------------------------------------


def test_backend_options_are_validated_and_the_password_never_shown() -> None:
    url = "rediss://app:s3cret@cache.internal:6380/2"
    assert check({"backend": url, "namespace": "shop", "backend_timeout": 0.25}) == {
        "backend": url, "namespace": "shop", "backend_timeout": 0.25}
    assert check({"backend_timeout": datetime.timedelta(milliseconds=50)}) == {
        "backend_timeout": 0.05}
    assert check({"backend": None}) == {"backend": None}  # local circuits
    for bad in ("http://app:s3cret@cache:6379", "redis://app:s3cret@cache:99999/0",
                "redis://app:s3cret@cache/db", "redis://app:s3cret@h/0?socket_timeout=9"):
        with pytest.raises(ConfigError) as info:
            check({"backend": bad})
        message = str(info.value)
        assert "s3cret" not in message and "***" in message, message
        assert message.startswith("option backend=") and "(from argument)" in message
        assert "redis://, rediss:// or unix:// URL" in message  # what is accepted
    with pytest.raises(ConfigError, match=r"option backend=3 \(from argument\)"):
        check({"backend": 3})
    for bad_namespace in ("", "a b", "{shop}", "x" * 65, 7):
        with pytest.raises(ConfigError, match=r"option namespace=.*1 to 64 characters"):
            check({"namespace": bad_namespace})
    for bad_timeout in (0, -1, 61, math.inf, "0.1", True):
        with pytest.raises(ConfigError, match=r"option backend_timeout=.*<= 60"):
            check({"backend_timeout": bad_timeout})


def test_backend_options_from_the_environment_name_the_variable_not_the_password() -> None:
    found = options_from_env({"BRAMA_BACKEND": "redis://:Pa55@cache:6379/0",
                              "BRAMA_NAMESPACE": "Shop-EU", "BRAMA_BACKEND_TIMEOUT": "0.5"})
    assert {n: v for n, (v, _) in found.items()} == {
        "backend": "redis://:Pa55@cache:6379/0", "namespace": "Shop-EU",
        "backend_timeout": 0.5}
    with pytest.raises(ConfigError) as info:
        options_from_env({"BRAMA_BACKEND": "cache:Pa55@6379"})
    assert "environment variable BRAMA_BACKEND" in str(info.value)
    assert "Pa55" not in str(info.value)
    with pytest.raises(ConfigError, match="BRAMA_NAMESPACE"):
        options_from_env({"BRAMA_NAMESPACE": "no spaces"})


def test_backend_options_are_start_only() -> None:
    import brama

    with brama.Brama() as system:
        for name, value in (("backend", "redis://localhost:6379/0"), ("namespace", "x"),
                            ("backend_timeout", 1.0), ("clock", None)):
            with pytest.raises(ConfigError, match=f"{name} cannot be changed at runtime"):
                system.configure(**{name: value})
