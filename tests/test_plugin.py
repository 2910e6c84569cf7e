"""The pytest plugin, exercised in an inner pytest run through `pytester`."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INNER = '''
from brama import Brama, CircuitState
from brama.testing import FakeClock

SEEN = []


def test_fixtures(brama_system, brama_clock):
    assert isinstance(brama_clock, FakeClock)
    assert isinstance(brama_system, Brama)
    assert brama_system.running
    assert brama_system.clock is brama_clock
    brama_system.register("db", max_attempts=1, expiry=5.0)
    brama_system.failure("db")
    assert brama_system.status("db").state is CircuitState.OPEN
    brama_clock.advance(5.0)
    assert brama_system.status("db").state is CircuitState.HALF_OPEN
    SEEN.append(brama_system)


def test_a_fresh_system_each_test_and_the_last_one_stopped(brama_system):
    assert len(SEEN) == 1
    assert not SEEN[0].running
    assert brama_system is not SEEN[0]
    assert brama_system.connections() == []


def test_failing_inside_still_stops(brama_system):
    SEEN.append(brama_system)
    raise AssertionError("on purpose")


def test_after_the_failure(brama_system):
    assert not SEEN[1].running
'''


def test_plugin_fixtures_in_an_inner_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_inner.py::test_failing_inside_still_stops*"])


def test_plugin_is_registered_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_names="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:randomly")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["plugins:*brama-*"])
    result.stdout.fnmatch_lines(["*brama_clock*", "*brama_system*"])
