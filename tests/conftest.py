"""The fixtures `brama_system` and `brama_clock` come from Brama's own pytest plugin; shared
helpers live in `tests/helpers.py`.

The hypothesis profile ("ci" under CI, "dev" otherwise) is loaded here, before any test module
is imported, because the tests' settings read it when they are defined: see
`tests/hypothesis_profiles.py`.
"""

from __future__ import annotations

import pytest

from tests import hypothesis_profiles

hypothesis_profiles.load()

# The longest tests start first. pytest runs the suite on pytest-xdist workers with
# `--dist worksteal` (pyproject.toml): each worker starts with a contiguous share of the tests
# and an idle worker takes over half of a busy one's queue, but not the test it is running.
# The model test alone is a third of the suite's CPU time: started last, it would run on its
# own long after the other worker is done; started first, the other workers get through
# everything else meanwhile. Every test is independent of the order; only these move, a name
# that no longer exists is ignored.
LONGEST_FIRST = (
    "tests/reliability/test_model.py::test_brama_matches_reference_model",
    "tests/reliability/test_model.py::test_brama_matches_reference_model_with_hibernation",
    "tests/reliability/test_model_policies.py::test_brama_matches_reference_model_with_rate_policies",
    "tests/fleet/test_model_fleet.py::test_a_fleet_of_two_matches_the_reference_model",
    "tests/test_demo_fleet.py::test_one_workers_trip_stops_the_whole_fleet",
    "tests/reliability/test_attack_timers.py::test_unregistered_connections_leave_no_timers_behind",
    "tests/test_examples.py::test_demo_shows_the_whole_cycle",
)


def _rank(item: pytest.Item) -> int:
    for rank, name in enumerate(LONGEST_FIRST):
        if item.nodeid == name or item.nodeid.startswith(name + "["):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # a stable sort: the other tests keep their order
