"""The hypothesis profiles keep CI's example counts: under "ci" every property and model test
runs exactly as many examples as before the profiles existed; "dev" runs fewer."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.circuit import test_properties
from tests.hypothesis_profiles import CI_EXAMPLES, DEV_EXAMPLES, scaled
from tests.reliability import test_hostile_input, test_model

# Each test's count under the ci profile: the numbers the suite had before the profiles.
CI_COUNTS = {
    "model": 1500,
    "hostile input": 150,
    "test_random_sequences_keep_invariants": 300,
    "test_progressive_openings_follow_the_formula": 200,
    "test_open_circuit_always_reaches_half_open_unless_disabled": 200,
    "test_resume_timers_rebuild_the_same_future": 100,
}


def counts() -> dict[str, int]:
    found = {
        "model": test_model.MODEL_SETTINGS.max_examples,
        "hostile input": test_hostile_input.SETTINGS.max_examples,
    }
    for name in CI_COUNTS:
        if name.startswith("test_"):
            test = getattr(test_properties, name)
            found[name] = test._hypothesis_internal_use_settings.max_examples
    return found


@pytest.fixture
def profile() -> Iterator[None]:
    """Lets a test load a profile; the one loaded before comes back afterwards."""
    previous = settings.get_current_profile_name()
    yield
    settings.load_profile(previous)


def test_the_loaded_profile_follows_the_ci_variable(request: pytest.FixtureRequest) -> None:
    chosen = request.config.getoption("--hypothesis-profile")  # an explicit choice wins
    expected = chosen or ("ci" if os.environ.get("CI") else "dev")
    assert settings.get_current_profile_name() == expected
    if expected in ("ci", "dev"):
        assert settings.default.max_examples == {"ci": CI_EXAMPLES, "dev": DEV_EXAMPLES}[expected]
        assert settings.default.deadline is None


def test_the_tests_run_their_full_counts_under_ci_and_fewer_otherwise() -> None:
    name = settings.get_current_profile_name()
    if name == "ci":
        assert counts() == CI_COUNTS
    elif name == "dev":
        found = counts()
        for test, ci_count in CI_COUNTS.items():
            assert 10 <= found[test] < ci_count, test
    else:
        pytest.skip(f"no expectation for the profile {name!r}")


def test_scaled_is_the_identity_under_ci(profile: None) -> None:
    settings.load_profile("ci")
    assert [scaled(n) for n in (1, 100, 150, 1500)] == [1, 100, 150, 1500]
    settings.load_profile("dev")
    assert [scaled(n) for n in (40, 100, 150, 1500)] == [10, 25, 37, 375]
